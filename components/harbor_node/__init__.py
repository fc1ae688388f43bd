"""A Harbor node: the offline installer, harbor.yml pointing at the external services, the shared keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import yaml

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.nfs import HARBOR_UID, nfs_client_files
from components.redis import harbor_redis_host

SCRIPT = Path(__file__).with_name("harbor-node.sh")  #: the role script shipped to each Harbor node

# Where an uploaded installer is staged; harbor-node.sh looks for it there first.
INSTALLER_STAGE_NAME = "harbor-offline-installer.tgz"
CSRF_KEY_PATH = "/etc/harbor-ha/harbor/csrf_key"


def harbor_yml_data(cfg: ClusterConfig, secrets: dict[str, str]) -> dict:
    """harbor.yml as data (pure): the installer's template keys, external DB/Redis, TLS terminated on the LB."""
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
    if cfg.redis.mode == "sentinel":
        redis["sentinel_master_set"] = cfg.redis.master_set
    return {
        "hostname": h.hostname,
        # Plain HTTP on the node: TLS terminates on the LB, and external_url tells Harbor the public https URL
        # (token realm, redirects), so no `https:` section.
        "http": {"port": h.http_port},
        "external_url": cfg.external_url,
        "harbor_admin_password": secrets["admin_password"],
        "data_volume": h.data_volume,
        "external_database": {"harbor": {
            "host": cfg.db_endpoint,
            "port": cfg.postgres.port,
            "db_name": cfg.postgres.database,
            "username": cfg.postgres.user,
            "password": secrets["db_password"],
            # The server, or the database VIP that follows the Patroni leader (docs/database-ha.md); on the private
            # network, reachable from the Harbor nodes only (pg_hba).
            "ssl_mode": "disable",
            "max_idle_conns": min(10, h.db_max_open_conns),
            "max_open_conns": h.db_max_open_conns,
        }},
        "external_redis": redis,
        "trivy": {"ignore_unfixed": False, "skip_update": False, "offline_scan": False, "insecure": False,
                  "timeout": "5m0s"},
        "jobservice": {"max_job_workers": 10, "job_loggers": ["STD_OUTPUT", "FILE"], "logger_sweeper_duration": 1},
        "notification": {"webhook_job_max_retry": 3, "webhook_job_http_client_timeout": 3},
        "log": {"level": "info", "local": {"rotate_count": 50, "rotate_size": "200M",
                                           "location": "/var/log/harbor"}},
        "metric": {"enabled": True, "port": h.metrics_port, "path": "/metrics"},
        "upload_purging": {"enabled": True, "age": "168h", "interval": "24h", "dryrun": False},
        "cache": {"enabled": False, "expire_hours": 24},
        "proxy": {"http_proxy": None, "https_proxy": None, "no_proxy": None,
                  "components": ["core", "jobservice", "trivy"]},
        # The installer's config schema version: x.y.0 for every x.y.z release.
        "_version": f"{major}.{minor}.0",
    }


def render_harbor_yml(cfg: ClusterConfig, secrets: dict[str, str]) -> str:
    """harbor.yml of a node (pure; the same on every node)."""
    return ("# harbor.yml: rendered by harbor-ha (components/harbor_node/); pulumi up overwrites edits.\n"
            + yaml.safe_dump(harbor_yml_data(cfg, secrets), sort_keys=False, default_flow_style=False))


def node_env(cfg: ClusterConfig) -> FileSpec:
    """Parameters of harbor-node.sh."""
    h = cfg.harbor
    return role_env("harbor-node", {
        "HARBOR_VERSION": h.version,
        "INSTALLER_URL": h.installer_url or "",
        "INSTALLER_SHA256": h.installer_sha256 or "",
        "INSTALL_DIR": h.install_dir,
        "DATA_VOLUME": h.data_volume,
        "HTTP_PORT": str(h.http_port),
        "WITH_TRIVY": "1" if h.trivy else "0",
        "HEALTH_TIMEOUT": str(h.health_timeout),
        "INSTALLER_STAGE_NAME": INSTALLER_STAGE_NAME,
        "CSRF_KEY_FILE": CSRF_KEY_PATH,
    })


# The keys every node must share: tokens signed on one node are checked on another after a VIP move, and
# secretkey encrypts registry credentials in the database. Harbor's `prepare` only generates a missing one.
SHARED_KEYS = (
    ("secret/keys/secretkey", "harbor_secretkey"),
    ("secret/core/private_key.pem", "core_private_key"),
    ("secret/registry/root.crt", "registry_root_cert"),
)


def harbor_node_files(cfg: ClusterConfig) -> list[FileSpec]:
    needs = ("admin_password", "db_password", "redis_password")
    files = nfs_client_files(cfg) + [
        FileSpec(path=f"{cfg.harbor.install_dir}/harbor.yml",
                 render=lambda s: render_harbor_yml(cfg, dict(s)), needs=needs, mode=0o600),
        node_env(cfg),
        # Harbor's `prepare` writes a new random CSRF_KEY into core's env on every run and node; the node script
        # replaces it with this shared one, or a UI form served by one node is refused by another (403).
        FileSpec(path=CSRF_KEY_PATH, render=lambda s: s["harbor_csrf_key"] + "\n", needs=("harbor_csrf_key",),
                 mode=0o600),
    ]
    for rel, secret in SHARED_KEYS:
        files.append(FileSpec(path=f"{cfg.harbor.data_volume}/{rel}", render=lambda s, n=secret: s[n],
                              needs=(secret,), mode=0o600, owner=str(HARBOR_UID), group=str(HARBOR_UID)))
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
        assets = ({INSTALLER_STAGE_NAME: pulumi.FileAsset(cfg.harbor.installer_path)}
                  if cfg.harbor.installer_path else {})
        self.role = deploy_role(self, name, host, SCRIPT, harbor_node_files(cfg), args,
                                extra_assets=assets)
        self.address = host.address
        self.health_url = f"http://{host.address}:{cfg.harbor.http_port}/api/v2.0/health"
        self.register_outputs({"address": self.address, "health_url": self.health_url})
