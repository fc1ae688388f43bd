"""What every operator CLI in scripts/ shares: stack names, `--json FILE|-`, exit statuses.

Exit status of every CLI: 0 the check was met (or the work done), 1 it was not met, 2 it could not run (usage, a
bad stack file, an unreachable host or registry). This module imports nothing heavy, so `--help` stays instant:
each CLI imports the program (and through it pulumi) only after parsing its arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MET, NOT_MET, COULD_NOT_RUN = 0, 1, 2


def add_stack_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, metavar="NAME",
                        help="stack name: reads Pulumi.NAME.yaml from the repository root (a path to a stack "
                             "file is accepted too)")


def stack_file(stack: str) -> Path:
    """`dev` -> <repository>/Pulumi.dev.yaml; a path (with a slash or a .yaml suffix) is taken as it is."""
    if "/" in stack or stack.endswith((".yaml", ".yml")):
        return Path(stack)
    return ROOT / f"Pulumi.{stack}.yaml"


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE (`-`: only the JSON, "
                                                       "on stdout)")


def write_json(target: str | None, document: object) -> None:
    """The JSON document to `target` (a file, or `-` for stdout); nothing when `target` is None."""
    if target is None:
        return
    text = json.dumps(document, indent=2)
    if target == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")


def use_clone_venv() -> None:
    """Run under the clone's virtualenv (venv/, the README's set-up) when the python that started the script lacks
    the program's packages: `scripts/NAME.py` then works as written, also as `sudo scripts/NAME.py`."""
    venv_python = ROOT / "venv" / "bin" / "python"
    if importlib.util.find_spec("pulumi") is not None:
        return
    if venv_python.is_file() and Path(sys.prefix).resolve() != (ROOT / "venv").resolve():
        os.execv(str(venv_python), [str(venv_python), sys.argv[0], *sys.argv[1:]])
    if {"-h", "--help"} & set(sys.argv[1:]):
        return  # the scripts whose help needs only the standard library answer it
    print(f"{Path(sys.argv[0]).name}: {sys.executable} lacks the program's packages and there is no {venv_python}: "
          f"python3 -m venv venv && venv/bin/pip install -r requirements.txt (README)", file=sys.stderr)
    sys.exit(COULD_NOT_RUN)
