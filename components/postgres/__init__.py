"""PostgreSQL as Harbor's external database: settings, client authentication and Harbor's role and database."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig
from components.host.files import FileSpec, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.pgbackrest import (archive_settings, db_host_backup_env, db_host_backup_files, db_paths,
                                   deploy_repository)

SCRIPT = Path(__file__).with_name("postgres.sh")  #: the role script shipped to the database host


ROLE_SQL_PATH = "/etc/harbor-ha/postgres/harbor-role.sql"


def conf_dir(cfg: ClusterConfig) -> str:
    """Debian/Ubuntu's postgresql-common layout: /etc/postgresql/<major>/main."""
    return db_paths(cfg).conf_dir


def service_unit(cfg: ClusterConfig) -> str:
    """postgresql-common's systemd unit of the single server's cluster (postgres.sh names it the same way)."""
    return f"postgresql@{cfg.postgres.version}-main"


def tls_paths(cfg: ClusterConfig) -> tuple[str, str]:
    """(certificate, key) of the server: beside its config, where the postgres user may read them."""
    return f"{conf_dir(cfg)}/harbor-ha-server.crt", f"{conf_dir(cfg)}/harbor-ha-server.key"


def server_tls_settings(cert: str, key: str) -> dict[str, str]:
    """PostgreSQL's TLS settings, the single server's and every Patroni member's (pure): TLS 1.2 or newer with the
    cluster CA's certificate at `cert` and its key at `key`. PostgreSQL re-reads both files on a reload."""
    return {"ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key, "ssl_min_protocol_version": "TLSv1.2"}


def server_tls_names(cfg: ClusterConfig) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the database certificate (pure). Harbor checks `cfg.db_endpoint` with
    verify-full: the single server's address, or in patroni mode the database VIP, which every member may come to
    hold. Patroni's replicas and pg_rewind connect to the VIP too (every member's connect_address) and check it the
    same way; the members' own names and addresses are there for a connection to one member (psql, pgBackRest)."""
    if cfg.patroni:
        return ([h.name for h in cfg.postgres_hosts],
                [*(h.address for h in cfg.postgres_hosts), cfg.patroni.vip])
    return [], [cfg.postgres_host.address]


def server_tls_specs(cert: str, key: str) -> list[FileSpec]:
    """The database certificate and its key, as files the postgres user reads (the single server, each member)."""
    return [
        FileSpec(path=cert, render=lambda s: s["postgres_tls_certificate"], needs=("postgres_tls_certificate",),
                 owner="postgres", group="postgres"),
        # PostgreSQL refuses a key file that others can read.
        FileSpec(path=key, render=lambda s: s["postgres_tls_private_key"], needs=("postgres_tls_private_key",),
                 mode=0o600, owner="postgres", group="postgres"),
    ]


def render_postgresql_conf(cfg: ClusterConfig, tls: tuple[str, str] | None = None) -> str:
    """The conf.d drop-in with Harbor's settings (pure); `tls` = (certificate, key) paths, default `tls_paths`.
    With the backup section, WAL archiving into pgBackRest's repository (a change of archive_mode needs the restart
    the role script gives this file's changes)."""
    return render_template("postgres/postgresql-harbor.conf.j2", host=cfg.postgres_host, pg=cfg.postgres,
                           tls=server_tls_settings(*(tls or tls_paths(cfg))),
                           archive=archive_settings(db_paths(cfg)) if cfg.backup else {})


def render_pg_hba(cfg: ClusterConfig) -> str:
    """pg_hba.conf: Harbor's user may reach Harbor's database from the Harbor nodes (and retiring ones) only, over TLS
    only (pure)."""
    return render_template("postgres/pg_hba.conf.j2", pg=cfg.postgres, nodes=cfg.data_clients)


def sql_literal(value: str) -> str:
    """A SQL string literal; standard_conforming_strings is on since PostgreSQL 9.1, so only quotes double."""
    if "\0" in value:
        raise ValueError("a NUL byte cannot be part of a PostgreSQL string")
    return "'" + value.replace("'", "''") + "'"


def render_harbor_role_sql(cfg: ClusterConfig, password: str) -> str:
    """Idempotent psql script: Harbor's role (password set every run, so a rotation applies) and its database."""
    pg = cfg.postgres
    return (
        "-- Rendered by harbor-ha (components/postgres/). Run with psql -v ON_ERROR_STOP=1 -f.\n"
        f"SELECT 'CREATE ROLE {pg.user} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = {sql_literal(pg.user)})\\gexec\n"
        f"ALTER ROLE {pg.user} WITH LOGIN PASSWORD {sql_literal(password)};\n"
        f"SELECT 'CREATE DATABASE {pg.database} OWNER {pg.user} ENCODING ''UTF8'' TEMPLATE template0' "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {sql_literal(pg.database)})\\gexec\n"
        f"REVOKE ALL ON DATABASE {pg.database} FROM PUBLIC;\n"
        f"GRANT ALL ON DATABASE {pg.database} TO {pg.user};\n"
    )


def postgres_files(cfg: ClusterConfig) -> list[FileSpec]:
    d = conf_dir(cfg)
    cert, key = tls_paths(cfg)
    return [
        FileSpec(path=f"{d}/conf.d/harbor-ha.conf", render=lambda _s: render_postgresql_conf(cfg),
                 owner="postgres", group="postgres"),
        FileSpec(path=f"{d}/pg_hba.conf", render=lambda _s: render_pg_hba(cfg), mode=0o640,
                 owner="postgres", group="postgres"),
        *server_tls_specs(cert, key),
        FileSpec(path=ROLE_SQL_PATH, render=lambda s: render_harbor_role_sql(cfg, s["db_password"]),
                 needs=("db_password",), mode=0o600, owner="postgres", group="postgres"),
        *(db_host_backup_files(cfg, cfg.postgres_host, db_paths(cfg)) if cfg.backup else []),
        role_env("postgres", {"PG_VERSION": str(cfg.postgres.version), "SETTINGS_FILE": f"{d}/conf.d/harbor-ha.conf",
                              "ROLE_SQL": ROLE_SQL_PATH,
                              # Only with backups: the files of a stack without them stay as they were (no re-apply).
                              **(db_host_backup_env(cfg, db_paths(cfg)) if cfg.backup else {})}),
    ]


class PostgresServerArgs(RoleArgs):
    """Inputs of PostgresServer (the common role inputs)."""


class PostgresServer(pulumi.ComponentResource):
    """PostgreSQL with Harbor's database and user, reachable from the Harbor nodes only; with the backup section its
    WAL archived by pgBackRest, and the repository host (backup.repository host)."""

    endpoint: str  #: `address:port`
    database: str  #: Harbor's database
    username: str  #: Harbor's user
    role: HostRole  #: the deployment on the database host
    repository: Optional[HostRole]  #: the repository host's deployment (backup.repository host)

    def __init__(self, name: str, args: PostgresServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:postgres:PostgresServer", name, None, opts)
        cfg = args.cfg
        # Protected: moving the database to another host would give Harbor an empty one.
        self.role = deploy_role(self, name, cfg.postgres_host, SCRIPT, postgres_files(cfg), args, protect=True)
        self.repository = deploy_repository(self, name, args, after=[self.role])
        self.endpoint = f"{cfg.postgres_host.address}:{cfg.postgres.port}"
        self.database, self.username = cfg.postgres.database, cfg.postgres.user
        self.register_outputs({"endpoint": self.endpoint, "database": self.database, "username": self.username})
