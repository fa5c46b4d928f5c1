"""Engines that run silorec's Flower apps: in-process (no Ray, no network) and Flower
simulation through ``flwr run`` (:mod:`.simulation`)."""
