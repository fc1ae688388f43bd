#!/usr/bin/env python3
"""The connection matrix: the rendered host firewalls, loaded for real, let in exactly what the model says.

    sudo venv/bin/python labs/firewall/matrix.py --json FILE

For each topology (dev: LB on the Harbor nodes, standalone Redis; prod: dedicated LB pair, Redis with sentinels)
it builds one network namespace per host plus an outside client on a bridge (addresses in 198.18.15.0/24, a
blackhole route for 198.18.0.0/15 in the root namespace meanwhile), loads each host's rendered `inet harbor_ha`
table with `nft -f`, puts the VIP on the first LB host and starts a listener on every TCP port any role uses, on
every host. Then every host and the client try every such port of every other host and of the VIP at once, and
each outcome is compared with the model (components/firewall host_openings). Listening everywhere means a refused
port is refused by the firewall, never by a missing server.

Then the capture (prod topology): tcpdump on the bridge while a client logs in through the real nginx of the
rendered LB config (TLS to stand-in nodes serving the cluster CA's node certificate, verified by nginx) and a node
logs in to the real PostgreSQL of the rendered config (verify-full against the cluster CA), both with one known
password and a marker query; neither may appear in the capture. As a control the same password is sent once in
clear to the VIP's port 80, and must appear (so the grep can fail). The UI path is limited to the cluster's half of
the lab network (loadBalancer.adminSources): the outside client gets 403 there, an LB host 200.

Writes {"dev": {"allowed_ok": N, "allowed_broken": 0, "forbidden_refused": N, "forbidden_open": 0, ...},
"prod": {...}, "capture": {...}}; exit 0 when every count that must be 0 is 0 and the capture is clean, else 1.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional
from collections.abc import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file: import from the repository root

from components.config import ClusterConfig, Host, parse_cluster_config  # noqa: E402
from components.firewall import Opening, host_openings, render_ruleset  # noqa: E402
from components.loadbalancer import NginxPaths, render_nginx_conf  # noqa: E402
from components.postgres import render_harbor_role_sql, render_pg_hba, render_postgresql_conf  # noqa: E402
from labs import certs, netns  # noqa: E402

NET = "198.18.15"
CLIENT = f"{NET}.250"  #: outside the cluster: not an admin, client-only unless a topology lists it
PREFIX = 24

# One process per namespace: listens on PORTS (argv) on every address, accepts and closes.
LISTENER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64); s.setblocking(False); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        try:
            key.fileobj.accept()[0].close()
        except OSError:
            pass
"""

# Tries every "addr:port" of argv at once (non-blocking connects); prints the ones that connected, as JSON.
PROBER = r"""
import json, selectors, socket, sys, time
sel, opened = selectors.DefaultSelector(), []
for target in sys.argv[2:]:
    addr, port = target.rsplit(":", 1)
    s = socket.socket(); s.setblocking(False)
    s.connect_ex((addr, int(port))); sel.register(s, selectors.EVENT_WRITE, target)
deadline = time.monotonic() + float(sys.argv[1])
while sel.get_map() and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            opened.append(key.data)
        sel.unregister(key.fileobj); key.fileobj.close()
print(json.dumps(opened))
"""


def topology(name: str) -> dict:
    """Stack values of the two topologies, with every firewall source set so that each rule is exercised."""
    admin = {"adminSources": [f"{NET}.0/25"], "metricsSources": [CLIENT]}
    if name == "dev":
        hosts = {"data1": 10, "harbor1": 11, "harbor2": 12}
        return {"hosts": [{"name": n, "address": f"{NET}.{i}"} for n, i in hosts.items()],
                "roles": {"nfs": "data1", "postgres": "data1", "redis": ["data1"],
                          "harborNodes": ["harbor1", "harbor2"], "loadBalancers": ["harbor1", "harbor2"]},
                "vip": {"address": f"{NET}.100"}, "harbor": {"hostname": "harbor.lab.test"},
                "firewall": {**admin, "clientSources": [f"{NET}.128/25"]}}
    redis = [f"redis{i}" for i in (1, 2, 3)]
    nodes = [f"harbor{i}" for i in (1, 2, 3)]
    hosts = {"nfs1": 10, "db1": 11, **{n: 20 + i for i, n in enumerate(redis, 1)},
             **{n: 30 + i for i, n in enumerate(nodes, 1)}, "lb1": 41, "lb2": 42}
    return {"hosts": [{"name": n, "address": f"{NET}.{i}"} for n, i in hosts.items()],
            "roles": {"nfs": "nfs1", "postgres": "db1", "redis": redis, "sentinels": redis, "harborNodes": nodes,
                      "loadBalancers": ["lb1", "lb2"]},
            "vip": {"address": f"{NET}.40"}, "harbor": {"hostname": "registry.lab.test"},
            "redis": {"mode": "sentinel"}, "firewall": admin,
            # The UI only from the cluster's half of the lab network: the outside client gets nginx's 403 there.
            "loadBalancer": {"adminSources": [f"{NET}.0/25"]}}


def allowed(openings: Sequence[Opening], src: str, daddr: str, port: int) -> bool:
    """The model's verdict for a new TCP connection from `src` to `daddr:port` on a host with `openings`."""
    for o in openings:
        # (an opening for the host's own Docker networks admits none of the lab's other hosts)
        if o.proto != "tcp" or o.port != port or (o.daddr and o.daddr != daddr) or o.iifname:
            continue
        if o.sources is None or any(ipaddress.IPv4Address(src) in ipaddress.IPv4Network(c) for c in o.sources):
            return True
    return False


def tcp_ports(cfg: ClusterConfig) -> list[int]:
    """Every TCP port any role of the cluster uses, on any host (each host listens on all of them)."""
    return sorted({o.port for h in cfg.hosts for o in host_openings(cfg, h) if o.proto == "tcp"}
                  | {cfg.harbor.http_port, cfg.harbor.metrics_port})


class World:
    """The namespaces and processes of one topology; close() removes everything, also after a partial set-up."""

    def __init__(self, cfg: ClusterConfig, tag: str):
        self.cfg, self.prefix = cfg, f"hhafw{os.getpid() % 10000}{tag}"
        self.bridge = f"{self.prefix}-br"
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.ns: dict[str, str] = {}  #: host name (and "client") -> namespace

    def __enter__(self) -> World:
        self.names.append(self.bridge)
        netns.add_bridge(self.bridge)
        for i, (name, address) in enumerate([*((h.name, h.address) for h in self.cfg.hosts), ("client", CLIENT)]):
            ns = f"{self.prefix}-{i}"
            self.names.append(ns)
            netns.add_host(self.bridge, ns, f"p{i}", address, PREFIX)
            self.ns[name] = ns
        # No keepalived here: the VIP sits on the first LB host, where the firewall's VIP rules apply.
        netns.ip("-n", self.ns[self.cfg.lb_hosts[0].name], "addr", "add", f"{self.cfg.vip}/{PREFIX}", "dev", "eth0")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for ns in reversed(self.names):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def run(self, who: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns[who], *argv], capture_output=True, text=True,
                              timeout=kw.pop("timeout", 30), **kw)

    def start(self, who: str, argv: Sequence[str], log: Path, ready: Optional[str] = None) -> subprocess.Popen:
        """A long-running process in `who`'s namespace (stopped by PID at close); waits for `ready` on stdout."""
        out = subprocess.PIPE if ready else open(log, "ab")  # noqa: SIM115 - the child holds it until stopped
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[who], *argv], stdout=out,
                                stderr=subprocess.STDOUT if ready else None, stdin=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        if ready and proc.stdout is not None and ready not in proc.stdout.readline():
            raise RuntimeError(f"{argv[0]} in {who} did not start")
        return proc

    def load_firewalls(self, tmp: Path) -> None:
        for h in self.cfg.hosts:
            path = tmp / f"{h.name}.nft"
            path.write_text(render_ruleset(self.cfg, h))
            loaded = self.run(h.name, ["nft", "-f", str(path)])
            if loaded.returncode != 0:
                raise RuntimeError(f"nft refused the ruleset of {h.name}: {loaded.stderr}")


def matrix(cfg: ClusterConfig, tag: str) -> dict:
    """Counts of the four outcomes for every (source, destination address, port) of one topology."""
    ports = tcp_ports(cfg)
    counts = {"allowed_ok": 0, "allowed_broken": 0, "forbidden_refused": 0, "forbidden_open": 0}
    wrong: list[str] = []
    with World(cfg, tag) as world, tempfile.TemporaryDirectory(prefix="hha-fw-") as tmp:
        for h in cfg.hosts:
            world.start(h.name, [sys.executable, "-c", LISTENER, *map(str, ports)], Path(tmp) / "l.log",
                        ready="ready")
        world.load_firewalls(Path(tmp))
        targets = [(h, h.address) for h in cfg.hosts] + [(cfg.lb_hosts[0], cfg.vip)]
        sources = [(h.name, h.address) for h in cfg.hosts] + [("client", CLIENT)]
        for src_name, src in sources:
            probes = {f"{addr}:{p}": (dst, addr, p) for dst, addr in targets if dst.name != src_name for p in ports}
            result = world.run(src_name, [sys.executable, "-c", PROBER, "1.5", *probes])
            opened = set(json.loads(result.stdout))
            for key, (dst, addr, port) in probes.items():
                expect = allowed(host_openings(cfg, dst), src, addr, port)
                outcome = ("allowed_ok" if key in opened else "allowed_broken") if expect else \
                    ("forbidden_open" if key in opened else "forbidden_refused")
                counts[outcome] += 1
                if outcome in ("allowed_broken", "forbidden_open"):
                    wrong.append(f"{outcome}: {src_name} ({src}) -> {dst.name} {addr}:{port}")
    return {**counts, "wrong": wrong}


def capture(cfg: ClusterConfig) -> dict:
    """tcpdump on the bridge while credentials travel LB -> node and node -> PostgreSQL (see the module doc)."""
    password = secrets.token_urlsafe(24)
    marker = f"harbor-ha-marker-{secrets.token_hex(8)}"
    basic = base64.b64encode(f"admin:{password}".encode()).decode()
    lb, node, db = cfg.lb_hosts[0], cfg.harbor_nodes[0], cfg.postgres_host
    tmp = Path(tempfile.mkdtemp(prefix="hha-cap-"))
    tmp.chmod(0o755)
    try:
        with World(cfg, "c") as world:
            tls = certs.cluster_tls(cfg)
            client_ca, lb_cert, lb_key = certs.ca_and_server(cfg.harbor.hostname, [cfg.harbor.hostname, cfg.vip])
            files = {"cluster-ca.crt": tls["ca"], "node.crt": tls["node_cert"], "node.key": tls["node_key"],
                     "client-ca.crt": client_ca, "tls/harbor.crt": lb_cert, "tls/harbor.key": lb_key,
                     "tls/upstream-ca.crt": tls["ca"]}
            for rel, data in files.items():
                (tmp / rel).parent.mkdir(exist_ok=True)
                (tmp / rel).write_bytes(data)
            pcap = tmp / "bridge.pcap"
            dump = subprocess.Popen(["ip", "netns", "exec", world.bridge, "tcpdump", "-i", "br0", "-U", "-s", "0",
                                     "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            world.procs.append(dump)
            if dump.stderr is None or "listening" not in dump.stderr.readline():
                raise RuntimeError("tcpdump did not start")
            _stand_in_nodes(world, cfg, tmp)
            _nginx(world, cfg, lb, tmp)
            _postgres(world, cfg, db, tmp, tls, password)
            world.load_firewalls(tmp)

            def through_lb(who: str, path: str) -> str:
                """HTTP status of a request with the Basic credentials through the VIP (curl reads them on stdin)."""
                return world.run(who, [
                    "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                    "--cacert", str(tmp / "client-ca.crt"), "--resolve", f"{cfg.harbor.hostname}:443:{cfg.vip}",
                    "-K", "-", f"https://{cfg.harbor.hostname}{path}"], input=f'user = "admin:{password}"\n'
                ).stdout.strip()

            api = through_lb("client", f"/api/v2.0/users?q={marker}")
            ui_outside, ui_inside = through_lb("client", "/harbor/projects"), through_lb(lb.name, "/harbor/projects")
            control = world.run("client", ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "-K", "-",
                                           f"http://{cfg.vip}/api/v2.0/users?q={marker}"],
                                input=f'user = "admin:{password}"\n')
            env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "verify-full",
                   "PGSSLROOTCERT": str(tmp / "cluster-ca.crt"), "PGCONNECT_TIMEOUT": "5"}
            query = world.run(node.name, ["psql", "-X", "-At", "-h", db.address, "-p", str(cfg.postgres.port),
                                          "-U", cfg.postgres.user, "-d", cfg.postgres.database, "-c",
                                          f"SELECT '{marker}'"], env=env)
            time.sleep(0.5)  # tcpdump -U writes each packet at once; let the last ones land
        secrets_seen = {}
        for hop, a, b in (("lb-to-node", lb, node), ("node-to-db", node, db)):
            text = subprocess.run(["tcpdump", "-r", str(pcap), "-A", "-n", f"host {a.address} and host {b.address}"],
                                  capture_output=True, text=True, timeout=30).stdout
            secrets_seen[hop] = {"packets": text.count("\n"), "password": password in text or basic in text,
                                 "marker": marker in text}
        clear = subprocess.run(["tcpdump", "-r", str(pcap), "-A", "-n", f"host {CLIENT} and port 80"],
                               capture_output=True, text=True, timeout=30).stdout
        return {
            "api_status_through_lb": api,
            "ui_status_outside_admin_sources": ui_outside,
            "ui_status_inside_admin_sources": ui_inside,
            "db_query_ok": query.returncode == 0 and query.stdout.strip() == marker,
            "hops": secrets_seen,
            "control_plain_http_shows_password": basic in clear and control.returncode == 0,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Stand-in for Harbor's own nginx on a node: TLS with the node certificate; answers 200 only when the request
# carried the client's Basic credentials (so a 200 through the LB proves they crossed the LB-to-node hop).
STAND_IN = r"""
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization", "").startswith("Basic ")
        self.send_response(200 if ok else 401); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
"""


def _stand_in_nodes(world: World, cfg: ClusterConfig, tmp: Path) -> None:
    for n in cfg.harbor_nodes:
        world.start(n.name, [sys.executable, "-c", STAND_IN, n.address, str(cfg.harbor.https_port),
                             str(tmp / "node.crt"), str(tmp / "node.key")], tmp / "node.log", ready="ready")


def _nginx(world: World, cfg: ClusterConfig, lb: Host, tmp: Path) -> None:
    paths = NginxPaths(tls_dir=str(tmp / "tls"), pid=str(tmp / "nginx.pid"), log_dir=str(tmp),
                       conf=str(tmp / "nginx.conf"), user="root")
    (tmp / "nginx.conf").write_text(render_nginx_conf(cfg, lb, paths))
    world.start(lb.name, ["nginx", "-c", paths.conf, "-g", "daemon off;"], tmp / "nginx.out")
    for _ in range(50):
        if world.run(lb.name, ["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{cfg.lb.health_port}/lb-health"]
                     ).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("nginx did not start: " + (tmp / "error.log").read_text(errors="replace"))


def _postgres(world: World, cfg: ClusterConfig, db: Host, tmp: Path, tls: dict, password: str) -> None:
    """PostgreSQL of the rendered drop-in (TLS files in `tmp`) and pg_hba.conf, Harbor's role with `password`."""
    bindir = f"/usr/lib/postgresql/{cfg.postgres.version}/bin"
    data, run_dir = tmp / "pgdata", tmp / "pgrun"
    for d in (data, run_dir):
        d.mkdir(mode=0o700)
        shutil.chown(d, "postgres", "postgres")
    cert, key = run_dir / "server.crt", run_dir / "server.key"
    for path, pem in ((cert, tls["postgres_cert"]), (key, tls["postgres_key"]), (run_dir / "role.sql",
                      render_harbor_role_sql(cfg, password).encode())):
        path.write_bytes(pem)
        path.chmod(0o600)
        shutil.chown(path, "postgres", "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", str(data), "-N",
                    "--auth-local=peer", "--auth-host=scram-sha-256"], check=True, capture_output=True, timeout=60)
    (data / "pg_hba.conf").write_text(render_pg_hba(cfg))
    with open(data / "postgresql.conf", "a", encoding="utf-8") as f:
        f.write(render_postgresql_conf(cfg, tls=(str(cert), str(key))) + f"unix_socket_directories = '{run_dir}'\n")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    world.run(db.name, [*as_postgres, f"{bindir}/pg_ctl", "-D", str(data), "-l", str(run_dir / "log"), "-w",
                        "-t", "30", "start"], timeout=60, check=True)
    world.procs.append(_Postmaster(data))
    world.run(db.name, [*as_postgres, "psql", "-X", "-q", "-h", str(run_dir), "-p", str(cfg.postgres.port),
                        "-v", "ON_ERROR_STOP=1", "-f", str(run_dir / "role.sql")], check=True)


class _Postmaster:
    """The postmaster as World.__exit__ stops processes (poll, send_signal, wait): pg_ctl forks it off."""

    def __init__(self, data: Path):
        self.pid = int((data / "postmaster.pid").read_text().split()[0])

    def poll(self) -> Optional[int]:
        return None if Path(f"/proc/{self.pid}").exists() else 0

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, signal.SIGINT)  # PostgreSQL's fast shutdown

    def wait(self, timeout: float) -> None:
        for _ in range(int(timeout * 10)):
            if self.poll() is not None:
                return
            time.sleep(0.1)
        raise subprocess.TimeoutExpired("postgres", timeout)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="where to write the counts (- for stdout)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("matrix: needs root (network namespaces, nft)", file=sys.stderr)
        return 2
    blackhole = netns.blackhole(200000 + os.getpid() % 100000)
    netns.ip("route", "replace", *blackhole)
    try:
        report: dict = {}
        for i, name in enumerate(("dev", "prod")):
            cfg = parse_cluster_config(topology(name))
            report[name] = matrix(cfg, str(i))
        report["capture"] = capture(parse_cluster_config(topology("prod")))
    finally:
        netns.ip("route", "del", *blackhole, check=False)
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text + "\n")
    ok = all(report[t]["allowed_broken"] == 0 and report[t]["forbidden_open"] == 0 for t in ("dev", "prod"))
    cap = report["capture"]
    clean = not any(h["password"] or h["marker"] for h in cap["hops"].values())
    access = (cap["api_status_through_lb"], cap["ui_status_outside_admin_sources"],
              cap["ui_status_inside_admin_sources"]) == ("200", "403", "200")
    return 0 if ok and clean and access and cap["control_plain_http_shows_password"] else 1


if __name__ == "__main__":
    sys.exit(main())
