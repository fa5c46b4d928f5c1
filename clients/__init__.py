"""The Flower ClientApp: one domain node."""
