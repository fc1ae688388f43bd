#!/usr/bin/env python3
"""Watch the HA design work on one Linux machine: the rendered cluster in network namespaces (root required).

    sudo venv/bin/python labs/ha_lab.py up [--classic]    build the lab and start every service
    sudo venv/bin/python labs/ha_lab.py drill lb_crash    run one scenario (the lab must be up), print its figures
    sudo venv/bin/python labs/ha_lab.py down              stop everything, delete the namespaces (also after a crash)
    sudo venv/bin/python labs/ha_lab.py bench --json F    scenarios 1-4 with the classic recipe, then our defaults
    sudo venv/bin/python labs/ha_lab.py acme --json F     tls.mode acme against pebble: issuance, forced renewal,
                                                          a failover during renewal (builds and removes its own lab)

Hosts are network namespaces on one bridge, addressed in 198.18.0.0/15 (a blackhole route for that range sits in
the root namespace while the lab runs, so nothing addressed to it can leave the machine). Every service runs on
the files the program's own rendering code produces for a lab stack (components/*), never on hand-written copies:
- lb1, lb2: keepalived + nginx (each LB host in its own PID namespace too: a process check such as the classic
  recipe's `pgrep nginx` sees every process of its PID namespace, so with a shared one lb1 would count lb2's nginx
  as its own);
- node1, node2: the CNCF registry (Debian's docker-registry, Harbor's registry component) on one storage folder
  with one http.secret, standing in for the Harbor nodes behind the LB (its config.yml is the lab's own);
- data1: PostgreSQL (rendered conf and pg_hba), the Redis master and a sentinel; data2: the Redis replica and a
  sentinel; data3: a sentinel; client: where every request comes from.
State (namespaces, PIDs, logs, data) lives in --state-dir (default /run/harbor-ha-lab): `down` reads it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional
from collections.abc import Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: import the program, scripts and labs from the repository root

from components.config import ClusterConfig, parse_cluster_config  # noqa: E402
from components.keepalived import render_keepalived_conf, vrrp_roles  # noqa: E402
from components.loadbalancer import (NginxPaths, render_acme_authorized_key, render_acme_env,  # noqa: E402
                                     render_nginx_conf)
from components.postgres import render_harbor_role_sql, render_pg_hba, render_postgresql_conf  # noqa: E402
from components.redis import RedisPaths, render_redis_conf, render_sentinel_conf  # noqa: E402
from scripts import drills as ha_drills  # noqa: E402
from labs import certs as lab_certs  # noqa: E402
from labs import netns as netns_lab  # noqa: E402

DEFAULT_STATE = Path("/run/harbor-ha-lab")
LAB_RANGE = str(netns_lab.TEST_RANGE)
# The lab's own blackhole route: a metric of its own, so another user of the range (a parallel test run) can add and
# delete its route without touching this one.
# HA_LAB_NS_PREFIX / HA_LAB_BLACKHOLE_METRIC: a second lab beside a running one (each on its own bridge).
BLACKHOLE_METRIC = os.environ.get("HA_LAB_BLACKHOLE_METRIC", "1818")
NS_PREFIX = os.environ.get("HA_LAB_NS_PREFIX", "hl-")
SWITCH_NS = NS_PREFIX + "switch"
VIP = "198.18.0.10"
HOSTNAME = "harbor.lab.test"
HOSTS = {"lb1": "198.18.0.11", "lb2": "198.18.0.12", "node1": "198.18.0.21", "node2": "198.18.0.22",
         "data1": "198.18.0.31", "data2": "198.18.0.32", "data3": "198.18.0.33", "client": "198.18.0.100"}
CLUSTER_HOSTS = [h for h in HOSTS if h != "client"]

# The classic recipe, written in the program's own config keys so it goes through the same rendering code:
# keepalived's VRRPv2 with advert_int 1, a process check every 2 s lowering the priority by 20 (so the classic
# 101/100 priorities), no netlink process tracking; nginx's defaults for the upstreams (max_fails 1 and
# fail_timeout 10 s, connect timeout 60 s, no limit on the tries). fall/rise 1 are keepalived's defaults.
# `pgrep -x nginx` instead of the recipe's `killall -0 nginx`: the rendered config runs checks as `nobody`, and
# `kill -0` on root's nginx is EPERM for nobody, so killall reports nginx dead all the time. Not `pidof` either: on
# Debian it is a symlink to killall5, and run directly by keepalived it exited 1 every time in the lab (the same
# command through sh succeeded); pgrep is a plain binary that only reads /proc.
CLASSIC = {
    "keepalived": {"vrrpVersion": 2, "advertInt": 1, "checkCommand": "/usr/bin/pgrep -x nginx", "checkInterval": 2,
                   "checkFall": 1, "checkRise": 1, "checkWeight": -20, "trackProcess": False,
                   "priorityMaster": 101, "priorityBackup": 100},
    "loadBalancer": {"maxFails": 1, "failTimeout": 10, "connectTimeout": 60, "nextUpstreamTries": 0},
}
VARIANTS = ("classic", "defaults")
# tls.mode acme against pebble (Let's Encrypt's ACME test server) in the client namespace, with
# pebble-challtestsrv as its DNS: every name resolves to the VIP, so HTTP-01 goes to whichever LB holds it.
ACME_SCRIPT = ROOT / "components" / "loadbalancer" / "acme.sh"
PEBBLE_HOST = "client"
PEBBLE_DIR_URL = f"https://{HOSTS[PEBBLE_HOST]}:14000/dir"
ACME_VARIANTS = {"http-01": "acme", "dns-01": "acme-dns01"}  #: `acme --challenge`: the lab's variant
# The acmeDnsHook of the dns-01 variant: publishes and removes the TXT record through challtestsrv's management API
# (what an operator's hook does with their DNS provider's API), called by lego as `HOOK present|cleanup FQDN VALUE`.
CHALLTESTSRV_MANAGEMENT = f"http://{HOSTS[PEBBLE_HOST]}:8055"
# challtestsrv's DNS: pebble's resolver, and lego's (which looks up a CNAME of _acme-challenge.NAME before the hook).
CHALLTESTSRV_DNS = f"{HOSTS[PEBBLE_HOST]}:8053"
DNS_HOOK = r"""#!/bin/sh
set -eu
case "$1" in
  present) curl -fsS -d "{\"host\":\"$2\",\"value\":\"$3\"}" MANAGEMENT/set-txt ;;
  cleanup) curl -fsS -d "{\"host\":\"$2\"}" MANAGEMENT/clear-txt ;;
  *) echo "unknown hook call: $*" >&2; exit 1 ;;
esac
echo "$1 $2" >> "$0.calls"
""".replace("MANAGEMENT", CHALLTESTSRV_MANAGEMENT)

# PID 1 of an LB host's PID namespace: starts nginx and keepalived, then reaps every orphan (as init must) so a
# killed nginx does not linger as a zombie that keepalived's process scan would still count.
_LB_INIT = """
import json, os, subprocess, sys, time
for cmd in json.loads(sys.argv[1]):
    subprocess.Popen(cmd)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
"""


def lab_values(variant: str) -> dict:
    """The lab stack's `harbor-ha:*` values: defaults everywhere, or the classic recipe's keepalived/nginx."""
    values = {
        "hosts": [{"name": n, "address": HOSTS[n]} for n in CLUSTER_HOSTS],
        "network": {"prefixLength": 24},
        "roles": {"nfs": "data1", "postgres": "data1", "redis": ["data1", "data2"],
                  "sentinels": ["data1", "data2", "data3"], "harborNodes": ["node1", "node2"],
                  "loadBalancers": ["lb1", "lb2"]},
        "vip": {"address": VIP},
        "harbor": {"hostname": HOSTNAME},
    }
    if variant == "classic":
        values.update(CLASSIC)
    else:
        if variant in ACME_VARIANTS.values():
            values["tls"] = {"mode": "acme", "acme": {"directoryUrl": PEBBLE_DIR_URL, "email": "lab@harbor.lab.test"}}
            if variant == "acme-dns01":
                # challtestsrv answers no SOA query, so lego cannot find the zone's authoritative servers to ask.
                values["tls"]["acme"].update(challenge="dns-01", dnsResolvers=[CHALLTESTSRV_DNS],
                                             dnsPropagationCheck=False)
        # Lab limitation: keepalived's track_process listens to the kernel's process events (the netlink proc
        # connector), which only exists in the initial network namespace: inside `ip netns exec` the subscription
        # fails with ECONNREFUSED and keepalived holds the instance in FAULT for good. So the lab's "defaults"
        # run without it and nginx's death is caught by the curl health check alone (1 s interval, fall 1).
        values["keepalived"] = {"trackProcess": False}
    return values


def lab_config(variant: str) -> ClusterConfig:
    return parse_cluster_config(lab_values(variant),
                                secrets_present=("acmeDnsHook",) if variant == "acme-dns01" else ())


def ns(host: str) -> str:
    return NS_PREFIX + host


# --------------------------------------------------------------------------------------------------------------
# Processes: recorded with their start time, so a recycled PID is never signalled
# --------------------------------------------------------------------------------------------------------------

def _start_time(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(rec: dict) -> bool:
    return _start_time(rec["pid"]) == rec["start"]


def stop_process(rec: dict, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Signal one recorded process, wait for it (bounded), SIGKILL it if it outlives the grace period."""
    for s, wait in ((sig, grace), (signal.SIGKILL, 5.0)):
        if not alive(rec):
            return
        try:
            os.kill(rec["pid"], s)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while alive(rec) and time.monotonic() < end:
            time.sleep(0.02)
    if alive(rec):
        raise RuntimeError(f"process {rec['pid']} survived SIGKILL")


def pid_ns_members(init_pid: int) -> list[tuple[int, str, int]]:
    """(pid, comm, ppid) of every live process in the PID namespace whose init is `init_pid`."""
    try:
        target = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != target:
                continue
            with open(f"/proc/{entry}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            fields = tail.split()
            if fields[0] not in ("Z", "X"):
                out.append((int(entry), head.split("(", 1)[1], int(fields[1])))
        except OSError:
            continue
    return out


def processes_in_netns(names: Sequence[str]) -> list[int]:
    """PIDs of the live processes whose network namespace is one of the named ones."""
    links = set()
    for name in names:
        try:
            links.add(f"net:[{os.stat(f'/run/netns/{name}').st_ino}]")
        except OSError:
            continue
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") in links and _start_time(int(entry)) is not None:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


# --------------------------------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------------------------------

def run(*argv: str, check: bool = True, env: Optional[dict] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-2000:]}")
    return r


class Lab:
    """The lab's state folder: state.json (namespaces, route, processes) plus one folder per host."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.file = self.dir / "state.json"
        self.state: dict = json.loads(self.file.read_text()) if self.file.exists() else {}

    # --- state ---------------------------------------------------------------------------------------------
    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.file)

    @property
    def is_up(self) -> bool:
        return bool(self.state.get("namespaces") or self.state.get("procs"))

    @property
    def variant(self) -> str:
        return self.state["variant"]

    @property
    def cfg(self) -> ClusterConfig:
        return lab_config(self.variant)

    def host_dir(self, host: str) -> Path:
        d = self.dir / host
        d.mkdir(mode=0o755, exist_ok=True)
        return d

    def secret(self, name: str) -> str:
        return json.loads((self.dir / "secrets.json").read_text())[name]

    def record(self, name: str, pid: int) -> dict:
        start = None
        for _ in range(100):
            start = _start_time(pid)
            if start is not None:
                break
            time.sleep(0.01)
        rec = {"pid": pid, "start": start}
        self.state.setdefault("procs", {})[name] = rec
        self.save()
        return rec

    def spawn(self, name: str, host: str, argv: Sequence[str], env: Optional[dict] = None) -> dict:
        """Start a long-running service in a host's namespace, detached, output to <host>/<name>.log."""
        with open(self.host_dir(host) / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(["ip", "netns", "exec", ns(host), *argv], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
        return self.record(name, proc.pid)

    # --- up ------------------------------------------------------------------------------------------------
    def up(self, variant: str) -> None:
        if self.is_up:
            raise SystemExit(f"the lab is already up (state in {self.dir}); run `down` first")
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # PostgreSQL runs as postgres and must reach its folder below
        self.state = {"variant": variant, "namespaces": [], "blackhole": False, "procs": {}}
        self.save()
        cfg = lab_config(variant)
        self._network()
        self._secrets_and_tls(cfg)
        for node in cfg.harbor_nodes:
            self.start_registry(node.name)
        self._postgres(cfg)
        self._redis(cfg)
        if cfg.tls.acme:
            self.start_pebble()
        for role in vrrp_roles(cfg):
            self.start_lb(role.host.name)
        self.wait_vip_on(cfg.lb_hosts[0].name, 20)
        self.wait_serving(20)
        probe = ha_drills.run_client(self.site(), ["blob", VIP, "--repo", ha_drills.PROBE_REPO])
        self.state["probe_blob"] = probe["digest"]
        self.save()
        self.wait_serving(20)

    def _network(self) -> None:
        # Each name is recorded before it is created: `down` (maybe another process) deletes what exists.
        self.state["blackhole"] = True
        self.save()
        run("ip", "route", "replace", *netns_lab.blackhole(BLACKHOLE_METRIC))
        prefix = lab_config("defaults").prefix_length
        self.state["namespaces"].append(SWITCH_NS)
        self.save()
        netns_lab.add_bridge(SWITCH_NS)
        for host, address in HOSTS.items():
            self.state["namespaces"].append(ns(host))
            self.save()
            netns_lab.add_host(SWITCH_NS, ns(host), f"p-{host}", address, prefix)

    def _secrets_and_tls(self, cfg: ClusterConfig) -> None:
        values = {
            "redis_password": secrets.token_urlsafe(24),
            "db_password": secrets.token_urlsafe(24),
            "registry_http_secret": secrets.token_urlsafe(32),
            # VRRPv2 PASS authentication is 8 characters at most.
            "vrrp_auth_pass": secrets.token_hex(4),
        }
        fd = os.open(self.dir / "secrets.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(values, f)
        # The lab's own CA: the client trusts it (HA_CA_PEM) and verifies the LB like a real client would.
        ca, cert, key = lab_certs.ca_and_server(cfg.harbor.hostname, [cfg.harbor.hostname, cfg.vip])
        (self.dir / "ca.crt").write_bytes(ca)
        for lb in cfg.lb_hosts:
            tls = self.host_dir(lb.name) / "tls"
            tls.mkdir(mode=0o755, exist_ok=True)
            (tls / "harbor.crt").write_bytes(cert)
            write_private(str(tls / "harbor.key"), key.decode())
        # The cluster CA (components/secrets.py): the LB verifies the nodes with it, psql verifies PostgreSQL.
        cluster = lab_certs.cluster_tls(cfg)
        (self.dir / "cluster-ca.crt").write_bytes(cluster["ca"])
        for lb in cfg.lb_hosts:
            (self.host_dir(lb.name) / "tls" / "upstream-ca.crt").write_bytes(cluster["ca"])
        for node in cfg.harbor_nodes:
            (self.host_dir(node.name) / "node.crt").write_bytes(cluster["node_cert"])
            write_private(str(self.host_dir(node.name) / "node.key"), cluster["node_key"].decode())
        pg = self.host_dir(cfg.postgres_host.name)
        (pg / "server.crt").write_bytes(cluster["postgres_cert"])
        write_private(str(pg / "server.key"), cluster["postgres_key"].decode())
        shutil.chown(pg / "server.key", "postgres", "postgres")

    def start_registry(self, host: str) -> None:
        """The CNCF registry on a node: one storage folder and one http.secret for both nodes."""
        cfg = self.cfg
        storage = self.dir / "registry-storage"
        storage.mkdir(mode=0o755, exist_ok=True)
        conf = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            # TLS with the cluster CA's node certificate on Harbor's https port, as Harbor's own nginx serves it.
            "http": {"addr": f"{HOSTS[host]}:{cfg.harbor.https_port}", "secret": self.secret("registry_http_secret"),
                     "tls": {"certificate": str(self.host_dir(host) / "node.crt"),
                             "key": str(self.host_dir(host) / "node.key")},
                     # tells the drills which node answered (scripts/drills/ha_client.py NODE_HEADER)
                     "headers": {"X-Lab-Node": [host]}},
        }
        path = self.host_dir(host) / "registry.yml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(conf, f)  # JSON is YAML
        self.spawn(f"registry-{host}", host, ["docker-registry", "serve", str(path)])

    def _postgres(self, cfg: ClusterConfig) -> None:
        """PostgreSQL with the rendered conf.d drop-in and pg_hba.conf, then the rendered role/database SQL."""
        host = cfg.postgres_host.name
        d = self.host_dir(host)
        data, sock = d / "pgdata", d / "pg"  # pg: postgres-owned, for its socket and log
        for folder, mode in ((sock, 0o755), (data, 0o700)):
            folder.mkdir(mode=mode, exist_ok=True)
            shutil.chown(folder, "postgres", "postgres")
        bindir = f"/usr/lib/postgresql/{cfg.postgres.version}/bin"
        run("runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", str(data), "--auth-host=scram-sha-256")
        tls = (str(d / "server.crt"), str(d / "server.key"))
        (d / "harbor-ha.conf").write_text(render_postgresql_conf(cfg, tls=tls))
        (d / "pg_hba.conf").write_text(render_pg_hba(cfg))
        (d / "lab.conf").write_text(f"unix_socket_directories = '{sock}'\nhba_file = '{d / 'pg_hba.conf'}'\n")
        with open(data / "postgresql.conf", "a") as f:
            f.write(f"include '{d / 'harbor-ha.conf'}'\ninclude '{d / 'lab.conf'}'\n")
        run("ip", "netns", "exec", ns(host), "runuser", "-u", "postgres", "--", f"{bindir}/pg_ctl", "-D", str(data),
            "-l", str(sock / "postgres.log"), "-w", "-t", "30", "start")
        self.record("postgres", int((data / "postmaster.pid").read_text().split()[0]))
        sql = d / "harbor-role.sql"
        fd = os.open(sql, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(render_harbor_role_sql(cfg, self.secret("db_password")))
        shutil.chown(sql, "postgres", "postgres")
        run("ip", "netns", "exec", ns(host), "runuser", "-u", "postgres", "--", "psql", "-h", str(sock),
            "-p", str(cfg.postgres.port), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(sql))

    def psql_as_harbor(self, from_host: str) -> subprocess.CompletedProcess:
        """`SELECT 1` as Harbor's user over TCP from a host (the password in PGPASSWORD, not on the command line)."""
        cfg = self.cfg
        dsn = (f"host={cfg.postgres_host.address} port={cfg.postgres.port} dbname={cfg.postgres.database} "
               f"user={cfg.postgres.user} connect_timeout=5 sslmode=verify-full "
               f"sslrootcert={self.dir / 'cluster-ca.crt'}")
        env = {**os.environ, "PGPASSWORD": self.secret("db_password")}
        return run("ip", "netns", "exec", ns(from_host), "psql", dsn, "-tAc", "SELECT 1", check=False, env=env)

    def redis_paths(self, host: str) -> RedisPaths:
        d = self.host_dir(host)
        return RedisPaths(conf=str(d / "redis.conf"), sentinel_conf=str(d / "sentinel.conf"), run_dir=str(d),
                          sentinel_run_dir=str(d), data_dir=str(d), log_file=str(d / "redis-server.log"),
                          sentinel_log_file=str(d / "redis-sentinel.log"))

    def start_redis(self, host: str) -> None:
        cfg, paths = self.cfg, self.redis_paths(host)
        write_private(paths.conf, render_redis_conf(cfg, cfg.host(host), self.secret("redis_password"), paths))
        self.spawn(f"redis-{host}", host, ["redis-server", paths.conf])

    def _redis(self, cfg: ClusterConfig) -> None:
        for h in cfg.redis_hosts:
            self.start_redis(h.name)
        for h in cfg.sentinel_hosts:
            paths = self.redis_paths(h.name)
            write_private(paths.sentinel_conf, render_sentinel_conf(cfg, h, self.secret("redis_password"), paths))
            self.spawn(f"sentinel-{h.name}", h.name, ["redis-sentinel", paths.sentinel_conf])
        self.wait_sentinels_ready(cfg, 60)

    def sentinel(self, cfg: ClusterConfig, *command: str) -> list[str]:
        """A command to the first sentinel, from its own namespace (sentinels take no password)."""
        h = cfg.sentinel_hosts[0]
        return run("ip", "netns", "exec", ns(h.name), "redis-cli", "-h", h.address, "-p",
                   str(cfg.redis.sentinel_port), *command, check=False).stdout.split()

    def restore_redis_master(self, cfg: ClusterConfig, timeout: float) -> None:
        """Back to the starting point after a Redis drill: the first Redis host is master again."""
        first, end = cfg.redis_hosts[0].address, time.monotonic() + timeout
        self.wait_sentinels_ready(cfg, timeout)
        while self.sentinel(cfg, "SENTINEL", "get-master-addr-by-name", cfg.redis.master_set)[:1] != [first]:
            if time.monotonic() > end:
                raise RuntimeError(f"the sentinels did not make {first} master again in {timeout} s")
            # Refused while a failover is in progress or the restarted node is not synced yet: ask again.
            self.sentinel(cfg, "SENTINEL", "failover", cfg.redis.master_set)
            time.sleep(1)
        self.wait_sentinels_ready(cfg, max(end - time.monotonic(), 10))

    def wait_sentinels_ready(self, cfg: ClusterConfig, timeout: float) -> None:
        """Every sentinel knows the replicas and the other sentinels: before that, a dead master is never failed
        over (a sentinel learns replicas from the master's INFO, every 10 s, and peers from hellos, every 2 s)."""
        want = {"num-slaves": len(cfg.redis_hosts) - 1, "num-other-sentinels": len(cfg.sentinel_hosts) - 1}
        end, seen = time.monotonic() + timeout, {}
        while time.monotonic() < end:
            for h in cfg.sentinel_hosts:
                out = run("ip", "netns", "exec", ns(h.name), "redis-cli", "-h", h.address, "-p",
                          str(cfg.redis.sentinel_port), "SENTINEL", "master", cfg.redis.master_set, check=False)
                fields = out.stdout.split()
                info = dict(zip(fields[::2], fields[1::2], strict=False))
                seen[h.name] = {k: info.get(k) for k in want}
            if all(v == {k: str(n) for k, n in want.items()} for v in seen.values()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the sentinels did not find each other and the replicas in {timeout} s: {seen}")

    def start_lb(self, host: str) -> None:
        """keepalived + nginx of one LB host in their own PID namespace (see the module docstring)."""
        cfg = self.cfg
        role = next(r for r in vrrp_roles(cfg) if r.host.name == host)
        d = self.host_dir(host)
        (d / "log").mkdir(exist_ok=True)
        paths = self.nginx_paths(host)
        (d / "nginx.conf").write_text(render_nginx_conf(cfg, role.host, paths))
        if cfg.tls.acme:
            self.acme_files(host)
            run("bash", str(ACME_SCRIPT), "bootstrap", env={**os.environ, "ACME_ENV": str(d / "acme.env")})
        auth = self.secret("vrrp_auth_pass") if cfg.vrrp.vrrp_version == 2 else None
        write_private(str(d / "keepalived.conf"), render_keepalived_conf(cfg, role, auth))
        # A SIGKILLed keepalived leaves its pid files; on restart it would read a live PID there and refuse to run.
        for stale in ("keepalived.pid", "vrrp.pid", "checkers.pid", "nginx.pid"):
            (d / stale).unlink(missing_ok=True)
        # nginx listens on the VIP, which only the master holds.
        run("ip", "netns", "exec", ns(host), "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
        commands = [
            ["nginx", "-c", paths.conf, "-g", "daemon off;"],
            ["keepalived", "-n", "-l", "-D", "-P", "-f", str(d / "keepalived.conf"), "-p", str(d / "keepalived.pid"),
             "-r", str(d / "vrrp.pid"), "-c", str(d / "checkers.pid")],
        ]
        rec = self.spawn(f"lb-{host}", host, ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                                              _LB_INIT, json.dumps(commands)])
        # unshare forks the namespace's init; that child is what the drills look into.
        for _ in range(200):
            try:
                children = Path(f"/proc/{rec['pid']}/task/{rec['pid']}/children").read_text().split()
            except OSError:
                children = []
            if children:
                self.record(f"lbinit-{host}", int(children[0]))
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"the PID namespace of {host} did not start (see {d}/lb-{host}.log)")
        self.wait_lb_processes(host, 10)

    def nginx_paths(self, host: str) -> NginxPaths:
        d = self.host_dir(host)
        return NginxPaths(tls_dir=str(d / "tls"), pid=str(d / "nginx.pid"), log_dir=str(d / "log"),
                          conf=str(d / "nginx.conf"), acme_dir=str(d / "acme"),
                          acme_webroot=str(d / "acme" / "webroot"),
                          authorized_keys=str(d / "ssh" / "authorized_keys"))

    # --- tls.mode acme ---------------------------------------------------------------------------------------
    def start_pebble(self) -> None:
        """pebble and its DNS (pebble-challtestsrv) in the client namespace; pebble's HTTPS has a lab CA."""
        d = self.host_dir(PEBBLE_HOST)
        ca, cert, key = lab_certs.ca_and_server("pebble", [HOSTS[PEBBLE_HOST]])
        (d / "pebble-https-ca.crt").write_bytes(ca)
        (d / "pebble.crt").write_bytes(cert)
        write_private(str(d / "pebble.key"), key.decode())
        (d / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"{HOSTS[PEBBLE_HOST]}:14000", "managementListenAddress": "127.0.0.1:15000",
            "certificate": str(d / "pebble.crt"), "privateKey": str(d / "pebble.key"),
            "httpPort": self.cfg.lb.http_port, "tlsPort": self.cfg.lb.https_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}))
        self.spawn("challtestsrv", PEBBLE_HOST, ["pebble-challtestsrv", "-defaultIPv4", VIP, "-defaultIPv6", "",
                                                 "-dns01", CHALLTESTSRV_DNS, "-http01", "", "-https01", "",
                                                 "-tlsalpn01", "", "-management",
                                                 CHALLTESTSRV_MANAGEMENT.removeprefix("http://")])
        # PEBBLE_VA_NOSLEEP: validate at once (pebble otherwise waits up to 15 s); no nonce rejections, no
        # authorization reuse: every order is validated over HTTP-01 again, as a renewal would be after 30 days.
        self.spawn("pebble", PEBBLE_HOST, ["pebble", "-config", str(d / "pebble.json"), "-dnsserver",
                                           CHALLTESTSRV_DNS],
                   env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                        "PEBBLE_AUTHZREUSE": "0"})
        end = time.monotonic() + 30
        while run("ip", "netns", "exec", ns(PEBBLE_HOST), "curl", "-fsS", "-o", "/dev/null", "--cacert",
                  str(d / "pebble-https-ca.crt"), PEBBLE_DIR_URL, check=False).returncode:
            if time.monotonic() > end:
                raise RuntimeError(f"pebble does not answer on {PEBBLE_DIR_URL} after 30 s (see {d}/pebble.log)")
            time.sleep(0.3)

    def acme_files(self, host: str) -> None:
        """The files components/loadbalancer/ renders for tls.mode acme, on the lab's paths; the ACME server's CA
        is pebble's lab CA (made by start_pebble)."""
        cfg, d = self.cfg, self.host_dir(host)
        pem = (self.host_dir(PEBBLE_HOST) / "pebble-https-ca.crt").read_text()
        assert cfg.tls.acme is not None
        cfg = dataclasses.replace(cfg, tls=dataclasses.replace(
            cfg.tls, acme=dataclasses.replace(cfg.tls.acme, ca_certificate=pem)))
        paths = self.nginx_paths(host)
        lb = next(h for h in cfg.lb_hosts if h.name == host)
        # nginx's workers (www-data) reach webroot/ through both (mkdir's mode is cut by the umask).
        Path(paths.acme_dir).mkdir(exist_ok=True)
        for folder in (d, Path(paths.acme_dir)):
            os.chmod(folder, 0o755)
        (d / "acme.env").write_text(render_acme_env(cfg, lb, paths))
        (Path(paths.acme_dir) / "server-ca.crt").write_text(pem)
        if cfg.tls.acme.challenge == "dns-01":
            hook = Path(paths.acme_dir) / "dns-hook"
            hook.write_text(DNS_HOOK)
            hook.chmod(0o700)
        # Stand-in for the push key (the lab's push runs through lab_ssh, not sshd): rendered as the host gets it.
        (Path(paths.acme_dir) / "authorized_key").write_text(
            render_acme_authorized_key(cfg, lb, "ssh-ed25519 AAAAlab lab", str(ACME_SCRIPT)))

    def lb_exec(self, host: str) -> list[str]:
        """The prefix that runs a command on an LB host: its network and PID namespaces (nginx's pid file holds the
        PID in its PID namespace, so `nginx -s reload` must signal from there). Not its mount namespace: /proc stays
        the machine's, where the lab_ssh stand-in finds the peer's namespaces."""
        init = self.state["procs"][f"lbinit-{host}"]["pid"]
        return ["nsenter", "-t", str(init), "--net", "--pid", "--"]

    def acme_env(self, host: str) -> dict[str, str]:
        """acme.sh's environment on an LB host: its `ssh` to the peer is labs/lab_ssh/ssh (see push_relay)."""
        return {**os.environ, "ACME_ENV": str(self.host_dir(host) / "acme.env"),
                "HA_LAB_PUSH_RELAY": str(self.dir / "push-relay.sock"),
                "PATH": f"{ROOT / 'labs' / 'lab_ssh'}:{os.environ['PATH']}"}

    @contextlib.contextmanager
    def push_relay(self) -> Iterator[None]:
        """Stand-in for sshd on the LB hosts while it runs: a connection to push-relay.sock names the peer's
        address and carries the push; `acme.sh receive` runs in that LB host's namespaces; the answer is its exit
        status, a newline and its stdout. A peer whose LB is down (no PID namespace) answers 255, as ssh would."""
        path = self.dir / "push-relay.sock"
        path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(2)
        server.settimeout(0.2)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(120)
                    data = b""
                    while chunk := conn.recv(65536):
                        data += chunk
                    address, _, tar = data.partition(b"\n")
                    host = next((h.name for h in self.cfg.lb_hosts if h.address == address.decode()), None)
                    init = self.state["procs"].get(f"lbinit-{host}") if host else None
                    if host is None or not init or not alive(init):
                        conn.sendall(b"255\n")
                        continue
                    r = subprocess.run([*self.lb_exec(host), "bash", str(ACME_SCRIPT), "receive"], input=tar,
                                       capture_output=True, timeout=120, check=False,
                                       env={**os.environ, "ACME_ENV": str(self.host_dir(host) / "acme.env")})
                    with open(self.host_dir(host) / "acme-receive.log", "ab") as log:
                        log.write(r.stderr)
                    conn.sendall(f"{r.returncode}\n".encode() + r.stdout)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)
            server.close()
            path.unlink(missing_ok=True)

    def acme(self, host: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """components/loadbalancer/acme.sh on an LB host (see acme_env)."""
        return run(*self.lb_exec(host), "bash", str(ACME_SCRIPT), *args, env=self.acme_env(host), check=False,
                   timeout=timeout)

    def served_certificate(self) -> str:
        """The serial of the certificate the VIP serves, as a client sees it (chain checked against pebble's root)."""
        d = self.host_dir(PEBBLE_HOST)
        root = run("ip", "netns", "exec", ns(PEBBLE_HOST), "curl", "-fsS", "--cacert", str(d / "pebble-https-ca.crt"),
                   "https://127.0.0.1:15000/roots/0", "--resolve", "127.0.0.1:15000:127.0.0.1", "-k").stdout
        (d / "pebble-root.crt").write_text(root)
        cfg = self.cfg
        out = subprocess.run(["ip", "netns", "exec", ns(PEBBLE_HOST), "openssl", "s_client", "-connect",
                              f"{VIP}:{cfg.lb.https_port}", "-servername", cfg.harbor.hostname,
                              "-CAfile", str(d / "pebble-root.crt"), "-verify_hostname", cfg.harbor.hostname],
                             input="", capture_output=True, text=True, timeout=20, check=False).stdout
        pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25] \
            if "-----BEGIN CERTIFICATE-----" in out else ""
        if "Verify return code: 0 (ok)" not in out or not pem:
            raise RuntimeError(f"the VIP's certificate does not verify against pebble's root: {out[-600:]}")
        return cert_serial(pem)

    def live_serial(self, host: str) -> str:
        return cert_serial((Path(self.nginx_paths(host).live_dir) / "harbor.crt").read_text())

    def lb_processes(self, host: str, comm: str) -> list[tuple[int, str, int]]:
        init = self.state["procs"][f"lbinit-{host}"]
        if not alive(init):
            return []
        return [p for p in pid_ns_members(init["pid"]) if p[1] == comm]

    def wait_lb_processes(self, host: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.lb_processes(host, "nginx") and len(self.lb_processes(host, "keepalived")) >= 2:
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx/keepalived did not start on {host} (see {self.dir / host})")

    def stop_lb(self, host: str) -> None:
        """SIGKILL to the PID namespace's init takes every process in it down; then unshare exits."""
        procs = self.state["procs"]
        for name in (f"lbinit-{host}", f"lb-{host}"):
            if name in procs:
                stop_process(procs[name], signal.SIGKILL)

    # --- observation ---------------------------------------------------------------------------------------
    def site(self) -> LabSite:
        return LabSite(self)

    def wait_vip_on(self, host: str, timeout: float) -> None:
        site, end = self.site(), time.monotonic() + timeout
        while time.monotonic() < end:
            if site.vip_holders() == [host]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the VIP is not on {host} alone after {timeout} s: {site.vip_holders()}")

    def wait_serving(self, timeout: float) -> None:
        """The VIP answers /v2/; once the probe blob exists, both registry nodes answer through it too."""
        blob = self.state.get("probe_blob")
        # Only successful answers carry the registry's X-Lab-Node header, so the nodes are told apart once there
        # is a blob to GET; nginx's round robin then reaches both within a short burst.
        want = {h.name for h in self.cfg.harbor_nodes} if blob else set()
        end, seen = time.monotonic() + timeout, set()
        while time.monotonic() < end:
            out = ha_drills.run_client(self.site(), ["stream", VIP, "--count", "6", "--period", "0.05",
                                                     "--timeout", "2", "--repo", ha_drills.PROBE_REPO,
                                                     "--blob", blob or "none"])
            seen = {r.get("node") for r in out["requests"] if r["ok"]}
            if out["requests"][0]["ok"] and seen >= want:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the registry nodes do not all answer through the VIP (answered: {seen})")

    # --- down ----------------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop every recorded process by PID, delete the namespaces and the route, remove the state folder."""
        problems = []
        procs = self.state.get("procs", {})
        order = sorted(procs, key=lambda n: (not n.startswith("lbinit-"), n == "postgres"))
        for name in order:
            # PostgreSQL: SIGINT is its fast shutdown (SIGTERM waits for clients to leave).
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            try:
                stop_process(procs[name], sig)
            except RuntimeError as e:
                problems.append(f"{name}: {e}")
        listed = run("ip", "netns", "list").stdout
        mine = [n for n in self.state.get("namespaces", [])
                if any(line.split()[0] == n for line in listed.splitlines() if line.strip())]
        # A crash of `up` between starting a process and recording it leaves it unrecorded: whatever still runs
        # in the lab's namespaces is found by its network namespace and stopped by PID too.
        for pid in processes_in_netns(mine):
            try:
                stop_process({"pid": pid, "start": _start_time(pid)}, signal.SIGKILL)
            except RuntimeError as e:
                problems.append(f"process {pid} in the lab's namespaces: {e}")
        for name in reversed(self.state.get("namespaces", [])):
            if name in mine:
                r = run("ip", "netns", "del", name, check=False)
                if r.returncode:
                    problems.append(f"ip netns del {name}: {r.stderr.strip()}")
        if self.state.get("blackhole"):
            r = run("ip", "route", "del", *netns_lab.blackhole(BLACKHOLE_METRIC), check=False)
            if r.returncode and "No such process" not in r.stderr:
                problems.append(f"ip route del blackhole {LAB_RANGE}: {r.stderr.strip()}")
        if not problems and self.dir.exists():
            shutil.rmtree(self.dir)
            self.state = {}
        return problems

    # --- drills --------------------------------------------------------------------------------------------
    def fault(self, scenario: str) -> Callable[[], float]:
        """The fault of an LB scenario or of redis_master_death: strikes when called, returns the epoch it struck."""
        cfg, procs = self.cfg, self.state["procs"]
        master = cfg.lb_hosts[0].name

        def kill_all(host: str, comms: Sequence[str]) -> float:
            """SIGKILL, as a crash: every victim is frozen first. Killed one by one, keepalived's VRRP child outlives
            its parent by a moment and shuts down gracefully (its log says "sent 0 priority"), handing the VIP
            over at once as a crashed host never does."""
            victims = [p for c in comms for p in self.lb_processes(host, c)]
            if not victims:
                raise RuntimeError(f"nothing to kill on {host}: no {'/'.join(comms)} process")
            t = time.time()
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid, _comm, _ppid in victims:
                    # An old nginx worker finishing after a reload (the ACME drill's) may be gone by now.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            return t

        def lb_crash() -> float:
            t = kill_all(master, ("keepalived", "nginx"))
            # A dead host's addresses go with it; a SIGKILLed keepalived leaves the VIP configured.
            run("ip", "-n", ns(master), "addr", "del", f"{cfg.vip}/{cfg.prefix_length}", "dev",
                cfg.vrrp.interface, check=False)
            return t

        def keepalived_stop() -> float:
            init = procs[f"lbinit-{master}"]["pid"]
            main = [p for p in self.lb_processes(master, "keepalived") if p[2] == init]
            t = time.time()
            os.kill(main[0][0], signal.SIGTERM)
            return t

        def kill_recorded(name: str) -> Callable[[], float]:
            def strike() -> float:
                t = time.time()
                os.kill(procs[name]["pid"], signal.SIGKILL)
                return t
            return strike

        return {"lb_crash": lb_crash, "nginx_death": lambda: kill_all(master, ("nginx",)),
                "keepalived_stop": keepalived_stop,
                "node_death": kill_recorded(f"registry-{cfg.harbor_nodes[0].name}"),
                "redis_master_death": kill_recorded(f"redis-{cfg.redis_hosts[0].name}")}[scenario]

    def acme_drill(self) -> dict:
        """tls.mode acme against pebble: issuance by the VIP holder, pushed to the other LB; a forced renewal served
        by both LBs (through the VIP, before and after moving it); a renewal interrupted by a failover, completed by
        the new holder, which pushes to the old one once it is back."""
        cfg = self.cfg
        first, second = (h.name for h in cfg.lb_hosts)
        result: dict = {}

        def renew(host: str, *args: str) -> None:
            r = self.acme(host, "renew", *args)
            if r.returncode:
                raise RuntimeError(f"acme.sh renew {' '.join(args)} on {host} failed: {r.stderr[-2000:]}")

        def crash() -> None:
            """`first` crashes (nginx and keepalived SIGKILLed, its VIP gone with it); `second` takes the VIP."""
            self.fault("lb_crash")()
            self.wait_vip_on(second, 20)

        def restart() -> None:
            self.stop_lb(first)
            self.start_lb(first)
            self.wait_vip_on(first, 30)

        def served_by_both() -> str:
            """Served through the VIP by `first`, then by `second` (VIP moved by stopping `first`'s LB)."""
            by_first = self.served_certificate()
            crash()
            by_second = self.served_certificate()
            restart()
            if by_first != by_second:
                raise RuntimeError(f"{first} serves {by_first}, {second} serves {by_second}")
            return by_first

        self.wait_vip_on(first, 20)
        renew(first)
        issued = self.live_serial(first)
        result["issued"] = issued == self.live_serial(second) == served_by_both()
        result["issued_serial"] = issued
        renew(first, "--force")
        renewed = self.live_serial(first)
        result["renewed_serial"] = renewed
        result["renewed_on_both_lbs"] = renewed != issued and renewed == self.live_serial(second) == served_by_both()
        # A failover while the holder renews: its order fails or completes; either way the new holder renews (its
        # copy of lego's folder has the account) and serves the result; the old holder gets it when it is back.
        r = subprocess.Popen([*self.lb_exec(first), "bash", str(ACME_SCRIPT), "renew", "--force"],
                             env=self.acme_env(first),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        crash()
        interrupted_rc = r.wait(timeout=180)
        result["interrupted_renewal_rc"] = interrupted_rc
        # lb1 is down: lb2's push fails (exit 1, "could not push"), as its timer's run would; lb2 serves the new one.
        r2 = self.acme(second, "renew", "--force")
        if r2.returncode and "could not push" not in r2.stderr:
            raise RuntimeError(f"acme.sh renew --force on {second} failed: {r2.stderr[-2000:]}")
        after = self.live_serial(second)
        served = self.served_certificate()
        restart()
        # lb1 holds the VIP again (higher priority) with the older certificate: its next timer run pushes it, lb2
        # answers with its newer one, and lb1 adopts that (acme.sh push_to_peer).
        renew(first)
        result["renewal_during_failover"] = (after not in (renewed, issued) and served == after
                                             and self.live_serial(first) == self.live_serial(second))
        result["final_serial"] = self.live_serial(first)
        # dns-01: each order's TXT record as the hook published it (lab DNS_HOOK's record of its calls)
        result["challenge"] = cfg.tls.acme.challenge if cfg.tls.acme else None
        result["dns_hook_presents"] = sum(
            (Path(self.nginx_paths(h.name).acme_dir) / "dns-hook.calls").read_text().count("present ")
            for h in cfg.lb_hosts if (Path(self.nginx_paths(h.name).acme_dir) / "dns-hook.calls").exists())
        return result

    def drill(self, scenario: str) -> dict:
        site, cfg = self.site(), self.cfg
        procs = self.state["procs"]
        if scenario in ha_drills.LB_SCENARIOS:
            try:
                r = ha_drills.stream_drill(site, self.fault(scenario), self.state["probe_blob"],
                                           expect_move=scenario != "node_death")
            finally:
                self.heal()
            return {"scenario": scenario, "variant": self.variant, **r.summary(), "max_ms": r.max_ms,
                    "failures": r.failures}
        if scenario == "redis_master_death":
            old = cfg.redis_hosts[0]
            sentinels = [f"{h.address}:{cfg.redis.sentinel_port}" for h in cfg.sentinel_hosts]
            try:
                r = ha_drills.redis_drill(site, sentinels, cfg.redis.master_set, f"{old.address}:{cfg.redis.port}",
                                          self.secret("redis_password"), self.fault(scenario),
                                          duration=cfg.redis.down_after_ms / 1000 + 30)
            finally:
                self.heal()
            return {"scenario": scenario, "variant": self.variant, "down_after_ms": cfg.redis.down_after_ms, **r}
        if scenario == "data_path":
            try:
                # heal_node: nothing until the pull is done; heal() below restarts the node.
                r = ha_drills.data_path_drill(
                    site, [h.name for h in cfg.harbor_nodes],
                    lambda node: stop_process(procs[f"registry-{node}"], signal.SIGKILL), lambda node: None)
            finally:
                self.heal()
            return {"scenario": scenario, "variant": self.variant, **r}
        raise SystemExit(f"unknown scenario {scenario!r} (known: {', '.join(ha_drills.SCENARIOS)})")

    def heal(self) -> None:
        """Bring back whatever a drill killed, and wait for the lab's starting point (VIP on the first LB host)."""
        cfg, procs = self.cfg, self.state["procs"]
        for node in cfg.harbor_nodes:
            if not alive(procs[f"registry-{node.name}"]):
                self.start_registry(node.name)
        for h in cfg.redis_hosts:
            if not alive(procs[f"redis-{h.name}"]):
                self.start_redis(h.name)
        self.restore_redis_master(cfg, 60)
        master = cfg.lb_hosts[0].name
        if not (self.lb_processes(master, "nginx") and len(self.lb_processes(master, "keepalived")) >= 2):
            self.stop_lb(master)
            run("ip", "-n", ns(master), "addr", "del", f"{cfg.vip}/{cfg.prefix_length}", "dev", cfg.vrrp.interface,
                check=False)
            self.start_lb(master)
        self.wait_vip_on(master, 30)
        self.wait_serving(30)


def cert_serial(pem: str) -> str:
    return run_input(["openssl", "x509", "-noout", "-serial"], pem).strip().removeprefix("serial=")


def run_input(argv: Sequence[str], data: str) -> str:
    return subprocess.run(argv, input=data, capture_output=True, text=True, check=True, timeout=30).stdout


def write_private(path: str, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


class LabSite:
    """ha_drills.Site for the lab: the client namespace and `ip -n` on the LB namespaces."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.vip = VIP
        self.lb_hosts = tuple(h.name for h in lab.cfg.lb_hosts)

    def client(self, args: Sequence[str], env: Optional[dict] = None) -> subprocess.Popen:
        cfg = self.lab.cfg
        env = {**os.environ, **(env or {}), "HA_CA_PEM": (self.lab.dir / "ca.crt").read_text()}
        args = ha_drills.https_args(args, cfg.lb.https_port, cfg.harbor.hostname)
        return subprocess.Popen(["ip", "netns", "exec", ns("client"), sys.executable, str(ha_drills.CLIENT_PY),
                                 *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)

    def watch_addresses(self, lb: str) -> subprocess.Popen:
        return subprocess.Popen(["ip", "-n", ns(lb), "-ts", "-o", "monitor", "address"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, "TZ": "UTC"})

    def vip_holders(self) -> list[str]:
        return [lb for lb in self.lb_hosts
                if f" {self.vip}/" in run("ip", "-n", ns(lb), "-o", "-4", "addr", "show").stdout]


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------

def bench(state_dir: Path, json_path: Path) -> dict:
    """Scenarios 1-4 with the classic recipe, then with the program's defaults; the lab is rebuilt for each."""
    results: dict = {}
    for variant in VARIANTS:
        lab = Lab(state_dir)
        try:
            lab.up(variant)
            for scenario in ha_drills.LB_SCENARIOS:
                r = lab.drill(scenario)
                results.setdefault(variant, {})[scenario] = {k: r[k] for k in ("vip_move_ms", "failed", "total",
                                                                               "max_ms", "recovered_ms")}
                print(f"{variant:<8} {scenario:<16} VIP move {r['vip_move_ms']} ms, failed {r['failed']} of "
                      f"{r['total']}, recovered {r['recovered_ms']} ms, slowest request {r['max_ms']} ms",
                      flush=True)
        finally:
            problems = lab.down()
            if problems:
                raise SystemExit("down left things behind:\n  " + "\n  ".join(problems))
    shape = {v: {s: {k: r[k] for k in ("vip_move_ms", "failed", "total", "recovered_ms")} for s, r in per.items()}
             for v, per in results.items()}
    json_path.write_text(json.dumps(shape, indent=2) + "\n")
    return results


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("ha_lab.py needs root (network namespaces, routes, services)")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help=f"default {DEFAULT_STATE}")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("up", help="build the lab and start every service")
    s.add_argument("--classic", action="store_true", help="the classic recipe's keepalived/nginx settings")
    sub.add_parser("down", help="stop everything and delete the lab")
    s = sub.add_parser("drill", help="run one scenario on the running lab and restore it after")
    s.add_argument("scenario", choices=ha_drills.SCENARIOS)
    s.add_argument("--json", type=Path, help="also write the result here")
    s = sub.add_parser("acme", help="tls.mode acme against pebble (the lab must be down: builds its own)")
    s.add_argument("--json", type=Path, required=True)
    s.add_argument("--challenge", choices=tuple(ACME_VARIANTS), default="http-01",
                   help="dns-01: lego's exec provider runs the stack's hook, which sets the TXT record in pebble's DNS")
    s = sub.add_parser("bench", help="scenarios 1-4, classic recipe vs defaults (the lab must be down)")
    s.add_argument("--json", type=Path, required=True)
    a = p.parse_args(argv)
    require_root()

    lab = Lab(a.state_dir)
    if a.cmd == "up":
        try:
            lab.up("classic" if a.classic else "defaults")
        except BaseException:
            lab.down()
            raise
        print(f"lab up ({lab.variant}): VIP {VIP} on {lab.site().vip_holders()}; state in {lab.dir}")
    elif a.cmd == "down":
        problems = lab.down()
        if problems:
            print("left behind:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("lab down")
    elif a.cmd == "drill":
        if not lab.is_up:
            raise SystemExit("the lab is down: run `up` first")
        result = lab.drill(a.scenario)
        text = json.dumps(result, indent=2)
        print(text)
        if a.json:
            a.json.write_text(text + "\n")
    elif a.cmd == "acme":
        if lab.is_up:
            raise SystemExit("acme builds its own lab: run `down` first")
        try:
            lab.up(ACME_VARIANTS[a.challenge])
            with lab.push_relay():
                result = lab.acme_drill()
        finally:
            problems = lab.down()
        text = json.dumps(result, indent=2)
        print(text)
        a.json.write_text(text + "\n")
        if problems:
            raise SystemExit("down left things behind:\n  " + "\n  ".join(problems))
        return 0 if all(result[k] for k in ("issued", "renewed_on_both_lbs", "renewal_during_failover")) else 1
    else:
        if lab.is_up:
            raise SystemExit("bench builds its own lab: run `down` first")
        results = bench(a.state_dir, a.json)
        ha_drills.print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
