"""Seeded whole-cluster simulation of the Raft core (see engine.py; replay with `python -m tests.sim.run`)."""
