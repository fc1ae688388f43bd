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

from components.config import BackupSettings, ClusterConfig, Host
from components.etcd import etcd_client_urls, patroni_settings
from components.host.files import FileSpec, render_env, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.postgres import render_harbor_role_sql, server_tls_settings, server_tls_specs, sql_literal

SCRIPT = Path(__file__).with_name("patroni.sh")  #: the role script of a database host
REPO_SCRIPT = Path(__file__).with_name("pgbackrest-repo.sh")  #: the role script of the repository host
STANZA = "harbor"  #: pgBackRest's name for the cluster
PGBACKREST_CLIENT_CN = "harbor-ha-pgbackrest"  #: CN of the one certificate tls-server-auth admits
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
class PatroniPaths:
    """Where the files of a database or repository host live (Debian's layout; the database lab uses temp dirs)."""

    root: str = ""  #: prefix of every path below (the lab's per-host directory); "" on a real host
    pg_version: int = 15  #: PostgreSQL major version, in the Debian paths

    def _p(self, path: str) -> str:
        return f"{self.root}{path}"

    config = property(lambda self: self._p("/etc/patroni/config.yml"))  #: Patroni's config (Debian's unit reads it)
    dynamic = property(lambda self: self._p("/etc/patroni/dynamic.yml"))  #: the DCS settings, applied each run
    data_dir = property(lambda self: self._p(f"/var/lib/postgresql/{self.pg_version}/patroni"))  #: PGDATA
    bin_dir = property(lambda self: f"/usr/lib/postgresql/{self.pg_version}/bin")  #: PostgreSQL's programs
    socket_dir = property(lambda self: self._p("/var/run/postgresql"))  #: unix socket directory
    pgpass = property(lambda self: self._p("/var/lib/postgresql/.pgpass.patroni"))  #: Patroni writes it
    vip_env = property(lambda self: self._p("/etc/default/vip-manager"))  #: Debian's vip-manager.service env
    #: pgBackRest's default config file (`pgbackrest server` of Debian's unit reads it; /etc/pgbackrest.conf, which
    #: the package ships, is only read when this one does not exist)
    pgbackrest_conf = property(lambda self: self._p("/etc/pgbackrest/pgbackrest.conf"))
    tls_dir = property(lambda self: self._p("/etc/pgbackrest/tls"))  #: pgBackRest's CA, certificate, key
    s3_ca = property(lambda self: self._p("/etc/pgbackrest/s3-ca.crt"))  #: backup.s3.caCertificate (repository s3)
    pgbackrest_log = property(lambda self: self._p("/var/log/pgbackrest"))  #: pgBackRest's log files
    pgbackrest_lock = property(lambda self: self._p("/tmp/pgbackrest"))  #: pgBackRest's lock files
    role_sql = property(lambda self: self._p("/etc/harbor-ha/patroni/harbor-role.sql"))  #: Harbor's role, database
    db_vip_nft = property(lambda self: self._p("/etc/harbor-ha/patroni/db-vip.nft"))  #: the VIP's nftables table
    #: PostgreSQL's certificate and key (the cluster CA's, components/secrets.py) and the cluster CA, which
    #: replicas and pg_rewind check the leader against
    server_cert = property(lambda self: self._p("/etc/patroni/tls/server.crt"))
    server_key = property(lambda self: self._p("/etc/patroni/tls/server.key"))
    cluster_ca = property(lambda self: self._p("/etc/patroni/tls/cluster-ca.crt"))


def _backup(cfg: ClusterConfig) -> BackupSettings:
    """`cfg.backup`, for the renderers that only run with a `harbor-ha:backup` section."""
    if cfg.backup is None:
        raise ValueError("there is no harbor-ha:backup section")
    return cfg.backup


def _repository_host(cfg: ClusterConfig) -> Host:
    """`cfg.backup_host`, which the config model sets (and requires) with backup.repository host."""
    if cfg.backup_host is None:
        raise ValueError("backup.repository is not host: there is no roles.backup host")
    return cfg.backup_host


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
        # 60 s: the WAL of a quiet cluster still reaches the repository within a minute (the restore's RPO).
        # The commands themselves are per host (render_patroni_yml): they name the host's own pgbackrest.conf.
        parameters.update(archive_mode="on", archive_timeout=60)
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


def _pgbackrest_cmd(paths: PatroniPaths) -> str:
    return f"pgbackrest --config={paths.pgbackrest_conf} --stanza={STANZA}"


def render_pg_hba(cfg: ClusterConfig) -> list[str]:
    """pg_hba lines: replication among the database hosts, Harbor's user from the Harbor nodes only; every TCP
    connection over TLS only (`hostssl`: a plaintext one finds no line and is refused)."""
    pg = cfg.postgres
    lines = ["local all postgres peer",
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
            f'exec {_pgbackrest_cmd(paths)} --io-timeout={RESTORE_IO_TIMEOUT} archive-get "%f" "%p"')


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
                           **({"archive_command": f"{_pgbackrest_cmd(paths)} archive-push %p"} if cfg.backup else {})},
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


def _ini(sections: Mapping[str, Mapping[str, Any]]) -> str:
    out = ["# Rendered by harbor-ha (components/patroni/); pulumi up overwrites edits."]
    for name, options in sections.items():
        out.append(f"\n[{name}]")
        out += [f"{k}={v}" for k, v in options.items()]
    return "\n".join(out) + "\n"


def _tls_files(paths: PatroniPaths) -> dict[str, str]:
    return {"ca": f"{paths.tls_dir}/ca.crt", "cert": f"{paths.tls_dir}/pgbackrest.crt",
            "key": f"{paths.tls_dir}/pgbackrest.key"}


def _pgbackrest_common(cfg: ClusterConfig, host: Host, paths: PatroniPaths) -> dict[str, Any]:
    tls = _tls_files(paths)
    common: dict[str, Any] = {"log-path": paths.pgbackrest_log, "lock-path": paths.pgbackrest_lock,
                              "log-level-console": "warn", "log-level-file": "info"}
    backup = _backup(cfg)
    if backup.repository == "host":
        common.update({"tls-server-address": host.address, "tls-server-port": backup.tls_port,
                       "tls-server-ca-file": tls["ca"], "tls-server-cert-file": tls["cert"],
                       "tls-server-key-file": tls["key"], "tls-server-auth": f"{PGBACKREST_CLIENT_CN}={STANZA}"})
    return common


def _repository(cfg: ClusterConfig, secrets: Mapping[str, str], paths: PatroniPaths) -> dict[str, Any]:
    b = _backup(cfg)
    repo: dict[str, Any] = {"repo1-path": b.path, "repo1-retention-full": b.retention_full,
                            "repo1-retention-diff": b.retention_diff, "start-fast": "y"}
    if b.repository == "s3":
        # pgBackRest speaks HTTPS to S3 and verifies the endpoint's certificate (repo1-storage-verify-tls=y).
        repo.update({"repo1-type": "s3", "repo1-s3-endpoint": b.s3_endpoint, "repo1-storage-port": b.s3_port,
                     "repo1-s3-bucket": b.s3_bucket, "repo1-s3-region": b.s3_region,
                     "repo1-s3-uri-style": b.s3_uri_style,
                     **({"repo1-storage-ca-file": paths.s3_ca} if b.s3_ca_certificate else {}),
                     # pgBackRest treats these as secure options: never accepted on a command line, never passed
                     # to its own subprocesses on one, shown as <redacted> in its logs.
                     "repo1-s3-key": secrets["backup_s3_access_key"],
                     "repo1-s3-key-secret": secrets["backup_s3_secret_key"]})
    return repo


def render_pgbackrest_db_conf(cfg: ClusterConfig, host: Host, secrets: Mapping[str, str],
                              paths: Optional[PatroniPaths] = None) -> str:
    """pgbackrest.conf of a database host: archive-push/-get to the repository host (TLS) or the bucket (pure)."""
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    tls = _tls_files(paths)
    glob = _pgbackrest_common(cfg, host, paths)
    backup = _backup(cfg)
    if backup.repository == "host":
        # repo1-path too: pgBackRest sends it to the repository host's server with each command.
        glob.update({"repo1-host": _repository_host(cfg).address, "repo1-host-type": "tls", "repo1-path": backup.path,
                     "repo1-host-port": backup.tls_port, "repo1-host-ca-file": tls["ca"],
                     "repo1-host-cert-file": tls["cert"], "repo1-host-key-file": tls["key"]})
    else:
        glob.update(_repository(cfg, secrets, paths))
    stanza = {"pg1-path": paths.data_dir, "pg1-port": cfg.postgres.port, "pg1-socket-path": paths.socket_dir}
    return _ini({"global": glob, STANZA: stanza})


def render_pgbackrest_repo_conf(cfg: ClusterConfig, paths: Optional[PatroniPaths] = None,
                                db_paths: Mapping[str, PatroniPaths] | None = None) -> str:
    """pgbackrest.conf of the repository host: the repository, and every database host over TLS (pure).
    `db_paths`: each database host's paths by name (the lab's per-host directories), Debian's by default."""
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    host = _repository_host(cfg)
    tls = _tls_files(paths)
    glob = {**_pgbackrest_common(cfg, host, paths), **_repository(cfg, {}, paths)}
    stanza: dict[str, Any] = {}
    for i, h in enumerate(cfg.postgres_hosts, start=1):
        hp = (db_paths or {}).get(h.name, PatroniPaths(pg_version=cfg.postgres.version))
        stanza.update({f"pg{i}-host": h.address, f"pg{i}-host-type": "tls", f"pg{i}-host-port": _backup(cfg).tls_port,
                       f"pg{i}-host-ca-file": tls["ca"], f"pg{i}-host-cert-file": tls["cert"],
                       f"pg{i}-host-key-file": tls["key"], f"pg{i}-path": hp.data_dir,
                       f"pg{i}-port": cfg.postgres.port, f"pg{i}-socket-path": hp.socket_dir})
    return _ini({"global": glob, STANZA: stanza})


def render_backup_units(cfg: ClusterConfig, paths: Optional[PatroniPaths] = None) -> dict[str, str]:
    """systemd units of the scheduled backups: {file name: content} (pure). On the repository host; with an S3
    repository on every database host, where only the current leader's run backs up (ExecCondition)."""
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    b = _backup(cfg)
    units: dict[str, str] = {}
    for kind, schedule in (("full", b.full_schedule), ("diff", b.diff_schedule)):
        condition = ("" if b.repository == "host" else
                     f"ExecCondition=/usr/bin/curl -sf -o /dev/null http://{{addr}}:{patroni_settings(cfg).rest_api_port}"
                     "/primary\n")
        units[f"pgbackrest-{kind}.service"] = (
            f"[Unit]\nDescription=pgBackRest {kind} backup of Harbor's database (harbor-ha)\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            f"[Service]\nType=oneshot\nUser=postgres\nGroup=postgres\n{condition}"
            f"ExecStart=/usr/bin/pgbackrest --config={paths.pgbackrest_conf} --stanza={STANZA} --type={kind} backup\n")
        units[f"pgbackrest-{kind}.timer"] = (
            f"[Unit]\nDescription=pgBackRest {kind} backup schedule (harbor-ha)\n\n"
            f"[Timer]\nOnCalendar={schedule}\n# A run missed while the host was down starts at boot.\nPersistent=true\n"
            "RandomizedDelaySec=300\n\n[Install]\nWantedBy=timers.target\n")
    return units


def _tls_specs(paths: PatroniPaths) -> list[FileSpec]:
    tls = _tls_files(paths)
    return [FileSpec(path=tls["ca"], render=lambda s: s["pgbackrest_ca_cert"], needs=("pgbackrest_ca_cert",),
                     owner="postgres", group="postgres"),
            FileSpec(path=tls["cert"], render=lambda s: s["pgbackrest_cert"], needs=("pgbackrest_cert",),
                     owner="postgres", group="postgres"),
            FileSpec(path=tls["key"], render=lambda s: s["pgbackrest_key"], needs=("pgbackrest_key",), mode=0o600,
                     owner="postgres", group="postgres")]


def _unit_specs(cfg: ClusterConfig, host: Host, paths: PatroniPaths) -> list[FileSpec]:
    def unit(name: str, text: str) -> FileSpec:
        return FileSpec(path=f"/etc/systemd/system/{name}", render=lambda _s: text.replace("{addr}", host.address))
    return [unit(name, text) for name, text in render_backup_units(cfg, paths).items()]


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
    s3 = cfg.backup is not None and cfg.backup.repository == "s3"
    if cfg.backup:
        specs.append(FileSpec(path=paths.pgbackrest_conf,
                              render=lambda s: render_pgbackrest_db_conf(cfg, host, s, paths),
                              needs=("backup_s3_access_key", "backup_s3_secret_key") if s3 else (),
                              mode=0o640, owner="postgres", group="postgres"))
        specs += _unit_specs(cfg, host, paths) if s3 else _tls_specs(paths)
        ca = cfg.backup.s3_ca_certificate
        if s3 and ca:
            specs.append(FileSpec(path=paths.s3_ca, render=lambda _s: ca, owner="postgres", group="postgres"))
    env = {"PG_VERSION": str(cfg.postgres.version), "CONFIG": paths.config, "DYNAMIC": paths.dynamic,
           "DB_VIP_NFT": paths.db_vip_nft, "DB_VIP_UNIT": DB_VIP_UNIT,
           "DATA_DIR": paths.data_dir, "ROLE_SQL": paths.role_sql, "SOCKET_DIR": paths.socket_dir,
           "API": f"http://{host.address}:{patroni_settings(cfg).rest_api_port}", "VIP": patroni_settings(cfg).vip,
           "BACKUP": "" if not cfg.backup else cfg.backup.repository, "PGBACKREST_CONF": paths.pgbackrest_conf,
           "STANZA": STANZA}
    return [*specs, role_env("patroni", env)]


def pgbackrest_repo_files(cfg: ClusterConfig, paths: PatroniPaths | None = None,
                          db_paths: Mapping[str, PatroniPaths] | None = None) -> list[FileSpec]:
    paths = paths or PatroniPaths(pg_version=cfg.postgres.version)
    return [FileSpec(path=paths.pgbackrest_conf, render=lambda _s: render_pgbackrest_repo_conf(cfg, paths, db_paths),
                     mode=0o640, owner="postgres", group="postgres"),
            *_tls_specs(paths), *_unit_specs(cfg, _repository_host(cfg), paths),
            role_env("pgbackrest-repo", {"CONFIG": paths.pgbackrest_conf, "STANZA": STANZA,
                                         "REPO_PATH": _backup(cfg).path})]


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
        self.repository = None
        if cfg.backup and cfg.backup.repository == "host":
            self.repository = deploy_role(self, f"{name}-repo", _repository_host(cfg), REPO_SCRIPT,
                                          pgbackrest_repo_files(cfg), args, after=[*args.after, *self.members])
        self.endpoint = f"{patroni_settings(cfg).vip}:{cfg.postgres.port}"
        self.database, self.username = cfg.postgres.database, cfg.postgres.user
        self.register_outputs({"endpoint": self.endpoint, "database": self.database, "username": self.username})


def render_restore_script(cfg: ClusterConfig, paths: PatroniPaths, target: Optional[str]) -> str:
    """The restore of the cluster's first member, run as postgres into its empty data directory while Patroni is
    stopped everywhere and the DCS holds no cluster (pure). pgBackRest restores the latest backup before `target`
    (an ISO time; None: replay all archived WAL), a PostgreSQL started by hand replays and promotes, its one-off
    recovery settings are reset, and it stops again for Patroni, which takes a non-empty data directory over as
    leader. scripts/restore.py runs it over SSH, labs/db_lab.py in a namespace."""
    pitr = f"--type=time --target={shlex.quote(target)} --target-action=promote " if target else ""
    psql = f"psql -X -At -h {shlex.quote(paths.socket_dir)} -p {cfg.postgres.port}"
    log = f"{paths.pgbackrest_log}/restore-postgres.log"
    # The restored postgresql.conf is the one Patroni wrote on the member the backup came from: its addresses
    # and files are that member's. Loopback only (no client writes during the recovery), this member's files,
    # and WAL of the new timeline archived with this member's pgBackRest config.
    options = " ".join([
        "-c listen_addresses=127.0.0.1", f"-c port={cfg.postgres.port}",
        f"-c unix_socket_directories={paths.socket_dir}", f"-c hba_file={paths.data_dir}/pg_hba.conf",
        f"-c ident_file={paths.data_dir}/pg_ident.conf",
        f"-c archive_command='{_pgbackrest_cmd(paths)} archive-push %p'"])
    return f"""set -euo pipefail
{_pgbackrest_cmd(paths)} {pitr}restore
{paths.bin_dir}/pg_ctl -D {shlex.quote(paths.data_dir)} -o {shlex.quote(options)} -w -t 3600 -l {shlex.quote(log)} \\
  start
# Replay until the target (or the archive's end) and the promotion: at most an hour.
for _ in $(seq 1 3600); do
  [ "$({psql} -c 'SELECT pg_is_in_recovery()')" = f ] && break
  sleep 1
done
[ "$({psql} -c 'SELECT pg_is_in_recovery()')" = f ] || {{ echo "still recovering after an hour" >&2; exit 1; }}
# pgBackRest's recovery settings were for this recovery only; Patroni sets the replicas' own.
{psql} -c 'ALTER SYSTEM RESET restore_command' -c 'ALTER SYSTEM RESET recovery_target_time' \\
  -c 'ALTER SYSTEM RESET recovery_target_action'
{paths.bin_dir}/pg_ctl -D {shlex.quote(paths.data_dir)} -w -m fast stop
"""


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
