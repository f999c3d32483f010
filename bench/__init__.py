"""Benchmarks: commands that print a table of figures measured in one run (never tests)."""
