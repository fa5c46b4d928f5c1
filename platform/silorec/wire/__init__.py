"""The wire protocol between the merge server and domain nodes, free of Flower: the
message types and record names (:mod:`.protocol`), the scalar metric names each reply
kind may carry (:mod:`.metrics`), and the server's validation of every reply
(:mod:`.replies`). Both sides import it; the node's wire policy
(:mod:`silorec.audit.policy`) and the server's validator read the same names."""
