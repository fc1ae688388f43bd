"""Which files each host receives, per role: the one map that the components, scripts/render.py and the tests use."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from components.config import ClusterConfig
from components.host.files import FileSpec, placeholders
from components.firewall import firewall_files
from components.harbor_node import harbor_node_files
from components.keepalived import keepalived_files, vrrp_roles
from components.loadbalancer import loadbalancer_files
from components.monitoring import exporter_files, monitoring_files
from components.etcd import etcd_files
from components.nfs import nfs_server_files
from components.object_store import cluster_files, object_store_files
from components.patroni import patroni_files
from components.pgbackrest import pgbackrest_repo_files
from components.postgres import postgres_files
from components.redis import redis_files, sentinel_files

# Roles in provisioning order on one host (the firewall first: no service is ever reachable without it); each has
# its `<role>.sh` beside its component.
ROLES = ("firewall", "nfs-server", "object-store", "object-store-cluster", "etcd", "postgres", "patroni",
         "pgbackrest-repo", "redis", "sentinel", "harbor-node",
         "loadbalancer", "keepalived", "exporters", "monitoring")
# How a change to a role's files takes effect on its host (what its `<role>.sh apply` runs after installing them).
APPLIED_BY = {
    "firewall": "nft -c, then the table loaded with a rollback timer until the apply confirms",
    "nfs-server": "exportfs -ra (no restart)",
    "object-store": "garage: restart (its TLS front: nginx -t, then reload); the layout is the cluster step's",
    "object-store-cluster": "Garage's admin API: layout applied when it lacks a node, bucket and key created once",
    "etcd": "etcd: restart",
    "postgres": "postgresql@VERSION-main: restart for postgresql.conf, reload for pg_hba.conf",
    "patroni": "patroni: reload, vip-manager: restart, dynamic settings by patronictl edit-config",
    "pgbackrest-repo": "pgbackrest server: restart; backup timers enabled",
    "redis": "redis-server: restart",
    "sentinel": "redis-sentinel: restart",
    "harbor-node": "harbor: prepare + docker compose up -d",
    "loadbalancer": "nginx: reload after nginx -t (rolled back when refused)",
    "keepalived": "keepalived: reload after keepalived -t (rolled back when refused)",
    "exporters": "the changed exporter: restart",
    "monitoring": "promtool/amtool/blackbox checks, then prometheus, alertmanager, blackbox: reload "
                  "(restart for changed flags)",
}


def role_files(cfg: ClusterConfig) -> dict[str, dict[str, list[FileSpec]]]:
    """{host name: {role: [FileSpec, ...]}} for the whole cluster, roles in ROLES order."""
    plan: dict[str, dict[str, list[FileSpec]]] = {h.name: {"firewall": firewall_files(cfg, h)} for h in cfg.hosts}
    if cfg.nfs_host:
        plan[cfg.nfs_host.name]["nfs-server"] = nfs_server_files(cfg)
    for h in cfg.object_store_hosts:
        plan[h.name]["object-store"] = object_store_files(cfg, h)
    if cfg.object_store_hosts:
        plan[cfg.object_store_hosts[0].name]["object-store-cluster"] = cluster_files(cfg)
    if cfg.patroni:
        for h in cfg.etcd_hosts:
            plan[h.name]["etcd"] = etcd_files(cfg, h)
        for h in cfg.postgres_hosts:
            plan[h.name]["patroni"] = patroni_files(cfg, h)
        if cfg.backup_host:
            plan[cfg.backup_host.name]["pgbackrest-repo"] = pgbackrest_repo_files(cfg)
    elif not cfg.postgres.external:
        plan[cfg.postgres_host.name]["postgres"] = postgres_files(cfg)
    if cfg.backup and cfg.backup_host:
        plan[cfg.backup_host.name]["pgbackrest-repo"] = pgbackrest_repo_files(cfg)
    for h in cfg.redis_hosts:
        plan[h.name]["redis"] = redis_files(cfg, h)
    for h in cfg.sentinel_hosts:
        plan[h.name]["sentinel"] = sentinel_files(cfg, h)
    for h in cfg.harbor_nodes:
        plan[h.name]["harbor-node"] = harbor_node_files(cfg, h)
    for role in vrrp_roles(cfg):
        plan[role.host.name]["loadbalancer"] = loadbalancer_files(cfg, role.host)
        plan[role.host.name]["keepalived"] = keepalived_files(cfg, role)
    if cfg.monitoring:
        for h in cfg.hosts:
            plan[h.name]["exporters"] = exporter_files(cfg, h)
        for h in cfg.monitoring_hosts:
            plan[h.name]["monitoring"] = monitoring_files(cfg, h)
    return {host: {r: roles[r] for r in ROLES if r in roles} for host, roles in plan.items()}


def rendered_files(cfg: ClusterConfig, values: Mapping[str, str] | None = None
                   ) -> Iterator[tuple[str, str, FileSpec, str]]:
    """(host name, role, spec, content) of every file; secret values from `values`, else visible placeholders."""
    for host, roles in role_files(cfg).items():
        for role, specs in roles.items():
            for spec in specs:
                given = values if values is not None else placeholders(spec.needs)
                yield host, role, spec, spec.render({n: given[n] for n in spec.needs})


def render_all(cfg: ClusterConfig, values: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """{host name: {absolute path: content}}; secret values from `values`, else visible placeholders."""
    out: dict[str, dict[str, str]] = {h.name: {} for h in cfg.hosts}
    for host, _role, spec, content in rendered_files(cfg, values):
        out[host][spec.path] = content
    return out
