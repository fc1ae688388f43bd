"""Which files each host receives, per role: the one map that the components, scripts/render.py and the tests use."""

from __future__ import annotations

from typing import Mapping

from components.config import ClusterConfig
from components.host.files import FileSpec, placeholders
from components.harbor_node import harbor_node_files
from components.keepalived import keepalived_files, vrrp_roles
from components.loadbalancer import loadbalancer_files
from components.etcd import etcd_files
from components.nfs import nfs_server_files
from components.patroni import patroni_files, pgbackrest_repo_files
from components.postgres import postgres_files
from components.redis import redis_files, sentinel_files

# Roles in provisioning order on one host; each has its `<role>.sh` beside its component.
ROLES = ("nfs-server", "etcd", "postgres", "patroni", "pgbackrest-repo", "redis", "sentinel", "harbor-node", "loadbalancer", "keepalived")


def role_files(cfg: ClusterConfig) -> dict[str, dict[str, list[FileSpec]]]:
    """{host name: {role: [FileSpec, ...]}} for the whole cluster, roles in ROLES order."""
    plan: dict[str, dict[str, list[FileSpec]]] = {h.name: {} for h in cfg.hosts}
    plan[cfg.nfs_host.name]["nfs-server"] = nfs_server_files(cfg)
    if cfg.patroni:
        for h in cfg.etcd_hosts:
            plan[h.name]["etcd"] = etcd_files(cfg, h)
        for h in cfg.postgres_hosts:
            plan[h.name]["patroni"] = patroni_files(cfg, h)
        if cfg.backup_host:
            plan[cfg.backup_host.name]["pgbackrest-repo"] = pgbackrest_repo_files(cfg)
    else:
        plan[cfg.postgres_host.name]["postgres"] = postgres_files(cfg)
    for h in cfg.redis_hosts:
        plan[h.name]["redis"] = redis_files(cfg, h)
    for h in cfg.sentinel_hosts:
        plan[h.name]["sentinel"] = sentinel_files(cfg, h)
    for h in cfg.harbor_nodes:
        plan[h.name]["harbor-node"] = harbor_node_files(cfg)
    for role in vrrp_roles(cfg):
        plan[role.host.name]["loadbalancer"] = loadbalancer_files(cfg, role.host)
        plan[role.host.name]["keepalived"] = keepalived_files(cfg, role)
    return {host: {r: roles[r] for r in ROLES if r in roles} for host, roles in plan.items()}


def render_all(cfg: ClusterConfig, values: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """{host name: {absolute path: content}}; secret values from `values`, else visible placeholders."""
    out: dict[str, dict[str, str]] = {}
    for host, roles in role_files(cfg).items():
        files = out.setdefault(host, {})
        for specs in roles.values():
            for spec in specs:
                given = values if values is not None else placeholders(spec.needs)
                files[spec.path] = spec.render({n: given[n] for n in spec.needs})
    return out
