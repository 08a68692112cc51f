"""Deterministic workflow classes: no I/O, no clock, no randomness except through `workflow.*`."""
