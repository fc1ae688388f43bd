#!/usr/bin/env python3
"""Harbor's database under Patroni, built from the program's rendered files in network namespaces, and its drills.

    sudo venv/bin/python labs/db_lab.py drills --json FILE     build, run every drill, tear down; write the figures
    sudo venv/bin/python labs/db_lab.py down                   remove what a crashed run left (namespaces, processes)

Hosts (namespaces on one bridge in 198.18.14.0/24; a blackhole route for 198.18.0.0/15 sits in the root namespace
while the lab exists): db1..db3 run etcd, Patroni (PostgreSQL 15), vip-manager and `pgbackrest server`; backup1
keeps the pgBackRest repository; harbor1 is where Harbor's writes come from (labs/db_writer.py through the
database VIP). Every daemon reads the files components/etcd and components/patroni render for a lab stack
(`postgres.synchronous: strict`, Patroni's ttl 20 / loop_wait 1 / retry_timeout 9: the defaults), in a per-host
directory.

Drills, in order:
- postgres_primary_death (strict synchronous, then asynchronous): the client commits an artifact+tag transaction
  every 20 ms; the leader's WAL senders are frozen for `STALL_S` (so commits acknowledged without a replica copy
  would exist), then every process of the leader host is SIGKILLed and its link cut. failover_ms = kill to the
  first acknowledged commit; lost_commits = acknowledged commits missing afterwards; rejoined = the old leader,
  restarted, streams from the new one as a replica (pg_rewind).
- postgres_switchover (strict synchronous, `SWITCHOVERS` times in a row, each to the synchronous standby of the
  moment): CHECKPOINT, then `patronictl switchover` to the synchronous standby
  under the same load; write_gap_ms = the longest pause between acknowledged commits.
- restore: full pgBackRest backup to backup1, more commits, a target time, commits after it; every data directory
  and the DCS state are destroyed; restore to the target time; per-table checksums compared with those taken at
  the target; seconds = destroy to the restored leader serving Harbor's user through the VIP.
- migrate_from_single: old1 runs PostgreSQL as `postgres.mode: single` deploys it, with Harbor-like data; the
  cluster is emptied, db1 is copied from old1 (pg_basebackup) and Patroni takes the copy over; per-table
  checksums compared; seconds = from emptying the cluster to Harbor's user reading through the VIP.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: import the program and labs from the repository root

from components.config import parse_cluster_config  # noqa: E402
from components.etcd import EtcdPaths, etcd_files  # noqa: E402
from components.host.files import FileSpec  # noqa: E402
from components.patroni import (REPLICATION_USER, PatroniPaths, patroni_files, render_dynamic_yml,  # noqa: E402
                                render_migration_script, render_migration_sql)
from components.pgbackrest import (PGBACKREST_CLIENT_CN, STANZA, pgbackrest_repo_files,  # noqa: E402
                                   render_restore_script)
from components.postgres import render_harbor_role_sql, render_pg_hba, render_postgresql_conf  # noqa: E402
from labs import certs as lab_certs  # noqa: E402
from labs import netns as netns_lab  # noqa: E402

NET = "198.18.14"
NS_PREFIX = "dbha-"
BRIDGE_NS = "dbha-br"
BLACKHOLE_METRIC = "1814"
HOSTS = {"db1": f"{NET}.11", "db2": f"{NET}.12", "db3": f"{NET}.13", "backup1": f"{NET}.21",
         "harbor1": f"{NET}.31", "harbor2": f"{NET}.32", "old1": f"{NET}.41"}
DB_HOSTS = ("db1", "db2", "db3")
CLIENT = "harbor1"
DB_VIP = f"{NET}.50"
PY = "/usr/bin/python3"  # Debian's interpreter: it has psycopg2 (a pyenv python3 first on PATH may not)
STALL_S = 1.0  # WAL senders frozen before the kill: commits in this window have no replica copy in async mode
WAIT_S = 120  # bound of every wait for the cluster
SWITCHOVERS = 3  # one switchover is one sample of a figure that varies with the machine's load; the worst counts


def single_values() -> dict:
    """The stack before the move: the same hosts, PostgreSQL as one server on old1 (postgres.mode single)."""
    return {
        "hosts": [{"name": n, "address": a} for n, a in HOSTS.items()],
        "roles": {"nfs": "harbor1", "postgres": "old1", "redis": ["harbor1"], "harborNodes": ["harbor1", "harbor2"],
                  "loadBalancers": ["harbor1", "harbor2"]},
        "vip": {"address": f"{NET}.100", "interface": "eth0"},
        "harbor": {"hostname": "harbor.lab.test"},
        "postgres": {"maxConnections": 200, "sharedBuffers": "32MB"},
    }


def lab_values(root: Path, synchronous: str = "strict") -> dict:
    """The lab stack in the program's own config keys."""
    return {
        "hosts": [{"name": n, "address": a} for n, a in HOSTS.items()],
        "roles": {"nfs": "harbor1", "postgres": list(DB_HOSTS), "redis": ["harbor1"],
                  "harborNodes": ["harbor1", "harbor2"], "loadBalancers": ["harbor1", "harbor2"], "backup": "backup1"},
        "vip": {"address": f"{NET}.100", "interface": "eth0"},
        "harbor": {"hostname": "harbor.lab.test"},
        "postgres": {"mode": "patroni", "vip": {"address": DB_VIP, "interface": "eth0"}, "synchronous": synchronous,
                     "maxConnections": 200, "sharedBuffers": "32MB"},
        "backup": {"path": str(root / "backup1" / "var/lib/pgbackrest"), "retentionFull": 1},
    }


def ns(host: str) -> str:
    return f"{NS_PREFIX}{host}"


def run(argv: Sequence[str], *, host: Optional[str] = None, user: Optional[str] = None, check: bool = True,
        env: Optional[dict] = None, input: Optional[str] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """A command inside a host's namespace (never in the root namespace when `host` is given), as `user`."""
    cmd = list(argv)
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    if host:
        cmd = ["ip", "netns", "exec", ns(host), *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def wait_until(check: Callable[[], object], what: str, timeout: float = WAIT_S, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(interval)


def install(specs: Sequence[FileSpec], values: Mapping[str, str], root: Path, *,
            relocate: bool = False) -> dict[str, str]:
    """Render each file with the secret `values` it needs and write it (mode, owner) where a lab host whose files
    live under `root` keeps it: at its own path when that is inside `root` (files rendered for a PatroniPaths(root=)),
    at root + its path with `relocate` (files rendered for Debian's paths); others are only rendered.
    Returns {the file's path: content} for all of them."""
    rendered = {}
    for spec in specs:
        content = rendered[spec.path] = spec.render({n: values[n] for n in spec.needs})
        if relocate:
            path = Path(f"{root}{spec.path}")
        elif spec.path.startswith(str(root)):
            path = Path(spec.path)
        else:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.chmod(path, spec.mode)
        shutil.chown(path, spec.owner, spec.group)
    return rendered


def env_file_values(text: str) -> dict[str, str]:
    """NAME=value lines of a rendered env file, unquoted as systemd's EnvironmentFile= reads them."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = shlex.split(value)[0] if value else ""
    return out


class DbLab:
    """The namespaces, rendered files and processes of one run; `close()` removes all of it."""

    def __init__(self, workdir: Path, log: Callable[[str], None] = print):
        self.root = workdir
        self.log = log
        self.cfg = parse_cluster_config(lab_values(workdir))
        self.paths = {h: PatroniPaths(root=str(workdir / h), pg_version=self.cfg.postgres.version)
                      for h in (*DB_HOSTS, "backup1")}
        self.etcd_paths = {h: EtcdPaths(env_file=str(workdir / h / "etc/default/etcd"),
                                        data_dir=str(workdir / h / "var/lib/etcd")) for h in DB_HOSTS}
        self.procs: dict[str, subprocess.Popen] = {}
        self.rendered: dict[tuple[str, str], str] = {}  # (host, path) -> content
        self.ca = lab_certs.new_ca("dbha lab cluster CA")  # signs PostgreSQL's certificates, old1's too
        self.values = self._secret_values()
        self.pg_password = self.values["db_password"]
        # Where the Harbor node keeps the cluster CA it verifies the database with (sslrootcert).
        self.client_ca = workdir / CLIENT / "cluster-ca.crt"
        self._seq = 0

    # --- building ---------------------------------------------------------------------------------------------
    def _secret_values(self) -> dict[str, str]:
        ca_key, key = lab_certs.new_key(), lab_certs.new_key()
        ca = lab_certs.issue("dbha lab pgBackRest CA", ca_key, ca=True)
        addresses = [HOSTS[h] for h in (*DB_HOSTS, "backup1")]
        # As components/secrets.py issues it: each address as an IP and as a DNS entry.
        cert = lab_certs.issue(PGBACKREST_CLIENT_CN, key, names=addresses, dns_literal=addresses, issuer=(ca, ca_key))
        values = {n: secrets.token_hex(16) for n in (
            "db_password", "pg_superuser_password", "pg_replication_password", "pg_rewind_password",
            "patroni_api_password", "restic_password")}
        values.update(pgbackrest_ca_cert=lab_certs.cert_pem(ca).decode(),
                      pgbackrest_cert=lab_certs.cert_pem(cert).decode(), pgbackrest_key=lab_certs.key_pem(key).decode())
        cluster = lab_certs.cluster_tls(self.cfg, ca=self.ca)
        values.update(cluster_ca_certificate=cluster["ca"].decode(), postgres_tls_certificate=cluster["postgres_cert"]
                      .decode(), postgres_tls_private_key=cluster["postgres_key"].decode())
        return values

    def _install(self, host: str, specs: Sequence[FileSpec], root: Path) -> None:
        """Write each rendered file under the host's directory (files outside it are read from `rendered`)."""
        for path, content in install(specs, self.values, root).items():
            self.rendered[(host, path)] = content

    def build(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        netns_lab.ip("route", "replace", *netns_lab.blackhole(BLACKHOLE_METRIC))
        netns_lab.add_bridge(BRIDGE_NS)
        for i, (host, address) in enumerate(HOSTS.items()):
            netns_lab.add_host(BRIDGE_NS, ns(host), f"p{i}", address, self.cfg.prefix_length)
        for host in (*DB_HOSTS, "backup1"):
            self._prepare_dirs(host)
        self.client_ca.parent.mkdir(parents=True, exist_ok=True)
        self.client_ca.write_text(self.values["cluster_ca_certificate"])
        for host in DB_HOSTS:
            h = self.cfg.host(host)
            self._install(host, etcd_files(self.cfg, h, self.etcd_paths[host]), self.root / host)
            self._install(host, patroni_files(self.cfg, h, self.paths[host]), self.root / host)
            sysctl = self.rendered[(host, "/etc/sysctl.d/60-harbor-ha-patroni.conf")]
            for line in sysctl.splitlines():
                run(["sysctl", "-q", "-w", line.replace(" ", "")], host=host)
            # What harbor-ha-db-vip.service loads at boot: VIP connections reaching a non-holder are refused.
            run(["nft", "-f", self.paths[host].db_vip_nft], host=host)
        # The repository host's pgbackrest.conf names each database host's paths: the lab's per-host ones.
        self._install("backup1", pgbackrest_repo_files(self.cfg, self.paths["backup1"],
                                                       {h: self.paths[h] for h in DB_HOSTS}), self.root / "backup1")
        for host in DB_HOSTS:
            self.start_etcd(host)
        for host in (*DB_HOSTS, "backup1"):
            self.start_pgbackrest_server(host)
        wait_until(self._etcd_healthy, "etcd quorum")
        for host in DB_HOSTS:
            # Patroni's own validation of the rendered file (etcd must answer for it to pass).
            run(["patroni", "--validate-config", self.paths[host].config], host=host, user="postgres")
        self.start_member("db1")
        wait_until(lambda: self.leader() == "db1", "db1 bootstraps as leader")
        for host in DB_HOSTS[1:]:
            self.start_member(host)
        self.wait_healthy(replicas=2)
        # The role script's steps on the leader: Harbor's role and database, the repository's stanza.
        run(["psql", "-X", "-q", "-h", self.paths["db1"].socket_dir, "-v", "ON_ERROR_STOP=1", "-f",
             self.paths["db1"].role_sql], host="db1", user="postgres")
        self.pgbackrest("stanza-create")
        self.pgbackrest("check")

    def _prepare_dirs(self, host: str) -> None:
        p = self.paths[host]
        for d, owner in ((p.data_dir, "postgres"), (p.socket_dir, "postgres"), (str(Path(p.pgpass).parent), "postgres"),
                         (p.pgbackrest_log, "postgres"), (p.pgbackrest_lock, "postgres"), (p.tls_dir, "postgres")):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, owner, owner)
        os.chmod(p.data_dir, 0o700)
        # Every directory on the way must be traversable by postgres.
        for parent in Path(p.data_dir).parents:
            if str(parent).startswith(str(self.root)):
                os.chmod(parent, os.stat(parent).st_mode | 0o755)
        if host == "backup1":
            repo = Path(self.cfg.backup.path)
            repo.mkdir(parents=True, exist_ok=True)
            shutil.chown(repo, "postgres", "postgres")

    # --- processes ------------------------------------------------------------------------------------------
    def spawn(self, name: str, host: str, argv: Sequence[str], *, user: Optional[str] = None,
              env: Optional[dict] = None) -> None:
        cmd = ["ip", "netns", "exec", ns(host), *(["runuser", "-u", user, "--"] if user else []), *argv]
        # The child keeps its own copy of the log's descriptor: ours closes once it is started.
        with open(self.root / f"{name}.log", "ab") as logf:
            self.procs[name] = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                                env={**os.environ, **(env or {})}, start_new_session=True)

    def start_etcd(self, host: str) -> None:
        env = env_file_values(self.rendered[(host, self.etcd_paths[host].env_file)])
        self.spawn(f"etcd-{host}", host, ["etcd"], env=env)

    def start_pgbackrest_server(self, host: str) -> None:
        self.spawn(f"pgbackrest-{host}", host, ["pgbackrest", f"--config={self.paths[host].pgbackrest_conf}", "server"],
                   user="postgres")

    def start_member(self, host: str) -> None:
        """Patroni and vip-manager, as Debian's units start them."""
        self.spawn(f"patroni-{host}", host, ["patroni", self.paths[host].config], user="postgres")
        v = env_file_values(self.rendered[(host, self.paths[host].vip_env)])
        self.spawn(f"vip-manager-{host}", host, [
            "vip-manager", f"--ip={v['VIP_IP']}", f"--interface={v['VIP_IFACE']}", f"--trigger-key={v['VIP_KEY']}",
            f"--trigger-value={v['VIP_HOST']}", f"--dcs-type={v['VIP_TYPE']}", f"--dcs-endpoints={v['VIP_ENDPOINT']}",
            f"--netmask={v['VIP_MASK']}"], env=v)

    def stop(self, name: str, sig: int = signal.SIGTERM, grace: float = 30) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # The daemon itself, not runuser around it: runuser answers SIGTERM by killing its child after a moment,
        # which would cut Patroni's shutdown short (its leader key would stay in etcd).
        children = [int(p) for p in run(["pgrep", "-P", str(proc.pid)], check=False).stdout.split()]
        for pid in children or [proc.pid]:
            os.kill(pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill_host(self, host: str) -> None:
        """Crash a host: SIGKILL every process in its namespace, then cut its link."""
        pids = run(["ip", "netns", "pids", ns(host)]).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        netns_lab.ip("-n", ns(host), "link", "set", "eth0", "down")
        for name in [n for n in self.procs if n.endswith(f"-{host}")]:
            self.procs.pop(name).wait(10)

    def revive_host(self, host: str) -> None:
        # A SIGKILLed vip-manager leaves the VIP on the interface (it never ran its cleanup): a rebooted host has
        # no such address, so it goes before the link comes back.
        netns_lab.ip("-n", ns(host), "addr", "del", f"{DB_VIP}/{self.cfg.prefix_length}", "dev", "eth0", check=False)
        netns_lab.ip("-n", ns(host), "link", "set", "eth0", "up")
        self.start_etcd(host)
        self.start_pgbackrest_server(host)
        self.start_member(host)

    # --- observing -------------------------------------------------------------------------------------------
    def _etcd_healthy(self) -> bool:
        urls = ",".join(f"http://{HOSTS[h]}:{self.cfg.patroni.etcd_client_port}" for h in DB_HOSTS)
        r = run(["etcdctl", f"--endpoints={urls}", "endpoint", "health"], host="db1", check=False,
                env={**os.environ, "ETCDCTL_API": "3"})
        return r.returncode == 0

    def members(self, via: Optional[str] = None) -> list[dict]:
        via = via or next(h for h in DB_HOSTS if self.procs.get(f"patroni-{h}"))
        r = run(["patronictl", "-c", self.paths[via].config, "list", "-f", "json"], host=via, check=False)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else []
        except json.JSONDecodeError:
            return []

    def leader(self) -> Optional[str]:
        return next((m["Member"] for m in self.members() if m["Role"] == "Leader" and m["State"] == "running"), None)

    def wait_healthy(self, replicas: int, sync: Optional[bool] = None) -> None:
        """A running leader and `replicas` running replicas (with a Sync Standby when `sync`)."""
        def ok() -> bool:
            ms = self.members()
            running = [m for m in ms if m["State"] in ("running", "streaming")]
            has_sync = any(m["Role"] == "Sync Standby" for m in ms)
            want_sync = self.cfg.patroni.synchronous != "off" if sync is None else sync
            return (sum(m["Role"] == "Leader" for m in running) == 1 and len(running) == replicas + 1
                    and has_sync == want_sync)
        wait_until(ok, f"a leader and {replicas} running replicas")

    def streaming_from_leader(self, host: str) -> bool:
        leader = self.leader()
        if not leader or leader == host:
            return False
        r = self.superuser_sql(leader, "SELECT count(*) FROM pg_stat_replication "
                                       f"WHERE client_addr = '{HOSTS[host]}' AND state = 'streaming'", check=False)
        return r.stdout.strip() == "1"

    def superuser_sql(self, host: str, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["psql", "-X", "-At", "-h", self.paths[host].socket_dir, "-c", sql], host=host, user="postgres",
                   check=check)

    def harbor_dsn(self, server: str = DB_VIP, sslmode: str = "verify-full") -> str:
        """Harbor's connection (harbor.yml's external_database: ssl_mode verify-full, the cluster CA trusted)."""
        pg = self.cfg.postgres
        return (f"host={server} port={pg.port} dbname={pg.database} user={pg.user} sslmode={sslmode} "
                f"sslrootcert={self.client_ca}")

    def harbor_psql(self, sql: str, server: str = DB_VIP, sslmode: str = "verify-full",
                    check: bool = True) -> subprocess.CompletedProcess:
        """psql as Harbor's user through the database VIP (or another server), from the Harbor node."""
        return run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
                    f"{self.harbor_dsn(server, sslmode)} connect_timeout=5"],
                   host=CLIENT, env={**os.environ, "PGPASSWORD": self.pg_password}, check=check)

    def harbor_sql(self, sql: str, server: str = DB_VIP) -> str:
        """SQL as Harbor's user (verify-full) through the database VIP (or another server); its output."""
        return self.harbor_psql(sql, server).stdout.strip()

    def tls_check(self) -> dict:
        """What patroni mode encrypts: Harbor's user reaches the leader through the VIP with verify-full (the VIP's
        holder presents a certificate for it), is refused in plaintext (pg_hba has hostssl lines only), and every
        replica streams over TLS (pg_stat_replication joined with pg_stat_ssl on the leader)."""
        leader = self.leader()
        verified = self.harbor_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t"
        plain = self.harbor_psql("SELECT 1", sslmode="disable", check=False)
        walsenders = self.superuser_sql(leader, "SELECT s.ssl, s.version FROM pg_stat_replication r "
                                                "JOIN pg_stat_ssl s USING (pid)").stdout.split()
        return {"leader": leader, "harbor_verify_full": verified,
                "plaintext_refused": plain.returncode != 0 and "no pg_hba.conf entry" in plain.stderr,
                "walsenders": len(walsenders),
                "walsenders_tls": sorted(w.split("|")[1] for w in walsenders if w.startswith("t|"))}

    def pgbackrest(self, *command: str, host: str = "backup1", timeout: float = 300) -> subprocess.CompletedProcess:
        return run(["pgbackrest", f"--config={self.paths[host].pgbackrest_conf}", f"--stanza={STANZA}", *command],
                   host=host, user="postgres", timeout=timeout)

    def patronictl(self, *command: str, host: Optional[str] = None, input: Optional[str] = None):
        host = host or next(h for h in DB_HOSTS if self.procs.get(f"patroni-{h}"))
        return run(["patronictl", "-c", self.paths[host].config, *command], host=host, input=input)

    # --- the write load --------------------------------------------------------------------------------------
    def start_writer(self) -> Path:
        out = self.root / f"writer-{self._seq}.out"
        with open(out, "wb") as logf:
            self.procs["writer"] = subprocess.Popen(
                ["ip", "netns", "exec", ns(CLIENT), PY, str(ROOT / "labs" / "db_writer.py"),
                 "--dsn", self.harbor_dsn(),
                 "--start", str(self._seq * 1_000_000)],
                stdout=logf, stderr=subprocess.DEVNULL, env={**os.environ, "PGPASSWORD": self.pg_password})
        self._seq += 1
        wait_until(lambda: len(self.acks(out)) >= 20, "the writer's first commits", timeout=60)
        return out

    @staticmethod
    def events(out: Path) -> list[tuple[str, int, float]]:
        """The writer's lines: (ack|err, sequence number, monotonic time), in order."""
        found = []
        for line in out.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("ack", "err"):
                found.append((parts[0], int(parts[1]), float(parts[2])))
        return found

    def acks(self, out: Path) -> list[tuple[int, float]]:
        return [(seq, t) for kind, seq, t in self.events(out) if kind == "ack"]

    def first_ack_after_failure(self, out: Path, since: float) -> Optional[float]:
        """When the first commit acknowledged after the first failure since `since` was (a commit the dead leader
        acknowledged just before the kill can be printed a moment after it: it does not count)."""
        failed = False
        for kind, _, t in self.events(out):
            if t > since and kind == "err":
                failed = True
            elif failed and kind == "ack":
                return t
        return None

    def stop_writer(self) -> None:
        self.stop("writer", grace=10)

    # --- drills ---------------------------------------------------------------------------------------------
    def primary_death(self) -> dict:
        old = self.leader()
        out = self.start_writer()
        time.sleep(2)
        # Freeze the leader's WAL senders: a commit acknowledged now has no replica copy unless the leader waits for
        # a synchronous standby.
        postmaster = int(Path(self.paths[old].data_dir, "postmaster.pid").read_text().split()[0])
        senders = [int(p) for p in run(["pgrep", "-P", str(postmaster), "-f", "walsender"], check=False).stdout.split()]
        for pid in senders:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(STALL_S)
        t_kill = time.monotonic()
        self.kill_host(old)
        first = wait_until(lambda: self.first_ack_after_failure(out, t_kill), "a commit acknowledged after the kill",
                           timeout=WAIT_S)
        time.sleep(2)
        self.stop_writer()
        acked = {s for s, _ in self.acks(out)}
        present = {int(d.split(":")[1]) for d in self.harbor_sql("SELECT digest FROM drill_artifact").split()}
        new = self.leader()
        self.revive_host(old)
        rejoined = bool(wait_until(lambda: self.streaming_from_leader(old), f"{old} streams from {new}",
                                   timeout=WAIT_S))
        self.wait_healthy(replicas=2)
        return {"failover_ms": round((first - t_kill) * 1000), "lost_commits": len(acked - present),
                "acknowledged": len(acked), "rejoined": rejoined, "old_leader": old, "new_leader": new,
                "stall_ms": round(STALL_S * 1000)}

    def switchover(self) -> dict:
        old = self.leader()
        # In synchronous mode Patroni hands over to the synchronous standby only.
        roles = {m["Member"]: m["Role"] for m in self.members()}
        candidate = ([n for n, r in roles.items() if r == "Sync Standby"] or
                     [n for n, r in roles.items() if r == "Replica"])[0]
        out = self.start_writer()
        time.sleep(1)
        # A planned switchover starts with a checkpoint (docs/database-ha.md): the leader's shutdown checkpoint,
        # during which no commit is acknowledged, then has little left to write.
        self.superuser_sql(old, "CHECKPOINT")
        t0 = time.monotonic()
        self.patronictl("switchover", "--leader", old, "--candidate", candidate, "--force")
        wait_until(lambda: self.leader() == candidate, f"{candidate} leads")
        wait_until(lambda: any(t > time.monotonic() - 0.5 for _, t in self.acks(out)), "commits after the switch")
        time.sleep(2)
        self.stop_writer()
        times = [t for _, t in self.acks(out) if t >= t0 - 1]
        gap = max(b - a for a, b in itertools.pairwise(times))
        self.wait_healthy(replicas=2)
        return {"write_gap_ms": round(gap * 1000), "old_leader": old, "new_leader": candidate}

    def set_synchronous(self, mode: str, wait: bool = True) -> None:
        """Change postgres.synchronous the way a re-applied stack does: `patronictl edit-config --replace`."""
        cfg = parse_cluster_config(lab_values(self.root, mode))
        via = self.leader()
        dynamic = Path(self.paths[via].dynamic)
        dynamic.write_text(render_dynamic_yml(cfg, self.paths[via]))
        # Right after a takeover the leader may not have written the cluster's config key yet.
        wait_until(lambda: run(["patronictl", "-c", self.paths[via].config, "edit-config", "--force", "--quiet",
                                "--replace", str(dynamic)], host=via, check=False).returncode == 0,
                   "patronictl edit-config", timeout=60, interval=1)
        self.cfg = cfg
        if wait:
            self.wait_healthy(replicas=2)

    TABLES = ("project", "repository", "artifact", "tag", "audit_log")

    def _load(self, first: int, count: int, server: str = DB_VIP) -> None:
        self.harbor_sql(
            "CREATE TABLE IF NOT EXISTS project (id int PRIMARY KEY, name text, created timestamptz DEFAULT now());"
            "CREATE TABLE IF NOT EXISTS repository (id int PRIMARY KEY, project_id int REFERENCES project(id), "
            "name text);"
            "CREATE TABLE IF NOT EXISTS artifact (id int PRIMARY KEY, repository_id int REFERENCES repository(id), "
            "digest text, size bigint);"
            "CREATE TABLE IF NOT EXISTS tag (id int PRIMARY KEY, artifact_id int REFERENCES artifact(id), name text);"
            "CREATE TABLE IF NOT EXISTS audit_log (id int PRIMARY KEY, op text, resource text, at timestamptz);"
            f"INSERT INTO project SELECT g, 'project-' || g "
            f"FROM generate_series({first}, {first + count // 100 - 1}) g;"
            f"INSERT INTO repository SELECT g, {first} + g % {count // 100}, 'repo-' || g "
            f"FROM generate_series({first}, {first + count // 10 - 1}) g;"
            f"INSERT INTO artifact SELECT g, {first} + g % {count // 10}, md5(g::text), g::bigint * 1024 "
            f"FROM generate_series({first}, {first + count - 1}) g;"
            f"INSERT INTO tag SELECT g, g, 'v' || g FROM generate_series({first}, {first + count - 1}) g;"
            f"INSERT INTO audit_log SELECT g, 'push', 'artifact/' || g, now() "
            f"FROM generate_series({first}, {first + count - 1}) g;", server)

    def checksums(self, server: str = DB_VIP) -> dict[str, tuple[int, str]]:
        sums = {}
        for table in self.TABLES:
            rows, digest = self.harbor_sql(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM {table} t",
                server).split("|")
            sums[table] = (int(rows), digest)
        return sums

    def restore(self, rows: int = 50_000) -> dict:
        self._load(1, rows)
        self.pgbackrest("--type=full", "backup")
        # pgBackRest picks the backup set whose stop time, in whole seconds, is before the target's second: a
        # target in the backup's last second finds none ("unable to find backup set", seen in CI).
        time.sleep(1.0)
        self._load(10_000_000, rows // 5)  # after the backup: reached by replaying archived WAL
        expected = self.checksums()
        target = self.harbor_sql("SELECT clock_timestamp()")
        time.sleep(1.0)
        self._load(20_000_000, rows // 5)  # after the target: must not come back
        self.harbor_sql("DELETE FROM audit_log WHERE id % 7 = 0")
        self.pgbackrest("check")  # switches WAL and waits until the segment with the target is archived
        size = self.harbor_sql(f"SELECT pg_database_size('{self.cfg.postgres.database}')")

        t0 = time.monotonic()
        self.destroy_cluster()
        restore_to(self, "db1", target)
        return {**self._lead_from_db1(t0, expected), "database_bytes": int(size), "target": target}

    def _lead_from_db1(self, t0: float, expected: dict) -> dict:
        """Patroni started on db1's prepared data directory (it takes it over as leader), the data compared with
        `expected` through the VIP, then the other members started (they clone db1)."""
        self.start_member("db1")
        wait_until(lambda: self.leader() == "db1", "db1 leads the prepared data")
        # A cluster Patroni takes over starts from bootstrap.dcs: the stack's current settings go back the way
        # scripts/restore.py and the role script put them.
        self.set_synchronous(self.cfg.patroni.synchronous, wait=False)
        got = wait_until(lambda: self._try_checksums(), "Harbor's user reads the database through the VIP")
        seconds = time.monotonic() - t0
        for host in DB_HOSTS[1:]:
            self.start_member(host)
        self.wait_healthy(replicas=2)
        return {"seconds": round(seconds, 1), "identical": got == expected, "rows": sum(r for r, _ in got.values())}

    def destroy_cluster(self) -> None:
        """Every member stopped, every data directory emptied, the cluster's state removed from etcd."""
        leader = self.leader() or ""
        for host in DB_HOSTS:
            self.stop(f"patroni-{host}")
        for host in DB_HOSTS:
            data = Path(self.paths[host].data_dir)
            shutil.rmtree(data)
            data.mkdir(mode=0o700)
            shutil.chown(data, "postgres", "postgres")
        # patronictl asks for the leader's name too while a leader key exists.
        self.patronictl("remove", self.cfg.patroni.scope, host="db1",
                        input=f"{self.cfg.patroni.scope}\nYes I am aware\n{leader}\n")

    def start_single_server(self) -> None:
        """old1: PostgreSQL as postgres.mode single deploys it (components/postgres rendered files)."""
        single = parse_cluster_config(single_values())
        p = PatroniPaths(root=str(self.root / "old1"), pg_version=single.postgres.version)
        data, sock = Path(p.data_dir), Path(p.socket_dir)
        for d in (data, sock):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "postgres", "postgres")
        os.chmod(data, 0o700)
        run([f"{p.bin_dir}/initdb", "-D", str(data), "--auth-local=peer", "--auth-host=scram-sha-256"],
            user="postgres")
        # Single mode serves TLS only (docs/security.md): the lab CA's certificate, shaped as components/secrets.py
        # issues it for single mode.
        tls_values = lab_certs.cluster_tls(single, ca=self.ca)
        cert, key = tls_values["postgres_cert"], tls_values["postgres_key"]
        tls = (data / "server.crt", data / "server.key")
        tls[0].write_bytes(cert)
        tls[1].write_bytes(key)
        for f in tls:
            shutil.chown(f, "postgres", "postgres")
            os.chmod(f, 0o600)
        (data / "harbor-ha.conf").write_text(render_postgresql_conf(single, tls=(str(tls[0]), str(tls[1])))
                                             + f"unix_socket_directories = '{sock}'\n")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("include 'harbor-ha.conf'\n")
        # The move's one addition to the single server's pg_hba: the first Patroni member copies it.
        (data / "pg_hba.conf").write_text(render_pg_hba(single) +
                                          f"hostssl replication {REPLICATION_USER} {HOSTS['db1']}/32 scram-sha-256\n")
        for f in ("harbor-ha.conf", "pg_hba.conf"):
            shutil.chown(data / f, "postgres", "postgres")
        self.spawn("postgres-old1", "old1", [f"{p.bin_dir}/postgres", "-D", str(data)], user="postgres")
        wait_until(lambda: run([f"{p.bin_dir}/pg_isready", "-h", str(sock)], host="old1", check=False).returncode == 0,
                   "the single server accepts connections")
        sql = self.root / "old1" / "harbor-role.sql"
        sql.write_text(render_harbor_role_sql(single, self.values["db_password"]))
        run(["psql", "-X", "-q", "-h", str(sock), "-v", "ON_ERROR_STOP=1", "-f", str(sql)], host="old1",
            user="postgres")
        self.old_socket = str(sock)

    def migrate_from_single(self, rows: int = 20_000) -> dict:
        """The move of docs/database-ha.md: a single server's data becomes the Patroni cluster's, nothing lost."""
        self.start_single_server()
        old = HOSTS["old1"]
        self._load(1, rows, server=old)
        expected = self.checksums(server=old)
        sql = self.root / "old1" / "migration.sql"
        sql.write_text(render_migration_sql(self.cfg, self.values))
        run(["psql", "-X", "-q", "-h", self.old_socket, "-v", "ON_ERROR_STOP=1", "-f", str(sql)], host="old1",
            user="postgres")
        t0 = time.monotonic()
        self.destroy_cluster()
        script = self.root / "migrate-db1.sh"
        script.write_text(render_migration_script(self.cfg, old, self.paths["db1"]))
        run(["bash", str(script)], host="db1", user="postgres",
            env={**os.environ, "PGPASSWORD": self.values["pg_replication_password"]}, timeout=600)
        self.stop("postgres-old1")  # Harbor's writes stopped before the copy; now nothing may write there again
        result = self._lead_from_db1(t0, expected)
        rejoin = self.superuser_sql("db1", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        return {**result, "replicas_streaming": int(rejoin.stdout.strip())}

    def _try_checksums(self):
        try:
            return self.checksums()
        except RuntimeError:
            return None

    # --- teardown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name, grace=15)
        down()


def restore_to(lab: DbLab, host: str, target: str) -> None:
    """The restore script scripts/restore.py runs (components/pgbackrest render_restore_script), in `host`'s
    namespace."""
    script = lab.root / f"restore-{host}.sh"
    script.write_text(render_restore_script(lab.cfg, lab.paths[host], target))
    os.chmod(script, 0o644)
    run(["bash", str(script)], host=host, user="postgres", timeout=3700)


def down() -> list[str]:
    """Kill every process in the lab's namespaces, delete them and the blackhole route (after a crash too)."""
    names = [line.split()[0] for line in netns_lab.ip("netns", "list").stdout.splitlines()
             if line.startswith(NS_PREFIX)]
    for name in names:
        for pid in netns_lab.ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    for name in names:
        netns_lab.ip("netns", "del", name, check=False)
    netns_lab.ip("route", "del", *netns_lab.blackhole(BLACKHOLE_METRIC), check=False)
    return names


def drills(workdir: Path, log: Callable[[str], None] = print) -> dict:
    """Build the lab, run every drill once, tear it down; the figures (see the module docstring)."""
    lab = DbLab(workdir, log)
    try:
        t0 = time.monotonic()
        lab.build()
        log(f"cluster built in {time.monotonic() - t0:.1f} s; leader {lab.leader()}")
        tls = {"built": lab.tls_check()}
        sync = lab.primary_death()
        log(f"postgres_primary_death (strict synchronous): {sync}")
        switches = [lab.switchover() for _ in range(SWITCHOVERS)]
        log(f"postgres_switchover (strict synchronous): {switches}")
        switch = max(switches, key=lambda r: r["write_gap_ms"])
        tls["after_failover_and_switchover"] = lab.tls_check()
        log(f"TLS: {tls}")
        lab.set_synchronous("off")
        async_ = lab.primary_death()
        log(f"postgres_primary_death (asynchronous): {async_}")
        restored = lab.restore()
        log(f"restore: {restored}")
        migrated = lab.migrate_from_single()
        log(f"migrate_from_single: {migrated}")
        return {
            "db_failover": {k: sync[k] for k in ("failover_ms", "lost_commits", "rejoined")},
            "db_failover_async": {k: async_[k] for k in ("failover_ms", "lost_commits", "rejoined")},
            "db_switchover": {"write_gap_ms": switch["write_gap_ms"],
                              "samples_ms": [r["write_gap_ms"] for r in switches]},
            "restore": {k: restored[k] for k in ("seconds", "identical", "rows")},
            "migration": {k: migrated[k] for k in ("seconds", "identical", "rows")},
            "details": {"settings": {"ttl": lab.cfg.patroni.ttl, "loop_wait": lab.cfg.patroni.loop_wait,
                                     "retry_timeout": lab.cfg.patroni.retry_timeout},
                        "failover_strict": sync, "failover_async": async_, "switchover": switch,
                        "switchovers": switches, "restore": restored, "migration": migrated, "tls": tls,
                        "total_seconds": round(time.monotonic() - t0, 1)},
        }
    finally:
        lab.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drills", help="build the lab, run every drill, tear down")
    d.add_argument("--json", required=True, help="where to write the figures")
    d.add_argument("--workdir", help="keep the lab's files and logs here (default: a temporary directory)")
    sub.add_parser("down", help="remove what a crashed run left")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    # A stopped run (timeout, kill) still tears the lab down: SystemExit runs drills()' finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.command == "down":
        print("removed:", " ".join(down()) or "nothing")
        return 0
    if args.workdir:
        result = drills(Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="dbha-lab-") as tmp:
            result = drills(Path(tmp))
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "details"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
