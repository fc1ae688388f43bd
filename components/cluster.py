"""HarborCluster: every role of the HA Harbor cluster, composed in dependency order.

Order (each arrow is a dependency; everything else runs in parallel):
    host firewall (every host)  ->  NFS server or the object store (Garage on every host, then layout, bucket and
    key from the first), PostgreSQL (or etcd -> PostgresCluster), Redis (+ sentinels)
    ->  Harbor node 1 (alone: it runs the DB migrations)
    ->  Harbor node 2  ->  ...  ->  LoadBalancer (nginx on both LB hosts)  ->  KeepalivedPair (VIP)
    ->  Monitoring (exporters on every host, then Prometheus and Alertmanager on roles.monitoring)
Nodes are deployed one after the other, each gated on Harbor's health, so an upgrade is rolling too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.config import ClusterConfig
from components.firewall import HostFirewall, HostFirewallArgs
from components.etcd import Etcd, EtcdArgs
from components.harbor_node import HarborNode, HarborNodeArgs
from components.keepalived import KeepalivedPair, KeepalivedPairArgs
from components.loadbalancer import LoadBalancer, LoadBalancerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.nfs import NfsServer, NfsServerArgs
from components.object_store import ObjectStore, ObjectStoreArgs
from components.patroni import PostgresCluster, PostgresClusterArgs
from components.postgres import PostgresServer, PostgresServerArgs
from components.redis import Redis, RedisArgs
from components.secrets import ClusterSecrets, ClusterSecretsArgs
from harbor_provider.admin import AdminPassword, AdminPasswordArgs


@dataclass
class HarborClusterArgs:
    """Inputs of HarborCluster."""

    cfg: ClusterConfig  #: the validated cluster configuration
    ssh_private_key: pulumi.Input[str]  #: SSH private key for every host (secret)
    admin_password: Optional[pulumi.Input[str]] = None  #: Harbor admin password (else generated)
    tls_certificate: Optional[pulumi.Input[str]] = None  #: LB certificate chain (else self-signed)
    tls_private_key: Optional[pulumi.Input[str]] = None  #: LB private key
    backup_s3_access_key: Optional[pulumi.Input[str]] = None  #: backupS3AccessKey (S3 repositories)
    backup_s3_secret_key: Optional[pulumi.Input[str]] = None  #: backupS3SecretKey (S3 repositories)
    #: Alertmanager's receiver secrets by SECRET_VALUES name (monitoringWebhookToken, ...; None where unset)
    monitoring_secrets: Optional[dict[str, Optional[pulumi.Input[str]]]] = None
    storage_s3_access_key: Optional[pulumi.Input[str]] = None  #: storageS3AccessKey (storage.mode s3, own S3)
    storage_s3_secret_key: Optional[pulumi.Input[str]] = None  #: storageS3SecretKey (storage.mode s3, own S3)
    postgres_password: Optional[pulumi.Input[str]] = None  #: postgresPassword (postgres.mode external)
    redis_password: Optional[pulumi.Input[str]] = None  #: redisPassword (redis.mode external)
    acme_dns_hook: Optional[pulumi.Input[str]] = None  #: acmeDnsHook (tls.acme.challenge dns-01)


class HarborCluster(pulumi.ComponentResource):
    """The whole HA Harbor deployment."""

    url: str  #: Harbor's public URL (the VIP's name)
    vip: str  #: the virtual IP
    node_addresses: list[str]  #: addresses of the Harbor nodes
    admin_username: str  #: Harbor's admin user
    admin_password: pulumi.Output[str]  #: Harbor's admin password in force, once set through its API (secret)
    ca_certificate: Optional[pulumi.Output[str]]  #: what to trust for `url`: the self-signed cert, None with a user one
    nodes: list[HarborNode]  #: the Harbor nodes, in deployment order
    keepalived: KeepalivedPair  #: the VIP holders: once they are up, Harbor is reachable on `url`
    monitoring: Optional[Monitoring]  #: Prometheus, Alertmanager and the exporters (None: roles.monitoring unset)

    def __init__(self, name: str, args: HarborClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:cluster:HarborCluster", name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self)
        for host in cfg.hosts:
            if host.host_key is None:
                pulumi.log.warn(f"hosts: {host.name} ({host.address}) has no hostKey: any SSH server answering that "
                                "address receives its role's secrets; pin it with the output of "
                                f"`ssh-keyscan -t ed25519 -p {host.port} {host.address}`", self)
        secrets = ClusterSecrets(f"{name}-secrets", ClusterSecretsArgs(
            cfg=cfg, admin_password=args.admin_password, tls_certificate=args.tls_certificate,
            tls_private_key=args.tls_private_key, backup_s3_access_key=args.backup_s3_access_key,
            backup_s3_secret_key=args.backup_s3_secret_key, monitoring=args.monitoring_secrets,
            storage_s3_access_key=args.storage_s3_access_key, storage_s3_secret_key=args.storage_s3_secret_key,
            postgres_password=args.postgres_password, redis_password=args.redis_password,
            acme_dns_hook=args.acme_dns_hook), child)
        common: dict[str, Any] = dict(cfg=cfg, secrets=secrets.values, private_key=args.ssh_private_key)

        # First on every host: each service starts behind its host's firewall, never open to the whole network.
        firewall = HostFirewall(f"{name}-firewall", HostFirewallArgs(**common), child)
        # The services Harbor needs, each deployed here unless its mode is external (an existing service).
        services: list[pulumi.Resource] = []
        if cfg.patroni:
            etcd = Etcd(f"{name}-etcd", EtcdArgs(**common, after=[firewall]), child)
            services.append(PostgresCluster(f"{name}-patroni", PostgresClusterArgs(**common, after=[etcd]), child))
        elif not cfg.postgres.external:
            services.append(PostgresServer(f"{name}-postgres", PostgresServerArgs(**common, after=[firewall]), child))
        if not cfg.redis.external:
            services.append(Redis(f"{name}-redis", RedisArgs(**common, after=[firewall]), child))
        # No NFS server in the sandbox (its nodes share a Docker volume, components/sandbox/) nor for an existing
        # export (nfs.mode external). With storage.mode s3 an NFS host may remain (it keeps the data of before the
        # move, and its role is protected), but no node mounts it.
        if cfg.nfs_host:
            nfs = NfsServer(f"{name}-nfs", NfsServerArgs(**common, after=[firewall]), child)
            if not cfg.storage.on_s3:
                services.append(nfs)
        # Harbor's nodes start once the bucket and their key exist.
        if cfg.object_store_hosts:
            services.append(ObjectStore(f"{name}-objstore", ObjectStoreArgs(**common, after=[firewall]), child))
        # Every service external: the first node still starts behind its firewall.
        previous: list[pulumi.Resource] = services or [firewall]

        self.nodes = []
        for host in cfg.harbor_nodes:
            node = HarborNode(f"{name}-node-{host.name}", HarborNodeArgs(**common, host=host, after=previous), child)
            self.nodes.append(node)
            previous = [node]

        lb = LoadBalancer(f"{name}-lb", LoadBalancerArgs(**common, after=self.nodes), child)
        self.keepalived = KeepalivedPair(f"{name}-keepalived", KeepalivedPairArgs(**common, after=[lb]), child)
        # Last: the exporters reach the services they watch, and Prometheus's first scrapes find the cluster up.
        self.monitoring = (Monitoring(f"{name}-monitoring", MonitoringArgs(**common, after=[self.keepalived]), child)
                           if cfg.monitoring else None)

        self.url = cfg.external_url
        self.vip = cfg.vip
        self.node_addresses = [h.address for h in cfg.harbor_nodes]
        self.admin_username = "admin"
        self.ca_certificate = secrets.self_signed_certificate
        # Once Harbor answers on its URL: harborAdminPassword set or changed through Harbor's API. Whatever logs in
        # with the output (the Harbor objects) runs after the change.
        self.admin_password = AdminPassword(f"{name}-admin-password", AdminPasswordArgs(
            url=self.url, username=self.admin_username, password=secrets.admin_password,
            initial_password=secrets.initial_admin_password, ca_certificate=self.ca_certificate),
            pulumi.ResourceOptions(parent=self, depends_on=[self.keepalived])).password
        self.register_outputs({
            "url": self.url, "vip": self.vip, "node_addresses": self.node_addresses,
            "admin_username": self.admin_username, "admin_password": self.admin_password,
        })
