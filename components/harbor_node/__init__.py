"""A Harbor node: the offline installer, harbor.yml pointing at the external services, the shared keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Optional

import pulumi
import yaml

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.nfs import HARBOR_UID, nfs_client_files
from components.object_store import (S3_PROXY_CONF_PATH, S3_PROXY_UNIT, S3_TLS_NAME, s3_copy_files, s3_endpoint,
                                     s3_proxy_files)
from components.redis import harbor_redis_host

SCRIPT = Path(__file__).with_name("harbor-node.sh")  #: the role script shipped to each Harbor node

CSRF_KEY_PATH = "/etc/harbor-ha/harbor/csrf_key"
SCANNER_PREFIX_PATH = "/etc/harbor-ha/harbor/robot_scanner_name_prefix"
CORE_SECRET_PATH = "/etc/harbor-ha/harbor/core_secret"
JOBSERVICE_SECRET_PATH = "/etc/harbor-ha/harbor/jobservice_secret"
# core's EXECUTION_STATUS_REFRESH_INTERVAL_SECONDS (harbor-node.sh puts it into core's env): 0 makes core refresh an
# execution's status in the same transaction as its task's status hook, instead of through a Redis key that a scan
# every 30 s consumes. That scan can delete the key a task's last status change relied on (it read the tasks before
# the hook's transaction committed), and the execution then stays InProgress for good with every task ended (Harbor
# v2.15.2 pkg/task/dao/execution.go AsyncRefreshStatus and scanAndRefreshOutdateStatus; goharbor/harbor#21961). In
# the synchronous mode a failed refresh fails the hook, which jobservice sends again: docs/ha.md.
EXECUTION_REFRESH_PATH = "/etc/harbor-ha/harbor/execution_status_refresh_interval_seconds"
EXECUTION_REFRESH_SECONDS = 0
# Trivy's database cache and reports, on each node's own disk (harbor-node.sh points the compose file there).
TRIVY_LOCAL_DIR = "/var/lib/harbor-ha/trivy-adapter"
# Seconds a draining node waits, its proxy stopped, for requests in flight before its containers are recreated.
DRAIN_SECONDS = 5
# Harbor's database login for the node's own psql and pg_dump (the schema check and the backup before a migration):
# a libpq password file, so the password is in no command line and no environment.
PGPASS_PATH = "/etc/harbor-ha/harbor/pgpass"
# Where a node keeps the dump of Harbor's database it takes before its new version migrates the schema.
UPGRADE_BACKUP_DIR = "/var/backups/harbor-ha"


def installer_name(version: str) -> str:
    """The offline installer's file name, as Harbor releases it; versioned, so an upgrade never reuses the old one."""
    return f"harbor-offline-installer-v{version}.tgz"

# The name the LB checks on the nodes' certificate (proxy_ssl_name). RFC 2606 reserves .invalid: it never resolves,
# so the name means nothing outside this check; the certificate also carries every node's address.
NODE_TLS_NAME = "harbor-node.harbor-ha.invalid"
NODE_TLS_DIR = "/etc/harbor-ha/node-tls"
NODE_CERT_PATH = f"{NODE_TLS_DIR}/node.crt"
NODE_KEY_PATH = f"{NODE_TLS_DIR}/node.key"
CLUSTER_CA_PATH = f"{NODE_TLS_DIR}/cluster-ca.crt"
S3_KEYS = ("storage_s3_access_key", "storage_s3_secret_key")  #: the secret values harbor.yml needs in s3 mode
# postgres.mode external with a caCertificate: the cluster CA and the database's CA, Harbor's ca_bundle then.
TRUSTED_CAS_PATH = f"{NODE_TLS_DIR}/trusted-cas.crt"
# redis.mode external with tls and a caCertificate: prepare's tlsOptions.rootCA (it adds it to every component's
# trusted CAs, as it does the ca_bundle).
REDIS_CA_PATH = "/etc/harbor-ha/redis/ca.crt"


def registry_s3_parameters(cfg: ClusterConfig, secrets: Mapping[str, str]) -> dict:
    """The registry's S3 driver parameters (storage_service.s3 of harbor.yml; pure). Harbor's prepare writes each
    as one `key: value` line of the registry's config.yml, so every value is a scalar."""
    s3 = cfg.storage.s3
    if s3 is None:
        raise ValueError("storage.mode is not s3")
    endpoint = s3_endpoint(cfg)
    params: dict = {
        "accesskey": secrets["storage_s3_access_key"],
        "secretkey": secrets["storage_s3_secret_key"],
        "region": s3.region,
        "bucket": s3.bucket,
        "secure": endpoint is None or endpoint.startswith("https://"),
        "v4auth": True,
        "chunksize": s3.chunk_size,
        "multipartcopychunksize": s3.multipart_copy_chunk_size,
        "multipartcopymaxconcurrency": s3.multipart_copy_max_concurrency,
        "multipartcopythresholdsize": s3.multipart_copy_threshold_size,
    }
    if endpoint:
        # Harbor's registry (distribution 2.8) sends path-style requests to any regionendpoint; distribution 3 needs
        # forcepathstyle for it, and 2.8 ignores the key.
        params["regionendpoint"] = endpoint.rstrip("/")
        params["forcepathstyle"] = s3.path_style
    if s3.root_directory:
        params["rootdirectory"] = s3.root_directory
    return params


def storage_service(cfg: ClusterConfig, secrets: Mapping[str, str]) -> dict:
    """storage_service of harbor.yml (pure): the trusted CA bundle, and in s3 mode the bucket and redirects."""
    s3 = cfg.storage.s3
    ca_bundle = TRUSTED_CAS_PATH if extra_trusted_cas(cfg) else CLUSTER_CA_PATH
    if s3 is None or not cfg.storage.on_s3:  # mode nfs, with or without a bucket staged for the move
        return {"ca_bundle": ca_bundle}
    return {"ca_bundle": ca_bundle,
            "s3": registry_s3_parameters(cfg, secrets),
            # prepare adds `redirect: disable: true` to the registry's storage only when this says so.
            "redirect": {"disable": not s3.redirect}}


def pgpass_line(cfg: ClusterConfig, password: str) -> str:
    """Harbor's database login as one line of a libpq password file (pure): `:` and `\\` escaped as libpq reads
    them."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")
    pg = cfg.postgres
    return ":".join(esc(v) for v in (cfg.db_endpoint, str(pg.port), pg.database, pg.user, password)) + "\n"


def harbor_yml_data(cfg: ClusterConfig, secrets: Mapping[str, str]) -> dict:
    """harbor.yml as data (pure): the installer's template keys, external DB/Redis, TLS from the LB to the node and
    from the node to PostgreSQL."""
    h = cfg.harbor
    major, minor, _patch = h.version.split(".")
    redis: dict = {
        "host": harbor_redis_host(cfg),
        "password": secrets["redis_password"],
        "registry_db_index": 1,
        "jobservice_db_index": 2,
        "trivy_db_index": 5,
        "idle_timeout_seconds": 30,
    }
    if cfg.redis.mode == "sentinel" or cfg.redis.sentinels:
        redis["sentinel_master_set"] = cfg.redis.master_set
    if cfg.redis.username:
        redis["username"] = cfg.redis.username
    if cfg.redis.tls:
        # prepare switches the URLs to rediss:// (rediss+sentinel://: the sentinels too) and reads rootCA, which
        # may be empty (the system CAs) but must be there (make/photon/prepare/utils/configs.py).
        redis["tlsOptions"] = {"enable": True, "rootCA": REDIS_CA_PATH if cfg.redis.ca_certificate else None}
    return {
        "hostname": h.hostname,
        # The LB re-encrypts to the nodes: Harbor's own nginx serves the cluster CA's node certificate (prepare
        # copies it to data_volume/secret/cert) and redirects http to https. external_url is the public https URL
        # (token realm, redirects).
        "http": {"port": h.http_port},
        "https": {"port": h.https_port, "certificate": NODE_CERT_PATH, "private_key": NODE_KEY_PATH},
        "external_url": cfg.external_url,
        "harbor_admin_password": secrets["admin_password"],
        "data_volume": h.data_volume,
        "external_database": {"harbor": {
            "host": cfg.db_endpoint,
            "port": cfg.postgres.port,
            "db_name": cfg.postgres.database,
            "username": cfg.postgres.user,
            "password": secrets["db_password"],
            # Passed to pgx as sslmode (src/common/dao/pgsql.go); verify-full checks the server's certificate and
            # address against the trusted CAs, where storage_service.ca_bundle below puts the cluster CA. In patroni
            # mode the address is the database VIP, which every member's certificate carries. An external server:
            # postgres.sslMode, its CA in the ca_bundle (TRUSTED_CAS_PATH).
            "ssl_mode": harbor_yml_ssl_mode(cfg),
            "max_idle_conns": min(10, h.db_max_open_conns),
            "max_open_conns": h.db_max_open_conns,
        }},
        "external_redis": redis,
        # ca_bundle is not only for storage: prepare copies it into common/config/shared/trust-certificates, which
        # core, jobservice, exporter, registry and trivy mount as /harbor_cust_cert and append to their system CA
        # bundle at start (make/photon/common/install_cert.sh): the one harbor.yml key that makes Harbor 2.15's Go
        # clients trust a private CA (docs/security.md). storage.mode s3 adds the bucket.
        "storage_service": storage_service(cfg, secrets),
        "trivy": {"ignore_unfixed": False, "skip_update": h.trivy_skip_update, "offline_scan": h.trivy_offline_scan,
                  "insecure": False, "timeout": "5m0s"},
        # FILE keeps job logs in data_volume/job_logs, which every node shares in nfs mode; with s3 the data volume
        # is each node's own disk, so the logs go to the database, where any node's UI finds them.
        "jobservice": {"max_job_workers": 10,
                       "job_loggers": ["STD_OUTPUT", "DATABASE" if cfg.storage.on_s3 else "FILE"],
                       "logger_sweeper_duration": 1},
        "notification": {"webhook_job_max_retry": 3, "webhook_job_http_client_timeout": 3},
        "log": {"level": "info", "local": {"rotate_count": 50, "rotate_size": "200M",
                                           "location": "/var/log/harbor"}},
        "metric": {"enabled": True, "port": h.metrics_port, "path": "/metrics"},
        "upload_purging": {"enabled": True, "age": "168h", "interval": "24h", "dryrun": False},
        "cache": {"enabled": False, "expire_hours": 24},
        "proxy": {"http_proxy": h.http_proxy, "https_proxy": h.https_proxy, "no_proxy": h.no_proxy,
                  "components": ["core", "jobservice", "trivy"]},
        # The installer's config schema version: x.y.0 for every x.y.z release.
        "_version": f"{major}.{minor}.0",
    }


def harbor_yml_ssl_mode(cfg: ClusterConfig) -> str:
    """Harbor's sslmode: postgres.sslMode for an external server, else verify-full (our servers' certificates)."""
    return cfg.postgres.ssl_mode if cfg.postgres.external else "verify-full"


def render_harbor_yml(cfg: ClusterConfig, secrets: dict[str, str]) -> str:
    """harbor.yml of a node (pure; the same on every node)."""
    return ("# harbor.yml: rendered by harbor-ha (components/harbor_node/); pulumi up overwrites edits.\n"
            + yaml.safe_dump(harbor_yml_data(cfg, secrets), sort_keys=False, default_flow_style=False))


def node_env(cfg: ClusterConfig, node: Host) -> FileSpec:
    """Parameters of harbor-node.sh on `node`."""
    h = cfg.harbor
    return role_env("harbor-node", {
        "HARBOR_VERSION": h.version,
        "INSTALLER_URL": h.installer_url or "",
        "INSTALLER_SHA256": h.installer_sha256 or "",
        "INSTALL_DIR": h.install_dir,
        "DATA_VOLUME": h.data_volume,
        "HTTPS_PORT": str(h.https_port),
        "NODE_TLS_NAME": NODE_TLS_NAME,
        "CLUSTER_CA": CLUSTER_CA_PATH,
        # nfs: the node mounts the NFS export (ours or an existing one); shared: data_volume is already a mount every
        # node shares (the sandbox's Docker volume), the node only checks it is there; local: storage.mode s3, the
        # images are in the bucket and data_volume is a folder on the node's own disk.
        "DATA_MOUNT": "local" if cfg.storage.on_s3 else "nfs" if cfg.nfs_export else "shared",
        # storage.mode s3 with roles.objectStore: the S3 endpoint's name is this node's address, where its S3 proxy
        # listens (components/object_store/: it avoids a dead or frozen object-store host). In mode nfs the proxy
        # runs too (the move's copy goes through it), but Harbor's containers are not told the name yet.
        "S3_TLS_NAME": S3_TLS_NAME,
        "S3_HOSTS": node.address if cfg.object_store_hosts and cfg.storage.on_s3 else "",
        "S3_PROXY_UNIT": S3_PROXY_UNIT if cfg.object_store_hosts else "",
        "S3_PROXY_CONF": S3_PROXY_CONF_PATH,
        "WITH_TRIVY": "1" if h.trivy else "0",
        "HEALTH_TIMEOUT": str(h.health_timeout),
        "CSRF_KEY_FILE": CSRF_KEY_PATH,
        "SCANNER_PREFIX_FILE": SCANNER_PREFIX_PATH,
        "CORE_SECRET_FILE": CORE_SECRET_PATH,
        "JOBSERVICE_SECRET_FILE": JOBSERVICE_SECRET_PATH,
        "EXECUTION_REFRESH_FILE": EXECUTION_REFRESH_PATH,
        "TRIVY_LOCAL_DIR": TRIVY_LOCAL_DIR,
        "HARBOR_UID": str(HARBOR_UID),
        "DRAIN_SECONDS": str(DRAIN_SECONDS),
        # A drained node waits this long once healthy before the next node's apply drains (harbor-node.sh).
        "LB_FAIL_TIMEOUT": str(cfg.lb.fail_timeout),
        "START_UNIT": START_UNIT,
        # libpq's own variables for the schema check and the backup before a migration (harbor-node.sh), the same
        # server, database, user and TLS checks as Harbor's core.
        "PGHOST": cfg.db_endpoint,
        "PGPORT": str(cfg.postgres.port),
        "PGDATABASE": cfg.postgres.database,
        "PGUSER": cfg.postgres.user,
        "PGSSLMODE": harbor_yml_ssl_mode(cfg),
        "PGSSLROOTCERT": TRUSTED_CAS_PATH if extra_trusted_cas(cfg) else CLUSTER_CA_PATH,
        "PGPASSFILE": PGPASS_PATH,
        "PGCONNECT_TIMEOUT": "10",
        "UPGRADE_BACKUP_DIR": UPGRADE_BACKUP_DIR,
    })


START_UNIT = "harbor-ha-harbor.service"  #: starts Harbor's containers in compose's order at boot


def render_start_unit(cfg: ClusterConfig) -> str:
    """The boot unit of Harbor's containers (pure). Docker restarts them itself at boot, but each one that comes up
    before the log container listens fails on its syslog logging driver and Docker never retries it
    (goharbor/harbor#7008, #12063): `compose up -d` after Docker starts them in their dependency order, log first."""
    compose_up = ("if docker compose version >/dev/null 2>&1; then exec docker compose up -d; "
                  "else exec docker-compose up -d; fi")
    return ("# Rendered by harbor-ha (components/harbor_node/).\n"
            "[Unit]\nDescription=Harbor's containers in compose's order after Docker (harbor-ha)\n"
            "Requires=docker.service\nAfter=docker.service\n"
            f"RequiresMountsFor={cfg.harbor.data_volume}\n"
            f"ConditionPathExists={cfg.harbor.install_dir}/docker-compose.yml\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"WorkingDirectory={cfg.harbor.install_dir}\n"
            f"ExecStart=/bin/sh -c '{compose_up}'\n"
            # A container can still lose the race to the log container's port: compose is run again.
            "Restart=on-failure\nRestartSec=10\n"
            "[Install]\nWantedBy=multi-user.target\n")


def render_docker_dropin(cfg: ClusterConfig) -> str:
    """docker.service drop-in: at boot Docker waits for the data volume (pure). Without it a Docker that wins the
    race starts Harbor on an empty local folder, and the containers with file mounts fail for good."""
    return ("# Rendered by harbor-ha (components/harbor_node/).\n"
            f"[Unit]\nRequiresMountsFor={cfg.harbor.data_volume}\n")


# The keys every node must share: tokens signed on one node are checked on another after a VIP move, and
# secretkey encrypts registry credentials in the database. Harbor's `prepare` only generates a missing one.
SHARED_KEYS = (
    ("secret/keys/secretkey", "harbor_secretkey"),
    ("secret/core/private_key.pem", "core_private_key"),
    ("secret/registry/root.crt", "registry_root_cert"),
)


def extra_trusted_cas(cfg: ClusterConfig) -> list[str]:
    """The private CAs a node's Harbor trusts besides the cluster CA: the bucket's (storage.s3.caCertificate) and an
    external database's (postgres.caCertificate). With any, ca_bundle is TRUSTED_CAS_PATH (the cluster CA and them)."""
    s3, pg = cfg.storage.s3, cfg.postgres
    return [ca for ca in (s3.ca_certificate if s3 else None, pg.ca_certificate if pg.external else None) if ca]


def external_ca_files(cfg: ClusterConfig) -> list[FileSpec]:
    """The bundle of trusted CAs when there is a private one beside the cluster CA, and an external Redis's CA."""
    files = []
    extra, redis_ca = extra_trusted_cas(cfg), cfg.redis.ca_certificate
    if extra:
        files.append(FileSpec(path=TRUSTED_CAS_PATH, render=lambda s: _pem_join(s["cluster_ca_certificate"], *extra),
                              needs=("cluster_ca_certificate",)))
    if cfg.redis.external and redis_ca:
        files.append(FileSpec(path=REDIS_CA_PATH, render=lambda _s: _pem_join(redis_ca)))
    return files


def _pem_join(*pems: str) -> str:
    return "".join(p.strip() + "\n" for p in pems)


def harbor_node_files(cfg: ClusterConfig, node: Host) -> list[FileSpec]:
    s3 = cfg.storage.on_s3
    needs = ("admin_password", "db_password", "redis_password", *(S3_KEYS if s3 else ()))
    nfs = bool(cfg.nfs_export) and not s3
    files = (nfs_client_files(cfg) if nfs else []) + [*external_ca_files(cfg),
        FileSpec(path=f"{cfg.harbor.install_dir}/harbor.yml",
                 render=lambda s: render_harbor_yml(cfg, dict(s)), needs=needs, mode=0o600),
        node_env(cfg, node),
        # Harbor's `prepare` writes a new random CSRF_KEY into core's env on every run and node; the node script
        # replaces it with this shared one, or a UI form served by one node is refused by another (403).
        FileSpec(path=CSRF_KEY_PATH, render=lambda s: s["harbor_csrf_key"] + "\n", needs=("harbor_csrf_key",),
                 mode=0o600),
        FileSpec(path=NODE_CERT_PATH, render=lambda s: s["node_tls_certificate"], needs=("node_tls_certificate",)),
        FileSpec(path=NODE_KEY_PATH, render=lambda s: s["node_tls_private_key"], needs=("node_tls_private_key",),
                 mode=0o600),
        # prepare refuses a ca_bundle that is neither owned by 10000 nor world-readable (utils/configs.py).
        FileSpec(path=CLUSTER_CA_PATH, render=lambda s: s["cluster_ca_certificate"],
                 needs=("cluster_ca_certificate",)),
        FileSpec(path=PGPASS_PATH, render=lambda s: pgpass_line(cfg, s["db_password"]), needs=("db_password",),
                 mode=0o600),
        FileSpec(path=SCANNER_PREFIX_PATH, render=lambda s: s["harbor_scanner_prefix"] + "\n",
                 needs=("harbor_scanner_prefix",), mode=0o600),
        # The secrets of Harbor's internal calls, which prepare also makes per node: harbor-node.sh puts them into
        # core's, jobservice's and registryctl's env (a job queued by one node runs on any).
        FileSpec(path=CORE_SECRET_PATH, render=lambda s: s["harbor_core_secret"] + "\n",
                 needs=("harbor_core_secret",), mode=0o600),
        FileSpec(path=JOBSERVICE_SECRET_PATH, render=lambda s: s["harbor_jobservice_secret"] + "\n",
                 needs=("harbor_jobservice_secret",), mode=0o600),
        FileSpec(path=EXECUTION_REFRESH_PATH, render=lambda _s: f"{EXECUTION_REFRESH_SECONDS}\n"),
        FileSpec(path=f"/etc/systemd/system/{START_UNIT}", render=lambda _s: render_start_unit(cfg)),
    ]
    if cfg.object_store_hosts:
        files += s3_proxy_files(cfg, node, CLUSTER_CA_PATH) + s3_copy_files(cfg, node)
    if not s3:
        # With s3 the data volume is the node's own disk: nothing to wait for at boot.
        files.append(FileSpec(path="/etc/systemd/system/docker.service.d/harbor-ha-data-volume.conf",
                              render=lambda _s: render_docker_dropin(cfg)))
    for rel, secret in SHARED_KEYS:
        files.append(FileSpec(path=f"{cfg.harbor.data_volume}/{rel}", render=itemgetter(secret),
                              needs=(secret,), mode=0o600, owner=str(HARBOR_UID), group=str(HARBOR_UID),
                              write_once=True))
    return files


@dataclass(kw_only=True)
class HarborNodeArgs(RoleArgs):
    """Inputs of HarborNode: the common role inputs and the node."""

    host: Host  #: the node


class HarborNode(pulumi.ComponentResource):
    """One Harbor node: NFS mount, shared keys, harbor.yml, offline installer, health-gated start."""

    address: str  #: the node's address
    health_url: str  #: Harbor's health endpoint on the node
    role: HostRole  #: the deployment

    def __init__(self, name: str, args: HarborNodeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:harbor_node:HarborNode", name, None, opts)
        cfg, host = args.cfg, args.host
        # Air-gapped sites upload their copy of the installer; otherwise the node downloads INSTALLER_URL.
        uploads = ({installer_name(cfg.harbor.version): cfg.harbor.installer_path}
                   if cfg.harbor.installer_path else {})
        self.role = deploy_role(self, name, host, SCRIPT, harbor_node_files(cfg, host), args, uploads=uploads)
        self.address = host.address
        self.health_url = f"https://{host.address}:{cfg.harbor.https_port}/api/v2.0/health"
        self.register_outputs({"address": self.address, "health_url": self.health_url})
