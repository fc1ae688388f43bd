"""Every rendered configuration file, checked by the real program that reads it.

The test stacks are built here (198.18.0.0/15 addresses, never the stack files' private ones): one shaped like
Pulumi.dev.yaml (standalone Redis, LB on the Harbor nodes, VRRPv3), one like Pulumi.prod.yaml (sentinel Redis,
dedicated LB pair, VRRPv2 with authentication) and a variant of it with nopreempt and multicast adverts. Files are
rendered with real secret values (random passwords, real PEM keys and certificates) through the same FileSpecs the
program ships, then handed to nginx, keepalived, redis-server, redis-sentinel and PostgreSQL. harbor.yml is checked
against Harbor's installer template (../shared/harbor/harbor.yml.tmpl-2.15.2): Harbor itself cannot run here.

Servers run inside network namespaces made by tests/support/netlab.py (blackhole route for 198.18.0.0/15 in the root
namespace meanwhile); every process is stopped by PID and every namespace and temp dir removed, also on failure.
"""

from __future__ import annotations

import fnmatch
import glob
import ipaddress
import os
import shlex
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from components.config import ClusterConfig, parse_cluster_config
from components.host.files import SECRET_VALUES, FileSpec
from components.harbor_node import harbor_node_files
from components.keepalived import keepalived_files, vrrp_roles
from components.loadbalancer import SYSCTL_PATH, NginxPaths, loadbalancer_files
from components.plan import render_all, role_files
from components.postgres import postgres_files, render_postgresql_conf
from components.redis import RedisPaths, initial_master, redis_files, sentinel_files
from tests.support.harbor_template import check_against_template, parse_template, uncomment
from tests.support.netlab import Lab, wait_until
from tests.support.secret_values import make_secret_values, password, pem_key
# The module, not its functions: a test function imported here would be collected (and run) twice.
from tests.hosts import test_host_lab as host_tests
from tests.hosts import test_real_harbor as real_harbor_tests
from tests.hosts import test_real_harbor_drills as real_harbor_drills_tests
from tests.unit import test_systemd_units as unit_tests
from tests.lab import test_firewall as firewall_tests

from labs import certs as lab_certs

from tests.support import ROOT
HARBOR_TEMPLATE = ROOT.parent / "shared" / "harbor" / "harbor.yml.tmpl-2.15.2"



# ---------------------------------------------------------------------------------------------------------------
# Test stacks and secret values
# ---------------------------------------------------------------------------------------------------------------

def dev_like() -> dict:
    """Pulumi.dev.yaml's topology: one data host, two Harbor nodes that also run keepalived + nginx."""
    return {
        "hosts": [{"name": "data1", "address": "198.18.0.10", "user": "debian"},
                  {"name": "harbor1", "address": "198.18.0.11", "user": "debian"},
                  {"name": "harbor2", "address": "198.18.0.12", "user": "debian"}],
        "roles": {"nfs": "data1", "postgres": "data1", "redis": ["data1"], "harborNodes": ["harbor1", "harbor2"],
                  "loadBalancers": ["harbor1", "harbor2"]},
        "vip": {"address": "198.18.0.100", "interface": "eth1", "virtualRouterId": 56},
        "harbor": {"hostname": "harbor.dev.example.internal"},
    }


def prod_like(**keepalived: object) -> dict:
    """Pulumi.prod.yaml's topology (dedicated DB, 3 Redis + sentinels, 3 nodes, LB pair), VRRPv2 with auth.

    PostgreSQL version 15: the drop-in is checked by the PostgreSQL 15 here (its content does not depend on it).
    """
    redis = [f"redis{i}" for i in (1, 2, 3)]
    nodes = [f"harbor{i}" for i in (1, 2, 3)]
    return {
        "hosts": [{"name": "nfs1", "address": "198.18.0.10"}, {"name": "db1", "address": "198.18.0.11"},
                  *({"name": n, "address": f"198.18.0.2{i}"} for i, n in enumerate(redis, 1)),
                  *({"name": n, "address": f"198.18.0.3{i}"} for i, n in enumerate(nodes, 1)),
                  {"name": "lb1", "address": "198.18.0.41"}, {"name": "lb2", "address": "198.18.0.42"}],
        "network": {"prefixLength": 24},
        "roles": {"nfs": "nfs1", "postgres": "db1", "redis": redis, "sentinels": redis, "harborNodes": nodes,
                  "loadBalancers": ["lb1", "lb2"]},
        "vip": {"address": "198.18.0.40", "interface": "ens3", "virtualRouterId": 40},
        "keepalived": {"vrrpVersion": 2, **keepalived},
        "loadBalancer": {"hsts": True},
        "harbor": {"hostname": "registry.example.com",
                   "installer": {"path": "artifacts/harbor-offline-installer-v2.15.2.tgz"}},
        "postgres": {"version": 15, "sharedBuffers": "1GB"},
        "redis": {"mode": "sentinel", "maxmemory": "2gb"},
    }


STACKS: dict[str, ClusterConfig] = {
    "dev": parse_cluster_config(dev_like()),
    "prod": parse_cluster_config(prod_like(), secrets_present=["tlsCertificate", "tlsPrivateKey"]),
    "prod-nopreempt-multicast": parse_cluster_config(prod_like(nopreempt=True, unicast=False),
                                                     secrets_present=["tlsCertificate", "tlsPrivateKey"]),
}


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    return make_secret_values(STACKS["prod"])


def render(spec: FileSpec, values: dict[str, str]) -> str:
    return spec.render({n: values[n] for n in spec.needs})


def write(path: str | Path, content: str, mode: int = 0o644, owner: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def install(spec: FileSpec, values: dict[str, str], tmp: Path) -> Path:
    """Write a FileSpec with its mode, never outside `tmp`: a path the test pointed into `tmp` (NginxPaths,
    RedisPaths) is kept, any other host path lands under `tmp/host-root/`."""
    path = Path(spec.path)
    if not path.is_relative_to(tmp):
        path = tmp / "host-root" / path.relative_to("/")
    return write(path, render(spec, values), spec.mode)


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    """A temp dir other users can traverse (PostgreSQL runs as postgres); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hha-real-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def lb_cases() -> list[tuple[str, int]]:
    return [(stack, i) for stack in STACKS for i in (0, 1)]


def lb_id(case: tuple[str, int]) -> str:
    stack, i = case
    return f"{stack}-{STACKS[stack].lb_hosts[i].name}"


# ---------------------------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------------------------

def nginx_check(conf: Path, sysctl_conf: Path) -> subprocess.CompletedProcess:
    """`nginx -t` in a fresh network namespace after `sysctl -p` of the rendered sysctl.d file: nginx -t binds the
    VIP listen sockets, which only its net.ipv4.ip_nonlocal_bind allows on a host without the VIP."""
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && sysctl -q -p "$2" && exec nginx -q -t -c "$1"', "sh",
         str(conf), str(sysctl_conf)],
        capture_output=True, text=True, timeout=30)


def render_nginx(cfg: ClusterConfig, index: int, values: dict[str, str], tmp: Path) -> tuple[Path, Path]:
    """Every load balancer file of one LB host, rendered into `tmp`: (nginx.conf, the sysctl.d file)."""
    paths = NginxPaths(tls_dir=str(tmp / "tls"), pid=str(tmp / "nginx.pid"), log_dir=str(tmp),
                       conf=str(tmp / "nginx.conf"))
    written = {spec.path: install(spec, values, tmp) for spec in loadbalancer_files(cfg, cfg.lb_hosts[index], paths)}
    return written[paths.conf], written[SYSCTL_PATH]


@pytest.mark.parametrize("case", lb_cases(), ids=lb_id)
def test_nginx_accepts_rendered_lb_config(case, values, tmp_root):
    """Starts `nginx -t` (nginx 1.22) on the rendered nginx.conf with the rendered TLS certificate and key."""
    stack, index = case
    conf, sysctl_conf = render_nginx(STACKS[stack], index, values, tmp_root)
    result = nginx_check(conf, sysctl_conf)
    assert result.returncode == 0, f"nginx -t rejected {conf}:\n{result.stderr}"


def test_nginx_check_fails_on_a_broken_config(values, tmp_root):
    """Starts `nginx -t` on a rendered nginx.conf with an unknown directive, with a mismatched key, and without the
    rendered ip_nonlocal_bind setting: all three fail."""
    conf, sysctl_conf = render_nginx(STACKS["prod"], 0, values, tmp_root)
    good = conf.read_text()
    conf.write_text(good.replace("sendfile on;", "sendfile on;\n    bogus_directive on;"))
    result = nginx_check(conf, sysctl_conf)
    assert result.returncode != 0 and 'unknown directive "bogus_directive"' in result.stderr, result.stderr

    conf.write_text(good)
    other_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_root / "tls" / "harbor.key").write_text(pem_key(other_key, serialization.PrivateFormat.PKCS8))
    result = nginx_check(conf, sysctl_conf)
    assert result.returncode != 0 and "key values mismatch" in result.stderr, result.stderr

    (tmp_root / "tls" / "harbor.key").write_text(values["tls_private_key"])
    sysctl_conf.write_text("# no ip_nonlocal_bind\n")
    result = nginx_check(conf, sysctl_conf)
    assert result.returncode != 0 and "Cannot assign requested address" in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------------------------
# keepalived
# ---------------------------------------------------------------------------------------------------------------

def keepalived_check(conf: Path, interface: str) -> tuple[bool, str]:
    """`keepalived -t -e` in a namespace that has the configured interface (the check fails without it).

    keepalived 2.2.7 kills itself with SIGTERM at the end of `-t` whenever a vrrp_script is configured, for good
    and bad files alike (acassen/keepalived#2587, fixed in 2.2.8): so a clean exit or that SIGTERM counts as a pass
    only when keepalived printed nothing on stderr. `exec` makes the signal reach us as -15 (a shell says 143).
    """
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         'ip link add "$1" type veth peer name vpeer0 && exec keepalived -t -e -f "$2"', "sh", interface, str(conf)],
        capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    return result.returncode in (0, 143, -15) and not result.stderr.strip(), f"rc={result.returncode}\n{output}"


@pytest.mark.parametrize("case", lb_cases(), ids=lb_id)
def test_keepalived_accepts_rendered_config(case, values, tmp_root):
    """Starts `keepalived -t -e` (keepalived 2.2.7) on the rendered keepalived.conf of each LB host."""
    stack, index = case
    cfg = STACKS[stack]
    (spec,) = keepalived_files(cfg, vrrp_roles(cfg)[index])
    conf = write(tmp_root / "keepalived.conf", render(spec, values), spec.mode)
    ok, output = keepalived_check(conf, cfg.vrrp.interface)
    assert ok, f"keepalived -t -e rejected {conf}:\n{output}\n{conf.read_text()}"


def test_keepalived_check_fails_on_a_bogus_keyword(values, tmp_root):
    """Starts `keepalived -t -e` on a rendered keepalived.conf with a bogus keyword and on one whose interface is
    missing: the check reports both."""
    cfg = STACKS["prod"]
    (spec,) = keepalived_files(cfg, vrrp_roles(cfg)[0])
    good = render(spec, values)
    conf = write(tmp_root / "keepalived.conf", good.replace(
        "    garp_master_delay", "    bogus_keyword 1\n    garp_master_delay"), 0o640)
    ok, output = keepalived_check(conf, cfg.vrrp.interface)
    assert not ok and "Unknown keyword 'bogus_keyword'" in output, output

    conf.write_text(good)
    ok, output = keepalived_check(conf, "other0")
    assert not ok and f"interface {cfg.vrrp.interface}" in output, output


# ---------------------------------------------------------------------------------------------------------------
# Redis and Redis Sentinel
# ---------------------------------------------------------------------------------------------------------------

def redis_paths(tmp: Path, host: str) -> RedisPaths:
    base = tmp / host
    for sub in ("run", "data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return RedisPaths(conf=str(base / "redis.conf"), sentinel_conf=str(base / "sentinel.conf"),
                      run_dir=str(base / "run"), sentinel_run_dir=str(base / "run"), data_dir=str(base / "data"),
                      log_file=str(base / "redis.log"),
                      sentinel_log_file=str(base / "sentinel.log"))


def redis_cli(lab: Lab, ns: str, address: str, port: int, *command: str, password: str | None = None) -> str:
    """redis-cli from inside `ns`; the password travels in REDISCLI_AUTH, never on the command line."""
    env = {"REDISCLI_AUTH": password} if password is not None else {}
    result = lab.run(ns, ["redis-cli", "-h", address, "-p", str(port), *command], env=env, timeout=10)
    return (result.stdout + result.stderr).strip()


def fields(flat: str) -> dict[str, str]:
    """redis-cli's raw output of a field/value reply (one item a line) as a dict."""
    lines = flat.splitlines()
    return dict(zip(lines[0::2], lines[1::2], strict=False))


def harbor_yml(cfg: ClusterConfig, values: dict[str, str]) -> dict:
    spec = next(s for s in harbor_node_files(cfg, cfg.harbor_nodes[0]) if s.path.endswith("/harbor.yml"))
    return yaml.safe_load(render(spec, values))


def start_redis_servers(lab: Lab, cfg: ClusterConfig, values: dict[str, str], tmp: Path,
                        namespaces: dict[str, str]) -> None:
    """redis-server on every rendered redis.conf, master first; waits until each answers an authenticated PING."""
    client = namespaces["client"]
    for host in cfg.redis_hosts:
        paths = redis_paths(tmp, host.name)
        spec = next(s for s in redis_files(cfg, host, paths) if s.path == paths.conf)
        conf = install(spec, values, tmp)
        lab.start(namespaces[host.name], ["redis-server", str(conf)], log=str(tmp / host.name / "stdout.log"))
        wait_until(lambda: redis_cli(lab, client, host.address, cfg.redis.port, "PING",
                                     password=values["redis_password"]) == "PONG",
                   what=f"redis-server on {host.name} (log: {paths.log_file})")


def redis_namespaces(lab: Lab, cfg: ClusterConfig) -> dict[str, str]:
    """A namespace per Redis/Sentinel host, plus `client` with the first Harbor node's address (Harbor's side)."""
    hosts = {h.name: h for h in (*cfg.redis_hosts, *cfg.sentinel_hosts)}
    namespaces = {name: lab.add_host(h.address) for name, h in hosts.items()}
    namespaces["client"] = lab.add_host(cfg.harbor_nodes[0].address)
    return namespaces


def assert_auth_required(lab: Lab, ns: str, address: str, port: int) -> None:
    assert redis_cli(lab, ns, address, port, "PING").startswith("NOAUTH"), "Redis answers without a password"
    wrong = redis_cli(lab, ns, address, port, "PING", password="not-the-password")
    assert "WRONGPASS" in wrong, wrong


def test_redis_sentinel_mode_starts_replicates_and_sentinels_agree(values, tmp_root):
    """Starts redis-server on the rendered master and replica configs and redis-sentinel on the 3 rendered
    sentinel configs (prod-like stack), each in the netns of its host; checks AUTH, replication, and that every
    sentinel Harbor's rendered external_redis names reports the master and knows the replicas and the others."""
    cfg = STACKS["prod"]
    auth = values["redis_password"]
    master = initial_master(cfg)
    replicas = [h for h in cfg.redis_hosts if h != master]
    with Lab(cfg.prefix_length) as lab:
        ns = redis_namespaces(lab, cfg)
        client = ns["client"]
        start_redis_servers(lab, cfg, values, tmp_root, ns)
        port = cfg.redis.port
        for host in cfg.redis_hosts:
            assert_auth_required(lab, client, host.address, port)

        probe = password(24)
        assert redis_cli(lab, client, master.address, port, "SET", "hha-probe", probe, password=auth) == "OK"
        for replica in replicas:
            def linked(replica=replica):
                info = redis_cli(lab, client, replica.address, port, "INFO", "replication", password=auth)
                return info if "master_link_status:up" in info else None
            info = wait_until(linked, what=f"{replica.name} replicating from {master.name}")
            assert f"master_host:{master.address}" in info and "role:slave" in info, info
            wait_until(lambda: redis_cli(lab, client, replica.address, port, "GET", "hha-probe",
                                         password=auth) == probe, what=f"the probe key on {replica.name}")

        for host in cfg.sentinel_hosts:
            paths = redis_paths(tmp_root, host.name)
            spec = next(s for s in sentinel_files(cfg, host, paths) if s.path == paths.sentinel_conf)
            conf = install(spec, values, tmp_root)
            lab.start(ns[host.name], ["redis-sentinel", str(conf)], log=str(tmp_root / host.name / "stdout.log"))

        # What Harbor will use: every `host:port` of external_redis.host, with its sentinel_master_set.
        external = harbor_yml(cfg, values)["external_redis"]
        master_set = external["sentinel_master_set"]
        endpoints = [e.split(":") for e in external["host"].split(",")]
        assert sorted(a for a, _ in endpoints) == sorted(h.address for h in cfg.sentinel_hosts)
        for address, sentinel_port in endpoints:
            def view(address=address, sentinel_port=int(sentinel_port)):
                state = fields(redis_cli(lab, client, address, sentinel_port, "SENTINEL", "master", master_set))
                ok = (state.get("flags") == "master" and state.get("num-slaves") == str(len(replicas))
                      and state.get("num-other-sentinels") == str(len(cfg.sentinel_hosts) - 1))
                return state if ok else None
            state = wait_until(view, what=f"sentinel {address} to see the master, its replicas and the other "
                                          "sentinels", timeout=15)
            assert (state["ip"], state["port"]) == (master.address, str(port))
            addr = redis_cli(lab, client, address, int(sentinel_port), "SENTINEL", "get-master-addr-by-name",
                             master_set)
            assert addr.splitlines() == [master.address, str(port)], addr
            known = redis_cli(lab, client, address, int(sentinel_port), "SENTINEL", "replicas", master_set)
            for replica in replicas:
                assert f"{replica.address}:{port}" in known.splitlines(), known
        # Harbor authenticates to the master with external_redis.password.
        assert redis_cli(lab, client, master.address, port, "PING", password=external["password"]) == "PONG"


def test_redis_standalone_starts_and_requires_auth(values, tmp_root):
    """Starts redis-server on the rendered standalone redis.conf (dev-like stack) in its host's netns; checks it
    is a master, requires AUTH, and accepts Harbor's rendered external_redis host and password."""
    cfg = STACKS["dev"]
    with Lab(cfg.prefix_length) as lab:
        ns = redis_namespaces(lab, cfg)
        start_redis_servers(lab, cfg, values, tmp_root, ns)
        external = harbor_yml(cfg, values)["external_redis"]
        address, port = external["host"].split(":")
        assert "sentinel_master_set" not in external
        assert_auth_required(lab, ns["client"], address, int(port))
        info = redis_cli(lab, ns["client"], address, int(port), "INFO", "replication", password=external["password"])
        assert "role:master" in info and "connected_slaves:0" in info, info


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------------------

def pg_bin(name: str) -> str:
    """Debian keeps the server binaries per major version under /usr/lib/postgresql (not on PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail(f"{name} not found under /usr/lib/postgresql/*/bin: is postgresql-15 installed?")
    return found[-1]


@contextmanager
def postgres_running(lab: Lab, ns: str, data: Path, log: Path) -> Iterator[None]:
    """pg_ctl start inside `ns` as postgres; stopped with pg_ctl, then by the postmaster's PID if still there."""
    result = lab.run(ns, ["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "-D", str(data), "-l", str(log),
                          "-w", "-t", "30", "start"], timeout=60)
    try:
        assert result.returncode == 0, f"pg_ctl start failed:\n{result.stdout}{result.stderr}\n" + (
            log.read_text() if log.exists() else "")
        yield
    finally:
        pid_file = data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        lab.run(ns, ["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                     "-t", "20", "stop"], timeout=30)
        if pid is not None and Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)


def psql_admin(lab: Lab, ns: str, socket_dir: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    """psql as the postgres superuser over the Unix socket (peer auth, as the provisioning script does)."""
    return lab.run(ns, ["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-h", str(socket_dir), "-p",
                        str(port), "-v", "ON_ERROR_STOP=1", *args], timeout=30)


def harbor_login(lab: Lab, ns: str, db: dict, password: str, ca: Path, sslmode: str | None = None
                 ) -> subprocess.CompletedProcess:
    """Log in as Harbor does, with the rendered harbor.yml's external_database values and `ca` as the trusted CA
    (all through libpq's environment: the password never reaches a command line)."""
    env = {"PGHOST": db["host"], "PGPORT": str(db["port"]), "PGDATABASE": db["db_name"], "PGUSER": db["username"],
           "PGPASSWORD": password, "PGSSLMODE": sslmode or db["ssl_mode"], "PGSSLROOTCERT": str(ca),
           "PGCONNECT_TIMEOUT": "5"}
    return lab.run(ns, ["psql", "-X", "-At", "-c", "SELECT current_user, current_database(), inet_client_addr()"],
                   env=env, timeout=20)


def test_postgres_starts_with_rendered_config_and_admits_harbor_nodes_only(values, tmp_root):
    """initdb's a temp cluster, installs the rendered conf.d drop-in, pg_hba.conf and TLS certificate and key,
    starts PostgreSQL 15 with pg_ctl in the netns of the rendered DB host, runs the rendered harbor-role.sql twice
    with psql, then logs in with psql as Harbor (rendered harbor.yml values: sslmode verify-full against the
    cluster CA) from each Harbor node's netns; and is refused from a non-node address, with a wrong password,
    without TLS (sslmode disable) and when the client trusts another CA."""
    cfg = STACKS["prod"]
    pg = cfg.postgres
    data, run_dir = tmp_root / "data", tmp_root / "run"  # run_dir: the server's socket and log, postgres-owned
    for d in (data, run_dir):
        d.mkdir(mode=0o700)
        shutil.chown(d, "postgres", "postgres")
    init = subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("initdb"), "-D", str(data), "-N", "-U",
                           "postgres", "--auth-local=peer", "--auth-host=scram-sha-256"],
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    specs = {Path(spec.path).name: spec for spec in postgres_files(cfg)}
    dropin_spec, hba_spec, sql_spec = specs["harbor-ha.conf"], specs["pg_hba.conf"], specs["harbor-role.sql"]
    # The Debian layout under /etc/postgresql/<v>/main maps onto the temp cluster's directory: the drop-in is
    # rendered by the same function with the certificate's temp paths.
    cert_spec, key_spec = specs["harbor-ha-server.crt"], specs["harbor-ha-server.key"]
    cert = write(data / "server.crt", render(cert_spec, values), cert_spec.mode, "postgres")
    key = write(data / "server.key", render(key_spec, values), key_spec.mode, "postgres")
    assert render(dropin_spec, values) == render_postgresql_conf(cfg, tls=(cert_spec.path, key_spec.path))
    dropin = write(data / "conf.d" / Path(dropin_spec.path).name,
                   render_postgresql_conf(cfg, tls=(str(cert), str(key))), dropin_spec.mode, "postgres")
    write(data / "pg_hba.conf", render(hba_spec, values), hba_spec.mode, "postgres")
    ca = write(tmp_root / "cluster-ca.crt", values["cluster_ca_certificate"])
    other_ca = write(tmp_root / "other-ca.crt", lab_certs.ca_and_server("other", ["other"])[0].decode())
    sql = write(tmp_root / "harbor-role.sql", render(sql_spec, values), sql_spec.mode, "postgres")
    with open(data / "postgresql.conf", "a", encoding="utf-8") as f:
        # Debian's postgresql.conf ends with include_dir = 'conf.d'; the socket goes to the temp dir.
        f.write(f"unix_socket_directories = '{run_dir}'\ninclude_dir = 'conf.d'\n")
    outsider = "198.18.0.250"
    assert outsider not in {h.address for h in cfg.hosts} and ipaddress.IPv4Address(outsider) in \
        ipaddress.IPv4Network(f"{cfg.postgres_host.address}/{cfg.prefix_length}", strict=False)

    with Lab(cfg.prefix_length) as lab:
        db_ns = lab.add_host(cfg.postgres_host.address)
        node_ns = {n.address: lab.add_host(n.address) for n in cfg.harbor_nodes}
        outsider_ns = lab.add_host(outsider)
        with postgres_running(lab, db_ns, data, run_dir / "postgres.log"):
            # Every setting of the drop-in applied, none rejected; pg_hba.conf parsed without errors.
            rows = psql_admin(lab, db_ns, run_dir, pg.port, "-c",
                              "SELECT name, applied, coalesce(error, '') FROM pg_file_settings "
                              f"WHERE sourcefile = '{dropin}' ORDER BY seqno")
            assert rows.returncode == 0, rows.stderr
            rendered_names = [line.split("=")[0].strip() for line in dropin.read_text().splitlines()
                              if line.strip() and not line.startswith("#")]
            assert rows.stdout.split() == [f"{n}|t|" for n in rendered_names], rows.stdout
            hba = psql_admin(lab, db_ns, run_dir, pg.port, "-c",
                             "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
            assert hba.stdout.strip() == "0", hba.stdout + hba.stderr

            for attempt in (1, 2):  # idempotent: the second run must succeed too
                run = psql_admin(lab, db_ns, run_dir, pg.port, "-f", str(sql))
                assert run.returncode == 0, f"harbor-role.sql run {attempt} failed:\n{run.stderr}"
            scram = psql_admin(lab, db_ns, run_dir, pg.port, "-c",
                               f"SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                               f"WHERE rolname = '{pg.user}'")
            assert scram.stdout.strip() == "t", scram.stdout + scram.stderr

            db = harbor_yml(cfg, values)["external_database"]["harbor"]
            assert db["ssl_mode"] == "verify-full"
            for address, ns in node_ns.items():
                login = harbor_login(lab, ns, db, db["password"], ca)
                assert login.returncode == 0, f"Harbor node {address} cannot log in:\n{login.stderr}"
                assert login.stdout.strip() == f"{pg.user}|{pg.database}|{address}"
            first_node = node_ns[cfg.harbor_nodes[0].address]
            plain = harbor_login(lab, first_node, db, db["password"], ca, sslmode="disable")
            assert plain.returncode != 0, f"a plaintext connection logged in: {plain.stdout}"
            assert "no encryption" in plain.stderr, plain.stderr
            untrusted = harbor_login(lab, first_node, db, db["password"], other_ca)
            assert untrusted.returncode != 0 and "certificate verify failed" in untrusted.stderr, untrusted.stderr

            refused = harbor_login(lab, outsider_ns, db, db["password"], ca)
            assert refused.returncode != 0, f"non-node address {outsider} logged in: {refused.stdout}"
            assert f'no pg_hba.conf entry for host "{outsider}", user "{pg.user}", database "{pg.database}"' \
                in refused.stderr, refused.stderr
            wrong = harbor_login(lab, first_node, db, password(32), ca)
            assert wrong.returncode != 0, f"a wrong password logged in: {wrong.stdout}"
            assert f'password authentication failed for user "{pg.user}"' in wrong.stderr, wrong.stderr


# ---------------------------------------------------------------------------------------------------------------
# harbor.yml against Harbor's installer template
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def template_text() -> str:
    return HARBOR_TEMPLATE.read_text(encoding="utf-8")


def _paths(data: dict, prefix: str = "") -> dict[str, type]:
    out = {}
    for key, value in data.items():
        here = f"{prefix}.{key}" if prefix else key
        out[here] = type(value)
        if isinstance(value, dict):
            out.update(_paths(value, here))
    return out


def _template_paths(tree, prefix: str = "", commented: bool | None = None) -> dict[str, object]:
    out = {}
    for key, node in tree.items():
        here = f"{prefix}.{key}" if prefix else key
        if commented is None or node.commented == commented:
            out[here] = node
        out.update(_template_paths(node.children, here, commented))
    return out


def test_template_parser_agrees_with_yaml_on_the_uncommented_keys(template_text):
    """The parser's uncommented keys and their types are exactly what a YAML parser reads from the template."""
    by_yaml = {p: (t if t is not type(None) else None) for p, t in _paths(yaml.safe_load(template_text)).items()}
    ours = {p: n.kind for p, n in _template_paths(parse_template(template_text), commented=False).items()}
    assert ours == by_yaml


def test_template_parser_finds_commented_keys_and_skips_prose(template_text):
    """Keys Harbor ships commented out (once or twice) are found with their types; prose comments are not keys."""
    commented = _template_paths(parse_template(template_text), commented=True)
    expected = {
        "external_url": str, "external_database": dict, "external_database.harbor.ssl_mode": str,
        "external_database.harbor.max_open_conns": int, "external_redis.host": str,
        "external_redis.sentinel_master_set": None, "external_redis.registry_db_index": int,
        "external_redis.tlsOptions.enable": bool, "redis.harbor_db_index": int, "metric.enabled": bool,
        "metric.port": int, "trivy.github_token": str, "https.strong_ssl_ciphers": bool,
        "log.external_endpoint.port": int, "trace.jaeger.agent_port": int, "core.quota_update_provider": str,
        # Placeholders (`port: harbor_db_port`) stand for a value of any type.
        "external_database.harbor.port": None, "external_database.harbor.host": None,
    }
    assert {p: commented[p].kind for p in expected if p in commented} == expected
    everything = _template_paths(parse_template(template_text))
    # `# Note: the default number ...` under database and `# enable strong ssl ciphers (default: false)` are prose.
    assert set(everything["database"].children) == set(yaml.safe_load(template_text)["database"])
    assert set(everything["https"].children) == {"port", "certificate", "private_key", "strong_ssl_ciphers"}


def test_uncomment_keeps_indentation_of_nested_comments():
    assert uncomment("#   # registry_db_index: 1") == ("  registry_db_index: 1", 2)
    assert uncomment("#   #sentinel_master_set:") == ("  sentinel_master_set:", 2)
    assert uncomment("  # strong_ssl_ciphers: false") == ("  strong_ssl_ciphers: false", 1)
    assert uncomment("    location: /var/log/harbor") == ("    location: /var/log/harbor", 0)


def test_template_check_reports_unknown_keys_and_wrong_types():
    template = parse_template(
        "http:\n  port: 80\nlist:\n  - a\n# ext:\n#   host: harbor_db_host\n#   # idx: 1\nnothing:\n")
    assert check_against_template({"http": {"port": 8080}, "list": ["b"], "ext": {"host": "x", "idx": 2},
                                   "nothing": None}, template) == []
    problems = check_against_template(
        {"http": {"port": "80", "tls": True}, "list": "b", "ext": {"idx": "2"}, "nope": 1, "nothing": {"a": 1}},
        template)
    assert problems == [
        "http.port: str '80' here, the template has int",
        "http.tls: not a key of Harbor's harbor.yml template",
        "list: str 'b' here, the template has list",
        "ext.idx: str '2' here, the template has int",
        "nope: not a key of Harbor's harbor.yml template",
        "nothing: a mapping here, the template has no value",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_harbor_yml_keys_exist_in_harbor_template(stack, values, template_text):
    """Every key path of the rendered harbor.yml is in Harbor 2.15.2's harbor.yml.tmpl (commented keys included),
    with the template's value type where it shows one."""
    cfg = STACKS[stack]
    data = harbor_yml(cfg, values)
    assert check_against_template(data, parse_template(template_text)) == []
    # Harbor's prepare refuses a harbor.yml whose _version it does not know; it matches the template's.
    assert data["_version"] == yaml.safe_load(template_text)["_version"]


# ---------------------------------------------------------------------------------------------------------------
# The role env files, sourced by components/host/lib.sh
# ---------------------------------------------------------------------------------------------------------------

def test_node_env_reads_back_in_bash_with_shell_metacharacters(tmp_root):
    """Starts bash (set -euo pipefail, as lib.sh) sourcing the rendered harbor-node.env of a stack whose installer
    URL is full of shell metacharacters: every variable reads back exactly, and nothing in it ran."""
    values = dev_like()
    url = "https://mirror.example.com/h.tgz?a=1&b=$(touch PWNED)`touch PWNED`';touch PWNED;'\"x"
    values["harbor"]["installer"] = {"url": url}
    cfg = parse_cluster_config(values)
    spec = next(s for s in harbor_node_files(cfg, cfg.harbor_nodes[0])
                if s.path == "/etc/harbor-ha/env/harbor-node.env")
    env_file = write(tmp_root / "node.env", render(spec, {}), spec.mode)
    assigned = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    script = 'set -euo pipefail; . "$1"; shift; for v; do printf "%s=%s\\0" "$v" "${!v}"; done'
    result = subprocess.run(["bash", "-c", script, "bash", str(env_file), *assigned], capture_output=True,
                            text=True, cwd=tmp_root, timeout=10, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    read_back = dict(item.split("=", 1) for item in result.stdout.split("\0") if item)
    assert read_back["INSTALLER_URL"] == url
    assert read_back == {k: "".join(shlex.split(v)) for k, v in assigned.items()}
    assert not (tmp_root / "PWNED").exists()


# ---------------------------------------------------------------------------------------------------------------
# Files without secrets do not depend on secrets
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_files_without_secret_needs_do_not_depend_on_secret_values(stack, values):
    """render_all with two different value sets: files that need no secret are byte-identical, and no value
    appears in a file whose `needs` does not list it."""
    cfg = STACKS[stack]
    other = make_secret_values(cfg)
    assert all(values[n] != other[n] for n in SECRET_VALUES)
    first, second = render_all(cfg, values), render_all(cfg, other)
    for host, roles in role_files(cfg).items():
        specs = [s for role in roles.values() for s in role]
        paths = [s.path for s in specs]
        assert len(paths) == len(set(paths)), f"{host}: two files with one path: {sorted(paths)}"
        for spec in specs:
            for name in SECRET_VALUES:
                if name not in spec.needs:
                    for vals, rendered in ((values, first), (other, second)):
                        assert vals[name] not in rendered[host][spec.path], \
                            f"{host}:{spec.path} embeds {name} but does not list it in needs"
            if not spec.needs:
                assert first[host][spec.path] == second[host][spec.path], f"{host}:{spec.path} changed"


# ---------------------------------------------------------------------------------------------------------------
# The lab itself
# ---------------------------------------------------------------------------------------------------------------

def _blackhole_routes() -> list[str]:
    listed = subprocess.run(["ip", "route", "show", "type", "blackhole", "198.18.0.0/15"], capture_output=True,
                            text=True, check=True)
    return [line.strip() for line in listed.stdout.splitlines()]


def test_lab_blackholes_the_test_range_and_removes_everything_on_close():
    """Builds a two-namespace lab with `ip` (no server): its own blackhole route for 198.18.0.0/15 exists in the
    root namespace while the lab does, only test addresses are accepted, and close() removes namespaces and route."""
    with Lab(24) as lab:
        lab.add_host("198.18.7.1")
        lab.add_host("198.18.7.2")
        metric = lab._blackhole[-1]
        assert f"blackhole 198.18.0.0/15 metric {metric}" in _blackhole_routes()
        root_route = subprocess.run(["ip", "route", "get", "198.18.7.2"], capture_output=True, text=True)
        assert root_route.returncode != 0, f"root namespace routes a test address: {root_route.stdout}"
        names = list(lab.namespaces)
        with pytest.raises(ValueError):
            lab.add_host("10.0.0.1")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert len(names) == 3 and not set(names) & set(listed)
    assert f"blackhole 198.18.0.0/15 metric {metric}" not in _blackhole_routes()


# ---------------------------------------------------------------------------------------------------------------
# Every rendered file is covered
# ---------------------------------------------------------------------------------------------------------------

# Which test above hands each rendered file to the program that reads it (paths as on the host, default layout).
_NGINX = test_nginx_accepts_rendered_lb_config
_POSTGRES = test_postgres_starts_with_rendered_config_and_admits_harbor_nodes_only
CHECKED_BY = {
    "/etc/nginx/nginx.conf": _NGINX,
    "/etc/sysctl.d/60-harbor-ha-lb.conf": _NGINX,
    "/etc/harbor-ha/tls/harbor.crt": _NGINX,
    "/etc/harbor-ha/tls/harbor.key": _NGINX,
    "/etc/harbor-ha/tls/upstream-ca.crt": _NGINX,
    "/etc/postgresql/*/main/harbor-ha-server.*": _POSTGRES,
    "/etc/harbor-ha/firewall/harbor-ha.nft": firewall_tests.test_rendered_ruleset_loads_in_nft,
    "/etc/systemd/system/harbor-ha-firewall.service": firewall_tests.test_rendered_firewall_unit_passes_systemd_analyze,
    "/etc/harbor-ha/node-tls/*": firewall_tests.test_connection_matrix_and_capture_on_both_topologies,
    "/etc/keepalived/keepalived.conf": test_keepalived_accepts_rendered_config,
    "/etc/redis/redis.conf": test_redis_sentinel_mode_starts_replicates_and_sentinels_agree,
    "/etc/redis/sentinel.conf": test_redis_sentinel_mode_starts_replicates_and_sentinels_agree,
    "/etc/postgresql/*/main/conf.d/harbor-ha.conf": _POSTGRES,
    "/etc/postgresql/*/main/pg_hba.conf": _POSTGRES,
    "/etc/harbor-ha/postgres/harbor-role.sql": _POSTGRES,
    "/opt/harbor/harbor.yml": test_rendered_harbor_yml_keys_exist_in_harbor_template,
    "/etc/harbor-ha/env/*.env": test_node_env_reads_back_in_bash_with_shell_metacharacters,
    # Read by systemd on real Debian hosts (tests/hosts: root, debhosts): Docker after the data mount at boot,
    # nginx restarted under its socket unit.
    "/etc/systemd/system/docker.service.d/harbor-ha-data-volume.conf":
        host_tests.test_every_role_is_active_again_after_a_reboot_with_docker_after_the_data_mount,
    "/etc/systemd/system/nginx.service.d/harbor-ha.conf":
        host_tests.test_nginx_killed_on_the_vip_holder_costs_at_most_one_request,
    "/etc/systemd/system/nginx.socket":
        host_tests.test_nginx_killed_on_the_vip_holder_costs_at_most_one_request,
    # Harbor's boot unit: systemd-analyze verify here; real Harbor back after a reboot on real hosts (tier realharbor).
    "/etc/systemd/system/harbor-ha-harbor.service": (
        unit_tests.test_harbors_boot_unit_passes_systemd_analyze_verify_and_runs_compose_up_after_docker,
        real_harbor_tests.test_every_role_is_applied_unchanged_by_a_second_apply_active_after_reboot_and_deleted),
    # Read by real Harbor's core and registry (tier realharbor): a token of one node opens the other's registry.
    "/data/secret/core/private_key.pem":
        real_harbor_tests.test_push_through_one_node_pull_through_the_other_and_a_token_of_one_node_opens_the_other,
    "/data/secret/registry/root.crt":
        real_harbor_tests.test_push_through_one_node_pull_through_the_other_and_a_token_of_one_node_opens_the_other,
    # Put into core's, jobservice's and registryctl's env by harbor-node.sh: a replication job queued by one node's
    # core and run by either node's jobservice succeeds (tier realharbor).
    "/etc/harbor-ha/harbor/core_secret":
        real_harbor_tests.test_the_migration_section_pulls_every_tag_of_an_old_registry_through_the_jobservice_digests_equal,
    "/etc/harbor-ha/harbor/jobservice_secret":
        real_harbor_tests.test_the_migration_section_pulls_every_tag_of_an_old_registry_through_the_jobservice_digests_equal,
    # Put into core's env by harbor-node.sh: the replication each fault drill starts before its fault ends, none
    # stays InProgress (tier realharbor_drills; docs/ha.md, "A replication that never ends").
    "/etc/harbor-ha/harbor/execution_status_refresh_interval_seconds":
        real_harbor_drills_tests.test_the_replication_started_before_the_fault_lost_no_job,
    # Read by psql and pg_dump on real hosts (tier realharbor_drills): the schema check and the dump before the
    # upgrade's migration.
    "/etc/harbor-ha/harbor/pgpass":
        real_harbor_drills_tests.test_the_rolling_upgrade_by_the_program_backs_up_before_the_migration_and_loses_no_image,
}
# Files whose reader cannot run here (docs/architecture.md, "What cannot be verified without real hosts").
NOT_VERIFIABLE_HERE = {
    "/etc/exports.d/harbor-ha.exports": "exportfs needs the kernel NFS server",
    "/etc/harbor-ha/nfs/fstab-line": "mount.nfs needs the kernel NFS client",
    "/etc/nfs.conf.d/harbor-ha.conf": "read by rpc.mountd, rpc.statd and the kernel NFS server",
    "/data/secret/keys/secretkey": "read by Harbor's containers only",
    "/etc/harbor-ha/harbor/csrf_key": "copied into Harbor core's env by harbor-node.sh after Harbor's prepare",
    "/etc/harbor-ha/harbor/robot_scanner_name_prefix": "copied into Harbor core's env by harbor-node.sh after prepare",
}


def test_every_rendered_file_has_a_real_program_check_or_is_listed_as_unverifiable(values):
    """A file the program starts shipping fails here until a check above covers it (or it is listed as
    unverifiable), so "every rendered file is checked" stays true."""
    rendered = {path for cfg in STACKS.values() for files in render_all(cfg, values).values() for path in files}
    patterns = [*CHECKED_BY, *NOT_VERIFIABLE_HERE]
    uncovered = sorted(p for p in rendered if not any(fnmatch.fnmatch(p, pattern) for pattern in patterns))
    assert not uncovered, f"rendered files no test checks: {uncovered}"
    stale = sorted(pattern for pattern in patterns if not any(fnmatch.fnmatch(p, pattern) for p in rendered))
    assert not stale, f"listed but no longer rendered: {stale}"
