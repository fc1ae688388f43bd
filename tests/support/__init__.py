"""Plain helpers the tests share (no fixtures: those are in tests/conftest.py; the mock run of the program and the
engine-plan model, which the host lab uses too, are in labs/engine/)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  #: the repository root
