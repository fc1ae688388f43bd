"""PostgresCluster: PostgreSQL under Patroni on the `roles.postgres` hosts (postgres.mode: patroni).

Each database host runs Patroni (which runs PostgreSQL), vip-manager (which holds the database VIP while etcd's
leader key names this host) and `pgbackrest server` (TLS, for the repository host). The repository host keeps
pgBackRest's repository and runs the full/differential backup timers. docs/database-ha.md explains the guarantees.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Optional

import pulumi
import yaml

from components.config import ClusterConfig, Host
from components.etcd import etcd_client_urls, patroni_settings
from components.host.files import FileSpec, render_env, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.monitoring import EXPORTER_DB_ROLE
from components.pgbackrest import (PATRONI_CLUSTER, DbPaths, archive_settings, db_host_backup_env,
                                   db_host_backup_files, deploy_repository, pgbackrest_cmd)
from components.postgres import render_harbor_role_sql, server_tls_settings, server_tls_specs, sql_literal

SCRIPT = Path(__file__).with_name("patroni.sh")  #: the role script of a database host
REPLICATION_USER = "replicator"
REWIND_USER = "rewind_user"
API_USER = "patroni"
DB_VIP_TABLE = "harbor_ha_db_vip"  #: nftables table that refuses VIP connections on a member not holding it
DB_VIP_UNIT = "harbor-ha-db-vip.service"  #: loads it at boot, before vip-manager and Patroni
#: seconds pgBackRest's archive-get waits for the repository (it tries twice). A standby asks the archive first for
#: every WAL file it replays, the local pg_wal and the stream only after that: with pgBackRest's default (60) each
#: file cost 2 minutes while the repository was unreachable (found on real hosts: a new replica, cloned before the
#: repository host was set up, took minutes per segment to become consistent). 10 s still covers a slow repository.
RESTORE_IO_TIMEOUT = 10


@dataclass(frozen=True)
class PatroniPaths(DbPaths):
    """A Patroni member's files besides the database host's own (DbPaths: Debian's layout; the labs use temp dirs)."""

    cluster: str = PATRONI_CLUSTER  #: PGDATA: /var/lib/postgresql/<version>/patroni

    config = property(lambda self: self._p("/etc/patroni/config.yml"))  #: Patroni's config (Debian's unit reads it)
    dynamic = property(lambda self: self._p("/etc/patroni/dynamic.yml"))  #: the DCS settings, applied each run
    pgpass = property(lambda self: self._p("/var/lib/postgresql/.pgpass.patroni"))  #: Patroni writes it
    vip_env = property(lambda self: self._p("/etc/default/vip-manager"))  #: Debian's vip-manager.service env
    role_sql = property(lambda self: self._p("/etc/harbor-ha/patroni/harbor-role.sql"))  #: Harbor's role, database
    db_vip_nft = property(lambda self: self._p("/etc/harbor-ha/patroni/db-vip.nft"))  #: the VIP's nftables table
    #: PostgreSQL's certificate and key (the cluster CA's, components/secrets.py) and the cluster CA, which
    #: replicas and pg_rewind check the leader against
    server_cert = property(lambda self: self._p("/etc/patroni/tls/server.crt"))
    server_key = property(lambda self: self._p("/etc/patroni/tls/server.key"))
    cluster_ca = property(lambda self: self._p("/etc/patroni/tls/cluster-ca.crt"))


def _yaml(doc: Mapping[str, Any], what: str) -> str:
    return f"# {what}: rendered by harbor-ha (components/patroni/); pulumi up overwrites edits.\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False)


def dynamic_settings(cfg: ClusterConfig, paths: Optional[PatroniPaths] = None) -> dict[str, Any]:
    """Patroni's cluster-wide (DCS) settings: bootstrap.dcs, and `patronictl edit-config --replace` on each apply."""
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    p, pg = patroni_settings(cfg), cfg.postgres
    parameters: dict[str, Any] = {
        "max_connections": pg.max_connections,
        "shared_buffers": pg.shared_buffers,
        "password_encryption": "scram-sha-256",
        "wal_level": "replica",
        "hot_standby": "on",
        # pg_rewind needs hint bits in WAL (initdb also turns data checksums on): a crashed leader rejoins as a
        # replica instead of needing a full copy.
        "wal_log_hints": "on",
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_keep_size": "1GB",
        "tcp_keepalives_idle": 60,
        "tcp_keepalives_interval": 10,
        "tcp_keepalives_count": 6,
        # A replica whose leader changed retries its WAL stream (and the new timeline's history) every 0.5 s
        # instead of every 5 s (PostgreSQL's default): in synchronous mode the new leader's commits wait for it.
        "wal_retrieve_retry_interval": "500ms",
    }
    if cfg.backup:
        # The command itself is per host (render_patroni_yml): it names the host's own pgbackrest.conf.
        parameters.update({k: v for k, v in archive_settings(paths).items() if k != "archive_command"})
    settings: dict[str, Any] = {
        "ttl": p.ttl,
        "loop_wait": p.loop_wait,
        "retry_timeout": p.retry_timeout,
        # 1 MiB: a replica further behind than that is not promoted (async mode's bound on lost data).
        "maximum_lag_on_failover": 1048576,
        "synchronous_mode": p.synchronous != "off",
        # strict: with no synchronous standby left, commits wait rather than being acknowledged without a copy.
        # Patroni promotes with synchronous_standby_names='*' in this mode, which closes the window in which
        # non-strict mode acknowledges commits on a fresh leader before it names a new standby.
        "synchronous_mode_strict": p.synchronous == "strict",
        # No replication slots when the WAL archive exists: a replica that falls behind wal_keep_size fetches the
        # rest from the repository (restore_command), and a new leader needs no slot before its replicas stream.
        # The lab measured that wait: 2-3 s of blocked synchronous commits after each switchover or failover, while
        # Patroni 3.0.2 created the members' slots on the new leader. Without an archive, slots keep the WAL.
        "postgresql": {"use_pg_rewind": True, "use_slots": cfg.backup is None, "parameters": parameters},
    }
    return settings


def render_pg_hba(cfg: ClusterConfig) -> list[str]:
    """pg_hba lines: replication among the database hosts, Harbor's user from the Harbor nodes only; every TCP
    connection over TLS only (`hostssl`: a plaintext one finds no line and is refused)."""
    pg = cfg.postgres
    lines = ["local all postgres peer",
             # The monitoring role's PostgreSQL exporter logs in over the socket as its own system user; without
             # this line it met the password line below and every member's pg_up stayed 0.
             *([f"local all {EXPORTER_DB_ROLE} peer"] if cfg.monitoring else []),
             "local all all scram-sha-256",
             # Patroni's replicas also open a replication connection to the local server: over the unix socket
             # (use_unix_socket_repl), where the replication user's sslmode does not apply.
             "local replication all scram-sha-256",
             "hostssl all all 127.0.0.1/32 scram-sha-256"]
    for h in cfg.postgres_hosts:
        lines += [f"hostssl replication {REPLICATION_USER} {h.address}/32 scram-sha-256",
                  # pg_rewind of a returning leader connects to the new one.
                  f"hostssl all {REWIND_USER} {h.address}/32 scram-sha-256"]
    lines += [f"hostssl {pg.database} {pg.user} {n.address}/32 scram-sha-256" for n in cfg.harbor_nodes]
    return lines


def render_restore_command(paths: PatroniPaths) -> str:
    """PostgreSQL's restore_command on the members (pure): WAL from the repository; a timeline history file that
    is already in pg_wal is taken from there first. PostgreSQL asks the archive before pg_wal for every history
    file (src/backend/access/transam/timeline.c: existsTimeLineHistory, writeTimeLineHistory), and each pgBackRest
    call costs 0.1-0.4 s here: a promotion and a replica following it made four or five such calls while a strict
    synchronous leader's commits waited. A history file never changes once written (one per timeline), so the local
    copy, which the WAL receiver fetched from the leader, is the archived one. WAL segments still come from the
    archive first (a local one may be partial)."""
    return ('case "%f" in *.history) [ -f "pg_wal/%f" ] && exec cp "pg_wal/%f" "%p";; esac; '
            f'exec {pgbackrest_cmd(paths)} --io-timeout={RESTORE_IO_TIMEOUT} archive-get "%f" "%p"')


def render_patroni_yml(cfg: ClusterConfig, host: Host, secrets: Mapping[str, str],
                       paths: Optional[PatroniPaths] = None) -> str:
    """/etc/patroni/config.yml of one database host (pure)."""
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    p, pg = patroni_settings(cfg), cfg.postgres
    # Replication (pg_basebackup, the WAL stream) and pg_rewind connect to the leader's connect_address (the VIP):
    # checked against the cluster CA, and the address against the certificate (server_tls_names names the VIP).
    member_tls = {"sslmode": "verify-full", "sslrootcert": paths.cluster_ca}
    doc = {
        "scope": p.scope,
        "namespace": "/service/",
        "name": host.name,
        "restapi": {
            "listen": f"{host.address}:{p.rest_api_port}",
            "connect_address": f"{host.address}:{p.rest_api_port}",
            # Unsafe endpoints (switchover, restart, reinitialize) need these; patronictl reads them from here.
            "authentication": {"username": API_USER, "password": secrets["patroni_api_password"]},
        },
        "etcd": {"hosts": etcd_client_urls(cfg)},
        "bootstrap": {
            "dcs": dynamic_settings(cfg, paths),
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
            # While the first member bootstraps (Patroni's validation wants it set; the same lines as later).
            "pg_hba": render_pg_hba(cfg),
        },
        "postgresql": {
            # The VIP too (bound before it arrives: the role script allows non-local binds), so Harbor's
            # connections to it reach the leader without listening on every interface.
            "listen": f"127.0.0.1,{host.address},{p.vip}:{pg.port}",
            # Every member advertises the VIP as its PostgreSQL address, so a replica's primary_conninfo names the
            # VIP, not a host: when the leader changes, its WAL receiver reaches the new leader through the VIP on
            # its own (retrying every wal_retrieve_retry_interval). Re-pointed by its Patroni instead, a replica
            # that is not a switchover's candidate first sleeps a fixed 2 s (patroni/ha.py
            # process_unhealthy_cluster, "Give a time to somebody to take the leader lock", 3.0.2 to 4.1), and a
            # strict synchronous leader's first commit waits for a replica. pg_rewind and clones also reach the
            # leader this way; Patroni talks to each member through its REST address above.
            "connect_address": f"{p.vip}:{pg.port}",
            "use_unix_socket": True,
            # The replica's own timeline check (IDENTIFY_SYSTEM on the local server): over the unix socket, since
            # verify-full to `localhost` would fail (the certificate names the member's address, not localhost).
            "use_unix_socket_repl": True,
            "data_dir": paths.data_dir,
            "bin_dir": paths.bin_dir,
            "pgpass": paths.pgpass,
            "authentication": {
                "superuser": {"username": "postgres", "password": secrets["pg_superuser_password"]},
                "replication": {"username": REPLICATION_USER, "password": secrets["pg_replication_password"],
                                **member_tls},
                # pg_rewind of a returning leader: Patroni creates this user with only the functions it needs.
                "rewind": {"username": REWIND_USER, "password": secrets["pg_rewind_password"], **member_tls},
            },
            # Per host, not in the DCS settings: the files are this host's.
            "parameters": {"unix_socket_directories": paths.socket_dir,
                           **server_tls_settings(paths.server_cert, paths.server_key),
                           **({"archive_command": archive_settings(paths)["archive_command"]} if cfg.backup else {})},
            # A replica that fell behind the leader's WAL fetches the missing segments from the repository.
            **({"recovery_conf": {"restore_command": render_restore_command(paths)}} if cfg.backup else {}),
            "pg_hba": render_pg_hba(cfg),
            # A fast checkpoint: a new or re-cloned replica starts copying at once.
            "basebackup": [{"checkpoint": "fast"}],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }
    return _yaml(doc, "Patroni")


def render_dynamic_yml(cfg: ClusterConfig, paths: Optional[PatroniPaths] = None) -> str:
    """The DCS settings as a file for `patronictl edit-config --replace` (pure)."""
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    return _yaml(dynamic_settings(cfg, paths), "Patroni's dynamic configuration")


def render_vip_manager_env(cfg: ClusterConfig, host: Host) -> str:
    """/etc/default/vip-manager: hold postgres.vip while etcd's leader key names this host (pure)."""
    p = patroni_settings(cfg)
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{cfg.prefix_length}").netmask)
    values = {
        "VIP_IP": p.vip, "VIP_MASK": str(cfg.prefix_length), "VIP_NETMASK": mask, "VIP_IFACE": p.vip_interface,
        "VIP_KEY": f"/service/{p.scope}/leader", "VIP_TRIGGER_KEY": f"/service/{p.scope}/leader",
        "VIP_HOST": host.name, "VIP_TRIGGER_VALUE": host.name, "VIP_TYPE": "etcd", "VIP_DCS_TYPE": "etcd",
        "VIP_ENDPOINT": ",".join(f"http://{u}" for u in etcd_client_urls(cfg)),
        "VIP_DCS_ENDPOINTS": ",".join(f"http://{u}" for u in etcd_client_urls(cfg)),
        "VIP_INTERVAL": str(p.vip_interval_ms),
    }
    return "# Rendered by harbor-ha (components/patroni/); pulumi up overwrites edits.\n" + render_env(values)


def render_db_vip_nft(cfg: ClusterConfig, host: Host) -> str:
    """The nftables table of a member that refuses connections to the database VIP while it is elsewhere (pure)."""
    return render_template("patroni/db-vip.nft.j2", host=host, table=DB_VIP_TABLE, vip=patroni_settings(cfg).vip,
                           port=cfg.postgres.port)


def patroni_files(cfg: ClusterConfig, host: Host, paths: PatroniPaths | None = None) -> list[FileSpec]:
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    needs = ("patroni_api_password", "pg_superuser_password", "pg_replication_password", "pg_rewind_password")
    specs = [
        FileSpec(path=paths.config, render=lambda s: render_patroni_yml(cfg, host, s, paths), needs=needs,
                 mode=0o600, owner="postgres", group="postgres"),
        FileSpec(path=paths.dynamic, render=lambda _s: render_dynamic_yml(cfg, paths), owner="postgres",
                 group="postgres"),
        FileSpec(path=paths.vip_env, render=lambda _s: render_vip_manager_env(cfg, host)),
        # One certificate for every member (components/secrets.py says why), a reload of Patroni makes PostgreSQL
        # re-read it.
        *server_tls_specs(paths.server_cert, paths.server_key),
        FileSpec(path=paths.cluster_ca, render=lambda s: s["cluster_ca_certificate"],
                 needs=("cluster_ca_certificate",), owner="postgres", group="postgres"),
        FileSpec(path=paths.role_sql, render=lambda s: render_harbor_role_sql(cfg, s["db_password"]),
                 needs=("db_password",), mode=0o600, owner="postgres", group="postgres"),
        # The database VIP is in `listen` before it is on this host.
        FileSpec(path="/etc/sysctl.d/60-harbor-ha-patroni.conf", render=lambda _s: "net.ipv4.ip_nonlocal_bind = 1\n"),
        FileSpec(path=paths.db_vip_nft, render=lambda _s: render_db_vip_nft(cfg, host)),
        FileSpec(path=f"/etc/systemd/system/{DB_VIP_UNIT}",
                 render=lambda _s: render_template("patroni/harbor-ha-db-vip.service.j2", ruleset=paths.db_vip_nft,
                                                   table=DB_VIP_TABLE)),
    ]
    if cfg.backup:
        specs += db_host_backup_files(cfg, host, paths)
    env = {"PG_VERSION": str(cfg.postgres.version), "CONFIG": paths.config, "DYNAMIC": paths.dynamic,
           "DB_VIP_NFT": paths.db_vip_nft, "DB_VIP_UNIT": DB_VIP_UNIT,
           "DATA_DIR": paths.data_dir, "ROLE_SQL": paths.role_sql, "SOCKET_DIR": paths.socket_dir,
           "API": f"http://{host.address}:{patroni_settings(cfg).rest_api_port}", "VIP": patroni_settings(cfg).vip,
           **db_host_backup_env(cfg, paths)}
    return [*specs, role_env("patroni", env)]


class PostgresClusterArgs(RoleArgs):
    """Inputs of PostgresCluster (the common role inputs; `after` should hold the Etcd component)."""


class PostgresCluster(pulumi.ComponentResource):
    """Patroni + vip-manager + pgBackRest on every database host, and the pgBackRest repository host."""

    endpoint: str  #: `vip:port`: Harbor's external_database
    database: str  #: Harbor's database
    username: str  #: Harbor's user
    members: list[HostRole]  #: the deployment on each database host (the first bootstraps the cluster)
    repository: Optional[HostRole]  #: the repository host's deployment (backup.repository host)

    def __init__(self, name: str, args: PostgresClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:patroni:PostgresCluster", name, None, opts)
        cfg = args.cfg
        first, *others = cfg.postgres_hosts
        # Protected like the single server: removing a member from config must not wipe it unasked.
        leader = deploy_role(self, name, first, SCRIPT, patroni_files(cfg, first), args, protect=True)
        # Replicas after the bootstrap leader, so they clone it instead of racing to initialize.
        self.members = [leader] + [
            deploy_role(self, name, h, SCRIPT, patroni_files(cfg, h), args, after=[*args.after, leader], protect=True)
            for h in others]
        self.repository = deploy_repository(self, name, args, after=self.members)
        self.endpoint = f"{patroni_settings(cfg).vip}:{cfg.postgres.port}"
        self.database, self.username = cfg.postgres.database, cfg.postgres.user
        self.register_outputs({"endpoint": self.endpoint, "database": self.database, "username": self.username})


def render_migration_sql(cfg: ClusterConfig, secrets: Mapping[str, str]) -> str:
    """Run on the single server before the move (pure): Patroni's users exist with Patroni's passwords in the copy
    that becomes the first member (Patroni creates them only when it initializes a new cluster itself)."""
    lines = ["-- Rendered by harbor-ha (components/patroni/): the single server, before pg_basebackup."]
    for user, secret, attributes in ((REPLICATION_USER, "pg_replication_password", "LOGIN REPLICATION"),
                                     (REWIND_USER, "pg_rewind_password", "LOGIN")):
        lines += [f"SELECT 'CREATE ROLE {user}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                  f"'{user}')\\gexec",
                  f"ALTER ROLE {user} WITH {attributes} PASSWORD {sql_literal(secrets[secret])};"]
    lines.append(f"ALTER ROLE postgres WITH PASSWORD {sql_literal(secrets['pg_superuser_password'])};")
    # What pg_rewind needs of a non-superuser (Patroni grants the same when it bootstraps).
    lines += [f"GRANT EXECUTE ON function pg_catalog.{f} TO {REWIND_USER};" for f in (
        "pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)", "pg_read_binary_file(text)",
        "pg_read_binary_file(text, bigint, bigint, boolean)")]
    return "\n".join(lines) + "\n"


def render_migration_script(cfg: ClusterConfig, source: str, paths: PatroniPaths) -> str:
    """Run as postgres on the first Patroni member, Patroni stopped and its data directory empty (pure): a copy of
    the single server at `source` becomes the data directory Patroni then takes over as leader."""
    return (f"set -euo pipefail\n"
            f"{paths.bin_dir}/pg_basebackup -h {shlex.quote(source)} -p {cfg.postgres.port} -U {REPLICATION_USER} "
            f"-D {shlex.quote(paths.data_dir)} -X stream -c fast --no-password\n")
