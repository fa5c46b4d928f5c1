"""The Flower-speaking layer: ClientApp handlers (:mod:`.client`, node side), the
ServerApp workflow (:mod:`.server`, merge-server side, never reads interactions), and
what they share (:mod:`.records`, :mod:`.run_config`; the protocol itself is
:mod:`silorec.wire`, free of Flower)."""
