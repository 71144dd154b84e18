"""The inbound side of the provider port: each rail's signature scheme and its event normaliser."""
