"""Plain helpers the tests share (no fixtures: those are in tests/conftest.py; the mock run of the program and the
engine-plan model, which the host lab uses too, are in labs/engine/)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  #: the repository root


def tool(name: str) -> str | None:
    """The path of a command-line tool: the one the running interpreter's virtualenv installed (requirements-dev.txt:
    actionlint, shellcheck), else the one on PATH. `venv/bin/python -m pytest` then finds them without venv/bin on
    PATH."""
    import shutil
    import sys

    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def run_isolated(cwd: Path, command: str, env: dict[str, str], stdin: str = "",
                 timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`command` in bash in `cwd`, in a new network namespace with only its loopback up (root: `unshare --net`):
    nothing it starts reaches anything but itself (the Pulumi CLI talks to its plugins on 127.0.0.1), so a stack's
    addresses are never dialled from this machine."""
    return subprocess.run(["unshare", "--net", "bash", "-c", f"ip link set lo up && {command}"], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env, input=stdin)
