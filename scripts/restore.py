#!/usr/bin/env python3
"""Restore Harbor's database (and optionally its data volume) from the backups scripts/backup.py and the timers made.

    HARBOR_PASSWORD=... scripts/restore.py --stack prod [--to '2026-12-01 15:20:01+00']
        [--data SNAPSHOT] --yes [--json FILE|-] [--dry-run]

Destructive: the database's data directory (in patroni mode every member's) is moved aside
(DATA.pre-restore-<time>, kept). Over SSH, in order (labs/db_lab.py runs the same restore script in its drill):
1. Harbor read-only (best effort: a broken database may have taken Harbor's API down with it), put back at the end;
2. PostgreSQL stopped: `systemctl stop postgresql@<version>-main` on the single server; in patroni mode
   `systemctl stop patroni` on every member and `patronictl remove <scope>` (the cluster's state in etcd);
3. on the single server (or the first member): pgBackRest restores the latest backup before --to (default:
   everything archived), PostgreSQL replays to --to on loopback and promotes (components/pgbackrest
   render_restore_script);
4. the single server's PostgreSQL started again; in patroni mode Patroni started on the first member (it takes the
   restored data directory over as leader), the stack's dynamic settings applied again (`patronictl edit-config
   --replace`), then Patroni on the others, which copy the leader;
5. with --data: `restic restore SNAPSHOT` of the data volume on the NFS host (pick the snapshot whose `db:` tag is
   at or before --to: `restic snapshots --tag harbor-ha`).

Exit status: 0 restored (or --dry-run), 1 a step failed on its host (the error names host and command; the data
directories moved aside are kept), 2 could not run (no such stack, an invalid stack file, no backup section, no
--yes, a host SSH could not reach).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: import the program from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from scripts.backup import (EXIT_STATUS, CouldNotRun, HarborApi, Ssh, StepFailed, as_postgres,  # noqa: E402
                            common_arguments, connect_api, harbor_read_only, leader, load, run_cli,
                            ssh_for)
from scripts.convention import COULD_NOT_RUN  # noqa: E402

if TYPE_CHECKING:
    from components.config import ClusterConfig, Host
    from components.pgbackrest import DbPaths


def restore(cfg: ClusterConfig, api: Optional[HarborApi], ssh: Ssh, target: Optional[str],
            snapshot: Optional[str]) -> dict:
    from components.nfs import restic_command as restic

    with contextlib.ExitStack() as done:
        if api is not None:
            try:
                done.enter_context(harbor_read_only(api))
            except OSError as err:
                print(f"Harbor's API did not answer ({err}); restoring without setting it read-only",
                      file=sys.stderr)
        (restore_patroni if cfg.patroni else restore_single)(cfg, ssh, target)
        if snapshot:
            ssh.run(cfg.nfs_server, restic(cfg, f"restore {shlex.quote(snapshot)} --target /"))
    return {"restored_to": target or "latest", "data_snapshot": snapshot}


def restore_single(cfg: ClusterConfig, ssh: Ssh, target: Optional[str]) -> None:
    """The single server: stopped, its data directory restored and replayed to `target`, started again."""
    from components.pgbackrest import db_paths
    from components.postgres import service_unit

    host, unit = cfg.postgres_host, service_unit(cfg)
    ssh.run(host, f"systemctl stop {unit}")
    restore_into(cfg, ssh, db_paths(cfg), host, [host], target)
    ssh.run(host, f"systemctl start {unit}")


def restore_patroni(cfg: ClusterConfig, ssh: Ssh, target: Optional[str]) -> None:
    """Every member stopped and the cluster's state removed, the first member restored, Patroni started there (it
    takes the data over as leader) and then on the others (they copy it)."""
    from components.patroni import PatroniPaths

    assert cfg.patroni is not None
    paths = PatroniPaths(pg_version=cfg.postgres.version)
    first, *others = cfg.postgres_hosts
    try:
        current = leader(cfg, ssh).name
    except (StepFailed, CouldNotRun):
        current = ""  # no leader: the database is down, which may be why we restore
    for h in cfg.postgres_hosts:
        ssh.run(h, "systemctl stop patroni")
    scope = cfg.patroni.scope
    # patronictl also asks for the leader's name while its key is in etcd (a member killed, not stopped).
    ssh.run(first, f"patronictl -c {paths.config} remove {scope}", stdin=f"{scope}\nYes I am aware\n{current}\n")
    restore_into(cfg, ssh, paths, first, cfg.postgres_hosts, target)
    ssh.run(first, "systemctl start patroni")
    ssh.run(first, "for _ in $(seq 1 300); do curl -sf -o /dev/null "
                   f"http://{first.address}:{cfg.patroni.rest_api_port}/primary && exit 0; sleep 2; done; exit 1")
    # Patroni took the restored data over with its bootstrap settings: the stack's current ones go back.
    # (Retried: right after the takeover the leader may not have written the cluster's config key yet.)
    ssh.run(first, f"for _ in $(seq 1 30); do runuser -u postgres -- patronictl -c {paths.config} edit-config "
                   f"--force --quiet --replace {paths.dynamic} && exit 0; sleep 2; done; exit 1")
    for h in others:
        ssh.run(h, "systemctl start patroni")


def restore_into(cfg: ClusterConfig, ssh: Ssh, paths: DbPaths, host: Host, hosts: Sequence[Host],
                 target: Optional[str]) -> None:
    """Each of `hosts`' data directory moved aside (kept) and made anew, then `host`'s restored into it (its
    PostgreSQL stopped: the restore script starts one on loopback for the replay and stops it)."""
    from components.pgbackrest import render_restore_script

    data = shlex.quote(paths.data_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for h in hosts:
        ssh.run(h, f"mv {data} {data}.pre-restore-{stamp} && install -d -m 0700 -o postgres -g postgres {data}")
    ssh.run(host, as_postgres("bash -s"), stdin=render_restore_script(cfg, paths, target))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_STATUS)
    common_arguments(parser)
    parser.add_argument("--to", help="restore to this time (PostgreSQL timestamp with zone); default: the latest")
    parser.add_argument("--data", metavar="SNAPSHOT", help="also restore this restic snapshot of the data volume")
    parser.add_argument("--yes", action="store_true", help="confirm: the current database is replaced")
    args = parser.parse_args(argv)
    if not args.yes and not args.dry_run:
        print("this replaces the current database: pass --yes (or --dry-run to see the commands)", file=sys.stderr)
        return COULD_NOT_RUN

    def work() -> dict:
        cfg = load(args.stack)
        return restore(cfg, connect_api(cfg, args), ssh_for(args), args.to, args.data)

    return run_cli(args, work)


if __name__ == "__main__":
    sys.exit(main())
