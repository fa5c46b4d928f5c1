"""The Flower ServerApp: the merge server."""
