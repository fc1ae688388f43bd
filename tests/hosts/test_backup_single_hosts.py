"""The restore drill of postgres.mode single on real Debian 12 hosts (labs/hosts/backup_drill.py): systemd-nspawn
machines booted by labs/hosts/debhosts.sh, the program's role scripts replayed on the database host (PostgreSQL 15
with WAL archiving and `pgbackrest server`), the NFS host and the repository host (pgBackRest's stanza, check and
timers); then scripts/backup.py and scripts/restore.py over SSH as an operator runs them, with the lab's Harbor API
emulator on 127.0.0.1 for the read-only switch. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET (and HHA_BASE)."""

from __future__ import annotations


import pytest

from labs.hosts import backup_drill

pytestmark = pytest.mark.backup_drill


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("backup-drill", backup_drill.run)


def test_single_server_archives_its_wal_and_the_repository_host_runs_the_backup_timers(report):
    assert "error" not in report, report.get("error")
    assert report["archive_mode"] == "on" and report["timers"] == ["active", "active"], report


def test_a_second_apply_of_every_role_changes_no_file_and_restarts_nothing(report):
    assert report["second_apply"] == {"ok": True, "changed_files": [], "restarted": []}


def test_the_differential_backup_unit_of_the_timer_backs_up_on_the_repository_host(report):
    assert report["timer_diff_ok"] and report["repository_backups"] == ["full", "diff"], report


def test_backup_takes_a_full_backup_and_a_snapshot_and_leaves_harbor_writable(report):
    backup = report["backup"]
    print(f"backup.py --type full: {report['backup_s']:.1f} s, snapshot {backup['data_snapshot']}")
    assert backup["ok"] and backup["database_backup"] == "full" and backup["data_snapshot"], backup
    assert report["read_only_after_backup"] is False


def test_restore_to_the_time_between_gives_every_table_identical_to_that_time(report):
    print(f"restore.py --to {report['target_time']}: {report['restore_s']:.1f} s; tables "
          f"{ {n: t['rows'] for n, t in report['tables'].items()} }")
    assert report["tables"] and report["changed_before_restore"], report
    assert report["tables_after_restore"] == report["tables"]
    assert report["in_recovery"] == "f" and report["server_active"] == "active"


def test_restore_puts_every_file_of_the_data_volume_snapshot_back_byte_for_byte(report):
    assert report["files_in_snapshot"] > 0 and report["files_identical"], report
