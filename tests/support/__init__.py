"""Plain helpers the tests share (no fixtures: those are in tests/conftest.py; the mock run of the program and the
engine-plan model, which the host lab uses too, are in labs/engine/)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  #: the repository root


def tool(name: str) -> str | None:
    """The path of a command-line tool: the one the running interpreter's virtualenv installed (requirements-dev.txt:
    actionlint, shellcheck), else the one on PATH. `venv/bin/python -m pytest` then finds them without venv/bin on
    PATH."""
    import shutil
    import sys

    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
