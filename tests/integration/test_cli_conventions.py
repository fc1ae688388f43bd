"""The operator CLIs' shared conventions (scripts/convention.py): `--help` imports nothing heavy, stack names
resolve to Pulumi.<name>.yaml, exit 2 when a drill cannot run. Each test starts the CLI as a python process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT

CLIS = ["scripts/render.py", "scripts/ha_drill.py", "scripts/preflight.py", "scripts/status.py",
        "scripts/verify_migration.py",
        "scripts/registry_inventory.py",
        "labs/bench/bench_provider.py"]
# Loads --help in a fresh interpreter, then reports which heavy modules got imported.
PROBE = """
import runpy, sys
sys.argv = [{path!r}, "--help"]
try:
    runpy.run_path({path!r}, run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
print(" ".join(sorted(m for m in ("pulumi", "grpc", "jinja2") if m in sys.modules)))
"""


@pytest.mark.parametrize("cli", CLIS)
def test_help_imports_neither_pulumi_nor_the_renderers(cli):
    path = str(ROOT / cli)
    result = subprocess.run([sys.executable, "-c", PROBE.format(path=path)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    *_, heavy = result.stdout.splitlines()
    assert heavy == "", f"{cli} --help imported {heavy}"


def test_ha_drill_takes_a_stack_name_and_refuses_redis_failover_on_a_standalone_redis_with_exit_2():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "ha_drill.py"), "--stack", "dev", "--client",
                             "c", "--dry-run", "redis_master_death"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Pulumi.dev.yaml: redis_master_death needs harbor-ha:redis.mode sentinel")
    assert "Traceback" not in result.stderr


def test_ha_drill_reports_a_bad_stack_file_in_one_line_per_problem_with_exit_2():
    stack = ROOT / "tests" / "stacks" / "bad" / "near-miss-key.yaml"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "ha_drill.py"), "--stack", str(stack),
                             "--client", "c", "--dry-run", "lb_crash"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("near-miss-key.yaml:16: harbor-ha:vip.adress: unknown key; did you mean 'address'?")


@pytest.mark.parametrize("cli", ["scripts/backup.py", "scripts/restore.py"])
def test_backup_and_restore_name_an_unknown_stack_in_one_line_with_exit_2(cli):
    result = subprocess.run([sys.executable, str(ROOT / cli), "--stack", "nosuch", "--dry-run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip().endswith("Pulumi.nosuch.yaml: no such stack file")
    assert "Traceback" not in result.stderr
