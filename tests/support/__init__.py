"""Plain helpers the tests share (no fixtures: those are in tests/conftest.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  #: the repository root
