"""The restore drill of postgres.mode single on real Debian 12 hosts: back up, write more, restore to the moment
between, and compare every table.

    sudo venv/bin/python labs/hosts/backup_drill.py --json FILE [--keep]
    sudo venv/bin/python labs/hosts/host_lab.py down        # after --keep

Hosts and their harness: labs/hosts/host_lab.py (debhosts.sh machines, the replay of the program's role commands;
environment HHA_ROOT, HHA_BRIDGE, HHA_NET). The stack is the dev shape (one database host, data1, which is also the
NFS host) with a backup section: pgBackRest's repository on node2 (no database host), restic's repository a folder on
the NFS host. Only the roles a backup needs are applied: the firewall of data1 and node2, PostgreSQL (with WAL
archiving and `pgbackrest server`), the NFS server and the repository host (stanza, check, timers); Harbor's nodes,
load balancers and Redis are not (Harbor is a stand-in in this lab anyway).
The drill, each step by the operator's tools (scripts/backup.py and scripts/restore.py over SSH, as documented):
0. every role applied a second time: no file changes, no service restarted;
1. tables written in Harbor's database and files in the data volume; `backup.py --type full` (pgBackRest full
   backup on the repository host, then restic's snapshot of the data volume while Harbor is read-only); the
   differential backup's unit (what its timer starts) run on the repository host;
2. more rows written; the checksums of every table and the database time T taken; the WAL past T archived;
3. more writes after T (updates, deletes, a table dropped, one created) and files changed and added;
4. `restore.py --to T --data SNAPSHOT --yes`: the single server stopped, restored to T, started; the snapshot back;
5. every table's checksum compared with step 2's, every file of the snapshot with step 1's.
Harbor's API for the read-only window is a stand-in: labs/fakes' Harbor API emulator on 127.0.0.1 (the lab's Harbor
installer has no API); backup.py and restore.py reach it with --harbor-url.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from components.config import parse_cluster_config  # noqa: E402
from components.pgbackrest import STANZA  # noqa: E402
from components.postgres import service_unit  # noqa: E402
from labs.fakes.harbor_emulator.server import HarborEmulator  # noqa: E402
from labs.hosts import host_lab  # noqa: E402
from labs.hosts.host_lab import DEV, MACHINES, ROOT, HostLab, Shape, log, ssh  # noqa: E402
from labs.hosts.replay import COMMAND, COPY  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESTIC_REPOSITORY = "/var/backups/harbor-ha-restic"  #: restic's repository: a folder on the NFS host
SHAPE = Shape("single-backup", DEV.hosts, {**DEV.roles, "backup": "node2"},
              {"backup": {"repository": "host", "resticRepository": RESTIC_REPOSITORY}})
#: the role components whose apply commands run (`<component>-<host>`): what a backup of the single server needs
APPLIED = ("harbor-firewall-data1", "harbor-firewall-node2", "harbor-postgres-data1", "harbor-postgres-repo-node2",
           "harbor-nfs-data1")
DATABASE = "registry"  #: Harbor's database (components/config.py's default postgres.database)
VOLUME = "/srv/harbor"  #: the data volume (nfs.exportPath's default) on the NFS host
PSQL = f"cd / && runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -d {DATABASE}"
# md5 of every user table's rows in a fixed order (each row as text): equal checksums, identical tables.
CHECKSUMS = r"""
CREATE TEMP TABLE sums (name text, rows bigint, md5 text);
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename LOOP
    EXECUTE format('INSERT INTO sums SELECT %L, count(*), md5(coalesce(string_agg(x::text, E''\n'' ORDER BY '
                   'x::text), '''')) FROM %I.%I x', t.tablename, t.schemaname, t.tablename);
  END LOOP; END $$;
SELECT coalesce(json_object_agg(name, json_build_object('rows', rows, 'md5', md5)), '{}') FROM sums;
"""
# Writes of each phase: (1) before the backup, (2) after it, before the target time, (3) after the target time.
WRITES = {
    1: """CREATE TABLE drill_images (id bigint PRIMARY KEY, repo text, digest text, pushed timestamptz);
          INSERT INTO drill_images SELECT g, 'library/app' || g % 17, md5(g::text), now()
            FROM generate_series(1, 5000) g;
          CREATE TABLE drill_tags (id serial PRIMARY KEY, image bigint REFERENCES drill_images, tag text);
          INSERT INTO drill_tags (image, tag) SELECT g, 'v' || g FROM generate_series(1, 5000, 3) g;""",
    2: """INSERT INTO drill_images SELECT g, 'library/new' || g % 5, md5(g::text), now()
            FROM generate_series(5001, 7000) g;
          UPDATE drill_images SET repo = repo || '-moved' WHERE id % 10 = 0;
          INSERT INTO drill_tags (image, tag) SELECT g, 'latest' FROM generate_series(5001, 7000, 7) g;""",
    3: """DELETE FROM drill_tags WHERE id % 2 = 0; UPDATE drill_images SET digest = 'gone' WHERE id < 3000;
          INSERT INTO drill_images SELECT g, 'late', 'late', now() FROM generate_series(7001, 9000) g;
          CREATE TABLE drill_after (id int); INSERT INTO drill_after VALUES (1);""",
}
FILES = {1: "mkdir -p {v}/docker/registry/v2/blobs/sha256/ab {v}/job_logs && "
            "head -c 3000000 /dev/urandom > {v}/docker/registry/v2/blobs/sha256/ab/layer1 && "
            "head -c 200000 /dev/urandom > {v}/docker/registry/v2/blobs/sha256/ab/layer2 && echo log1 > {v}/job_logs/a",
         3: "head -c 100000 /dev/urandom > {v}/docker/registry/v2/blobs/sha256/ab/layer2 && "
            "rm {v}/job_logs/a && echo late > {v}/job_logs/late"}
FILE_SUMS = "cd {v} && find . -type f | sort | xargs -r sha256sum"


def data_host() -> str:
    return MACHINES[SHAPE.roles["postgres"]]


def sql(statements: str) -> str:
    return ssh(data_host(), PSQL, input=statements).stdout.strip()


def table_checksums() -> dict[str, Any]:
    return json.loads(sql(CHECKSUMS).splitlines()[-1])


def file_checksums() -> dict[str, str]:
    out = ssh(MACHINES[SHAPE.roles["nfs"]], FILE_SUMS.format(v=VOLUME)).stdout
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in out.splitlines())}


def write_ssh_config(path: Path, lab_hosts: list[str]) -> None:
    """An ssh_config for the operator's tools (their --ssh-config): the lab's key and pinned host keys, by address."""
    addresses = " ".join(host_lab.address(MACHINES[h]) for h in lab_hosts)
    path.write_text(f"Host {addresses}\n  IdentityFile {ROOT / 'id_ed25519'}\n  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {ROOT / 'known_hosts'}\n  StrictHostKeyChecking yes\n")


def operator_tool(script: str, *args: str, emulator: HarborEmulator) -> tuple[dict, float]:
    """scripts/<script> as an operator runs it; (its --json document, seconds)."""
    env = {**os.environ, "HARBOR_USER": emulator.username, "HARBOR_PASSWORD": emulator.password}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args, "--json", "-"], env=env,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{script} exit {done.returncode}: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout), seconds


def wait_archived(timeout: float = 300) -> float:
    """The WAL written so far reaches the repository: a switch, then until pg_stat_archiver names that segment
    (or a later one) archived; seconds waited."""
    t0 = time.monotonic()
    segment = sql("SELECT pg_walfile_name(pg_switch_wal())")
    while time.monotonic() - t0 < timeout:
        last = sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last >= segment:
            return time.monotonic() - t0
        time.sleep(1)
    raise RuntimeError(f"WAL segment {segment} not archived within {timeout:.0f} s")


def applied_only(regs: list) -> list:
    """The registrations with only the APPLIED roles' commands and uploads (the components and secrets stay)."""
    return [r for r in regs if r.typ not in (COMMAND, COPY) or r.name.startswith(tuple(f"{p}-" for p in APPLIED))]


def drill(lab: HostLab, work: Path) -> dict[str, Any]:
    lab.prepare_standins(SHAPE)
    values = lab.values(SHAPE)
    t0 = time.monotonic()
    regs = applied_only(lab.replay.program(values, lab.tls))
    first = lab.replay.up(regs)
    if not first.ok:
        failed = [f"{r.name}: {' | '.join(r.lines[-6:])}" for r in first.ran if r.rc]
        raise RuntimeError(f"apply failed: {failed}")
    report: dict[str, Any] = {"apply_s": round(time.monotonic() - t0, 1), "applied": sorted(APPLIED)}
    repo_host = MACHINES[SHAPE.roles["backup"]]
    # Every role's apply again: no file changes, and PostgreSQL and both pgBackRest servers keep running unrestarted.
    units = {data_host(): [service_unit(parse_cluster_config(values)), "pgbackrest"], repo_host: ["pgbackrest"]}
    before = {m: lab.unit_state(m, u) for m, u in units.items()}
    again = lab.replay.up(regs, force_apply=True)
    report["second_apply"] = {"ok": again.ok, "changed_files": again.changed_files(),
                              "restarted": [f"{u}@{m}" for m, u_s in before.items()
                                            for u, s in lab.unit_state(m, list(u_s)).items() if s != u_s[u]]}
    report["timers"] = ssh(repo_host, "systemctl is-active pgbackrest-full.timer pgbackrest-diff.timer",
                           check=False).stdout.split()
    report["archive_mode"] = sql("SHOW archive_mode")

    stack = work / "Pulumi.single-backup.yaml"
    stack.write_text(json.dumps({"config": {f"harbor-ha:{k}": v for k, v in values.items()}}))
    ssh_config = work / "ssh_config"
    write_ssh_config(ssh_config, SHAPE.hosts)
    common = ["--stack", str(stack), "--ssh-config", str(ssh_config)]

    emulator = HarborEmulator()
    emulator.start()
    try:
        sql(WRITES[1])
        ssh(MACHINES[SHAPE.roles["nfs"]], FILES[1].format(v=VOLUME))
        files_at_snapshot = file_checksums()
        backup, report["backup_s"] = operator_tool("backup.py", *common, "--type", "full", "--harbor-url",
                                                   emulator.url, emulator=emulator)
        report["backup"] = backup
        report["read_only_after_backup"] = emulator.configurations["read_only"]
        # What the timer starts on Monday to Saturday nights: a differential backup (restored from below).
        timer = ssh(repo_host, "systemctl start pgbackrest-diff.service", check=False, timeout=900)
        info = ssh(repo_host, f"runuser -u postgres -- pgbackrest --stanza={STANZA} info --output=json").stdout
        report["timer_diff_ok"] = timer.returncode == 0
        report["repository_backups"] = [b["type"] for b in json.loads(info)[0]["backup"]]
        sql(WRITES[2])
        expected = table_checksums()
        target = sql("SELECT now()")
        time.sleep(1.5)  # the target lies strictly between the phases' commits
        sql(WRITES[3])
        ssh(MACHINES[SHAPE.roles["nfs"]], FILES[3].format(v=VOLUME))
        report["wal_archived_s"] = round(wait_archived(), 1)
        report["changed_before_restore"] = table_checksums() != expected
        restored, report["restore_s"] = operator_tool(
            "restore.py", *common, "--to", target, "--data", str(backup["data_snapshot"]), "--yes", "--harbor-url",
            emulator.url, emulator=emulator)
        report["restore"] = restored
    finally:
        emulator.stop()
    actual = table_checksums()
    files_after = file_checksums()
    report.update(
        target_time=target, tables=expected, tables_after_restore=actual, tables_identical=actual == expected,
        files_in_snapshot=len(files_at_snapshot),
        files_identical=all(files_after.get(p) == d for p, d in files_at_snapshot.items()),
        # restic restore writes the snapshot's files back and leaves files added later (restic 0.14: no --delete).
        files_added_after_snapshot=sorted(set(files_after) - set(files_at_snapshot)),
        server_active=ssh(data_host(), f"systemctl is-active {service_unit(parse_cluster_config(values))}",
                          check=False).stdout.strip(),
        in_recovery=sql("SELECT pg_is_in_recovery()"))
    return report


def passed(report: dict[str, Any]) -> bool:
    second = report.get("second_apply", {})
    return bool(second.get("ok") and second.get("changed_files") == [] and second.get("restarted") == []
                and report.get("timer_diff_ok") and report.get("repository_backups") == ["full", "diff"]
                and report.get("tables_identical") and report.get("files_identical") and report.get("tables")
                and report.get("changed_before_restore") and report.get("in_recovery") == "f"
                and report.get("server_active") == "active" and report.get("timers") == ["active", "active"]
                and report.get("read_only_after_backup") is False)


def print_figures(report: dict[str, Any]) -> None:
    tables = report.get("tables", {})
    after = report.get("tables_after_restore", {})
    print(f"apply (firewall, postgres, nfs, repository) {report.get('apply_s')} s; archive_mode "
          f"{report.get('archive_mode')}; repository timers {report.get('timers')}")
    print(f"second apply of every role: {report.get('second_apply')}")
    print(f"backup.py --type full {report.get('backup_s', 0):.1f} s: {report.get('backup')}; then "
          f"pgbackrest-diff.service ok {report.get('timer_diff_ok')}: repository {report.get('repository_backups')}")
    print(f"target time {report.get('target_time')}; WAL past it archived in {report.get('wal_archived_s')} s; "
          f"tables changed after the target: {report.get('changed_before_restore')}")
    print(f"restore.py --to TARGET --data SNAPSHOT {report.get('restore_s', 0):.1f} s: {report.get('restore')}")
    print(f"{'table':<16} {'rows at T':>10} {'rows restored':>14}  md5 at T / restored")
    for name in sorted({*tables, *after}):
        t, a = tables.get(name, {}), after.get(name, {})
        print(f"{name:<16} {t.get('rows', '-'):>10} {a.get('rows', '-'):>14}  {t.get('md5', '-')} / "
              f"{a.get('md5', '-')}")
    print(f"tables identical: {report.get('tables_identical')}; files of the snapshot identical: "
          f"{report.get('files_identical')} ({report.get('files_in_snapshot')} files; added after it and kept: "
          f"{report.get('files_added_after_snapshot')}); server {report.get('server_active')}, in recovery "
          f"{report.get('in_recovery')}; drill {report.get('total_s')} s")


def run(json_path: Path, keep: bool = False) -> dict[str, Any]:
    t0 = time.monotonic()
    lab = HostLab(ROOT / "backup-drill")
    report: dict[str, Any] = {}
    try:
        lab.boot(SHAPE.boots)
        report = drill(lab, ROOT / "backup-drill")
    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as e:
        report["error"] = str(e)[-3000:]
        log(f"backup drill: {report['error']}")
    finally:
        report["total_s"] = round(time.monotonic() - t0, 1)
        report["passed"] = passed(report)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        if not keep:
            host_lab.down()
    print_figures(report)
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="exit status: 0 every table and file identical, 1 not, 2 could not run")
    parser.add_argument("--json", type=Path, required=True, help="the drill's figures as JSON")
    parser.add_argument("--keep", action="store_true", help="leave the hosts running (host_lab.py down removes them)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("must run as root (systemd-nspawn hosts, bridge, routes)")
    report = run(args.json, args.keep)
    return 0 if report["passed"] else 2 if "error" in report else 1


if __name__ == "__main__":
    sys.exit(main())
