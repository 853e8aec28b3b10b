"""greenproof: trustless, green, decentralised AI training."""
__version__ = "0.1.0"
