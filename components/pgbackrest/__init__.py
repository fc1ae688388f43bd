"""pgBackRest for Harbor's database, in either postgres.mode: the database hosts' WAL archive (archive_command, their
pgbackrest.conf), the repository host (backup.repository host, reached over pgBackRest's TLS server) or an S3
bucket, the full/differential timers and the restore script. The single server's role (components/postgres/) and
every Patroni member's (components/patroni/) install the database host's part; the repository host has its own role,
pgbackrest-repo.sh. docs/operations/backup-restore.md explains the whole backup."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi

from components.config import BackupSettings, ClusterConfig, Host
from components.etcd import patroni_settings
from components.host.files import FileSpec, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role

REPO_SCRIPT = Path(__file__).with_name("pgbackrest-repo.sh")  #: the role script of the repository host
STANZA = "harbor"  #: pgBackRest's name for the cluster
PGBACKREST_CLIENT_CN = "harbor-ha-pgbackrest"  #: CN of the one certificate tls-server-auth admits
PATRONI_CLUSTER = "patroni"  #: PGDATA's folder under Patroni (the single server keeps Debian's cluster `main`)
#: seconds after which PostgreSQL archives a WAL segment that is not full: the WAL of a quiet server still reaches
#: the repository within a minute (the restore's RPO)
ARCHIVE_TIMEOUT = 60


@dataclass(frozen=True)
class DbPaths:
    """Where the files of a database or repository host live (Debian's layout; the labs use temp dirs)."""

    root: str = ""  #: prefix of every path below (the lab's per-host directory); "" on a real host
    pg_version: int = 15  #: PostgreSQL major version, in the Debian paths
    cluster: str = "main"  #: PGDATA's folder under /var/lib/postgresql/<version>: Debian's cluster, or Patroni's

    def _p(self, path: str) -> str:
        return f"{self.root}{path}"

    data_dir = property(lambda self: self._p(f"/var/lib/postgresql/{self.pg_version}/{self.cluster}"))  #: PGDATA
    #: postgresql-common's configuration of the cluster (the single server's postgresql.conf, conf.d, pg_hba.conf)
    conf_dir = property(lambda self: self._p(f"/etc/postgresql/{self.pg_version}/{self.cluster}"))
    bin_dir = property(lambda self: f"/usr/lib/postgresql/{self.pg_version}/bin")  #: PostgreSQL's programs
    socket_dir = property(lambda self: self._p("/var/run/postgresql"))  #: unix socket directory
    #: pgBackRest's default config file (`pgbackrest server` of Debian's unit reads it; /etc/pgbackrest.conf, which
    #: the package ships, is only read when this one does not exist)
    pgbackrest_conf = property(lambda self: self._p("/etc/pgbackrest/pgbackrest.conf"))
    tls_dir = property(lambda self: self._p("/etc/pgbackrest/tls"))  #: pgBackRest's CA, certificate, key
    s3_ca = property(lambda self: self._p("/etc/pgbackrest/s3-ca.crt"))  #: backup.s3.caCertificate (repository s3)
    pgbackrest_log = property(lambda self: self._p("/var/log/pgbackrest"))  #: pgBackRest's log files
    pgbackrest_lock = property(lambda self: self._p("/tmp/pgbackrest"))  #: pgBackRest's lock files


def db_paths(cfg: ClusterConfig) -> DbPaths:
    """A database host's paths on a real host: the single server's Debian cluster, or Patroni's data directory."""
    return DbPaths(pg_version=cfg.postgres.version, cluster=PATRONI_CLUSTER if cfg.patroni else "main")


def archive_settings(paths: DbPaths) -> dict[str, Any]:
    """PostgreSQL's WAL archiving into pgBackRest's repository (the single server's and every Patroni member's)."""
    return {"archive_mode": "on", "archive_command": f"{pgbackrest_cmd(paths)} archive-push %p",
            "archive_timeout": ARCHIVE_TIMEOUT}


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


def pgbackrest_cmd(paths: DbPaths) -> str:
    """`pgbackrest` with this host's config file and Harbor's stanza (the command line of every use)."""
    return f"pgbackrest --config={paths.pgbackrest_conf} --stanza={STANZA}"


def _ini(cfg: ClusterConfig, sections: Mapping[str, Mapping[str, Any]]) -> str:
    # Named after the component that deploys it (the patroni one as before this module existed: a stack's files
    # stay byte for byte the same, so an upgrade of harbor-ha runs no role's apply for them).
    out = [f"# Rendered by harbor-ha (components/{'patroni' if cfg.patroni else 'postgres'}/); pulumi up overwrites "
           "edits."]
    for name, options in sections.items():
        out.append(f"\n[{name}]")
        out += [f"{k}={v}" for k, v in options.items()]
    return "\n".join(out) + "\n"


def _tls_files(paths: DbPaths) -> dict[str, str]:
    return {"ca": f"{paths.tls_dir}/ca.crt", "cert": f"{paths.tls_dir}/pgbackrest.crt",
            "key": f"{paths.tls_dir}/pgbackrest.key"}


def _pgbackrest_common(cfg: ClusterConfig, host: Host, paths: DbPaths) -> dict[str, Any]:
    tls = _tls_files(paths)
    common: dict[str, Any] = {"log-path": paths.pgbackrest_log, "lock-path": paths.pgbackrest_lock,
                              "log-level-console": "warn", "log-level-file": "info"}
    backup = _backup(cfg)
    if backup.repository == "host":
        common.update({"tls-server-address": host.address, "tls-server-port": backup.tls_port,
                       "tls-server-ca-file": tls["ca"], "tls-server-cert-file": tls["cert"],
                       "tls-server-key-file": tls["key"], "tls-server-auth": f"{PGBACKREST_CLIENT_CN}={STANZA}"})
    return common


def _repository(cfg: ClusterConfig, secrets: Mapping[str, str], paths: DbPaths) -> dict[str, Any]:
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
                              paths: Optional[DbPaths] = None) -> str:
    """pgbackrest.conf of a database host: archive-push/-get to the repository host (TLS) or the bucket (pure)."""
    paths = paths or db_paths(cfg)
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
    return _ini(cfg, {"global": glob, STANZA: stanza})


def render_pgbackrest_repo_conf(cfg: ClusterConfig, paths: Optional[DbPaths] = None,
                                host_paths: Mapping[str, DbPaths] | None = None) -> str:
    """pgbackrest.conf of the repository host: the repository, and every database host over TLS (pure).
    `host_paths`: each database host's paths by name (the lab's per-host directories), Debian's by default."""
    paths = paths or db_paths(cfg)
    host = _repository_host(cfg)
    tls = _tls_files(paths)
    glob = {**_pgbackrest_common(cfg, host, paths), **_repository(cfg, {}, paths)}
    stanza: dict[str, Any] = {}
    for i, h in enumerate(cfg.postgres_hosts, start=1):
        hp = (host_paths or {}).get(h.name, db_paths(cfg))
        stanza.update({f"pg{i}-host": h.address, f"pg{i}-host-type": "tls", f"pg{i}-host-port": _backup(cfg).tls_port,
                       f"pg{i}-host-ca-file": tls["ca"], f"pg{i}-host-cert-file": tls["cert"],
                       f"pg{i}-host-key-file": tls["key"], f"pg{i}-path": hp.data_dir,
                       f"pg{i}-port": cfg.postgres.port, f"pg{i}-socket-path": hp.socket_dir})
    return _ini(cfg, {"global": glob, STANZA: stanza})


def render_backup_units(cfg: ClusterConfig, paths: Optional[DbPaths] = None) -> dict[str, str]:
    """systemd units of the scheduled backups: {file name: content} (pure). On the repository host; with an S3
    repository on the database host (the single server), or on every Patroni member, where only the current
    leader's run backs up (ExecCondition)."""
    paths = paths or db_paths(cfg)
    b = _backup(cfg)
    units: dict[str, str] = {}
    for kind, schedule in (("full", b.full_schedule), ("diff", b.diff_schedule)):
        condition = ("" if b.repository == "host" or not cfg.patroni else
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


def _tls_specs(paths: DbPaths) -> list[FileSpec]:
    tls = _tls_files(paths)
    return [FileSpec(path=tls["ca"], render=lambda s: s["pgbackrest_ca_cert"], needs=("pgbackrest_ca_cert",),
                     owner="postgres", group="postgres"),
            FileSpec(path=tls["cert"], render=lambda s: s["pgbackrest_cert"], needs=("pgbackrest_cert",),
                     owner="postgres", group="postgres"),
            FileSpec(path=tls["key"], render=lambda s: s["pgbackrest_key"], needs=("pgbackrest_key",), mode=0o600,
                     owner="postgres", group="postgres")]


def _unit_specs(cfg: ClusterConfig, host: Host, paths: DbPaths) -> list[FileSpec]:
    def unit(name: str, text: str) -> FileSpec:
        return FileSpec(path=f"/etc/systemd/system/{name}", render=lambda _s: text.replace("{addr}", host.address))
    return [unit(name, text) for name, text in render_backup_units(cfg, paths).items()]


def db_host_backup_files(cfg: ClusterConfig, host: Host, paths: DbPaths) -> list[FileSpec]:
    """A database host's pgBackRest files (the single server's, each Patroni member's): its pgbackrest.conf; with a
    repository host the TLS identity of its `pgbackrest server`, with S3 the backup timers (and the bucket's CA)."""
    b = _backup(cfg)
    s3 = b.repository == "s3"
    specs = [FileSpec(path=paths.pgbackrest_conf, render=lambda s: render_pgbackrest_db_conf(cfg, host, s, paths),
                      needs=("backup_s3_access_key", "backup_s3_secret_key") if s3 else (),
                      mode=0o640, owner="postgres", group="postgres")]
    specs += _unit_specs(cfg, host, paths) if s3 else _tls_specs(paths)
    ca = b.s3_ca_certificate
    if s3 and ca:
        specs.append(FileSpec(path=paths.s3_ca, render=lambda _s: ca, owner="postgres", group="postgres"))
    return specs


def db_host_backup_env(cfg: ClusterConfig, paths: DbPaths) -> dict[str, str]:
    """What a database host's role script needs to know of the backups (BACKUP empty: none)."""
    return {"BACKUP": "" if not cfg.backup else cfg.backup.repository, "PGBACKREST_CONF": paths.pgbackrest_conf,
            "STANZA": STANZA}


def pgbackrest_repo_files(cfg: ClusterConfig, paths: DbPaths | None = None,
                          host_paths: Mapping[str, DbPaths] | None = None) -> list[FileSpec]:
    paths = paths or db_paths(cfg)
    return [FileSpec(path=paths.pgbackrest_conf, render=lambda _s: render_pgbackrest_repo_conf(cfg, paths, host_paths),
                     mode=0o640, owner="postgres", group="postgres"),
            *_tls_specs(paths), *_unit_specs(cfg, _repository_host(cfg), paths),
            role_env("pgbackrest-repo", {"CONFIG": paths.pgbackrest_conf, "STANZA": STANZA,
                                         "REPO_PATH": _backup(cfg).path})]


def render_restore_script(cfg: ClusterConfig, paths: DbPaths, target: Optional[str]) -> str:
    """The restore of the database, run as postgres into the empty data directory of the single server (its
    service stopped) or of the cluster's first member (Patroni stopped everywhere, the DCS holding no cluster)
    (pure). pgBackRest restores the latest backup before `target` (an ISO time; None: replay all archived WAL), a
    PostgreSQL started by hand on loopback replays and promotes, its one-off recovery settings are reset, and it
    stops again for the service (Patroni takes a non-empty data directory over as leader). scripts/restore.py runs
    it over SSH, labs/db_lab.py in a namespace."""
    pitr = f"--type=time --target={shlex.quote(target)} --target-action=promote " if target else ""
    psql = f"psql -X -At -h {shlex.quote(paths.socket_dir)} -p {cfg.postgres.port}"
    log = f"{paths.pgbackrest_log}/restore-postgres.log"
    if cfg.patroni:
        # The restored postgresql.conf is the one Patroni wrote on the member the backup came from: its addresses
        # and files are that member's; this member's files instead.
        files = [f"-c hba_file={paths.data_dir}/pg_hba.conf", f"-c ident_file={paths.data_dir}/pg_ident.conf"]
    else:
        # The single server's configuration is not in its data directory (postgresql-common keeps it in /etc).
        files = [f"-c config_file={paths.conf_dir}/postgresql.conf"]
    # Loopback only (no client writes during the recovery), and WAL of the new timeline archived with this host's
    # pgBackRest config.
    options = " ".join([
        "-c listen_addresses=127.0.0.1", f"-c port={cfg.postgres.port}",
        f"-c unix_socket_directories={paths.socket_dir}", *files,
        f"-c archive_command='{pgbackrest_cmd(paths)} archive-push %p'"])
    return f"""set -euo pipefail
{pgbackrest_cmd(paths)} {pitr}restore
{paths.bin_dir}/pg_ctl -D {shlex.quote(paths.data_dir)} -o {shlex.quote(options)} -w -t 3600 -l {shlex.quote(log)} \\
  start
# Replay until the target (or the archive's end) and the promotion: at most an hour.
for _ in $(seq 1 3600); do
  [ "$({psql} -c 'SELECT pg_is_in_recovery()')" = f ] && break
  sleep 1
done
[ "$({psql} -c 'SELECT pg_is_in_recovery()')" = f ] || {{ echo "still recovering after an hour" >&2; exit 1; }}
# pgBackRest's recovery settings were for this recovery only (Patroni sets its replicas' own).
{psql} -c 'ALTER SYSTEM RESET restore_command' -c 'ALTER SYSTEM RESET recovery_target_time' \\
  -c 'ALTER SYSTEM RESET recovery_target_action'
{paths.bin_dir}/pg_ctl -D {shlex.quote(paths.data_dir)} -w -m fast stop
"""




def deploy_repository(parent: pulumi.Resource, name: str, args: RoleArgs, after: Sequence[pulumi.Resource]
                      ) -> Optional[HostRole]:
    """The repository host's role (backup.repository host), after the database hosts whose `pgbackrest server` it
    reaches; None without one."""
    cfg = args.cfg
    if not cfg.backup or cfg.backup.repository != "host":
        return None
    return deploy_role(parent, f"{name}-repo", _repository_host(cfg), REPO_SCRIPT, pgbackrest_repo_files(cfg), args,
                       after=[*args.after, *after])
