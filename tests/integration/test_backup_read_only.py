"""scripts/backup.py and restore.py against the Harbor API emulator (a real HTTP server on 127.0.0.1): Harbor is
read-only exactly while the data volume is captured, and read_only goes back to what it was, also on failure; in
patroni mode and with the single server (postgres.mode single)."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.config import parse_cluster_config
from scripts.backup import HarborApi, Ssh, backup, harbor_read_only
from scripts.restore import restore
from labs.engine.pulumi_harness import patroni_values, single_values


@pytest.fixture
def api(emulator) -> HarborApi:
    return HarborApi(emulator.url, emulator.username, emulator.password)


class RecordingSsh(Ssh):
    """Answers like the hosts would and records (host, command, Harbor's read_only at that moment)."""

    def __init__(self, emulator, fail_on: str = ""):
        super().__init__(dry_run=False)
        self.emulator, self.fail_on, self.seen = emulator, fail_on, []

    def run(self, host, command, *, stdin=None, timeout=7200):
        self.seen.append((host.name, command, self.emulator.configurations["read_only"]))
        if self.fail_on and self.fail_on in command:
            raise RuntimeError(f"{host.name}: {command}: exit 1")
        if "patronictl" in command and "list" in command:
            return json.dumps([{"Member": "db2", "Role": "Leader"}, {"Member": "db1", "Role": "Replica"}])
        if "SELECT now()" in command:
            return "2026-12-01 15:20:01.5+00\n"
        if "restic" in command and " backup " in command:
            return '{"message_type":"summary","snapshot_id":"5f1a"}\n'
        return ""


def test_read_only_is_set_for_the_block_and_cleared_after(emulator, api):
    with harbor_read_only(api):
        assert emulator.configurations["read_only"] and api.read_only()
    assert not emulator.configurations["read_only"]


def test_read_only_is_cleared_when_the_capture_fails(emulator, api):
    with pytest.raises(RuntimeError, match="disk full"), harbor_read_only(api):
        raise RuntimeError("disk full")
    assert not emulator.configurations["read_only"]


def test_a_read_only_window_the_operator_opened_stays_open(emulator, api):
    api.set_read_only(True)
    with harbor_read_only(api):
        pass
    assert emulator.configurations["read_only"]


def test_backup_takes_the_database_then_snapshots_the_volume_while_harbor_is_read_only(emulator, api):
    cfg = parse_cluster_config(patroni_values())
    ssh = RecordingSsh(emulator)
    result = backup(cfg, api, ssh, "full")
    assert result == {"database_backup": "full", "data_snapshot": "5f1a", "database_time": "2026-12-01 15:20:01.5+00"}
    first_host, first_command, first_read_only = ssh.seen[0]
    assert first_host == "backup1" and "--type=full backup" in first_command and not first_read_only
    captured = [(h, c) for h, c, ro in ssh.seen if "restic" in c and " backup " in c]
    assert captured and all(ro for _, c, ro in ssh.seen if "restic" in c or "SELECT now()" in c)
    assert "db:2026-12-01 15:20:01.5+00" in captured[0][1] and captured[0][0] == "nfs1"
    assert not emulator.configurations["read_only"]


def test_backup_clears_read_only_when_restic_fails(emulator, api):
    cfg = parse_cluster_config(patroni_values())
    with pytest.raises(RuntimeError, match="restic"):
        backup(cfg, api, RecordingSsh(emulator, fail_on=" backup --json"), "diff")
    assert not emulator.configurations["read_only"]


def test_restore_restores_the_first_member_before_starting_the_others_and_clears_read_only(emulator, api):
    cfg = parse_cluster_config(patroni_values())
    ssh = RecordingSsh(emulator)
    restore(cfg, api, ssh, "2026-12-01 15:20:01.5+00", "5f1a")
    stops = [i for i, (h, c, _) in enumerate(ssh.seen) if c == "systemctl stop patroni"]
    assert [ssh.seen[i][0] for i in stops] == ["db1", "db2", "db3"]
    removed = next(c for h, c, _ in ssh.seen if " remove harbor" in c)
    assert removed and ssh.seen[stops[-1] + 1][1] == removed
    restored = next(i for i, (h, c, _) in enumerate(ssh.seen) if "bash -s" in c)
    assert restored > stops[-1]
    started = [i for i, (h, c, _) in enumerate(ssh.seen) if c == "systemctl start patroni"]
    assert ssh.seen[restored][0] == "db1" and all(i > restored for i in started)
    assert all(ro for _, _, ro in ssh.seen) and not emulator.configurations["read_only"]


def test_backup_commands_drive_the_real_restic(emulator, api, tmp_path):
    """The restic command lines backup.py sends run for real (Debian's restic, a local repository): the repository
    is initialized once, the data volume snapshotted with the database-time tag, the summary's snapshot id read;
    a second backup reuses the repository."""
    volume = tmp_path / "srv-harbor"
    (volume / "docker/registry/v2/blobs").mkdir(parents=True)
    (volume / "docker/registry/v2/blobs/data").write_bytes(b"layer" * 1000)
    password = tmp_path / "restic-password"
    password.write_text("correct horse\n")
    values = patroni_values()
    values["nfs"] = {"exportPath": str(volume)}
    values["backup"]["resticRepository"] = str(tmp_path / "repo")
    cfg = parse_cluster_config(values)

    class LocalRestic(RecordingSsh):
        def run(self, host, command, *, stdin=None, timeout=7200):
            if "restic" not in command:
                return super().run(host, command, stdin=stdin, timeout=timeout)
            self.seen.append((host.name, command, self.emulator.configurations["read_only"]))
            from components.nfs import RESTIC_PASSWORD_FILE
            r = subprocess.run(["bash", "-c", command.replace(RESTIC_PASSWORD_FILE, str(password))],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            return r.stdout

    first = backup(cfg, api, LocalRestic(emulator), "full")
    second = backup(cfg, api, LocalRestic(emulator), "incr")
    assert first["data_snapshot"] and second["data_snapshot"] and first["data_snapshot"] != second["data_snapshot"]
    listed = subprocess.run(["restic", "-r", str(tmp_path / "repo"), "--password-file", str(password), "snapshots",
                             "--json"], capture_output=True, text=True, timeout=60, check=True)
    snapshots = json.loads(listed.stdout)
    assert len(snapshots) == 2 and all("db:2026-12-01 15:20:01.5+00" in s["tags"] for s in snapshots)
    assert not emulator.configurations["read_only"]


def test_single_mode_backup_reads_the_database_time_on_the_single_server_and_asks_no_patroni(emulator, api):
    cfg = parse_cluster_config(single_values())
    ssh = RecordingSsh(emulator)
    result = backup(cfg, api, ssh, "diff")
    assert result == {"database_backup": "diff", "data_snapshot": "5f1a", "database_time": "2026-12-01 15:20:01.5+00"}
    assert not [c for _, c, _ in ssh.seen if "patronictl" in c]
    assert ssh.seen[0][0] == "backup1" and "--type=diff backup" in ssh.seen[0][1]
    (now_host,) = [h for h, c, ro in ssh.seen if "SELECT now()" in c and ro]
    assert now_host == "db1" and not emulator.configurations["read_only"]


def test_single_mode_restore_stops_restores_and_starts_the_single_server_while_harbor_is_read_only(emulator, api):
    cfg = parse_cluster_config(single_values())
    unit = f"postgresql@{cfg.postgres.version}-main"
    ssh = RecordingSsh(emulator)
    restore(cfg, api, ssh, "2026-12-01 15:20:01.5+00", "5f1a")
    steps = [(h, c.split("\n")[0][:40]) for h, c, _ in ssh.seen]
    assert [h for h, _ in steps] == ["db1", "db1", "db1", "db1", "nfs1"], steps
    assert steps[0][1] == f"systemctl stop {unit}" and steps[1][1].startswith("mv /var/lib/postgresql/")
    assert "bash -s" in ssh.seen[2][1] and steps[3][1] == f"systemctl start {unit}" and "restic" in ssh.seen[4][1]
    assert all(ro for _, _, ro in ssh.seen) and not emulator.configurations["read_only"]
