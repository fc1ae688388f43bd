"""A Harbor API v2.0 emulator for the tests and the benchmark (see server.py)."""
