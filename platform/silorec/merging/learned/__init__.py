"""Learned merges: merge coefficients λ trained on server-side pseudo-users
(:mod:`.pseudo_users`), at task or layer granularity (:mod:`.coefficients`), with an
objective (:mod:`.objectives`) by one optimisation loop (:mod:`.optimize`). The methods
using them (MergeRec, AdaMerging) are registered in :mod:`silorec.merging.methods`."""
