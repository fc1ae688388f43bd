"""The operator CLIs' shared conventions (scripts/convention.py): `--help` imports nothing heavy, stack names
resolve to Pulumi.<name>.yaml, exit 2 when a drill cannot run. Each test starts the CLI as a python process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

CLIS = ["scripts/render.py", "scripts/ha_drill.py", "scripts/preflight.py", "scripts/status.py",
        "scripts/verify_migration.py",
        "scripts/registry_inventory.py", "labs/bench/bench_provider.py", "scripts/backup.py", "scripts/restore.py"]
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


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60, cwd=ROOT)


BACKUP_CLIS = [["scripts/backup.py"], ["scripts/restore.py", "--yes"]]


@pytest.mark.parametrize("cli", BACKUP_CLIS)
def test_backup_and_restore_name_an_unknown_stack_in_one_line_with_exit_2(cli):
    result = run_cli(*cli, "--stack", "no-such-stack")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{ROOT / 'Pulumi.no-such-stack.yaml'}: no such stack file"]


@pytest.mark.parametrize("cli", BACKUP_CLIS)
def test_backup_and_restore_report_a_bad_stack_file_in_one_line_per_problem_with_exit_2(cli):
    result = run_cli(*cli, "--stack", "tests/stacks/bad/near-miss-key.yaml")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("near-miss-key.yaml:16: harbor-ha:vip.adress: unknown key; did you mean 'address'?")


def test_backup_refuses_a_stack_without_a_backup_section_with_exit_2_naming_the_section():
    result = run_cli("scripts/backup.py", "--stack", "dev", "--json", "-")
    message = "Pulumi.dev.yaml: backups need the harbor-ha:backup section (docs/operations/backup-restore.md)"
    assert result.returncode == 2 and result.stderr.splitlines() == [message]
    assert json.loads(result.stdout) == {"ok": False, "error": message}


def test_restore_without_yes_refuses_with_exit_2_before_reading_the_stack():
    result = run_cli("scripts/restore.py", "--stack", "no-such-stack")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["this replaces the current database: pass --yes (or --dry-run to see the "
                                          "commands)"]


def test_backup_dry_run_with_json_to_stdout_keeps_stdout_for_the_json_and_exits_0(tmp_path):
    out = tmp_path / "result.json"
    result = run_cli("scripts/backup.py", "--stack", "docs/examples/patroni.yaml", "--dry-run", "--type", "full",
                     "--json", "-")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "database_backup": "full", "data_snapshot": None,
                                         "database_time": ""}
    assert "--type=full backup" in result.stderr  # the commands it would run
    result = run_cli("scripts/restore.py", "--stack", "docs/examples/patroni.yaml", "--dry-run", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == {"ok": True, "restored_to": "latest", "data_snapshot": None}
