"""Store simulator: a store PC over SSH (allow-listed commands, per-lane printer state)
plus the StoreMaster and ticket HTTP APIs, seeded from a YAML scenario.

Tests, the demo and the evals run against it; production points the same clients at the
real systems.
"""
