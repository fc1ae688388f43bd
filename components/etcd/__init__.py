"""etcd: the distributed configuration store that holds Patroni's leader key (postgres.mode: patroni).

One member per `roles.etcd` host (default: the database hosts), an odd number so a majority survives a member's
loss. The v2 API is enabled because vip-manager 1.0.2 (Debian 12) reads the leader key through it only, and
Patroni's `etcd:` section talks v2 for the same reason: both must see one key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_env, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role

SCRIPT = Path(__file__).with_name("etcd.sh")  #: the role script of an etcd member


@dataclass(frozen=True)
class EtcdPaths:
    """Where etcd keeps its files (Debian's package layout; the database lab uses temp dirs)."""

    env_file: str = "/etc/default/etcd"  #: EnvironmentFile of Debian's etcd.service
    data_dir: str = "/var/lib/etcd/harbor-ha"  #: member data


def etcd_client_urls(cfg: ClusterConfig) -> list[str]:
    """`address:port` of every member's client endpoint (Patroni's etcd.hosts, vip-manager's endpoints)."""
    return [f"{h.address}:{cfg.patroni.etcd_client_port}" for h in cfg.etcd_hosts]


def render_etcd_env(cfg: ClusterConfig, host: Host, paths: EtcdPaths = EtcdPaths()) -> str:
    """/etc/default/etcd of one member: etcd reads its ETCD_* settings from the environment (pure)."""
    p = cfg.patroni
    peers = ",".join(f"{h.name}=http://{h.address}:{p.etcd_peer_port}" for h in cfg.etcd_hosts)
    values = {
        "ETCD_NAME": host.name,
        "ETCD_DATA_DIR": paths.data_dir,
        "ETCD_LISTEN_PEER_URLS": f"http://{host.address}:{p.etcd_peer_port}",
        # Loopback too: vip-manager and patronictl on the member itself.
        "ETCD_LISTEN_CLIENT_URLS": f"http://{host.address}:{p.etcd_client_port},http://127.0.0.1:{p.etcd_client_port}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{host.address}:{p.etcd_client_port}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{host.address}:{p.etcd_peer_port}",
        "ETCD_INITIAL_CLUSTER": peers,
        # Read only when the data dir is empty: a re-apply of a running member changes nothing. Adding a member to a
        # running cluster needs `etcdctl member add` first (docs/database-ha.md).
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        # The token keeps members of another cluster on the same network from joining this one by mistake.
        "ETCD_INITIAL_CLUSTER_TOKEN": f"harbor-ha-{p.scope}",
        "ETCD_ENABLE_V2": "true",
    }
    return "# Rendered by harbor-ha (components/etcd/); pulumi up overwrites edits.\n" + render_env(values)


def etcd_files(cfg: ClusterConfig, host: Host, paths: EtcdPaths = EtcdPaths()) -> list[FileSpec]:
    return [FileSpec(path=paths.env_file, render=lambda _s: render_etcd_env(cfg, host, paths)),
            role_env("etcd", {"DATA_DIR": paths.data_dir,
                              "CLIENT_URL": f"http://127.0.0.1:{cfg.patroni.etcd_client_port}"})]


class EtcdArgs(RoleArgs):
    """Inputs of Etcd (the common role inputs)."""


class Etcd(pulumi.ComponentResource):
    """An etcd cluster on the `roles.etcd` hosts, all members deployed in parallel (they wait for a quorum)."""

    endpoints: list[str]  #: `address:port` of every member's client endpoint
    members: list[HostRole]  #: the deployment on each member

    def __init__(self, name: str, args: EtcdArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:etcd:Etcd", name, None, opts)
        cfg = args.cfg
        self.members = [deploy_role(self, name, h, SCRIPT, etcd_files(cfg, h), args) for h in cfg.etcd_hosts]
        self.endpoints = etcd_client_urls(cfg)
        self.register_outputs({"endpoints": self.endpoints})
