#!/usr/bin/env python3
"""The state of a deployed stack, per role and host: what each is, and whether it is healthy.

    scripts/status.py --stack mysite [--key ~/.ssh/harbor-deploy] [--json FILE|-]

One SSH session per host, in parallel, with the deploy key and the pinned host key (as scripts/preflight.py), each
running read-only checks of the host's roles:
- load balancers: nginx and keepalived active, which one holds the VIP (exactly one must), the loopback health
  endpoint, every Harbor node's /api/v2.0/health as seen from there through the cluster CA (nginx's backends), the
  LB certificate's expiry date;
- Harbor nodes: Docker active, the data volume mounted, /api/v2.0/health of the node itself (every component);
- PostgreSQL: the server answering (single), or each Patroni member's role, state and lag as the cluster lists
  it, one leader (with a synchronous standby in synchronous mode), and every replica streaming from it as the
  leader's pg_stat_replication shows (patroni: Patroni 3.0.2 says `running` for a replica whether it streams or
  replays the archive);
- Redis: each server's role and replicas, one master; sentinels: the master they name and their quorum, all naming
  the one master;
- NFS: the export in place; backups (a backup section): the last pgBackRest backup and its age;
- every role staged on the host: its files as its last apply installed them (the role script's read-only `check`,
  docs/day2.md), each edited one named.
A host that does not answer is named with the reason (as preflight does).

Prints one line per check. Exit status: 0 every check is healthy, 1 one is not (each named), 2 could not run (no
such stack file, an invalid one, no key file, no ssh client).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: import from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from scripts.convention import (  # noqa: E402
    COULD_NOT_RUN, MET, NOT_MET, stack_file, write_json)

if TYPE_CHECKING:
    from components.config import ClusterConfig, Host

# Backups older than this are reported unhealthy: the full schedule is weekly and the differential daily.
BACKUP_MAX_AGE_H = 36
# A replica further behind than this is reported unhealthy: Patroni would not promote it (maximum_lag_on_failover,
# components/patroni).
PATRONI_MAX_LAG_MB = 1


@dataclass
class Check:
    """One fact about one role on one host."""

    role: str
    host: str
    check: str
    ok: bool
    detail: str


# Runs on the host: `CHECK|name|exit status|output` per check (outputs joined on one line); what needs root goes
# through SUDO (empty for root).
SUDO = '"${sudo[@]}"'
PRELUDE = r"""
run() {
  local name=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  printf 'CHECK|%s|%s|%s\n' "$name" "$rc" "$(printf '%s' "$out" | tr '\r\n' '  ')"
}
cd /  # runuser's programs start in the caller's folder, which they may not read
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); else sudo=(); fi
"""


def host_script(cfg: ClusterConfig, host: Host) -> str:
    """The read-only checks of `host`'s roles (pure)."""
    from components.harbor_node import CLUSTER_CA_PATH, NODE_TLS_NAME
    from components.host.remote import STAGE_ROOT
    from components.loadbalancer import NginxPaths
    from components.patroni import PatroniPaths
    from components.pgbackrest import db_paths, pgbackrest_cmd
    from components.redis import RedisPaths

    lines = [PRELUDE]
    https = cfg.harbor.https_port
    health = f"https://{NODE_TLS_NAME}:{https}/api/v2.0/health"
    if host in cfg.lb_hosts:
        tls = NginxPaths().tls_dir
        lines += ["run nginx systemctl is-active nginx", "run keepalived systemctl is-active keepalived",
                  f"run vip sh -c 'ip -o -4 addr show | grep -q \" {cfg.vip}/\" && echo holder || echo backup'",
                  f"run lb-health curl -fsS -m 5 http://127.0.0.1:{cfg.lb.health_port}/lb-health",
                  f"run lb-cert {SUDO} base64 -w0 {tls}/harbor.crt"]
        lines += [f"run backend:{node.name} curl -fsS -m 5 --cacert {tls}/upstream-ca.crt --resolve "
                  f"{NODE_TLS_NAME}:{https}:{node.address} {health}" for node in cfg.harbor_nodes]
    if host in cfg.harbor_nodes:
        lines += ["run docker systemctl is-active docker", f"run data-volume mountpoint {cfg.harbor.data_volume}",
                  f"run harbor-health {SUDO} curl -fsS -m 5 --cacert {CLUSTER_CA_PATH} --resolve "
                  f"{NODE_TLS_NAME}:{https}:127.0.0.1 {health}"]
    if host in cfg.postgres_hosts:
        if cfg.patroni:
            paths = PatroniPaths()
            lines += [f"run patroni {SUDO} runuser -u postgres -- patronictl -c {paths.config} list -f json",
                      # Empty on a replica; on the leader one `name|state|sync_state` per replica.
                      f"run streams {SUDO} runuser -u postgres -- psql -h {paths.socket_dir} -p {cfg.postgres.port} "
                      "-XAt -F '|' -c 'select application_name, state, sync_state from pg_stat_replication'"]
        else:
            lines.append(f"run postgres {SUDO} runuser -u postgres -- psql -p {cfg.postgres.port} -tAc "
                         "'select pg_is_in_recovery()'")
    redis = RedisPaths()
    if host in cfg.redis_hosts:
        # The password reaches redis-cli through its environment, never its command line.
        lines.append(f"run redis {SUDO} sh -c 'REDISCLI_AUTH=$(awk \"/^requirepass/ {{print \\$2}}\" "
                     f"{redis.conf}) redis-cli --no-auth-warning -p {cfg.redis.port} info replication'")
    if host in cfg.sentinel_hosts:
        sentinel = f"redis-cli -p {cfg.redis.sentinel_port} sentinel"
        lines += [f"run sentinel {sentinel} get-master-addr-by-name {cfg.redis.master_set}",
                  f"run sentinel-quorum {sentinel} ckquorum {cfg.redis.master_set}"]
    if host == cfg.nfs_host:
        lines.append(f"run nfs-export {SUDO} sh -c 'exportfs -v | grep -F {cfg.nfs.export_path}'")
    # Where `pgbackrest info` reads the repository: its host, or (S3) the first database host.
    backup_host = cfg.backup_host or (cfg.postgres_hosts[0] if cfg.backup else None)
    if cfg.backup and host == backup_host:
        lines.append(f"run backup {SUDO} runuser -u postgres -- {pgbackrest_cmd(db_paths(cfg))} info --output=json")
    # Every role the program staged here (a role removed from config is unstaged by its delete).
    # `<role>.new` is an apply staging at this moment.
    lines.append(f"for role in $({SUDO} ls {STAGE_ROOT} 2>/dev/null); do\n"
                 "  case $role in *.new) continue ;; esac\n"
                 f"  run \"files:$role\" {SUDO} bash \"{STAGE_ROOT}/$role/$role.sh\" check \"{STAGE_ROOT}/$role\"\n"
                 "done")
    return "\n".join(lines) + "\n"


def _files(text: str) -> tuple[bool, str]:
    """A role script's `check` that failed: the drifted files it names, or why it could not judge."""
    drifted = re.findall(r"drift: (\S+) differs", text)
    if drifted:
        return False, "edited on the host: " + ", ".join(drifted)
    if "unknown action 'check'" in text:
        # Staged by a release before `check` (docs/day2.md): the role's next apply stages it.
        return True, "not checked: staged before `check` existed, the next apply adds it"
    return False, text or "check failed"


def judge_host(cfg: ClusterConfig, host: Host, output: str, now: datetime) -> list[Check]:
    """The checks of one host from what its script printed (pure)."""
    found: dict[str, tuple[int, str]] = {}
    for line in output.splitlines():
        if line.startswith("CHECK|"):
            _, name, rc, text = line.split("|", 3)
            found[name] = (int(rc), text.strip())
    checks: list[Check] = []

    def add(role: str, name: str, ok: bool, detail: str) -> None:
        checks.append(Check(role, host.name, name, ok, detail))

    def plain(role: str, name: str, what: str) -> None:
        rc, text = found.get(name, (1, "not reported"))
        add(role, name, rc == 0, what if rc == 0 else text or f"exit {rc}")

    if host in cfg.lb_hosts:
        plain("loadbalancer", "nginx", "active")
        plain("keepalived", "keepalived", "active")
        plain("loadbalancer", "lb-health", "answers")
        add("keepalived", "vip", found.get("vip", (1, ""))[1] in ("holder", "backup"),
            found.get("vip", (1, "not reported"))[1])
        for node in cfg.harbor_nodes:
            rc, text = found.get(f"backend:{node.name}", (1, "not reported"))
            status = _health(text) if rc == 0 else text
            add("loadbalancer", f"backend:{node.name}", status == "healthy", f"{node.name} {status}")
        rc, text = found.get("lb-cert", (1, "not reported"))
        add("tls", "certificate", *_expiry(text, now, cfg.tls.renew_before_days) if rc == 0 else (False, text))
    if host in cfg.harbor_nodes:
        plain("harbor-node", "docker", "active")
        plain("harbor-node", "data-volume", f"{cfg.harbor.data_volume} mounted")
        rc, text = found.get("harbor-health", (1, "not reported"))
        status = _health(text) if rc == 0 else text
        add("harbor-node", "harbor-health", status == "healthy", status)
    if host in cfg.postgres_hosts:
        if cfg.patroni:
            rc, text = found.get("patroni", (1, "not reported"))
            add("patroni", "patroni", *_patroni(host.name, text) if rc == 0 else (False, text))
            if rc == 0 and checks[-1].detail.startswith("Leader"):
                add("patroni", "replication", *_streams(host.name, text, *found.get("streams", (1, "not reported"))))
        else:
            rc, text = found.get("postgres", (1, "not reported"))
            add("postgres", "postgres", rc == 0 and text == "f", "primary" if text == "f" else text)
    if host in cfg.redis_hosts:
        rc, text = found.get("redis", (1, "not reported"))
        info = dict(item.split(":", 1) for item in text.split() if ":" in item)
        role = info.get("role", "?")
        detail = f"{role}, {info.get('connected_slaves', '0')} replicas" if role == "master" else \
            f"{role} of {info.get('master_host', '?')} (link {info.get('master_link_status', '?')})"
        add("redis", "redis", rc == 0 and (role == "master" or info.get("master_link_status") == "up"),
            detail if rc == 0 else text)
    if host in cfg.sentinel_hosts:
        rc, text = found.get("sentinel", (1, "not reported"))
        qrc, quorum = found.get("sentinel-quorum", (1, "not reported"))
        named = rc == 0 and len(text.split()) == 2
        add("sentinel", "sentinel", named and qrc == 0 and quorum.startswith("OK"),
            f"master {':'.join(text.split())}; {quorum}" if named else text)
    if host == cfg.nfs_host:
        plain("nfs-server", "nfs-export", f"{cfg.nfs.export_path} exported")
    if "backup" in found:
        rc, text = found["backup"]
        add("backup", "last-backup", *_backup_age(text, now) if rc == 0 else (False, text))
    for name, (rc, text) in sorted(found.items()):
        if name.startswith("files:"):
            add(name.removeprefix("files:"), "files", *(True, "as applied") if rc == 0 else _files(text))
    return checks


def _health(text: str) -> str:
    """Harbor's /api/v2.0/health answer: `healthy`, or the unhealthy components."""
    try:
        body = json.loads(text)
    except ValueError:
        return f"answered {text[:80]!r}"
    bad = [c.get("name", "?") for c in body.get("components", []) if c.get("status") != "healthy"]
    if body.get("status") == "healthy" and not bad:
        return "healthy"
    return "unhealthy: " + (", ".join(bad) or str(body.get("status")))


def _expiry(pem_base64: str, now: datetime, renew_before_days: int) -> tuple[bool, str]:
    """The LB certificate's end date; unhealthy within tls.renewBeforeDays of it (a `pulumi up` renews it then)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(pem_base64))
    except ValueError:
        return False, "no readable certificate"
    left = (cert.not_valid_after_utc - now).days
    return left > renew_before_days, f"expires {cert.not_valid_after_utc:%Y-%m-%d} ({left} days)"


def _patroni(member: str, text: str) -> tuple[bool, str]:
    """This host's member as `patronictl list -f json` shows it: running (the leader) or streaming/running (a
    replica) with a known lag within PATRONI_MAX_LAG_MB; the detail starts with its role."""
    try:
        me = next((m for m in json.loads(text) if m.get("Member") == member), None)
    except ValueError:
        return False, f"answered {text[:80]!r}"
    if me is None:
        return False, "not a member of the cluster patronictl lists"
    role, state, lag = me.get("Role", "?"), me.get("State", "?"), me.get("Lag in MB")
    if role == "Leader":
        return state == "running", f"Leader {state}, timeline {me.get('TL', '?')}"
    ok = state in ("running", "streaming") and isinstance(lag, (int, float)) and lag <= PATRONI_MAX_LAG_MB
    return ok, f"{role} {state}, lag " + (f"{lag} MB" if isinstance(lag, (int, float)) else str(lag or "unknown"))


def _streams(leader: str, members_json: str, rc: int, text: str) -> tuple[bool, str]:
    """On the leader: every other member patronictl lists streams from it (pg_stat_replication)."""
    if rc != 0:
        return False, text or f"exit {rc}"
    streams = {name: f"{state} {sync}" for name, state, sync in
               (row.split("|") for row in text.split() if row.count("|") == 2)}
    others = sorted(m.get("Member", "?") for m in json.loads(members_json) if m.get("Member") != leader)
    detail = ", ".join(f"{name} {streams.get(name, 'not streaming')}" for name in others) or "no replica"
    return bool(others) and all(streams.get(n, "").startswith("streaming") for n in others), detail


def _backup_age(text: str, now: datetime) -> tuple[bool, str]:
    backups = [b for stanza in json.loads(text) for b in stanza.get("backup", [])]
    if not backups:
        return False, "no backup yet"
    stop = max(b["timestamp"]["stop"] for b in backups)
    age_h = (now.timestamp() - stop) / 3600
    return age_h <= BACKUP_MAX_AGE_H, f"last {datetime.fromtimestamp(stop, UTC):%Y-%m-%d %H:%M} UTC " \
                                      f"({age_h:.1f} h ago)"


def cluster_checks(cfg: ClusterConfig, checks: list[Check]) -> list[Check]:
    """What only the whole cluster shows: one VIP holder, one Patroni leader, one Redis master that every sentinel
    names."""
    holders = [c.host for c in checks if c.check == "vip" and c.detail == "holder"]
    out = [Check("keepalived", "cluster", "vip-holder", len(holders) == 1,
                 f"{cfg.vip} on {', '.join(holders) or 'no host'}")]
    if cfg.redis_hosts:
        masters = [c.host for c in checks if c.check == "redis" and c.detail.startswith("master")]
        out.append(Check("redis", "cluster", "redis-master", len(masters) == 1,
                         f"master: {', '.join(masters) or 'none'}"))
    if cfg.patroni:
        leaders = [c.host for c in checks if c.check == "patroni" and c.detail.startswith("Leader")]
        # Synchronous mode: without a synchronous standby commits wait (strict) or have no second copy.
        sync = [c.host for c in checks if c.check == "patroni" and c.detail.startswith("Sync Standby")]
        wants_sync = cfg.patroni.synchronous != "off"
        out.append(Check("patroni", "cluster", "patroni-leader", len(leaders) == 1 and (bool(sync) or not wants_sync),
                         f"leader: {', '.join(leaders) or 'none'}"
                         + (f"; synchronous standby: {', '.join(sync) or 'none'}" if wants_sync else "")))
    if cfg.sentinel_hosts:
        # Each sentinel's answer (`master ADDRESS:PORT; ...`) against the server that says it is the master.
        named = {c.detail.split(";")[0].removeprefix("master ") for c in checks if c.check == "sentinel"
                 and c.detail.startswith("master ")}
        master = [f"{h.address}:{cfg.redis.port}" for h in cfg.redis_hosts if h.name in masters]
        agree = len(named) == 1 and len(master) == 1 and named == set(master)
        out.append(Check("sentinel", "cluster", "sentinels-agree", agree,
                         f"sentinels name {', '.join(sorted(named)) or 'no master'}; the master is "
                         f"{', '.join(master) or 'unknown'}"))
    return out


def collect(cfg: ClusterConfig, key: Path, timeout: int) -> list[Check]:
    from scripts.preflight import run_script

    now = datetime.now(UTC)

    def one(host: Host, workdir: Path) -> list[Check]:
        done = run_script(host, host_script(cfg, host), key, timeout, workdir, "bash", limit=60)
        if isinstance(done, str):
            return [Check("host", host.name, "ssh", False, done)]
        return judge_host(cfg, host, done.stdout, now)

    with tempfile.TemporaryDirectory(prefix="hha-status-") as tmp, \
            ThreadPoolExecutor(max_workers=min(16, len(cfg.hosts))) as pool:
        checks = [c for result in pool.map(lambda h: one(h, Path(tmp)), cfg.hosts) for c in result]
    return checks + cluster_checks(cfg, checks)


def main(argv: list[str] | None = None) -> int:
    from scripts.preflight import ssh_cli

    args, key, cfg = ssh_cli(__doc__, "status", argv)
    if cfg is None:
        return COULD_NOT_RUN
    checks = collect(cfg, key, args.timeout)
    healthy = all(c.ok for c in checks)
    write_json(args.json, {"stack": str(stack_file(args.stack)), "healthy": healthy,
                           "checks": [asdict(c) for c in checks]})
    if args.json != "-":
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.role:<12} {c.host:<10} {c.check}: {c.detail}")
        bad = sorted({c.host for c in checks if not c.ok})
        print(f"{'healthy' if healthy else 'UNHEALTHY: ' + ', '.join(bad)} ({len(checks)} checks)")
    return MET if healthy else NOT_MET


if __name__ == "__main__":
    sys.exit(main())
