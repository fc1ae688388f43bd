"""The host firewall: one nftables table, `inet harbor_ha`, on every host, default deny inbound.

Each host opens exactly what its roles' peers need (`host_openings`, the one place that decides; the renderer, the
docs and the connection-matrix lab all read it). The table is replaced atomically on its own (`table` + `delete
table` + the new table, in one `nft -f` transaction), so Docker's tables and the distribution's are never flushed.

Docker publishes Harbor's ports with DNAT: those packets go through the forward hook, never input. Each published
port is therefore guarded a second time in a prerouting chain that runs before Docker's NAT (priority dstnat - 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role

SCRIPT = Path(__file__).with_name("firewall.sh")  #: the role script shipped to every host

RULESET_PATH = "/etc/harbor-ha/firewall/harbor-ha.nft"
UNIT_PATH = "/etc/systemd/system/harbor-ha-firewall.service"
TABLE = "harbor_ha"

# NFSv3 side services, pinned by components/nfs/ so that they can be opened here (rpcbind's 111 is fixed).
RPCBIND_PORT = 111
MOUNTD_PORT = 20048
STATD_PORT = 32765
LOCKD_PORT = 32768
# Harbor's containers run on a Docker network of their own (the compose file's `harbor`), a bridge Docker names
# `br-<network id>`: their connections to a service on their own node's address come in over it, not loopback.
DOCKER_BRIDGES = "br-*"


@dataclass(frozen=True)
class Opening:
    """One thing a host accepts from the network."""

    service: str  #: what listens (ssh, harbor-https, postgres, ...)
    proto: str  #: tcp, udp or vrrp
    port: Optional[int]  #: destination port (None for vrrp)
    sources: Optional[tuple[str, ...]]  #: allowed source CIDRs; None = anywhere
    why: str  #: who needs it, for the rendered comment and docs/security.md
    daddr: Optional[str] = None  #: only to this local address (the VIP); None = any of the host's addresses
    published: bool = False  #: Docker publishes it (DNAT): guarded before NAT as well
    iifname: Optional[str] = None  #: only in over these interfaces (nft pattern), e.g. the host's Docker bridges


def _cidrs(hosts: tuple[Host, ...] | list[Host], but: Host) -> tuple[str, ...]:
    """The addresses of `hosts` other than `but` (a host reaches its own addresses over loopback)."""
    return tuple(dict.fromkeys(f"{h.address}/32" for h in hosts if h != but))


def host_openings(cfg: ClusterConfig, host: Host) -> list[Opening]:
    """Everything `host` accepts, the union of its roles' needs (pure). Loopback, replies and ICMP come on top."""
    fw, nodes = cfg.firewall, cfg.harbor_nodes
    openings = [Opening("ssh", "tcp", host.port, fw.admin_sources,
                        "administration and the Pulumi engine (firewall.adminSources)")]
    if host in cfg.lb_hosts:
        peer = next(h for h in cfg.lb_hosts if h != host)
        # tls.mode acme: the CA validates HTTP-01 from addresses it does not publish, so port 80 is open to all
        # (it only redirects and serves challenge tokens); DNS-01 asks the CA to look at DNS only.
        http = (Opening("vip-http", "tcp", cfg.lb.http_port, None,
                        "the ACME CA's HTTP-01 requests and clients redirected to HTTPS (tls.mode acme)", daddr=cfg.vip)
                if cfg.tls.acme and cfg.tls.acme.challenge == "http-01" else
                Opening("vip-http", "tcp", cfg.lb.http_port, fw.client_sources,
                        "registry clients, redirected to HTTPS (firewall.clientSources)", daddr=cfg.vip))
        if cfg.tls.acme and fw.admin_sources is not None:
            openings.append(Opening("acme-push", "tcp", host.port, _cidrs([peer], host),
                                    "the VIP holder pushes the ACME certificate (tls.mode acme)"))
        openings += [
            http,
            Opening("vip-https", "tcp", cfg.lb.https_port, fw.client_sources,
                    "registry clients and the UI (firewall.clientSources)", daddr=cfg.vip),
            Opening("vrrp", "vrrp", None, _cidrs([peer], host), "keepalived adverts from the other LB host"),
        ]
    if host in nodes:
        openings.append(Opening("harbor-https", "tcp", cfg.harbor.https_port, _cidrs(cfg.lb_hosts, host),
                                "the load balancers proxy to Harbor over TLS", published=True))
        if cfg.object_store_hosts and cfg.storage.garage:
            openings.append(Opening("s3-proxy", "tcp", cfg.storage.garage.proxy_port, None,
                                    "Harbor's registry container dials this node's S3 proxy", iifname=DOCKER_BRIDGES))
        if fw.metrics_sources:
            openings.append(Opening("harbor-metrics", "tcp", cfg.harbor.metrics_port, fw.metrics_sources,
                                    "Prometheus scrapers (firewall.metricsSources)", published=True))
    if host in cfg.postgres_hosts and cfg.postgres.mode == "single":
        openings.append(Opening("postgres", "tcp", cfg.postgres.port, _cidrs(cfg.data_clients, host),
                                "Harbor's database pools (and a retiring node's until its delete ran)"))
    if cfg.patroni:
        openings += _patroni_openings(cfg, host)
    backup = [cfg.backup_host] if cfg.backup and cfg.backup_host else []
    if cfg.backup and backup and host in [*cfg.postgres_hosts, *backup]:
        openings.append(Opening("pgbackrest", "tcp", cfg.backup.tls_port, _cidrs([*cfg.postgres_hosts, *backup], host),
                                "pgBackRest's TLS server between the database hosts and the repository host"))
    redis_peers = _cidrs([*nodes, *cfg.redis_hosts, *cfg.sentinel_hosts], host)
    local: list[tuple[str, int]] = []  #: services Harbor's containers on this very host use
    if host in cfg.redis_hosts:
        openings.append(Opening("redis", "tcp", cfg.redis.port, redis_peers,
                                "Harbor, replication and the sentinels"))
        local.append(("redis", cfg.redis.port))
    if host in cfg.sentinel_hosts:
        openings.append(Opening("sentinel", "tcp", cfg.redis.sentinel_port, redis_peers,
                                "Harbor asks the sentinels for the master; sentinels talk to each other"))
        local.append(("sentinel", cfg.redis.sentinel_port))
    if host in cfg.postgres_hosts and cfg.postgres.mode == "single":
        local.append(("postgres", cfg.postgres.port))
    if host in nodes:
        # A node that carries Redis, a sentinel or the database too: its own Harbor containers reach them over the
        # node's address from their Docker network (without this, jobservice on a node whose Redis the sentinels
        # had promoted timed out for good: seen in the real-Harbor drills, labs/hosts/drills.py).
        openings += [Opening(f"{service}-local", "tcp", port, None, "Harbor's containers on this node",
                             iifname=DOCKER_BRIDGES) for service, port in local]
    if host == cfg.nfs_host:
        openings.append(Opening("nfs", "tcp", 2049, _cidrs(cfg.data_clients, host),
                                "the nodes' data_volume mount (and a retiring node's until its delete ran)"))
        if cfg.nfs.version == "3":
            for service, port in (("rpcbind", RPCBIND_PORT), ("mountd", MOUNTD_PORT), ("statd", STATD_PORT),
                                  ("lockd", LOCKD_PORT)):
                for proto in ("tcp", "udp"):
                    openings.append(Opening(service, proto, port, _cidrs(cfg.data_clients, host),
                                            "NFSv3 mounts and locks"))
    if cfg.monitoring:
        openings += _monitoring_openings(cfg, host)
    if host in cfg.object_store_hosts and cfg.storage.garage:
        garage = cfg.storage.garage
        openings += [
            Opening("garage-rpc", "tcp", garage.rpc_port, _cidrs(cfg.object_store_hosts, host),
                    "Garage nodes replicate and route requests among themselves"),
            Opening("s3-https", "tcp", garage.https_port, _cidrs(cfg.data_clients, host),
                    "Harbor's registry reaches the bucket through the TLS front (and a retiring node's until its "
                    "delete ran)"),
        ]
    # A peer list that is only the host itself: nothing to open (its own traffic comes over loopback).
    return [o for o in openings if o.sources != ()]


def _monitoring_openings(cfg: ClusterConfig, host: Host) -> list[Opening]:
    """roles.monitoring: each exporter of the host to the monitoring hosts only (components/monitoring/)."""
    # Here, not at the top: components/monitoring imports harbor_node, which imports nfs, which imports this module.
    from components.monitoring import ALERTMANAGER_CLUSTER_PORT, host_exporters

    assert cfg.monitoring is not None
    scrapers = _cidrs(cfg.monitoring_hosts, host)
    openings, seen = [], set()
    for exporter in host_exporters(cfg, host):
        if exporter.port in seen:
            continue  # Harbor's four metrics jobs share one port
        seen.add(exporter.port)
        if exporter.job in ("prometheus", "alertmanager"):
            sources = tuple(dict.fromkeys((*scrapers, *cfg.monitoring.query_sources)))
            why = "the other monitoring host, and Grafana or operators (monitoring.querySources)"
        else:
            sources = scrapers
            why = "Prometheus on the monitoring hosts scrapes it"
        harbor = exporter.job.startswith("harbor-")
        openings.append(Opening("harbor-metrics-scrape" if harbor else f"{exporter.job}-metrics", "tcp",
                                exporter.port, sources, why, published=harbor))
    if host in cfg.harbor_nodes:
        openings.append(Opening("harbor-https-probe", "tcp", cfg.harbor.https_port, scrapers,
                                "the monitoring hosts' probe of Harbor's health, as the load balancers reach it",
                                published=True))
    if host == cfg.nfs_host:
        openings.append(Opening("nfs-probe", "tcp", 2049, scrapers, "the monitoring hosts' TCP probe of the export"))
    if host in cfg.monitoring_hosts:
        for proto in ("tcp", "udp"):
            openings.append(Opening("alertmanager-cluster", proto, ALERTMANAGER_CLUSTER_PORT, scrapers,
                                    "the Alertmanagers of the two monitoring hosts share alerts and silences"))
    return openings


def _patroni_openings(cfg: ClusterConfig, host: Host) -> list[Opening]:
    """postgres.mode patroni: the database members and etcd (components/patroni/)."""
    assert cfg.patroni is not None
    members, etcd = list(cfg.postgres_hosts), list(cfg.etcd_hosts)
    backup = [cfg.backup_host] if cfg.backup and cfg.backup_host else []
    openings = []
    if host in members:
        openings += [
            Opening("postgres", "tcp", cfg.postgres.port, _cidrs([*cfg.data_clients, *members, *backup], host),
                    "Harbor's pools through the database VIP (on the leader), replication and pg_rewind between "
                    "members, pgBackRest"),
            Opening("patroni-api", "tcp", cfg.patroni.rest_api_port, _cidrs(members, host),
                    "Patroni members probe each other before a promotion"),
        ]
    if host in etcd:
        openings += [
            Opening("etcd-client", "tcp", cfg.patroni.etcd_client_port, _cidrs([*members, *etcd], host),
                    "Patroni and vip-manager keep and watch the leader key"),
            Opening("etcd-peer", "tcp", cfg.patroni.etcd_peer_port, _cidrs(etcd, host), "etcd members replicate"),
        ]
    return openings


def published_ports(cfg: ClusterConfig, host: Host) -> list[int]:
    """Ports Docker publishes on a Harbor node (every one, also those open to nobody: they get the guard too)."""
    if host not in cfg.harbor_nodes:
        return []
    return sorted({cfg.harbor.http_port, cfg.harbor.https_port, cfg.harbor.metrics_port})


def nft_match(o: Opening) -> str:
    """The nft match of an opening, without the verdict (pure)."""
    parts = []
    if o.iifname:
        parts.append(f'iifname "{o.iifname}"')
    if o.daddr:
        parts.append(f"ip daddr {o.daddr}")
    if o.sources is not None:
        parts.append(f"ip saddr {{ {', '.join(o.sources)} }}")
    parts.append("meta l4proto vrrp" if o.proto == "vrrp" else f"{o.proto} dport {o.port}")
    return " ".join(parts)


def render_ruleset(cfg: ClusterConfig, host: Host) -> str:
    """The nftables file of one host (pure); `nft -f` replaces the table `inet harbor_ha` and nothing else."""
    openings = host_openings(cfg, host)
    return render_template("firewall/harbor-ha.nft.j2", host=host, table=TABLE, openings=openings,
                           published=[o for o in openings if o.published], match=nft_match,
                           published_ports=published_ports(cfg, host), vip=cfg.vip, docker_bridges=DOCKER_BRIDGES,
                           vip_orphans=host in cfg.lb_hosts and host in cfg.harbor_nodes)


def render_unit() -> str:
    """The oneshot unit that loads the table at boot, before the network comes up."""
    return render_template("firewall/harbor-ha-firewall.service.j2", ruleset=RULESET_PATH)


def firewall_files(cfg: ClusterConfig, host: Host) -> list[FileSpec]:
    return [
        FileSpec(path=RULESET_PATH, render=lambda _s: render_ruleset(cfg, host), mode=0o600),
        FileSpec(path=UNIT_PATH, render=lambda _s: render_unit()),
        role_env("firewall", {
            "RULESET_FILE": RULESET_PATH, "TABLE": TABLE, "CONFIRM_SECONDS": str(cfg.firewall.confirm_seconds),
            # The applying session must come from one of these, or the next `pulumi up` would be locked out.
            "ADMIN_SOURCES": " ".join(cfg.firewall.admin_sources or ()),
            "SSH_PORT": str(host.port),
        }),
    ]


class HostFirewallArgs(RoleArgs):
    """Inputs of HostFirewall (the common role inputs)."""


class HostFirewall(pulumi.ComponentResource):
    """The nftables table of every host of the cluster."""

    members: list[HostRole]  #: one deployment per host

    def __init__(self, name: str, args: HostFirewallArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:firewall:HostFirewall", name, None, opts)
        cfg = args.cfg
        self.members = [deploy_role(self, name, h, SCRIPT, firewall_files(cfg, h), args) for h in cfg.hosts]
        self.register_outputs({"hosts": [h.name for h in cfg.hosts]})
