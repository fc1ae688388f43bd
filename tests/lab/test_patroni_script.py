"""components/patroni/patroni.sh's functions against the real programs they drive: PostgreSQL 15 (this machine's
binaries, pg_ctl as postgres on a private unix socket, no TCP) and Patroni's own config validation (`patroni
--validate-config`, in test network namespaces on 198.19.220.0/24)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

from components.config import parse_cluster_config
from components.patroni import RESTORE_IO_TIMEOUT, PatroniPaths, render_patroni_yml
from components.pgbackrest import render_pgbackrest_db_conf
from components.postgres import render_harbor_role_sql
from labs import certs as lab_certs
from labs.engine.pulumi_harness import patroni_values
from tests.support.netlab import Lab, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCRIPT = ROOT / "components" / "patroni" / "patroni.sh"
LIB_ENV = {"HARBOR_HA_LIB": str(ROOT / "components" / "host" / "lib.sh")}
# Accepts connections until killed: stands in for what answers on an address and port Patroni's validation probes.
LISTENER = ("import socket, sys\ns = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
            "while True: s.accept()[0].close()\n")


def lab_values() -> dict:
    """The patroni example stack with its addresses moved into this lab's 198.19.220.0/24 (10.20.0.N -> .1N), on
    this machine's PostgreSQL 15."""
    values = json.loads(json.dumps(patroni_values()).replace('"10.20.0.', '"198.19.220.1'))
    values["postgres"]["version"] = 15
    return values


@pytest.fixture
def pg_base() -> Iterator[Path]:
    """A folder postgres owns and can reach (pytest's tmp_path is inside root's 0700 folder)."""
    base = Path(tempfile.mkdtemp(prefix="patroni-script-"))
    shutil.chown(base, "postgres", "postgres")
    yield base
    shutil.rmtree(base)


def initdb(data: Path) -> None:
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(data.parent, "postgres", "postgres")
    init = as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-N", "-U", "postgres", "--auth-local=peer")
    assert init.returncode == 0, init.stderr


def as_postgres(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout,
                          cwd="/")


def test_harbor_role_sql_completes_on_a_first_member_whose_commits_wait_for_a_standby(tmp_path, pg_base):
    cfg = parse_cluster_config(patroni_values())
    data, sock = pg_base / "data", pg_base / "run"
    initdb(data)
    sock.mkdir()
    shutil.chown(sock, "postgres", "postgres")
    options = f"-c listen_addresses='' -c unix_socket_directories={sock} -c synchronous_standby_names='*'"
    start = as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(pg_base / "log"), "-w",
                        "start")
    assert start.returncode == 0, start.stderr
    try:
        # A commit outside the role SQL does wait (the state of a member without a standby): still waiting
        # after 3 s, then killed (the server's stop below ends its session).
        with pytest.raises(subprocess.TimeoutExpired):
            as_postgres("psql", "-X", "-h", str(sock), "-c", "CREATE TABLE waits_for_a_standby ()", timeout=3)
        sql_dir = tmp_path / "etc-harbor-ha"  # root-only, as /etc/harbor-ha
        sql_dir.mkdir(mode=0o700)
        sql = sql_dir / "harbor-role.sql"
        sql.write_text(render_harbor_role_sql(cfg, "a-password"))
        sql.chmod(0o600)
        run = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; apply_harbor_role; apply_harbor_role'],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, **LIB_ENV, "ROLE_SQL": str(sql), "SOCKET_DIR": str(sock)})
        assert run.returncode == 0, run.stderr
        check = as_postgres("psql", "-X", "-At", "-h", str(sock), "-c",
                            f"SELECT count(*) FROM pg_database WHERE datname = '{cfg.postgres.database}'")
        assert check.stdout.strip() == "1", check.stdout + check.stderr
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")


def test_check_config_accepts_a_member_while_the_leader_holds_the_database_vip_and_refuses_a_taken_port(tmp_path):
    """Three namespaces with the members' addresses; the leader's also holds the database VIP. Listeners stand in for
    etcd's client port on every member and PostgreSQL on the VIP (what Patroni's validation connects to). The real
    `patroni --validate-config` judges the second member's rendered config.yml through check_config: accepted; and
    refused once something listens on the member's own PostgreSQL port."""
    cfg = parse_cluster_config(lab_values())
    assert cfg.patroni
    leader, member, third = cfg.postgres_hosts
    secrets = {k: "a-secret" for k in ("patroni_api_password", "pg_superuser_password", "pg_replication_password",
                                       "pg_rewind_password")}
    config = tmp_path / "config.yml"
    config.write_text(render_patroni_yml(cfg, member, secrets))
    config.chmod(0o600)
    with Lab(cfg.prefix_length) as lab:
        ns = {h.name: lab.add_host(h.address) for h in (leader, member, third)}
        lab.run(ns[leader.name], ["ip", "addr", "add", f"{cfg.patroni.vip}/{cfg.prefix_length}", "dev", "eth0"])
        listeners = [(ns[h.name], h.address, cfg.patroni.etcd_client_port) for h in (leader, member, third)]
        listeners.append((ns[leader.name], cfg.patroni.vip, cfg.postgres.port))
        for n, address, port in listeners:
            lab.start(n, ["python3", "-c", LISTENER, address, str(port)], log=str(tmp_path / "listeners.log"))
        for address, port in [(a, p) for _n, a, p in listeners]:
            wait_until(lambda a=address, p=port: lab.run(ns[member.name], ["bash", "-c", f"</dev/tcp/{a}/{p}"])
                       .returncode == 0, what=f"listener {address}:{port}")

        def check_config() -> subprocess.CompletedProcess:
            return lab.run(ns[member.name], ["bash", "-c", f'. "{SCRIPT}"; check_config'], timeout=60,
                           env={**LIB_ENV, "CONFIG": str(config), "VIP": cfg.patroni.vip})

        accepted = check_config()
        assert accepted.returncode == 0, accepted.stderr
        lab.start(ns[member.name], ["python3", "-c", LISTENER, member.address, str(cfg.postgres.port)],
                  log=str(tmp_path / "listeners.log"))
        wait_until(lambda: lab.run(ns[member.name], ["bash", "-c", f"</dev/tcp/{member.address}/{cfg.postgres.port}"])
                   .returncode == 0, what="the member's own port taken")
        refused = check_config()
        assert refused.returncode != 0 and "already in use" in refused.stderr, refused.stderr
    assert config.read_text() == render_patroni_yml(cfg, member, secrets)


def test_restore_command_gives_up_on_an_unreachable_repository_after_its_short_io_timeout(pg_base):
    """A member's namespace and the repository host's, where nothing listens yet (the first apply sets the
    repository up after the members). The rendered restore_command, run by the real pgbackrest with the member's
    rendered pgbackrest.conf, fails with pgBackRest's connect error, having taken the short io-timeout; the time is
    printed, not asserted (pgBackRest's default of 60 s made each WAL file of a new replica cost 2 minutes)."""
    cfg = parse_cluster_config(lab_values())
    assert cfg.backup_host
    member = cfg.postgres_hosts[1]
    paths = PatroniPaths(root=str(pg_base), pg_version=15)
    initdb(Path(paths.data_dir))  # pgBackRest reads its pg_control first
    secrets = {k: "a-secret" for k in ("patroni_api_password", "pg_superuser_password", "pg_replication_password",
                                       "pg_rewind_password")}
    restore = yaml.safe_load(render_patroni_yml(cfg, member, secrets, paths))["postgresql"]["recovery_conf"][
        "restore_command"]
    Path(paths.pgbackrest_conf).parent.mkdir(parents=True)
    Path(paths.pgbackrest_conf).write_text(render_pgbackrest_db_conf(cfg, member, {}, paths))
    for d in (paths.tls_dir, paths.pgbackrest_log):
        Path(d).mkdir(parents=True, exist_ok=True)
    for pem, text in zip(("ca.crt", "pgbackrest.crt", "pgbackrest.key"),
                         lab_certs.ca_and_server("harbor-ha-pgbackrest", [member.address]), strict=True):
        (Path(paths.tls_dir) / pem).write_bytes(text)
        (Path(paths.tls_dir) / pem).chmod(0o600)
    # The console's info level shows the options pgBackRest took ("archive-get command begin ... --io-timeout=").
    command = restore.replace("%f", "000000010000000000000003").replace("%p", str(pg_base / "RECOVERYXLOG")).replace(
        " archive-get ", " --log-level-console=info archive-get ")
    with Lab(cfg.prefix_length) as lab:
        ns = lab.add_host(member.address)
        lab.add_host(cfg.backup_host.address)
        t0 = time.monotonic()
        run = lab.run(ns, ["bash", "-c", command], timeout=150)
        print(f"archive-get gave up after {time.monotonic() - t0:.1f} s")
    assert run.returncode != 0
    assert "HostConnectError" in run.stderr and "Connection refused" in run.stderr, run.stderr
    assert f"--io-timeout={RESTORE_IO_TIMEOUT} " in run.stdout, run.stdout
