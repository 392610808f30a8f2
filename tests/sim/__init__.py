"""The seeded simulator: real confmand nodes over simulated disks, network, clocks and clients (engine.py)."""
