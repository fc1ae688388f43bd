#!/usr/bin/env python3
"""Back up Harbor: the database with pgBackRest, then the data volume with restic while Harbor is read-only.

    HARBOR_PASSWORD=... scripts/backup.py --stack prod [--type full|diff|incr] [--dry-run]

Needs `postgres.mode: patroni` and the `backup` section (docs/database-ha.md). Over SSH, with the hosts, users and
paths of the stack file:
1. `pgbackrest backup` on the repository host (or, with an S3 repository, on the current leader): WAL archiving
   makes any later moment restorable, so the database needs no pause.
2. Harbor is set read-only through its API (PUT /api/v2.0/configurations {"read_only": true}); the database time
   of that moment is taken from the leader, then restic snapshots the data volume on the NFS host, tagged with
   that time; Harbor's previous read_only value is put back afterwards, also when the snapshot fails. The
   snapshot and the database restored to the tagged time (scripts/restore.py --to) belong together: no blob
   referenced by the database is missing from the snapshot.
The Harbor API is reached on the stack's external URL (or --harbor-url) as HARBOR_USER (default admin) with
HARBOR_PASSWORD; --ca-file names the CA to trust (the stack's self-signed one: `pulumi stack output`). Prints one
JSON line: the backup's pgBackRest type, the snapshot id and the database time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: import the program from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from components.config import (ClusterConfig, ConfigError, Host, describe_problems, load_stack_file,  # noqa: E402
                               parse_cluster_config)
from components.nfs import restic_command as restic  # noqa: E402
from components.patroni import STANZA, PatroniPaths  # noqa: E402
from scripts.convention import COULD_NOT_RUN, add_stack_argument, stack_file  # noqa: E402

SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")


class HarborApi:
    """The one Harbor API call a consistent backup needs: the system read_only switch."""

    def __init__(self, url: str, username: str, password: str, ca_file: Optional[str] = None):
        self.base = url.rstrip("/") + "/api/v2.0"
        self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None

    def _call(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": self.auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def read_only(self) -> bool:
        return bool(self._call("GET", "/configurations").get("read_only", {}).get("value"))

    def set_read_only(self, value: bool) -> None:
        self._call("PUT", "/configurations", {"read_only": value})


@contextlib.contextmanager
def harbor_read_only(api: HarborApi) -> Iterator[None]:
    """Harbor read-only for the block; afterwards read_only is what it was before (an operator's maintenance
    window stays), whether the block succeeded or raised."""
    before = api.read_only()
    api.set_read_only(True)
    try:
        yield
    finally:
        api.set_read_only(before)


class Ssh:
    """Commands on the stack's hosts as root (sudo for other users); with dry_run they are printed instead."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def run(self, host: Host, command: str, *, stdin: Optional[str] = None, timeout: float = 7200) -> str:
        if host.user != "root":
            command = f"sudo -n sh -c {shlex.quote(command)}"
        argv = ["ssh", *SSH_OPTIONS, "-p", str(host.port), f"{host.user}@{host.address}", command]
        if self.dry_run:
            print(f"# on {host.name}\n{shlex.join(argv)}", flush=True)
            return ""
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"{host.name}: {command}: exit {r.returncode}: {r.stderr.strip()[-1000:]}")
        return r.stdout


def as_postgres(command: str) -> str:
    return f"runuser -u postgres -- {command}"


def pgbackrest_host(cfg: ClusterConfig, ssh: Ssh) -> Host:
    """Where backups run: the repository host, or (S3) the member Patroni names leader."""
    if cfg.backup.repository == "host":
        return cfg.backup_host
    return leader(cfg, ssh)


def leader(cfg: ClusterConfig, ssh: Ssh) -> Host:
    """The current Patroni leader, as `patronictl list` on the first reachable member says."""
    for h in cfg.postgres_hosts:
        try:
            out = ssh.run(h, f"patronictl -c {PatroniPaths(pg_version=cfg.postgres.version).config} list -f json",
                          timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            continue
        if ssh.dry_run:
            return cfg.postgres_hosts[0]
        name = next((m["Member"] for m in json.loads(out) if m["Role"] == "Leader"), None)
        if name:
            return cfg.host(name)
    raise RuntimeError("no Patroni member names a leader")


def backup(cfg: ClusterConfig, api: Optional[HarborApi], ssh: Ssh, kind: str) -> dict:
    paths = PatroniPaths(pg_version=cfg.postgres.version)
    ssh.run(pgbackrest_host(cfg, ssh),
            as_postgres(f"pgbackrest --config={paths.pgbackrest_conf} --stanza={STANZA} --type={kind} backup"))
    result: dict = {"database_backup": kind}
    if not cfg.backup.restic_repository:
        return result
    lead = leader(cfg, ssh)
    snapshot = contextlib.nullcontext() if api is None else harbor_read_only(api)
    with snapshot:
        at = ssh.run(lead, as_postgres(f"psql -X -At -h {paths.socket_dir} -c 'SELECT now()'")).strip()
        nfs = cfg.nfs_host
        ssh.run(nfs, restic(cfg, "cat config >/dev/null 2>&1 || " + restic(cfg, "init")))
        out = ssh.run(nfs, restic(cfg, f"backup --json --tag harbor-ha --tag {shlex.quote('db:' + at)} "
                                       f"{shlex.quote(cfg.nfs.export_path)}"))
    summary = next((json.loads(line) for line in out.splitlines() if '"summary"' in line), {})
    result.update(data_snapshot=summary.get("snapshot_id"), database_time=at)
    return result


def connect_api(cfg: ClusterConfig, args: argparse.Namespace) -> Optional[HarborApi]:
    if args.dry_run:
        return None
    password = os.environ.get("HARBOR_PASSWORD")
    if not password:
        raise SystemExit("HARBOR_PASSWORD is not set (Harbor is set read-only through its API)")
    return HarborApi(args.harbor_url or cfg.external_url, os.environ.get("HARBOR_USER", "admin"), password,
                     args.ca_file)


def load(stack: str) -> ClusterConfig:
    """The stack's config; exits 2 with one line per problem when it cannot be used (the CLI convention)."""
    path = stack_file(stack)
    problems = [f"{path}: no such stack file"] if not path.is_file() else []
    if not problems:
        try:
            values, secrets = load_stack_file(str(path))
            cfg = parse_cluster_config(values, secrets_present=secrets)
            if cfg.patroni and cfg.backup:
                return cfg
            problems = [f"{path.name}: backups need postgres.mode: patroni and the backup section "
                        "(docs/database-ha.md)"]
        except ConfigError as e:
            problems = describe_problems(str(path), e.problems)
    print("\n".join(problems), file=sys.stderr)
    raise SystemExit(COULD_NOT_RUN)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_argument(parser)
    parser.add_argument("--harbor-url", help="Harbor's URL (default: the stack's external URL)")
    parser.add_argument("--ca-file", help="PEM of the CA that signed Harbor's certificate")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none, leave Harbor alone")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(parser)
    parser.add_argument("--type", choices=("full", "diff", "incr"), default="incr",
                        help="pgBackRest backup type (the timers take full and diff; default incr)")
    args = parser.parse_args()
    cfg = load(args.stack)
    print(json.dumps(backup(cfg, connect_api(cfg, args), Ssh(args.dry_run), args.type)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
