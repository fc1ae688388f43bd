#!/usr/bin/env python3
"""Back up Harbor: the database with pgBackRest, then the data volume with restic while Harbor is read-only.

    HARBOR_PASSWORD=... scripts/backup.py --stack prod [--type full|diff|incr] [--json FILE|-] [--dry-run]

Needs the `backup` section, in either postgres.mode (docs/operations/backup-restore.md). Over SSH, with the hosts,
users and paths of the stack file:
1. `pgbackrest backup` on the repository host (or, with an S3 repository, on the single server or the current
   Patroni leader): WAL archiving makes any later moment restorable, so the database needs no pause.
2. With backup.resticRepository: Harbor is set read-only through its API (PUT /api/v2.0/configurations
   {"read_only": true}); the database time of that moment is taken from the primary (the single server or the
   leader), then restic snapshots the data volume on the NFS host, tagged with
   that time; Harbor's previous read_only value is put back afterwards, also when the snapshot fails. The
   snapshot and the database restored to the tagged time (scripts/restore.py --to) belong together: no blob
   referenced by the database is missing from the snapshot.
The Harbor API is reached on the stack's external URL (or --harbor-url) as HARBOR_USER (default admin) with
HARBOR_PASSWORD; --ca-file names the CA to trust (the stack's self-signed one: `pulumi stack output`). Prints one
JSON line (--json writes it as a document too): the backup's pgBackRest type, the snapshot id and the database time.

Exit status: 0 backed up (or --dry-run), 1 a backup step failed on its host (the error names host and command),
2 could not run (no such stack, an invalid stack file, no backup section, a host SSH could not reach).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: import the program from the repository root

from scripts.convention import (  # noqa: E402
    COULD_NOT_RUN, MET, NOT_MET, add_json_argument, add_stack_argument, stack_file, use_clone_venv,
    write_json)

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

if TYPE_CHECKING:
    from components.config import ClusterConfig, Host

SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
EXIT_STATUS = "exit status: 0 done (or --dry-run), 1 a step failed on its host, 2 could not run"


class CouldNotRun(Exception):
    """The CLI could not start its work (exit 2): the message is the one line it prints."""


class StepFailed(RuntimeError):
    """A command on a host exited non-zero (exit 1): the message names the host and the command."""


class Unreachable(CouldNotRun):
    """SSH could not reach a host (ssh's own exit 255, or no answer in time)."""


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

    def __init__(self, dry_run: bool, config: Optional[str] = None, echo: TextIO = sys.stdout):
        self.dry_run = dry_run
        self.config = ("-F", config) if config else ()  #: --ssh-config: an ssh_config for these hosts
        self.echo = echo  #: where --dry-run prints the commands (stderr with `--json -`: stdout is the JSON's)

    def run(self, host: Host, command: str, *, stdin: Optional[str] = None, timeout: float = 7200) -> str:
        if host.user != "root":
            command = f"sudo -n sh -c {shlex.quote(command)}"
        argv = ["ssh", *self.config, *SSH_OPTIONS, "-p", str(host.port), f"{host.user}@{host.address}", command]
        if self.dry_run:
            print(f"# on {host.name}\n{shlex.join(argv)}", file=self.echo, flush=True)
            return ""
        try:
            r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise Unreachable(f"{host.name}: {command[:120]}: no answer within {timeout:.0f} s") from e
        if r.returncode == 255:  # ssh's own failure: the command did not run
            raise Unreachable(f"{host.name} ({host.address}): ssh: {r.stderr.strip()[-300:]}")
        if r.returncode:
            raise StepFailed(f"{host.name}: {command}: exit {r.returncode}: {r.stderr.strip()[-1000:]}")
        return r.stdout


def as_postgres(command: str) -> str:
    return f"runuser -u postgres -- {command}"


def pgbackrest_host(cfg: ClusterConfig, ssh: Ssh) -> Host:
    """Where backups run: the repository host, or (S3) the primary."""
    if cfg.backup and cfg.backup.repository == "host" and cfg.backup_host:
        return cfg.backup_host
    return primary(cfg, ssh)


def primary(cfg: ClusterConfig, ssh: Ssh) -> Host:
    """The database host that takes the writes: the single server, or the current Patroni leader."""
    return leader(cfg, ssh) if cfg.patroni else cfg.postgres_host


def leader(cfg: ClusterConfig, ssh: Ssh) -> Host:
    """The current Patroni leader, as `patronictl list` on the first reachable member says."""
    from components.patroni import PatroniPaths

    for h in cfg.postgres_hosts:
        try:
            out = ssh.run(h, f"patronictl -c {PatroniPaths(pg_version=cfg.postgres.version).config} list -f json",
                          timeout=60)
        except (StepFailed, CouldNotRun):
            continue
        if ssh.dry_run:
            return cfg.postgres_hosts[0]
        name = next((m["Member"] for m in json.loads(out) if m["Role"] == "Leader"), None)
        if name:
            return cfg.host(name)
    raise StepFailed("no Patroni member names a leader")


def backup(cfg: ClusterConfig, api: Optional[HarborApi], ssh: Ssh, kind: str) -> dict:
    from components.nfs import restic_command as restic
    from components.pgbackrest import STANZA, db_paths

    paths = db_paths(cfg)
    ssh.run(pgbackrest_host(cfg, ssh),
            as_postgres(f"pgbackrest --config={paths.pgbackrest_conf} --stanza={STANZA} --type={kind} backup"))
    result: dict = {"database_backup": kind}
    if not cfg.backup or not cfg.backup.restic_repository:
        return result
    writer = primary(cfg, ssh)
    snapshot = contextlib.nullcontext() if api is None else harbor_read_only(api)
    with snapshot:
        at = ssh.run(writer, as_postgres(f"psql -X -At -h {paths.socket_dir} -c 'SELECT now()'")).strip()
        nfs = cfg.nfs_server
        ssh.run(nfs, restic(cfg, "cat config >/dev/null 2>&1 || " + restic(cfg, "init")))
        out = ssh.run(nfs, restic(cfg, f"backup --json --tag harbor-ha --tag {shlex.quote('db:' + at)} "
                                       f"{shlex.quote(cfg.nfs.export_path)}"))
    summary = next((json.loads(line) for line in out.splitlines() if '"summary"' in line), {})
    result.update(data_snapshot=summary.get("snapshot_id"), database_time=at)
    return result


def connect_api(cfg: ClusterConfig, args: argparse.Namespace) -> Optional[HarborApi]:
    """Harbor's API for the read-only window of the data volume's snapshot (None: --dry-run, or no restic)."""
    if args.dry_run:
        return None
    password = os.environ.get("HARBOR_PASSWORD")
    if not password:
        raise CouldNotRun("HARBOR_PASSWORD is not set (Harbor is set read-only through its API)")
    return HarborApi(args.harbor_url or cfg.external_url, os.environ.get("HARBOR_USER", "admin"), password,
                     args.ca_file)


def load(stack: str) -> ClusterConfig:
    """The stack's validated config; CouldNotRun with one line per problem (no such stack, invalid, no backups)."""
    from components.config import ConfigError, describe_problems, load_stack_file, parse_cluster_config

    path = stack_file(stack)
    if not path.is_file():
        raise CouldNotRun(f"{path}: no such stack file")
    try:
        values, secrets = load_stack_file(str(path))
        cfg = parse_cluster_config(values, secrets_present=secrets)
    except ConfigError as e:
        raise CouldNotRun("\n".join(describe_problems(str(path), e.problems))) from e
    except OSError as e:
        raise CouldNotRun(f"{path}: {e.strerror or e}") from e
    if not cfg.backup:
        raise CouldNotRun(f"{path.name}: backups need the harbor-ha:backup section (docs/operations/backup-restore.md)")
    return cfg


def common_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_argument(parser)
    parser.add_argument("--harbor-url", help="Harbor's URL (default: the stack's external URL)")
    parser.add_argument("--ca-file", help="PEM of the CA that signed Harbor's certificate")
    parser.add_argument("--ssh-config", metavar="FILE", help="ssh_config for the stack's hosts (ssh -F), e.g. a "
                                                             "bastion's ProxyJump; default: ssh's own")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none, leave Harbor alone")
    add_json_argument(parser)


def ssh_for(args: argparse.Namespace) -> Ssh:
    return Ssh(args.dry_run, args.ssh_config, sys.stderr if args.json == "-" else sys.stdout)


def run_cli(args: argparse.Namespace, work: Callable[[], dict]) -> int:
    """`work()`'s result as one JSON line (and --json), mapped to the exit statuses: 0 done, 1 a step failed on
    its host, 2 could not run; every failure one line on stderr, never a traceback."""
    try:
        result, status = {"ok": True, **work()}, MET
    except CouldNotRun as e:
        result, status = {"ok": False, "error": str(e)}, COULD_NOT_RUN
    except (StepFailed, OSError, ValueError) as e:
        # OSError: Harbor's API (urllib's errors are OSErrors); ValueError: an answer that did not parse.
        result, status = {"ok": False, "error": str(e)}, NOT_MET
    if status != MET:
        print(result["error"], file=sys.stderr)
    elif args.json != "-":
        print(json.dumps(result))
    write_json(args.json, result)
    return status


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_STATUS)
    common_arguments(parser)
    parser.add_argument("--type", choices=("full", "diff", "incr"), default="incr",
                        help="pgBackRest backup type (the timers take full and diff; default incr)")
    args = parser.parse_args(argv)

    def work() -> dict:
        cfg = load(args.stack)
        api = connect_api(cfg, args) if cfg.backup and cfg.backup.restic_repository else None
        return backup(cfg, api, ssh_for(args), args.type)

    return run_cli(args, work)


if __name__ == "__main__":
    sys.exit(main())
