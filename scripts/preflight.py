#!/usr/bin/env python3
"""Reach every host of a stack over SSH before a deploy, in parallel, and check what the roles need.

    scripts/preflight.py --stack mysite --key ~/.ssh/harbor-deploy [--json FILE|-] [--timeout 10]

For each host, one SSH session with the stack's user and port, the deploy key and the pinned `hostKey` (a host
without one is accepted as it answers, with a warning), and a read-only script that reports: the OS
(/etc/os-release: Debian 12, Ubuntu 22.04 or 24.04), root or passwordless sudo, the free space where its roles
write, and the TCP ports its roles will listen on (components/firewall's openings and Docker's published ports).
A port already in use is a failure on a host the program has not deployed to yet (/var/lib/harbor-ha/applied
absent); after a deploy the program's own services hold them. `scripts/up.sh` runs it before `pulumi up`, so an
unreachable host is named in seconds instead of after the provider's dial retries.

Prints one line per host (`ok` or each problem). Exit status: 0 every host passed, 1 some did not, 2 could not run
(no such stack file, an invalid one, no key file, no ssh client).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: import from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from scripts.convention import (  # noqa: E402
    COULD_NOT_RUN, MET, NOT_MET, add_json_argument, add_stack_argument, stack_file, write_json)

if TYPE_CHECKING:
    from components.config import ClusterConfig, Host

# What the program installs on (components/host/lib.sh): Debian 12, Ubuntu 22.04 and 24.04.
SUPPORTED_OS = {("debian", "12"), ("ubuntu", "22.04"), ("ubuntu", "24.04")}
GIB = 1024 ** 3
# Free space each role needs where it writes (the nearest existing folder is measured): the packages on /; Harbor's
# offline installer (0.7 GiB) unpacked and its images loaded into Docker (about 2.5 GiB for 2.15); a database that
# grows with the registry's metadata; the data volume that holds every image (site-specific: the least to start).
DISK_NEEDS = {"/": 2 * GIB, "/var/lib/docker": 10 * GIB, "/var/lib/postgresql": 5 * GIB}
NFS_EXPORT_NEED = 20 * GIB

# Runs on the host (read-only): one `key value...` line per fact.
REPORT = r"""
set -u
. /etc/os-release 2>/dev/null && echo "os ${ID:-?} ${VERSION_ID:-?}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; echo "root yes";
elif sudo -n true 2>/dev/null; then sudo="sudo -n"; echo "root sudo";
else sudo=""; echo "root no"; fi
for p in PATHS; do
  q=$p; while [ ! -e "$q" ]; do q=$(dirname "$q"); done
  echo "disk $p $(df -Pk "$q" | awk 'NR==2 {print $4}')"
done
[ -d /var/lib/harbor-ha/applied ] && echo "deployed yes"
if command -v ss >/dev/null; then $sudo ss -Htlnp | awk '{print "listen", $4, $6}'; else echo "ss missing"; fi
"""


@dataclass
class HostReport:
    """What one host answered, and what is wrong."""

    host: str
    address: str
    seconds: float = 0.0
    os: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def host_needs(cfg: ClusterConfig, host: Host) -> tuple[dict[str, int], list[int]]:
    """({path: free bytes needed}, [TCP ports its roles listen on]) of one host (pure)."""
    from components.firewall import host_openings, published_ports

    disk = {"/": DISK_NEEDS["/"]}
    if host in cfg.harbor_nodes:
        disk["/var/lib/docker"] = DISK_NEEDS["/var/lib/docker"]
    if host in cfg.postgres_hosts:
        disk["/var/lib/postgresql"] = DISK_NEEDS["/var/lib/postgresql"]
    if host == cfg.nfs_host:
        disk[cfg.nfs.export_path] = NFS_EXPORT_NEED
    ports = {o.port for o in host_openings(cfg, host) if o.proto == "tcp" and o.port and o.service != "ssh"}
    ports |= set(published_ports(cfg, host))
    return disk, sorted(p for p in ports if p is not None)


_SSH_FAILURES = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "its SSH host key is not the pinned hostKey (scripts/hostkeys.py "
                                               "--stack STACK shows what it answers now)"),
    ("Host key verification failed", "its SSH host key is not the pinned hostKey (scripts/hostkeys.py --stack "
                                     "STACK shows what it answers now)"),
    ("Permission denied", "refused the deploy key for user {user} (is the key in ~{user}/.ssh/authorized_keys?)"),
    ("Connection refused", "nothing listens on SSH port {port}"),
    ("timed out", "no answer on {address}:{port} within {timeout} s (down, firewalled, or a wrong address)"),
    ("No route to host", "no route to {address}"),
    ("Could not resolve", "{address} does not resolve"),
)


def ssh_failure(stderr: str, host: Host, timeout: int) -> str:
    """SSH's error as an action (its own last line when none matches)."""
    for needle, message in _SSH_FAILURES:
        if needle in stderr:
            return message.format(user=host.user, port=host.port, address=host.address, timeout=timeout)
    lines = [line for line in stderr.splitlines() if line.strip()]
    return f"ssh failed: {lines[-1] if lines else 'no message'}"


def ssh_command(host: Host, key: Path, known_hosts: Path | None, timeout: int, shell: str = "sh") -> list[str]:
    """ssh to `host` running `shell -s` (the script on stdin), with its pinned host key when it has one."""
    pinning = (["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"] if known_hosts else
               ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
    return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}", "-o", "IdentitiesOnly=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", *pinning, "-i", str(key),
            "-p", str(host.port), f"{host.user}@{host.address}", f"{shell} -s"]


def run_script(host: Host, script: str, key: Path, timeout: int, workdir: Path, shell: str = "sh",
               limit: int = 30) -> subprocess.CompletedProcess | str:
    """`script` run by `shell` on `host` over SSH with its pinned host key (a file in `workdir`): the finished
    process, or why it could not run (SSH's error as an action; `limit` s more than the connection timeout)."""
    known_hosts = None
    if host.host_key:
        known_hosts = workdir / f"known_hosts.{host.name}"
        target = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        known_hosts.write_text(f"{target} {host.host_key}\n", encoding="utf-8")
    try:
        done = subprocess.run(ssh_command(host, key, known_hosts, timeout, shell), input=script, capture_output=True,
                              text=True, timeout=timeout + limit)
    except subprocess.TimeoutExpired:
        return f"connected, but its checks did not finish within {timeout + limit} s"
    return ssh_failure(done.stderr, host, timeout) if done.returncode == 255 else done


def check_host(cfg: ClusterConfig, host: Host, key: Path, timeout: int, workdir: Path) -> HostReport:
    report = HostReport(host.name, host.address)
    if not host.host_key:
        report.warnings.append("no hostKey pinned: any SSH server answering that address is trusted")
    disk, ports = host_needs(cfg, host)
    started = time.monotonic()
    done = run_script(host, REPORT.replace("PATHS", " ".join(disk)), key, timeout, workdir)
    report.seconds = round(time.monotonic() - started, 1)
    if isinstance(done, str):
        report.problems.append(done)
    else:
        judge(report, done.stdout, disk, ports)
    return report


def judge(report: HostReport, output: str, disk: dict[str, int], ports: Sequence[int]) -> None:
    """Fill `report` from the host's REPORT output (pure)."""
    facts = [line.split() for line in output.splitlines() if line.strip()]
    by_kind: dict[str, list[list[str]]] = {}
    for fact in facts:
        by_kind.setdefault(fact[0], []).append(fact[1:])
    os_fact = (by_kind.get("os") or [["?", "?"]])[0]
    report.os = " ".join(os_fact)
    if tuple(os_fact[:2]) not in SUPPORTED_OS:
        report.problems.append(f"OS {report.os or 'unknown'} is not supported (Debian 12, Ubuntu 22.04 or 24.04)")
    if (by_kind.get("root") or [["no"]])[0][0] == "no":
        report.problems.append("neither root nor passwordless sudo (`sudo -n true` fails)")
    free = {path: int(kb) * 1024 for path, kb in (f[:2] for f in by_kind.get("disk", []) if len(f) >= 2)
            if kb.isdigit()}
    for path, need in disk.items():
        if path not in free:
            report.problems.append(f"free space of {path}: not reported")
        elif free[path] < need:
            report.problems.append(f"{path}: {free[path] / GIB:.1f} GiB free, needs {need / GIB:.0f} GiB")
    if "ss" in by_kind:
        report.warnings.append("no `ss` on the host: ports not checked")
        return
    listening: dict[int, str] = {}
    for fact in by_kind.get("listen", []):
        match = re.search(r":(\d+)$", fact[0])
        if match:
            owner = re.search(r'\(\("([^"]+)"', fact[1]) if len(fact) > 1 else None
            listening[int(match.group(1))] = owner.group(1) if owner else "a process"
    if "deployed" not in by_kind:
        for port in ports:
            if port in listening:
                report.problems.append(f"port {port} is already in use by {listening[port]} (a role listens there)")


def describe(report: HostReport) -> str:
    head = f"{report.host} ({report.address}, {report.seconds} s)"
    if report.ok:
        return f"{head}: ok, {report.os}" + "".join(f"; warning: {w}" for w in report.warnings)
    return f"{head}: " + "; ".join(report.problems + [f"warning: {w}" for w in report.warnings])


def add_ssh_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", type=Path, default=Path(os.environ.get("HARBOR_HA_SSH_KEY", "~/.ssh/id_ed25519")),
                        help="the deploy key (default: HARBOR_HA_SSH_KEY, else ~/.ssh/id_ed25519)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds to wait for each SSH connection (10)")


def load_for_ssh(tool: str, stack: str, key: Path) -> ClusterConfig | None:
    """The stack's config, when it and the key and an ssh client are there; else None, each reason printed."""
    path = stack_file(stack)
    problems = [f"{tool}: {path}: no such stack file"] if not path.is_file() else []
    if not key.is_file():
        problems.append(f"{tool}: no deploy key at {key} (--key or HARBOR_HA_SSH_KEY)")
    if shutil.which("ssh") is None:
        problems.append(f"{tool}: no ssh client on PATH (openssh-client)")
    if not problems:
        from components.config import ConfigError, describe_problems, load_stack_file, parse_cluster_config

        try:
            values, secrets = load_stack_file(str(path))
            return parse_cluster_config(values, secrets_present=secrets)
        except ConfigError as e:
            problems = describe_problems(str(path), e.problems)
    for line in problems:
        print(line, file=sys.stderr)
    return None


def ssh_cli(doc: str, tool: str, argv: list[str] | None) -> tuple[argparse.Namespace, Path, ClusterConfig | None]:
    """The arguments of a CLI that reaches the stack's hosts (--stack, --key, --timeout, --json; its help from
    `doc`), the key's path, and the stack's config (None: it could not be read, the reason printed)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], epilog=doc.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_argument(parser)
    add_ssh_arguments(parser)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    key = args.key.expanduser()
    return args, key, load_for_ssh(tool, args.stack, key)


def main(argv: list[str] | None = None) -> int:
    args, key, cfg = ssh_cli(__doc__, "preflight", argv)
    if cfg is None:
        return COULD_NOT_RUN
    path = str(stack_file(args.stack))
    if cfg.sandbox:
        print("preflight: a sandbox stack: the program creates its hosts; nothing to reach yet")
        write_json(args.json, {"stack": path, "ok": True, "hosts": []})
        return MET
    with tempfile.TemporaryDirectory(prefix="hha-preflight-") as tmp, \
            ThreadPoolExecutor(max_workers=min(16, len(cfg.hosts))) as pool:
        reports = list(pool.map(lambda h: check_host(cfg, h, key, args.timeout, Path(tmp)), cfg.hosts))
    ok = all(r.ok for r in reports)
    write_json(args.json, {"stack": path, "ok": ok, "hosts": [{**asdict(r), "ok": r.ok} for r in reports]})
    if args.json != "-":
        for r in reports:
            print(describe(r), file=sys.stdout if r.ok else sys.stderr)
    return MET if ok else NOT_MET


if __name__ == "__main__":
    sys.exit(main())
