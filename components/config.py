"""The stack configuration model: parsed from `Pulumi.<stack>.yaml` once, validated, then read-only.

Everything downstream (rendering, components, `scripts/render.py`, the HA lab) takes a `ClusterConfig`, never raw
config. Validation collects every problem and raises one `ConfigError` whose lines each name the offending key, so a
bad stack file fails before a single resource is registered or a host touched.

Keys live in the `harbor-ha` namespace (`harbor-ha:hosts`, `harbor-ha:vip`, ...). Defaults are explained where they
are set, the way evrardjp/ansible-keepalived and geerlingguy/ansible-role-postgresql explain theirs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional
from collections.abc import Callable, Mapping, Sequence

NAMESPACE = "harbor-ha"

# Every top-level key this program reads; anything else in the namespace is a typo and an error.
KNOWN_KEYS = (
    "hosts", "network", "roles", "vip", "keepalived", "loadBalancer", "harbor", "tls", "postgres", "redis", "nfs",
    "firewall",
    "backup",
    # Secret keys: only their presence is validated here, their values stay Outputs (see components/secrets.py).
    "sshPrivateKey", "tlsCertificate", "tlsPrivateKey", "harborAdminPassword", "backupS3AccessKey",
    "backupS3SecretKey", "postgresPassword", "redisPassword",
    # Sections owned by the Harbor API provider and the migration (harbor_provider/); passed through untouched.
    "harborApi", "migration",
    # The sandbox: every host a Docker container on this machine (components/sandbox/, docs/sandbox.md).
    "sandbox",
    # Prometheus and Alertmanager on roles.monitoring, exporters on every host (components/monitoring/).
    "monitoring", "monitoringSmtpPassword", "monitoringSlackApiUrl", "monitoringWebhookToken",
    # tls.acme.challenge dns-01: the hook lego runs to publish the TXT record (it holds the DNS API's credentials).
    "acmeDnsHook",
    # Harbor's image storage on S3, and the Garage cluster of roles.objectStore (the storage section below).
    "storage", "storageS3AccessKey", "storageS3SecretKey",
)
SECRET_KEYS = ("sshPrivateKey", "tlsCertificate", "tlsPrivateKey", "harborAdminPassword", "backupS3AccessKey",
               "backupS3SecretKey", "monitoringSmtpPassword", "monitoringSlackApiUrl", "monitoringWebhookToken",
               "storageS3AccessKey", "storageS3SecretKey", "postgresPassword", "redisPassword", "acmeDnsHook")
# Sections parsed by harbor_provider/stack_config.py, whose secret settings are set with `--secret --path`.
PASSTHROUGH_KEYS = ("harborApi", "migration")

HARBOR_DEFAULT_VERSION = "2.15.2"
# Harbor components that pool PostgreSQL connections on each node (core, jobservice, exporter), and the
# connections PostgreSQL keeps for administration and migrations.
DB_POOLS_PER_NODE = 3
DB_RESERVED_CONNECTIONS = 20
HARBOR_RELEASE_URL = (
    "https://github.com/goharbor/harbor/releases/download/v{version}/harbor-offline-installer-v{version}.tgz"
)


class ConfigError(ValueError):
    """Bad stack configuration; `problems` holds one line per offending key."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("invalid stack configuration:\n  " + "\n  ".join(self.problems))


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the closest of `known` to a misspelt `name` (empty when none is close)."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------------------------------------------
# Typed model
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    """A machine reached over SSH."""

    name: str  #: unique name; also the folder name in `scripts/render.py` output
    address: str  #: private IPv4 address, used for SSH and for every service binding
    user: str  #: SSH user (root, or a user with passwordless sudo)
    port: int  #: SSH port
    host_key: Optional[Any] = None  #: pinned SSH host key `type base64` (None: any); the sandbox's are Outputs


@dataclass(frozen=True)
class VrrpSettings:
    """keepalived settings shared by both LB hosts (see components/keepalived/ for what each does)."""

    interface: str  #: interface that carries the VIP and the VRRP adverts
    virtual_router_id: int  #: VRRP router id, 1..255, unique on the L2 segment
    vrrp_version: int  #: 2 or 3; 3 allows sub-second advert_int but has no authentication (RFC 5798)
    advert_int: float  #: seconds between adverts; the backup takes over after ~3 missed adverts
    unicast: bool  #: send adverts to the peer's address instead of multicast (clouds drop multicast)
    nopreempt: bool  #: a recovered higher-priority host does not take the VIP back (one move instead of two)
    priority_master: int  #: priority of the first LB host
    priority_backup: int  #: priority of the second LB host
    track_process: bool  #: track the nginx process through netlink (reacts within milliseconds of its death)
    check_interval: int  #: seconds between runs of the LB health check script (whole seconds, keepalived rule)
    check_fall: int  #: failed checks before the host gives up the VIP
    check_rise: int  #: good checks before it may hold the VIP again
    check_weight: int  #: 0 = a failed check puts the host in FAULT; negative = lower its priority by that much
    check_command: Optional[str]  #: override of the health check command (None: curl the LB health endpoint)
    garp_master_delay: int  #: seconds before the second burst of gratuitous ARPs after becoming master


@dataclass(frozen=True)
class LoadBalancerSettings:
    """nginx on the keepalived hosts."""

    http_port: int  #: plain-HTTP port on the VIP (redirects to HTTPS)
    https_port: int  #: HTTPS port on the VIP
    health_port: int  #: loopback-only port of the health endpoint keepalived checks
    max_fails: int  #: failed attempts before nginx stops sending to an upstream for fail_timeout
    fail_timeout: int  #: seconds an upstream is considered down after max_fails
    connect_timeout: float  #: seconds to connect to a Harbor node before trying the next one
    read_timeout: int  #: seconds without data from Harbor before a request fails (large layer pushes)
    next_upstream_tries: int  #: how many upstreams an idempotent request may try
    hsts: bool  #: send Strict-Transport-Security
    worker_connections: int  #: nginx worker_connections
    admin_sources: Optional[tuple[str, ...]]  #: CIDRs allowed to Harbor's UI paths on the VIP (None: anywhere)
    api_sources: Optional[tuple[str, ...]]  #: CIDRs allowed to Harbor's REST API (/api/) on the VIP (None: anywhere)


@dataclass(frozen=True)
class HarborSettings:
    """The Harbor installation on each node."""

    version: str  #: Harbor release, e.g. 2.15.2
    installer_url: Optional[str]  #: offline installer download URL (default: the GitHub release of `version`)
    installer_path: Optional[str]  #: local path of the offline installer, uploaded instead (air-gapped sites)
    installer_sha256: Optional[str]  #: expected sha256 of the installer, checked on the host when given
    hostname: str  #: DNS name of the VIP; Harbor's hostname and external_url
    http_port: int  #: port Harbor's own nginx listens on (off 80 when the LB shares the host); redirects to https
    https_port: int  #: TLS port of Harbor's own nginx: what the LB proxies to (off 443 when the LB shares the host)
    data_volume: str  #: Harbor's data_volume: the NFS mount point
    install_dir: str  #: where the installer is unpacked on each node
    trivy: bool  #: install the Trivy scanner
    trivy_skip_update: bool  #: Trivy never downloads its vulnerability database (air-gapped: put it in place)
    trivy_offline_scan: bool  #: Trivy scans without internet access (no Java DB download, no online lookups)
    http_proxy: Optional[str]  #: proxy Harbor's core, jobservice and Trivy use for http (None: direct)
    https_proxy: Optional[str]  #: the same for https
    no_proxy: Optional[str]  #: hosts reached directly (Harbor adds its own components)
    metrics_port: int  #: Prometheus metrics port (metric.enabled is always on)
    health_timeout: int  #: seconds to wait for /api/v2.0/health to report every component healthy
    db_max_open_conns: int  #: max_open_conns of each Harbor component's PostgreSQL pool, on every node


@dataclass(frozen=True)
class AcmeSettings:
    """The VIP's certificate from an ACME CA (tls.mode acme): obtained and renewed by the LB host holding the VIP."""

    directory_url: str  #: the ACME server's directory URL (e.g. Let's Encrypt's production or staging directory)
    email: str  #: contact address of the ACME account (expiry notices)
    dns_names: tuple[str, ...]  #: names the certificate covers; each must resolve to the VIP (HTTP-01 comes to it)
    renew_before_days: int  #: the VIP holder renews when the certificate expires within this many days
    ca_certificate: Optional[str]  #: PEM of the CA of the ACME server's own HTTPS (a private CA; None: system CAs)
    challenge: str = "http-01"  #: http-01 (the CA fetches the token through the VIP) or dns-01 (a TXT record)
    dns_resolvers: tuple[str, ...] = ()  #: dns-01: host:port resolvers lego checks the TXT record with (empty: system)
    dns_propagation_check: bool = True  #: dns-01: lego waits until every authoritative server has the record


@dataclass(frozen=True)
class TlsSettings:
    """TLS termination on the load balancer."""

    user_certificate: bool  #: tlsCertificate/tlsPrivateKey are set (else a self-signed cert is generated)
    self_signed_days: int  #: validity of the generated self-signed certificate
    internal_ca_days: int  #: validity of the cluster CA that signs the nodes' and PostgreSQL's certificates
    internal_cert_days: int  #: validity of the certificates the cluster CA signs
    renew_before_days: int  #: a `pulumi up` this many days before expiry issues a new certificate (and CA)
    mode: str = "self-signed"  #: where the VIP's certificate comes from: self-signed, certificate (yours) or acme
    acme: Optional[AcmeSettings] = None  #: mode acme: the ACME server and names


@dataclass(frozen=True)
class PostgresSettings:
    """PostgreSQL as Harbor's external database."""

    version: int  #: major version of the distribution's package (Debian 12: 15, Ubuntu 22.04: 14, 24.04: 16)
    port: int  #: listen port
    database: str  #: Harbor's database name
    user: str  #: Harbor's database user (password generated)
    max_connections: int  #: max_connections; Harbor opens up to max_open_conns per node
    shared_buffers: str  #: shared_buffers
    mode: str  #: "single" (one server, the dev default), "patroni" (Patroni + etcd, failover) or "external"
    host: Optional[str] = None  #: mode external: the server's DNS name or address (what its certificate names)
    ssl_mode: str = "verify-full"  #: mode external: Harbor's sslmode (verify-full checks the certificate and name)
    ca_certificate: Optional[str] = None  #: mode external: PEM of the server's CA (None: the nodes' system CAs)

    @property
    def external(self) -> bool:
        """The database is an existing server: no database role, Harbor connects to `host`."""
        return self.mode == "external"


@dataclass(frozen=True)
class PatroniSettings:
    """Patroni's timing and replication settings (postgres.mode: patroni); see docs/database-ha.md for the bounds."""

    scope: str  #: Patroni's cluster name (etcd key prefix /service/<scope>/)
    ttl: int  #: seconds the leader key lives without a refresh: a dead leader is replaced after at most this
    loop_wait: int  #: seconds between Patroni's HA loop runs
    retry_timeout: int  #: seconds Patroni retries etcd and PostgreSQL before demoting itself
    synchronous: str  #: "off" (async), "on" (synchronous_mode) or "strict" (synchronous_mode_strict)
    rest_api_port: int  #: Patroni's REST API port (health checks, switchover, member probes)
    vip: str  #: the database VIP Harbor connects to, held by vip-manager on the leader's host
    vip_interface: str  #: interface that carries the database VIP
    vip_interval_ms: int  #: milliseconds between vip-manager's reads of the leader key from etcd
    etcd_client_port: int  #: etcd's client port on every member (Patroni, vip-manager, etcdctl)
    etcd_peer_port: int  #: etcd's peer port (the members among themselves)


@dataclass(frozen=True)
class BackupSettings:
    """pgBackRest (database, WAL archive) and restic (Harbor's data volume)."""

    repository: str  #: "host" (pgBackRest on roles.backup, reached over TLS) or "s3"
    s3_endpoint: Optional[str]  #: S3-compatible endpoint host (repository s3)
    s3_bucket: Optional[str]  #: bucket (repository s3)
    s3_region: str  #: region (repository s3)
    s3_uri_style: str  #: "host" or "path" (most self-hosted S3 servers need path)
    s3_port: int  #: the endpoint's HTTPS port (repository s3)
    s3_ca_certificate: Optional[str]  #: PEM of the CA that signed the endpoint's certificate (default: system CAs)
    path: str  #: repository path (on the backup host, or the prefix in the bucket)
    retention_full: int  #: full backups kept (older ones and their WAL are expired)
    retention_diff: int  #: differential backups kept
    full_schedule: str  #: systemd OnCalendar of the full backup (repository host; s3: the database host, the leader)
    diff_schedule: str  #: systemd OnCalendar of the differential backup
    tls_port: int  #: port of `pgbackrest server` on the backup and database hosts (repository host)
    restic_repository: Optional[str]  #: restic repository of the data volume (None: data volume not backed up)

    @property
    def restic_s3(self) -> bool:
        """restic keeps the data volume in an S3 bucket: it signs with the backup S3 keys, trusts s3_ca_certificate."""
        return (self.restic_repository or "").startswith("s3:")

    @property
    def s3_keys_needed_by(self) -> Optional[str]:
        """The setting that needs backupS3AccessKey/backupS3SecretKey (None: neither uses S3)."""
        if self.repository == "s3":
            return "backup.repository s3"
        return "backup.resticRepository s3:" if self.restic_s3 else None


@dataclass(frozen=True)
class RedisSettings:
    """Redis as Harbor's external cache / job queue."""

    mode: str  #: "standalone", "sentinel" or "external" (an existing Redis or sentinel set)
    port: int  #: redis-server port
    sentinel_port: int  #: redis-sentinel port
    master_set: str  #: sentinel master name (Harbor's sentinel_master_set)
    quorum: int  #: sentinels that must agree the master is down (default: majority)
    down_after_ms: int  #: milliseconds without reply before a sentinel considers the master down
    failover_timeout_ms: int  #: sentinel failover-timeout
    maxmemory: str  #: maxmemory ("0" = no limit)
    address: Optional[str] = None  #: mode external: `host:port` of the Redis server (without sentinels)
    sentinels: tuple[str, ...] = ()  #: mode external: `host:port` of each sentinel (with masterSet)
    username: Optional[str] = None  #: mode external: the ACL user (Redis 6+; None: the default user)
    tls: bool = False  #: mode external: Harbor connects over TLS (server authentication only, no client cert)
    ca_certificate: Optional[str] = None  #: mode external, tls: PEM of the server's CA (None: system CAs)

    @property
    def external(self) -> bool:
        """Redis is an existing server or sentinel set: no Redis role."""
        return self.mode == "external"


@dataclass(frozen=True)
class NfsSettings:
    """The NFS export that holds Harbor's data_volume."""

    export_path: str  #: directory exported on the NFS host
    mount_options: str  #: client mount options on the Harbor nodes
    version: str  #: NFS version used by the clients (4.1 or 4.2, or 3)
    mode: str = "server"  #: "server" (roles.nfs runs the kernel NFS server) or "external" (an existing export)
    server: Optional[str] = None  #: mode external: the NFS server's DNS name or address

    @property
    def external(self) -> bool:
        """The export exists already: no NFS role; the nodes mount `server:exportPath`."""
        return self.mode == "external"


@dataclass(frozen=True)
class FirewallSettings:
    """The nftables table `inet harbor_ha` on every host (components/firewall/)."""

    admin_sources: Optional[tuple[str, ...]]  #: CIDRs allowed to SSH (None: anywhere)
    client_sources: Optional[tuple[str, ...]]  #: CIDRs allowed to the VIP's HTTP/HTTPS ports (None: anywhere)
    metrics_sources: tuple[str, ...]  #: CIDRs allowed to Harbor's metrics port on the nodes (empty: nobody)
    confirm_seconds: int  #: the previous ruleset comes back after this long unless the apply confirms the new one


@dataclass(frozen=True)
class SandboxSettings:
    """The sandbox: each host a Docker container with systemd and sshd (components/sandbox/, docs/sandbox.md)."""

    network: str  #: name of the Docker network the host containers share
    subnet: str  #: the network's subnet: every host address and the VIP are fixed inside it
    image: Optional[str]  #: an existing local image for the hosts (None: build components/sandbox/Dockerfile)
    publish_https: bool  #: publish 127.0.0.1:<loadBalancer.httpsPort> to the VIP (Docker Desktop: no route to it)


# ---------------------------------------------------------------------------------------------------------------
# Storage: Harbor's images on S3, and the Garage cluster of roles.objectStore (issue 23)
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class S3Settings:
    """The S3 bucket Harbor's registry keeps its images in (storage.mode: s3); storage_service.s3 of harbor.yml."""

    endpoint: Optional[str]  #: the S3 endpoint URL (None: AWS itself, by region); with roles.objectStore, the role's
    region: str  #: signing region (the registry's `region`; Garage's s3_region)
    bucket: str  #: the bucket
    path_style: bool  #: path-style requests (bucket in the path, not in the host name)
    ca_certificate: Optional[str]  #: PEM of the CA that signed the endpoint's certificate (default: system CAs)
    redirect: bool  #: the registry sends pulls to presigned S3 URLs instead of streaming the blobs itself
    root_directory: Optional[str]  #: key prefix in the bucket (None: the bucket's root)
    chunk_size: int  #: bytes per multipart upload part (the S3 minimum is 5 MiB)
    multipart_copy_chunk_size: int  #: bytes per part when the registry moves a blob by multipart copy
    multipart_copy_max_concurrency: int  #: parts copied at once in a multipart copy
    multipart_copy_threshold_size: int  #: blobs above this size are moved by multipart copy, not one copy

    @property
    def secure(self) -> bool:
        """HTTPS to the endpoint (AWS without an endpoint: always)."""
        return self.endpoint is None or self.endpoint.startswith("https://")


@dataclass(frozen=True)
class GarageSettings:
    """Garage on roles.objectStore (components/object_store/): one zone per host, every object on 3 of them."""

    version: str  #: the Garage release installed
    url: str  #: where each object-store host downloads the garage binary (a static build of `version`)
    sha256: str  #: the binary's sha256, checked on the host before it is installed
    capacity: str  #: capacity each host offers in the layout (Garage spreads partitions by it)
    replication_factor: int  #: copies of every object, each in another zone (host)
    consistency_mode: str  #: Garage's consistency_mode: consistent (quorum reads and writes)
    https_port: int  #: TLS port of nginx in front of Garage's S3 API on each object-store host
    proxy_port: int  #: port of each Harbor node's S3 proxy (HAProxy, health-checked), what its registry dials
    rpc_port: int  #: Garage's RPC port between the object-store hosts
    s3_port: int  #: Garage's plain S3 API port, on loopback only (nginx proxies to it)
    admin_port: int  #: Garage's admin API port, on loopback only (the program imports Harbor's key through it)
    metadata_dir: str  #: Garage's metadata directory (LMDB) on each host
    data_dir: str  #: Garage's data directory (the object blocks) on each host
    metadata_snapshots: str  #: how often Garage snapshots its metadata (metadata_auto_snapshot_interval), the backup


@dataclass(frozen=True)
class StorageSettings:
    """Where Harbor's registry keeps images: the shared data volume (NFS) or an S3 bucket."""

    mode: str  #: "nfs": the data volume every node mounts; "s3": a bucket (the data volume stays on each node)
    #: the bucket: Harbor's storage in mode s3; in mode nfs with roles.objectStore, the one the move copies into
    s3: Optional[S3Settings] = None
    garage: Optional[GarageSettings] = None  #: the Garage cluster (roles.objectStore)

    @property
    def on_s3(self) -> bool:
        """Harbor's registry keeps its images in the bucket (mode s3); in mode nfs a bucket may only be staged."""
        return self.mode == "s3"


NFS_STORAGE = StorageSettings(mode="nfs")


@dataclass(frozen=True)
class WebhookReceiver:
    """Alertmanager's webhook receiver (monitoring.receivers.webhook)."""

    url: str  #: where Alertmanager POSTs its alert groups (its webhook JSON)
    send_resolved: bool  #: also POST when an alert resolves
    bearer_token: bool  #: monitoringWebhookToken is set: sent as `Authorization: Bearer` (a secret)


@dataclass(frozen=True)
class EmailReceiver:
    """Alertmanager's e-mail receiver (monitoring.receivers.email)."""

    to: str  #: recipient address(es), comma-separated
    from_email: str  #: the From: address
    smarthost: str  #: SMTP server `host:port`
    username: Optional[str]  #: SMTP login (its password: monitoringSmtpPassword); None: no authentication
    require_tls: bool  #: refuse to send without STARTTLS


@dataclass(frozen=True)
class SlackReceiver:
    """Alertmanager's Slack receiver (monitoring.receivers.slack); the incoming-webhook URL is the secret
    monitoringSlackApiUrl."""

    channel: str  #: channel to post to, e.g. #harbor-alerts


@dataclass(frozen=True)
class MonitoringSettings:
    """Prometheus, Alertmanager and the blackbox exporter on roles.monitoring; exporters on every host."""

    prometheus_port: int  #: Prometheus's web/API port on the monitoring hosts' addresses
    alertmanager_port: int  #: Alertmanager's web/API port on the monitoring hosts' addresses
    query_sources: tuple[str, ...]  #: CIDRs allowed to Prometheus's and Alertmanager's ports (Grafana, operators)
    retention: str  #: how long Prometheus keeps samples (storage.tsdb.retention.time)
    retention_size: Optional[str]  #: the most disk the samples may take (storage.tsdb.retention.size); None: no cap
    storage_path: str  #: Prometheus's TSDB folder
    scrape_interval: str  #: how often every target is scraped (and rules evaluated)
    certificate_warning_days: int  #: the certificate alert fires this many days before expiry
    backup_max_age_hours: int  #: the backup alert fires when the newest backup is older than this
    replication_lag_bytes: int  #: a replica this far behind the leader's WAL fires the lag alert (patroni mode)
    vip_ca_certificate: Optional[str]  #: PEM of the CA that signed a user VIP certificate (None: the system's CAs)
    webhook: Optional[WebhookReceiver]  #: the webhook receiver (None: not used)
    email: Optional[EmailReceiver]  #: the e-mail receiver (None: not used)
    slack: Optional[SlackReceiver]  #: the Slack receiver (None: not used)


@dataclass(frozen=True)
class ClusterConfig:
    """The whole validated cluster configuration."""

    hosts: tuple[Host, ...]  #: every host, in stack file order
    prefix_length: int  #: prefix length of the hosts' subnet (the VIP must be inside it)
    nfs_host: Optional[Host]  #: host of the NFS server (None in the sandbox and with nfs.mode external)
    postgres_hosts: tuple[Host, ...]  #: every PostgreSQL host (one in single mode, none in external mode)
    etcd_hosts: tuple[Host, ...]  #: etcd members (patroni mode only)
    backup_host: Optional[Host]  #: pgBackRest repository host (backup.repository: host)
    redis_hosts: tuple[Host, ...]  #: redis-server hosts; the first is the initial master
    sentinel_hosts: tuple[Host, ...]  #: redis-sentinel hosts (sentinel mode only)
    harbor_nodes: tuple[Host, ...]  #: Harbor nodes; the first installs alone (it runs the DB migrations)
    retiring_nodes: tuple[Host, ...]  #: nodes being removed: Harbor stops on them while PostgreSQL and NFS admit them
    lb_hosts: tuple[Host, Host]  #: the keepalived/nginx pair; the first is the initial VRRP master
    lb_on_harbor_nodes: bool  #: the LB hosts are Harbor nodes too (Harbor's nginx moves off 80; no process tracking)
    vip: str  #: the virtual IP Harbor is reached on
    vrrp: VrrpSettings  #: keepalived settings
    lb: LoadBalancerSettings  #: nginx settings
    harbor: HarborSettings  #: Harbor installation settings
    tls: TlsSettings  #: TLS settings
    postgres: PostgresSettings  #: PostgreSQL settings
    redis: RedisSettings  #: Redis settings
    nfs: NfsSettings  #: NFS settings
    firewall: FirewallSettings  #: host firewall settings
    patroni: Optional[PatroniSettings]  #: Patroni settings (patroni mode only)
    backup: Optional[BackupSettings]  #: backup settings (None: no backup section)
    sandbox: Optional[SandboxSettings] = None  #: set: the hosts are containers made by components/sandbox/
    storage: StorageSettings = field(default_factory=lambda: NFS_STORAGE)  #: where Harbor's registry keeps images
    object_store_hosts: tuple[Host, ...] = ()  #: the Garage cluster's hosts (roles.objectStore), one zone each
    passthrough: Mapping[str, Any] = field(default_factory=dict)  #: harborApi/migration sections, raw
    monitoring_hosts: tuple[Host, ...] = ()  #: Prometheus/Alertmanager hosts (empty: no monitoring)
    monitoring: Optional[MonitoringSettings] = None  #: monitoring settings (None: monitoring off)

    @property
    def postgres_host(self) -> Host:
        """The PostgreSQL host (patroni mode: the first of postgres_hosts, the bootstrap leader); none in external
        mode, where the database is not deployed here."""
        if not self.postgres_hosts:
            raise ValueError("postgres.mode external: this stack deploys no database host")
        return self.postgres_hosts[0]

    @property
    def nfs_export(self) -> Optional[str]:
        """`server:/path` the Harbor nodes mount (None in the sandbox: its nodes share a Docker volume)."""
        if self.nfs.external:
            return f"{self.nfs.server}:{self.nfs.export_path}"
        return f"{self.nfs_host.address}:{self.nfs.export_path}" if self.nfs_host else None

    @property
    def nfs_server(self) -> Host:
        """The NFS host, where there is one (every stack but the sandbox, whose nodes share a Docker volume)."""
        if self.nfs_host is None:
            raise ValueError("this stack has no NFS server (roles.nfs)")
        return self.nfs_host

    def with_hosts(self, hosts: Sequence[Host]) -> ClusterConfig:
        """This config with each host replaced by the one of the same name in `hosts` (the sandbox's, whose host
        keys are Outputs), in every role as well."""
        by_name = {h.name: h for h in hosts}

        def swap(value: Any) -> Any:
            if isinstance(value, Host):
                return by_name.get(value.name, value)
            if isinstance(value, tuple):
                return tuple(swap(v) for v in value)
            return value

        return dataclasses.replace(self, **{f.name: swap(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @property
    def data_clients(self) -> tuple[Host, ...]:
        """Hosts PostgreSQL and the NFS export admit: the Harbor nodes and the retiring ones. The engine runs a
        removed node's delete after every update, so a node is first retired (its Harbor stops while it still has
        access), then dropped from the config (its access ends)."""
        return self.harbor_nodes + self.retiring_nodes

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def db_endpoint(self) -> str:
        """The address Harbor's external_database points at: the server, or the VIP that follows the leader."""
        if self.postgres.external:
            assert self.postgres.host is not None  # required by parse_cluster_config in external mode
            return self.postgres.host
        return self.patroni.vip if self.patroni else self.postgres_host.address

    @property
    def external_url(self) -> str:
        port = "" if self.lb.https_port == 443 else f":{self.lb.https_port}"
        return f"https://{self.harbor.hostname}{port}"


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------

_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$)({_DNS_LABEL}\.)*{_DNS_LABEL}$")
_IFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_SIZE = re.compile(r"^\d+(kB|MB|GB|TB)?$")
_REDIS_SIZE = re.compile(r"^\d+([kmg]b?)?$", re.IGNORECASE)
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_PEM_CERTS = re.compile(r"^(\s*-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----)+\s*$")


class _Reader:
    """Reads typed values out of one config mapping, recording problems under their full key name."""

    def __init__(self, data: Any, key: str, problems: list[str]):
        self.key = key
        self.problems = problems
        if data is None:
            data = {}
        # Not a mapping: that one error, not also one "is required" per key it should have held.
        self.broken = not isinstance(data, Mapping)
        if self.broken:
            self.fail(f"must be a mapping, got {type(data).__name__}")
            data = {}
        self.data = data
        self.used: set[str] = set()

    def fail(self, message: str, sub: Optional[str] = None) -> None:
        self.problems.append(f"{self.key}.{sub}: {message}" if sub else f"{self.key}: {message}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any, *,
            check: Optional[Callable[[Any], Optional[str]]] = None, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            # A misspelt key (`adress`) is reported by finish() with a "did you mean": not twice.
            if required and not self.broken and not did_you_mean(name, [str(k) for k in self.data if k != name]):
                self.fail("is required", name)
            return default
        value = self.data[name]
        # YAML gives ints where floats are meant (advertInt: 1); bools are ints in Python, so refuse them explicitly.
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(f"must be {_kind_name(kind)}, got a boolean", name)
            return default
        if not isinstance(value, kind):
            self.fail(f"must be {_kind_name(kind)}, got {type(value).__name__} {value!r}", name)
            return default
        if check is not None:
            message = check(value)
            if message:
                self.fail(message, name)
                return default
        return value

    def finish(self) -> None:
        for extra in sorted(set(self.data) - self.used):
            known = sorted(self.used)
            self.fail(f"unknown key{did_you_mean(str(extra), known)} (known: {', '.join(known)})", str(extra))


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _proxy_url(value: str) -> Optional[str]:
    return None if re.match(r"^https?://[^\s/]+(:[0-9]+)?/?$", value) else f"{value!r} is not a proxy URL like http://proxy:3128"


def _in_range(low: float, high: float) -> Callable[[Any], Optional[str]]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}, got {v}"


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[Any], Optional[str]]:
    return lambda v: None if pattern.match(v) else f"{v!r} is not {what}"


def _parse_hosts(raw: Any, problems: list[str]) -> list[Host]:
    key = f"{NAMESPACE}:hosts"
    if not isinstance(raw, list) or not raw:
        problems.append(f"{key}: must be a non-empty list of hosts ({{name, address, user, port}})")
        return []
    hosts: list[Host] = []
    seen_names: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for i, item in enumerate(raw):
        r = _Reader(item, f"{key}[{i}]", problems)
        name = r.get("name", str, "", required=True, check=_matches(_HOST_NAME, "a host name (a-z, 0-9, -)"))
        address = r.get("address", str, "", required=True, check=_ipv4_check)
        # Ubuntu and Debian cloud images both log in as a sudo-capable user; root is the common bare-metal case.
        user = r.get("user", str, "root")
        # 22: sshd's default.
        port = r.get("port", int, 22, check=_in_range(1, 65535))
        # Optional so a first preview works; the program warns for every host without one (any server that answers
        # the address would otherwise receive the role's secrets).
        host_key = r.get("hostKey", str, None, check=_host_key_check)
        r.finish()
        if name and name in seen_names:
            r.fail(f"duplicate host name {name!r} (also {key}[{seen_names[name]}])", "name")
        if address and address in seen_addresses:
            r.fail(f"duplicate address {address} (also {key}[{seen_addresses[address]}])", "address")
        seen_names.setdefault(name, i)
        seen_addresses.setdefault(address, i)
        hosts.append(Host(name=name, address=address, user=user, port=port, host_key=_host_key(host_key)))
    return hosts


_SSH_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def _host_key(value: Optional[str]) -> Optional[str]:
    """`type base64` of an OpenSSH public key line; a leading host field (ssh-keyscan's output) is dropped."""
    if not value:
        return None
    fields = value.split()
    if fields[0] not in _SSH_KEY_TYPES:
        fields = fields[1:]
    return " ".join(fields[:2])


def _host_key_check(value: str) -> Optional[str]:
    key = _host_key(value) or ""
    kind, _, blob = key.partition(" ")
    try:
        decoded = base64.b64decode(blob, validate=True)
    except (ValueError, binascii.Error):
        decoded = b""
    # The key blob starts with its own type as an SSH string: a truncated or pasted-wrong key fails here.
    if kind not in _SSH_KEY_TYPES or decoded[4:4 + len(kind)] != kind.encode():
        return ("must be the host's public key as `ssh-keyscan -t ed25519 ADDRESS` prints it "
                f"({' or '.join(_SSH_KEY_TYPES[:2])} ...)")
    return None


def _ipv4_check(value: str) -> Optional[str]:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address"
    return None


def _cidrs_check(value: list) -> Optional[str]:
    if not value:
        return "must list at least one IPv4 address or CIDR (leave the key unset for the default)"
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return f"[{i}] must be a string like 198.51.100.0/24, got {type(item).__name__}"
        try:
            ipaddress.IPv4Network(item)
        except ValueError as e:
            return f"[{i}] {item!r} is not an IPv4 address or CIDR ({e})"
    return None


def _cidrs(value: Optional[list]) -> Optional[tuple[str, ...]]:
    """Validated CIDRs in their canonical form (`198.51.100.7` -> `198.51.100.7/32`), order kept."""
    if value is None:
        return None
    return tuple(dict.fromkeys(str(ipaddress.IPv4Network(v)) for v in value))


def _check_vip_placement(r: _Reader, what: str, vip: str, hosts: Sequence[Host], holders: Sequence[Host],
                         prefix_length: int) -> None:
    """`<r.key>.address`: a VIP is nobody's address and lies in the subnet of every host that may hold it."""
    for h in hosts:
        if h.address == vip:
            r.fail(f"{vip} is the address of host {h.name!r}; {what} must be an unused address", "address")
    for h in holders:
        if h.address and ipaddress.IPv4Address(vip) not in ipaddress.IPv4Network(
                f"{h.address}/{prefix_length}", strict=False):
            r.fail(f"{vip} is outside the subnet of host {h.name!r} ({h.address}/{prefix_length}); "
                   "a VIP can only move between hosts of one subnet", "address")
            break


def _secure_paths(value: Any, where: str) -> list[str]:
    """The key paths of the `{secure: ...}` values (a secret, as the stack file holds it) in `value`."""
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return [where]
        return [p for k, v in value.items() for p in _secure_paths(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _secure_paths(v, f"{where}[{i}]")]
    return []


def _without_secure(value: Any) -> Any:
    if isinstance(value, Mapping):
        return None if set(value) == {"secure"} else {k: _without_secure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secure(v) for v in value]
    return value


def parse_cluster_config(values: Mapping[str, Any], *, secrets_present: Sequence[str] = (),
                         secret_sections: Sequence[str] = (), check_files: bool = False) -> ClusterConfig:
    """Parse and validate the `harbor-ha:*` config values of a stack.

    `values` maps a key without namespace (`hosts`, `vip`, ...) to its plain value (secret keys excluded);
    `secrets_present` names the secret keys that are set (their values never reach this function);
    `secret_sections`: other keys the engine marked secret (one of their values set with `--secret --path`);
    `check_files`: local files the program uploads must exist (off for scripts/render.py, which uploads nothing).
    Raises ConfigError naming every offending key.
    """
    # No cluster setting outside SECRET_KEYS is a secret: such a value would reach hosts' files and the state in
    # clear. Each is named (the stack file's `{secure: ...}`, or under the engine the key marked secret) and read as
    # absent, so that it is not reported twice.
    stray = [path for key, value in values.items() if key not in PASSTHROUGH_KEYS
             for path in _secure_paths(value, f"{NAMESPACE}:{key}")]
    stray += [f"{NAMESPACE}:{key}" for key in secret_sections if key not in PASSTHROUGH_KEYS]
    values = {k: v if k in PASSTHROUGH_KEYS else _without_secure(v) for k, v in values.items()}
    problems: list[str] = [f"{path}: set with --secret, but this setting is not a secret (the program keeps it in "
                           "clear): set it without --secret" for path in stray]
    for unknown in sorted(set(values) - set(KNOWN_KEYS)):
        problems.append(f"{NAMESPACE}:{unknown}: unknown key{did_you_mean(unknown, KNOWN_KEYS)} "
                        f"(known: {', '.join(KNOWN_KEYS)})")
    for secret in SECRET_KEYS:
        if secret in values:
            problems.append(f"{NAMESPACE}:{secret}: must be set as a secret (pulumi config set --secret)")

    hosts = _parse_hosts(values.get("hosts"), problems)
    by_name = {h.name: h for h in hosts if h.name}
    # Without a usable host list every role would report its hosts as unknown: one error is the true one.
    roles_checkable = bool(hosts) and all(h.name for h in hosts)

    # network: the hosts' subnet. /24 is the common case for a small private network.
    net = _Reader(values.get("network"), f"{NAMESPACE}:network", problems)
    prefix_length = net.get("prefixLength", int, 24, check=_in_range(8, 30))
    net.finish()

    roles = _Reader(values.get("roles"), f"{NAMESPACE}:roles", problems)

    def role_hosts(role: str, *, single: bool = False, required: bool = True) -> list[Host]:
        raw = roles.get(role, (str, list), None, required=required)
        if raw is None or not roles_checkable:
            return []
        names = [raw] if isinstance(raw, str) else raw
        if single and not isinstance(raw, str):
            roles.fail("must name one host", role)
            return []
        found: list[Host] = []
        for i, n in enumerate(names):
            sub = role if isinstance(raw, str) else f"{role}[{i}]"
            if not isinstance(n, str) or n not in by_name:
                roles.fail(f"unknown host {n!r} (hosts: {', '.join(by_name) or 'none'})", sub)
            elif by_name[n] in found:
                roles.fail(f"host {n!r} listed twice", sub)
            else:
                found.append(by_name[n])
        return found

    sandbox_given = values.get("sandbox") is not None
    raw_storage = values.get("storage")
    s3_mode = isinstance(raw_storage, Mapping) and raw_storage.get("mode") == "s3"
    # An existing service (mode external) has no role here: its role key is refused, the others still required.
    external = {section: _raw_mode(values, section) == "external" for section in ("postgres", "redis", "nfs")}
    # The sandbox has no NFS server (containers cannot run the kernel's): its nodes share a Docker volume. With
    # storage.mode s3 the images are in a bucket: an NFS host may stay (the move from NFS keeps its data) or go.
    nfs_hosts = role_hosts("nfs", single=True, required=not sandbox_given and not external["nfs"]
                           and not s3_mode)
    if sandbox_given and nfs_hosts:
        roles.fail("must not be set with sandbox: the sandbox's Harbor nodes share a Docker volume, containers "
                   "cannot serve NFS", "nfs")
    pg_hosts = role_hosts("postgres", required=not external["postgres"])
    etcd_hosts = role_hosts("etcd", required=False)
    backup_hosts = role_hosts("backup", single=True, required=False)
    redis_hosts = role_hosts("redis", required=not external["redis"])
    sentinel_hosts = role_hosts("sentinels", required=False)
    harbor_nodes = role_hosts("harborNodes")
    retiring_nodes = role_hosts("retiringNodes", required=False)
    lb_hosts = role_hosts("loadBalancers")
    monitoring_hosts = role_hosts("monitoring", required=False)
    object_store_hosts = role_hosts("objectStore", required=False)
    roles.finish()
    for role, section in (("postgres", "postgres"), ("etcd", "postgres"), ("backup", "postgres"), ("nfs", "nfs"),
                          ("redis", "redis"), ("sentinels", "redis")):
        if external[section] and roles.data.get(role) is not None:
            roles.fail(f"must not be set with {section}.mode external: harbor-ha deploys no {role} role for an "
                       "existing service", role)
    for i, h in enumerate(retiring_nodes):
        if h in harbor_nodes:
            roles.fail(f"host {h.name!r} is in harborNodes too; a retiring node is out of harborNodes",
                       f"retiringNodes[{i}]")

    if roles_checkable and roles.data.get("harborNodes") is not None and len(harbor_nodes) < 2 and not any(
            p.startswith(f"{NAMESPACE}:roles.harborNodes") for p in problems):
        roles.fail(f"needs at least 2 Harbor nodes for HA, got {len(harbor_nodes)}", "harborNodes")
    if roles_checkable and roles.data.get("loadBalancers") is not None and len(lb_hosts) != 2 and not any(
            p.startswith(f"{NAMESPACE}:roles.loadBalancers") for p in problems):
        roles.fail(f"needs exactly 2 hosts (the keepalived pair), got {len(lb_hosts)}", "loadBalancers")

    # --- VIP -------------------------------------------------------------------------------------------------
    vip_r = _Reader(values.get("vip"), f"{NAMESPACE}:vip", problems)
    vip = vip_r.get("address", str, "", required=True, check=_ipv4_check)
    # eth0: the first NIC on Debian/Ubuntu cloud images with predictable names off; set it per site (ens3, ...).
    interface = vip_r.get("interface", str, "eth0", check=_matches(_IFACE, "an interface name"))
    # 51: keepalived's sample value; must be unique per L2 segment, so sites with several pairs set their own.
    vrid = vip_r.get("virtualRouterId", int, 51, check=_in_range(1, 255))
    vip_r.finish()
    if vip and hosts:
        _check_vip_placement(vip_r, "the VIP", vip, hosts, list(lb_hosts) or hosts, prefix_length)

    lb_on_harbor_nodes = bool(set(lb_hosts) & set(harbor_nodes))

    # --- keepalived ------------------------------------------------------------------------------------------
    # The defaults are chosen for fast failover (labs/ha_lab.py measures them against the classic recipe):
    # VRRPv3 allows sub-second adverts; 0.2 s means a dead master is noticed after ~0.6 s (3 adverts + skew).
    ka = _Reader(values.get("keepalived"), f"{NAMESPACE}:keepalived", problems)
    vrrp_version = ka.get("vrrpVersion", int, 3, check=lambda v: None if v in (2, 3) else "must be 2 or 3")
    advert_int = ka.get("advertInt", float, 0.2 if vrrp_version == 3 else 1.0, check=_in_range(0.01, 255))
    if vrrp_version == 2 and advert_int != int(advert_int):
        ka.fail(f"fractional advert interval {advert_int} needs vrrpVersion 3", "advertInt")
    vrrp = VrrpSettings(
        interface=interface,
        virtual_router_id=vrid,
        vrrp_version=vrrp_version,
        advert_int=advert_int,
        # Unicast by default: it works on every network, multicast is dropped by most clouds.
        unicast=ka.get("unicast", bool, True),
        # Preemption on (keepalived's default): the healthy preferred host holds the VIP; nopreempt trades that
        # for one VIP move instead of two when a flapping master comes back.
        nopreempt=ka.get("nopreempt", bool, False),
        # 150/100: keepalived's MASTER/BACKUP sample values; the gap exceeds any negative check weight below.
        priority_master=ka.get("priorityMaster", int, 150, check=_in_range(2, 254)),
        priority_backup=ka.get("priorityBackup", int, 100, check=_in_range(1, 253)),
        # nginx death is seen through netlink process events, immediately, not at the next check interval.
        # Not where the LB shares a Harbor node: Harbor's proxy container runs a process named nginx on the same
        # kernel, so the tracker would go on seeing "nginx" after the LB's died (the curl check still sees it).
        track_process=ka.get("trackProcess", bool, not lb_on_harbor_nodes),
        # 1 s is keepalived's smallest script interval; fall 1 gives up the VIP on the first failed check.
        check_interval=ka.get("checkInterval", int, 1, check=_in_range(1, 3600)),
        check_fall=ka.get("checkFall", int, 1, check=_in_range(1, 100)),
        # rise 2: a host must pass twice before it may take the VIP back, which damps flapping.
        check_rise=ka.get("checkRise", int, 2, check=_in_range(1, 100)),
        # weight 0: a failing check moves the host to FAULT (releases the VIP at once), whatever the priorities.
        check_weight=ka.get("checkWeight", int, 0, check=_in_range(-253, 0)),
        check_command=ka.get("checkCommand", str, None),
        # keepalived's default is 5 s; it repeats the gratuitous ARPs for switches that missed the first.
        garp_master_delay=ka.get("garpMasterDelay", int, 5, check=_in_range(0, 255)),
    )
    ka.finish()
    if vrrp.track_process and lb_on_harbor_nodes:
        ka.fail("cannot track nginx on LB hosts that are Harbor nodes too: Harbor's own nginx container has the same "
                "process name; leave it unset (the health check watches nginx)", "trackProcess")
    if vrrp.priority_backup >= vrrp.priority_master:
        ka.fail(f"priorityBackup ({vrrp.priority_backup}) must be lower than priorityMaster "
                f"({vrrp.priority_master})", "priorityBackup")
    if vrrp.check_weight and vrrp.priority_master + vrrp.check_weight >= vrrp.priority_backup:
        ka.fail(f"priorityMaster {vrrp.priority_master} + checkWeight {vrrp.check_weight} must fall below "
                f"priorityBackup {vrrp.priority_backup}, or a failing check never moves the VIP", "checkWeight")

    # --- load balancer ---------------------------------------------------------------------------------------
    lb_r = _Reader(values.get("loadBalancer"), f"{NAMESPACE}:loadBalancer", problems)
    lb = LoadBalancerSettings(
        http_port=lb_r.get("httpPort", int, 80, check=_in_range(1, 65535)),
        https_port=lb_r.get("httpsPort", int, 443, check=_in_range(1, 65535)),
        # 8081 on 127.0.0.1 only: never reachable from the network, so it needs no auth.
        health_port=lb_r.get("healthPort", int, 8081, check=_in_range(1, 65535)),
        # One failure marks a node down for 10 s: a dead node costs one retried request, not one per worker.
        max_fails=lb_r.get("maxFails", int, 1, check=_in_range(0, 100)),
        fail_timeout=lb_r.get("failTimeout", int, 10, check=_in_range(1, 3600)),
        # 2 s to connect on a LAN means the node is gone: try the next one instead of nginx's 60 s default.
        connect_timeout=lb_r.get("connectTimeout", float, 2.0, check=_in_range(0.1, 75)),
        # 900 s: a multi-GB layer push can stall that long on Harbor's side while it commits to storage.
        read_timeout=lb_r.get("readTimeout", int, 900, check=_in_range(1, 86400)),
        next_upstream_tries=lb_r.get("nextUpstreamTries", int, 2, check=_in_range(0, 10)),
        hsts=lb_r.get("hsts", bool, False),
        worker_connections=lb_r.get("workerConnections", int, 4096, check=_in_range(64, 1048576)),
        # Unset: anywhere, as before these keys existed (the firewall's clientSources still applies first).
        # /v2/ and /service/token (what `docker login/push/pull` use) are never limited by these two.
        admin_sources=_cidrs(lb_r.get("adminSources", list, None, check=_cidrs_check)),
        api_sources=_cidrs(lb_r.get("apiSources", list, None, check=_cidrs_check)),
    )
    lb_r.finish()
    ports = {"httpPort": lb.http_port, "httpsPort": lb.https_port, "healthPort": lb.health_port}
    names = list(ports)
    for i, key in enumerate(names):
        earlier = [k for k in names[:i] if ports[k] == ports[key]]
        if earlier:
            lb_r.fail(f"{ports[key]} is already {earlier[0]}; the ports must differ", key)

    # --- harbor ----------------------------------------------------------------------------------------------
    hb = _Reader(values.get("harbor"), f"{NAMESPACE}:harbor", problems)
    version = hb.get("version", str, HARBOR_DEFAULT_VERSION, check=_matches(_VERSION, "a version like 2.15.2"))
    installer_r = _Reader(hb.get("installer", dict, {"url": None}), f"{NAMESPACE}:harbor.installer", problems)
    installer_url = installer_r.get("url", str, None,
                                    check=lambda v: None if v.startswith(("https://", "http://"))
                                    else f"{v!r} is not an http(s) URL")
    installer_path = installer_r.get(
        "path", str, None,
        check=lambda v: f"no such file {v!r}" if check_files and not os.path.isfile(v) else None)
    installer_sha = installer_r.get("sha256", str, None, check=_matches(_SHA256, "a lowercase hex sha256"))
    installer_r.finish()
    raw_installer = hb.data.get("installer")
    if isinstance(raw_installer, Mapping):
        given = {k for k in ("url", "path") if raw_installer.get(k) is not None}
        if given == {"url", "path"}:
            installer_r.fail("set either url or path, not both")
        elif not given:
            installer_r.fail("missing installer source: set url (download on the node) or path (upload a local "
                             "file)")
    elif raw_installer is None:
        installer_url = HARBOR_RELEASE_URL.format(version=version)
    default_http_port = 8080 if lb_on_harbor_nodes else 80
    default_https_port = 8443 if lb_on_harbor_nodes else 443
    proxy_r = _Reader(hb.get("proxy", dict, {}), f"{NAMESPACE}:harbor.proxy", problems)
    harbor = HarborSettings(
        version=version,
        installer_url=installer_url,
        installer_path=installer_path,
        installer_sha256=installer_sha,
        hostname=hb.get("hostname", str, "", required=True, check=_matches(_DNS_NAME, "a DNS name")),
        # 8080 when the LB shares the host: nginx on the VIP needs 80/443; Harbor's own nginx binds 0.0.0.0.
        http_port=hb.get("httpPort", int, default_http_port, check=_in_range(1, 65535)),
        # 8443 when the LB shares the host, for the same reason; the LB reaches the nodes on this port only.
        https_port=hb.get("httpsPort", int, default_https_port, check=_in_range(1, 65535)),
        data_volume=hb.get("dataVolume", str, "/data", check=_matches(_PATH, "an absolute path")),
        install_dir=hb.get("installDir", str, "/opt/harbor", check=_matches(_PATH, "an absolute path")),
        trivy=hb.get("trivy", bool, True),
        # Off: Trivy updates its database from the internet (through the proxy when set), Harbor's default. On: put
        # trivy.db and metadata.json in each node's /var/lib/harbor-ha/trivy-adapter/trivy/db/ (owner 10000), else
        # every scan fails ("--skip-db-update cannot be specified on the first run").
        trivy_skip_update=hb.get("trivySkipUpdate", bool, False),
        trivy_offline_scan=hb.get("trivyOfflineScan", bool, False),
        http_proxy=proxy_r.get("http", str, None, check=_proxy_url),
        https_proxy=proxy_r.get("https", str, None, check=_proxy_url),
        no_proxy=proxy_r.get("noProxy", str, None),
        metrics_port=hb.get("metricsPort", int, 9090, check=_in_range(1, 65535)),
        # 600 s: the first node runs every DB migration and loads ~2 GB of images before it turns healthy.
        health_timeout=hb.get("healthTimeout", int, 600, check=_in_range(30, 7200)),
        # 25: with 3 nodes, 3 pooled components each (core, jobservice, exporter), 225 connections at most,
        # inside postgres.maxConnections 300 with room for administration. Not derived from the node count, so
        # adding a node does not rewrite (and restart) every other node.
        db_max_open_conns=hb.get("dbMaxOpenConns", int, 25, check=_in_range(2, 1000)),
    )
    proxy_r.finish()
    hb.finish()
    if harbor.http_port in (lb.http_port, lb.https_port) and lb_on_harbor_nodes:
        hb.fail(f"{harbor.http_port} is taken by the load balancer on the shared hosts; pick another port",
                "httpPort")
    if harbor.https_port in (lb.http_port, lb.https_port) and lb_on_harbor_nodes:
        hb.fail(f"{harbor.https_port} is taken by the load balancer on the shared hosts; pick another port",
                "httpsPort")
    if harbor.metrics_port in (harbor.http_port, harbor.https_port):
        hb.fail("must differ from httpPort and httpsPort", "metricsPort")
    if harbor.https_port == harbor.http_port:
        hb.fail("must differ from httpPort", "httpsPort")

    # --- TLS -------------------------------------------------------------------------------------------------
    tls_r = _Reader(values.get("tls"), f"{NAMESPACE}:tls", problems)
    has_cert, has_key = "tlsCertificate" in secrets_present, "tlsPrivateKey" in secrets_present
    if has_cert and not has_key:
        problems.append(f"{NAMESPACE}:tlsPrivateKey: tlsCertificate is set but its private key is not")
    if has_key and not has_cert:
        problems.append(f"{NAMESPACE}:tlsCertificate: tlsPrivateKey is set but the certificate is not")
    tls = TlsSettings(
        user_certificate=has_cert and has_key,
        # 825 days: the longest validity Apple platforms accept for a TLS server certificate.
        self_signed_days=tls_r.get("selfSignedDays", int, 825, check=_in_range(1, 3650)),
        # 10 years: the CA only signs the cluster's own certificates; replacing it re-issues all of them at once.
        internal_ca_days=tls_r.get("internalCaDays", int, 3650, check=_in_range(2, 36500)),
        # 1 year for the node and PostgreSQL certificates; they rotate on their own with `pulumi up`.
        internal_cert_days=tls_r.get("internalCertDays", int, 365, check=_in_range(2, 3650)),
        # 30 days: a monthly `pulumi up` renews every certificate before it expires.
        renew_before_days=tls_r.get("renewBeforeDays", int, 30, check=_in_range(1, 3649)),
        # certificate when tlsCertificate is set, else self-signed.
        mode=tls_r.get("mode", str, "certificate" if has_cert else "self-signed",
                       check=lambda v: None if v in TLS_MODES else f"must be one of {', '.join(TLS_MODES)}, got {v!r}"),
    )
    if tls.mode == "certificate" and not has_cert:
        tls_r.fail("certificate needs the secrets tlsCertificate and tlsPrivateKey", "mode")
    if tls.mode != "certificate" and has_cert:
        tls_r.fail(f"{tls.mode} ignores tlsCertificate: remove that secret, or set mode certificate", "mode")
    tls = replace(tls, acme=_parse_acme(tls_r, tls.mode, values, secrets_present, problems))
    tls_r.finish()
    for days_key, days in (("internalCertDays", tls.internal_cert_days), ("internalCaDays", tls.internal_ca_days)):
        if tls.renew_before_days >= days:
            tls_r.fail(f"{tls.renew_before_days} must be below {days_key} ({days}), or every `pulumi up` "
                       "re-issues the certificate", "renewBeforeDays")

    # --- PostgreSQL (defaults follow geerlingguy/ansible-role-postgresql where it has one) -------------------
    pg_r = _Reader(values.get("postgres"), f"{NAMESPACE}:postgres", problems)
    # single: one server, the dev default (nothing to fail over to). patroni: see docs/database-ha.md.
    pg_mode = pg_r.get("mode", str, "single", check=lambda v: None if v in ("single", "patroni", "external")
                       else "must be single, patroni or external")
    pg_external = pg_mode == "external"
    postgres = PostgresSettings(
        # 15: Debian 12's postgresql package; Ubuntu 22.04 ships 14, Ubuntu 24.04 ships 16.
        version=pg_r.get("version", int, 15, check=_in_range(12, 17)),
        port=pg_r.get("port", int, 5432, check=_in_range(1, 65535)),
        # "registry": the database name Harbor's own bundled PostgreSQL uses, so dumps move either way.
        database=pg_r.get("database", str, "registry", check=_matches(re.compile(r"^[a-z_][a-z0-9_]{0,62}$"),
                                                                          "a lowercase SQL identifier")),
        user=pg_r.get("user", str, "harbor", check=_matches(_EXTERNAL_DB_USER if pg_external else _SQL_NAME,
                                                            "a user name" if pg_external
                                                            else "a lowercase SQL identifier")),
        # Harbor's core, jobservice and exporter each pool connections per node; 300 covers 3 nodes. With an
        # external server it is required: its own max_connections, so that the connection budget is checked.
        max_connections=pg_r.get("maxConnections", int, 300, required=pg_external, check=_in_range(20, 10000)),
        shared_buffers=pg_r.get("sharedBuffers", str, "256MB", check=_matches(_SIZE, "a size like 256MB")),
        mode=pg_mode,
        host=pg_r.get("host", str, None, required=pg_external, check=_server_name_check),
        # verify-full: Harbor checks the server's certificate and that it names `host` (harbor-helm's default is
        # disable; a database password crossing the network in clear is not a default).
        # allow/prefer are not offered: they fall back to clear text.
        ssl_mode=pg_r.get("sslMode", str, "verify-full",
                          check=lambda v: None if v in ("disable", "require", "verify-ca", "verify-full")
                          else "must be disable, require, verify-ca or verify-full"),
        ca_certificate=pg_r.get("caCertificate", str, None, check=_pem_certs_check),
    )
    patroni = _parse_patroni(pg_r, pg_mode, pg_hosts, etcd_hosts, hosts, vip, prefix_length, postgres.port, roles) \
        if pg_mode == "patroni" else None
    if pg_mode != "patroni":
        for key in ("patroni", "vip", "synchronous", "etcd"):
            if pg_r.data.get(key) is not None:
                pg_r.fail("only used with postgres.mode: patroni", key)
            pg_r.used.add(key)
        if etcd_hosts and not pg_external:
            roles.fail("etcd is only used with postgres.mode: patroni", "etcd")
    if pg_mode == "single" and len(pg_hosts) > 1:
        roles.fail(f"single mode takes one host, got {len(pg_hosts)}; set postgres.mode: patroni for several",
                   "postgres")
    _refuse_mode_keys(pg_r, pg_external, external_only=("host", "sslMode", "caCertificate"),
                      managed_only=("version", "sharedBuffers"))
    if pg_external and postgres.ssl_mode in ("disable", "require") and postgres.ca_certificate:
        pg_r.fail(f"sslMode {postgres.ssl_mode} does not check the certificate; use verify-ca or verify-full",
                  "caCertificate")
    if pg_external != ("postgresPassword" in secrets_present):
        problems.append(f"{NAMESPACE}:postgresPassword: " + (
            "postgres.mode external needs the password of postgres.user (pulumi config set --secret)" if pg_external
            else "only used with postgres.mode external (the password of a deployed database is generated)"))
    pg_r.finish()
    backup = _parse_backup(values.get("backup"), pg_mode, backup_hosts, pg_hosts, roles, problems)
    if backup and backup.s3_keys_needed_by:
        for key in ("backupS3AccessKey", "backupS3SecretKey"):
            if key not in secrets_present:
                problems.append(f"{NAMESPACE}:{key}: {backup.s3_keys_needed_by} needs it (pulumi config set --secret)")
    pooled = len(harbor_nodes) * DB_POOLS_PER_NODE * harbor.db_max_open_conns
    if pooled > postgres.max_connections - DB_RESERVED_CONNECTIONS:
        hb.fail(f"{len(harbor_nodes)} nodes x {DB_POOLS_PER_NODE} pools x {harbor.db_max_open_conns} = {pooled} "
                f"connections exceed postgres.maxConnections {postgres.max_connections} less "
                f"{DB_RESERVED_CONNECTIONS} kept for administration", "dbMaxOpenConns")

    # --- Redis -----------------------------------------------------------------------------------------------
    rd = _Reader(values.get("redis"), f"{NAMESPACE}:redis", problems)
    mode = rd.get("mode", str, "sentinel" if len(redis_hosts) > 1 else "standalone",
                  check=lambda v: None if v in ("standalone", "sentinel", "external")
                  else "must be standalone, sentinel or external")
    redis_external = mode == "external"
    n_sentinels = len(sentinel_hosts)
    redis = RedisSettings(
        mode=mode,
        port=rd.get("port", int, 6379, check=_in_range(1, 65535)),
        sentinel_port=rd.get("sentinelPort", int, 26379, check=_in_range(1, 65535)),
        master_set=rd.get("masterSet", str, "harbor", check=_matches(re.compile(r"^[A-Za-z0-9._-]+$"), "a name")),
        # A majority: two sentinels of three must agree before a failover starts.
        quorum=rd.get("quorum", int, n_sentinels // 2 + 1, check=_in_range(1, 99)),
        # 5 s: long enough to ride out a GC pause or a short network hiccup, short enough for Harbor's job queue.
        down_after_ms=rd.get("downAfterMs", int, 5000, check=_in_range(100, 600000)),
        failover_timeout_ms=rd.get("failoverTimeoutMs", int, 60000, check=_in_range(1000, 3600000)),
        maxmemory=rd.get("maxmemory", str, "0", check=_matches(_REDIS_SIZE, "a size like 512mb")),
        address=rd.get("address", str, None, check=_endpoint_check),
        sentinels=tuple(rd.get("sentinels", list, [], check=_endpoints_check)),
        username=rd.get("username", str, None, check=_matches(re.compile(r"^[A-Za-z0-9._@-]{1,128}$"), "a user name")),
        # Off: Harbor 2.15 speaks TLS to Redis only with server authentication (prepare's tlsOptions); a site
        # whose Redis requires TLS turns it on.
        tls=rd.get("tls", bool, False),
        ca_certificate=rd.get("caCertificate", str, None, check=_pem_certs_check),
    )
    _refuse_mode_keys(rd, redis_external, external_only=("address", "sentinels", "username", "tls", "caCertificate"),
                      managed_only=("port", "sentinelPort", "quorum", "downAfterMs", "failoverTimeoutMs",
                                    "maxmemory"))
    if redis_external:
        if bool(redis.address) == bool(redis.sentinels):
            rd.fail("set either address (one Redis server) or sentinels (with masterSet), not both"
                    if redis.address else "is required: `host:port` of the Redis server (or sentinels)", "address")
        if redis.sentinels and rd.data.get("masterSet") is None:
            rd.fail("is required with sentinels: the name the sentinels monitor", "masterSet")
        if redis.ca_certificate and not redis.tls:
            rd.fail("is only used with tls: true", "caCertificate")
        if redis.username and "redisPassword" not in secrets_present:
            rd.fail("needs redisPassword: Harbor authenticates a user with its password", "username")
    elif "redisPassword" in secrets_present:
        problems.append(f"{NAMESPACE}:redisPassword: only used with redis.mode external (the password of a deployed "
                        "Redis is generated)")
    rd.finish()
    if mode == "sentinel" and roles_checkable:
        if len(redis_hosts) < 2:
            roles.fail(f"sentinel mode needs a master and at least one replica, got {len(redis_hosts)} host(s)",
                       "redis")
        if n_sentinels < 3 or n_sentinels % 2 == 0:
            roles.fail(f"sentinel mode needs an odd number of sentinels, at least 3, got {n_sentinels}",
                       "sentinels")
        if redis.quorum > n_sentinels:
            rd.fail(f"quorum {redis.quorum} exceeds the {n_sentinels} sentinels", "quorum")
    elif mode == "standalone" and roles_checkable:
        if len(redis_hosts) > 1:
            roles.fail("standalone mode takes one host; use redis.mode: sentinel for replicas", "redis")
        if sentinel_hosts:
            roles.fail("sentinels are only used with redis.mode: sentinel", "sentinels")
    if redis.port == redis.sentinel_port:
        rd.fail("must differ from port", "sentinelPort")

    # --- NFS -------------------------------------------------------------------------------------------------
    nf = _Reader(values.get("nfs"), f"{NAMESPACE}:nfs", problems)
    # server: roles.nfs runs the kernel's NFS server (the single host the README names); external: an existing
    # export (a filer, a managed NFS service), which the nodes only mount.
    nfs_mode = nf.get("mode", str, "server", check=lambda v: None if v in ("server", "external")
                      else "must be server or external")
    nfs = NfsSettings(
        mode=nfs_mode,
        server=nf.get("server", str, None, required=nfs_mode == "external", check=_server_name_check),
        # With mode external it is required: the path the existing server exports.
        export_path=nf.get("exportPath", str, "/srv/harbor", required=nfs_mode == "external",
                           check=_matches(_PATH, "an absolute path")),
        # hard: I/O waits for the server instead of corrupting a layer; noatime: no write per read.
        mount_options=nf.get("mountOptions", str, "hard,noatime,_netdev",
                             check=_matches(re.compile(r"^[A-Za-z0-9_=,.]+$"), "a comma-separated option list")),
        # 4.1: sessions give exactly-once semantics for non-idempotent operations over a reconnect.
        version=nf.get("version", str, "4.1", check=lambda v: None if v in ("3", "4", "4.1", "4.2")
                       else "must be 3, 4, 4.1 or 4.2"),
    )
    _refuse_mode_keys(nf, nfs.external, external_only=("server",), managed_only=())
    if nfs.external and sandbox_given:
        nf.fail("external cannot be used with sandbox: the sandbox's Harbor nodes share a Docker volume", "mode")
    if nfs.external and backup and backup.restic_repository:
        problems.append(f"{NAMESPACE}:backup.resticRepository: restic runs on the NFS host (roles.nfs); with "
                        "nfs.mode external the export's own snapshots or backups keep the data volume")
    nf.finish()
    storage = _parse_storage(raw_storage, object_store_hosts, secrets_present, sandbox_given, roles, problems)

    # --- firewall --------------------------------------------------------------------------------------------
    fw = _Reader(values.get("firewall"), f"{NAMESPACE}:firewall", problems)
    firewall = FirewallSettings(
        # Unset: SSH from anywhere, so a first `pulumi up` never locks its own engine out. Set it to the
        # networks the operators and the Pulumi engine connect from (docs/security.md).
        admin_sources=_cidrs(fw.get("adminSources", list, None, check=_cidrs_check)),
        # Unset: the registry on the VIP is open to anyone who can route to it (its own login still applies).
        client_sources=_cidrs(fw.get("clientSources", list, None, check=_cidrs_check)),
        # Unset: nobody; metrics are unauthenticated, so the scrapers are named explicitly.
        metrics_sources=_cidrs(fw.get("metricsSources", list, None, check=_cidrs_check)) or (),
        # 60 s: long enough for the apply to confirm over its own SSH session, short enough to wait out.
        confirm_seconds=fw.get("confirmSeconds", int, 60, check=_in_range(10, 3600)),
    )
    fw.finish()
    sandbox = _parse_sandbox(values.get("sandbox"), hosts, vip, problems) if sandbox_given else None
    monitoring = _parse_monitoring(values.get("monitoring"), monitoring_hosts, harbor_nodes, harbor, roles,
                                   secrets_present, problems)
    if sandbox_given and "sshPrivateKey" in secrets_present:
        problems.append(f"{NAMESPACE}:sshPrivateKey: must not be set with sandbox: the sandbox generates the key "
                        "its containers accept")

    if problems:
        raise ConfigError(problems[:len(stray)] + [p for p in problems[len(stray):]
                                                   if p.partition(": ")[0] not in stray])
    return ClusterConfig(
        hosts=tuple(hosts),
        prefix_length=prefix_length,
        nfs_host=nfs_hosts[0] if nfs_hosts else None,
        postgres_hosts=tuple(pg_hosts),
        etcd_hosts=tuple(etcd_hosts or pg_hosts) if patroni else (),
        backup_host=backup_hosts[0] if backup_hosts and backup else None,
        redis_hosts=tuple(redis_hosts),
        sentinel_hosts=tuple(sentinel_hosts) if mode == "sentinel" else (),
        harbor_nodes=tuple(harbor_nodes),
        retiring_nodes=tuple(retiring_nodes),
        lb_hosts=(lb_hosts[0], lb_hosts[1]),
        lb_on_harbor_nodes=lb_on_harbor_nodes,
        vip=vip,
        vrrp=vrrp,
        lb=lb,
        harbor=harbor,
        tls=tls,
        postgres=postgres,
        redis=redis,
        nfs=nfs,
        firewall=firewall,
        patroni=patroni,
        backup=backup,
        sandbox=sandbox,
        storage=storage,
        object_store_hosts=tuple(object_store_hosts),
        passthrough={k: values[k] for k in PASSTHROUGH_KEYS if k in values},
        monitoring_hosts=tuple(monitoring_hosts) if monitoring else (),
        monitoring=monitoring,
    )


_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# An existing server's user may be named as its service wants (`harbor@myserver` on some managed services); no
# space or quote: Harbor puts it into a `key=value` connection string unquoted (src/common/dao/pgsql.go).
_EXTERNAL_DB_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,63}$")


def _raw_mode(values: Mapping[str, Any], section: str) -> Any:
    """`<section>.mode` as written (parsed properly later): the roles are read before the sections."""
    raw = values.get(section)
    return raw.get("mode") if isinstance(raw, Mapping) else None


def _server_name_check(value: str) -> Optional[str]:
    return None if _DNS_NAME.match(value) else f"{value!r} is not a DNS name or IPv4 address"


def _endpoint_check(value: str) -> Optional[str]:
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535 or _server_name_check(host):
        return f"{value!r} is not `host:port` (a DNS name or IPv4 address, and a port)"
    return None


def _endpoints_check(value: list) -> Optional[str]:
    if not value:
        return "must list at least one `host:port`"
    for i, item in enumerate(value):
        problem = _endpoint_check(item) if isinstance(item, str) else f"{item!r} is not a string"
        if problem:
            return f"[{i}] {problem}"
    return None


def _pem_certs_check(value: str) -> Optional[str]:
    return None if _PEM_CERTS.match(value) else "is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)"


TLS_MODES = ("self-signed", "certificate", "acme")
_ACME_URL = re.compile(r"^https://[^\s/]+(:[0-9]+)?(/\S*)?$")


def _parse_acme(tls_r: _Reader, mode: str, values: Mapping[str, Any], secrets_present: Sequence[str],
                problems: list[str]) -> Optional[AcmeSettings]:
    """tls.acme: the ACME server, account and names of tls.mode acme (components/loadbalancer/acme.sh)."""
    raw = tls_r.get("acme", dict, None)
    if mode != "acme":
        if raw is not None:
            tls_r.fail("only used with mode acme", "acme")
        if "acmeDnsHook" in secrets_present:
            problems.append(f"{NAMESPACE}:acmeDnsHook: set, but tls.mode is not acme with challenge dns-01")
        return None
    ac = _Reader(raw, f"{tls_r.key}.acme", problems)
    hb = values.get("harbor")
    hostname = hb.get("hostname") if isinstance(hb, Mapping) else None
    acme = AcmeSettings(
        # HTTPS only: the account key and the certificate order travel over it (RFC 8555 section 6.1).
        directory_url=ac.get("directoryUrl", str, "", required=True,
                             check=_matches(_ACME_URL, "an https:// URL of an ACME directory")),
        email=ac.get("email", str, "", required=True, check=_matches(_EMAIL, "an e-mail address")),
        # harbor.hostname: the name clients use; further names (aliases) are added here with it.
        dns_names=tuple(ac.get("dnsNames", list, [hostname] if isinstance(hostname, str) else [],
                               check=_dns_names_check)),
        # 30 days: Let's Encrypt's own advice for its 90-day certificates; two timer runs a day leave ~60 tries.
        renew_before_days=ac.get("renewBeforeDays", int, 30, check=_in_range(1, 89)),
        ca_certificate=ac.get("caCertificate", str, None, check=_pem_certs_check),
        # http-01: nothing to set up but the VIP on port 80; dns-01: for LBs the CA cannot reach (a private network).
        challenge=ac.get("challenge", str, "http-01",
                         check=lambda v: None if v in ACME_CHALLENGES else f"must be {' or '.join(ACME_CHALLENGES)}"),
        dns_resolvers=tuple(ac.get("dnsResolvers", list, [], check=_host_ports_check)),
        # Off only where the authoritative servers cannot be asked (a test DNS server that answers no SOA query).
        dns_propagation_check=ac.get("dnsPropagationCheck", bool, True),
    )
    ac.finish()
    dns01 = acme.challenge == "dns-01"
    if dns01 != ("acmeDnsHook" in secrets_present):
        ac.fail("dns-01 needs the secret acmeDnsHook: the program lego runs as `HOOK present|cleanup FQDN VALUE` "
                "(pulumi config set --secret harbor-ha:acmeDnsHook < hook.sh)" if dns01 else
                "acmeDnsHook is set, but the challenge is http-01: set challenge dns-01, or remove that secret",
                "challenge")
    for key in ("dnsResolvers", "dnsPropagationCheck"):
        if not dns01 and key in ac.data:
            ac.fail("only used with challenge dns-01", key)
    if isinstance(hostname, str) and acme.dns_names and hostname not in acme.dns_names:
        ac.fail(f"must include harbor.hostname ({hostname}): clients reach the VIP by that name", "dnsNames")
    return acme


ACME_CHALLENGES = ("http-01", "dns-01")


def _host_ports_check(value: list[Any]) -> Optional[str]:
    bad = [v for v in value if not isinstance(v, str) or not _HOST_PORT.match(v)]
    return f"{bad[0]!r} is not host:port" if bad else None


def _dns_names_check(value: list[Any]) -> Optional[str]:
    if not value:
        return "must name at least one DNS name"
    bad = [v for v in value if not isinstance(v, str) or not _DNS_NAME.match(v)]
    if bad:
        return f"{bad[0]!r} is not a DNS name (HTTP-01 cannot validate wildcards or addresses)"
    return None if len(set(value)) == len(value) else "lists a name twice"


def _refuse_mode_keys(r: _Reader, external: bool, *, external_only: Sequence[str], managed_only: Sequence[str]) -> None:
    """`<section>.mode external` takes only what reaches an existing service; the other modes none of that."""
    for key in managed_only if external else external_only:
        if r.data.get(key) is not None:
            r.fail("only used without mode external (a setting of the service harbor-ha deploys)" if external
                   else "only used with mode external", key)


_DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def _parse_sandbox(raw: Any, hosts: Sequence[Host], vip: str, problems: list[str]) -> SandboxSettings:
    """The `sandbox` section: the Docker network and image of the host containers (components/sandbox/)."""
    sb = _Reader(raw, f"{NAMESPACE}:sandbox", problems)
    # harbor-ha-sandbox: containers are named `<network>-<host>`, so `docker ps` groups them.
    network = sb.get("network", str, "harbor-ha-sandbox", check=_matches(_DOCKER_NAME, "a Docker network name"))
    subnet = sb.get("subnet", str, "", required=True, check=_subnet_check)
    image = sb.get("image", str, None)
    publish_https = sb.get("publishHttps", bool, False)
    sb.finish()
    if subnet:
        net = ipaddress.IPv4Network(subnet)
        # Docker gives the network's first address to its gateway (the machine's end of the bridge).
        reserved = {net.network_address, net.network_address + 1, net.broadcast_address}
        for i, h in enumerate(hosts):
            if h.address and (ipaddress.IPv4Address(h.address) not in net
                              or ipaddress.IPv4Address(h.address) in reserved):
                problems.append(f"{NAMESPACE}:hosts[{i}].address: {h.address} is not a free address of "
                                f"sandbox.subnet {subnet} (.0, .1 and the broadcast are Docker's)")
        if vip and (ipaddress.IPv4Address(vip) not in net or ipaddress.IPv4Address(vip) in reserved):
            problems.append(f"{NAMESPACE}:vip.address: {vip} is not a free address of sandbox.subnet {subnet}")
    for i, h in enumerate(hosts):
        if h.user != "root" or h.port != 22:
            problems.append(f"{NAMESPACE}:hosts[{i}]: the sandbox's containers take SSH as root on port 22; "
                            "leave user and port unset")
    return SandboxSettings(network=network, subnet=subnet, image=image, publish_https=publish_https)


def _subnet_check(value: str) -> Optional[str]:
    try:
        net = ipaddress.IPv4Network(value)
    except ValueError:
        return f"{value!r} is not an IPv4 network like 198.19.211.0/24"
    return None if net.prefixlen <= 28 else f"{value} is too small: at most /28"


_SCOPE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ONCALENDAR = re.compile(r"^[A-Za-z0-9*.,:/ -]+$")


def _parse_patroni(pg_r: _Reader, mode: str, pg_hosts: list[Host], etcd_hosts: list[Host], hosts: list[Host],
                   harbor_vip: str, prefix_length: int, pg_port: int, roles: _Reader) -> PatroniSettings:
    """postgres.patroni / vip / synchronous / etcd: the settings of postgres.mode: patroni."""
    problems = pg_r.problems
    pa = _Reader(pg_r.get("patroni", dict, {}), f"{pg_r.key}.patroni", problems)
    # ttl 20 / loop_wait 2 / retry_timeout 9: ttl 20 is the minimum Patroni's config validation accepts, and
    # loop_wait + 2 x retry_timeout <= ttl is the rule Patroni documents (2 + 18 = 20). loop_wait 2, not 1: a
    # replica watches the leader key in etcd only when its nap is at least 1 s (patroni/dcs/etcd.py `watch`,
    # `while timeout >= 1`), so with loop_wait 1 it never watches and notices a released or expired key only at
    # its next loop; with 2 it wakes on the change (a switchover's candidate takes the key within milliseconds).
    # A dead leader is replaced after ttl + ~3 s (member probe, VIP move, reconnect).
    # docs/database-ha.md has the measured figures, against Patroni's defaults 30/10/10.
    ttl = pa.get("ttl", int, 20, check=_in_range(20, 3600))
    loop_wait = pa.get("loopWait", int, 2, check=_in_range(1, 600))
    retry_timeout = pa.get("retryTimeout", int, 9, check=_in_range(3, 600))
    scope = pa.get("scope", str, "harbor", check=_matches(_SCOPE, "a name (a-z, 0-9, -)"))
    # 8008: Patroni's default REST API port.
    rest_api_port = pa.get("restApiPort", int, 8008, check=_in_range(1, 65535))
    pa.finish()
    if loop_wait + 2 * retry_timeout > ttl:
        pa.fail(f"loopWait {loop_wait} + 2 x retryTimeout {retry_timeout} exceeds ttl {ttl}: a leader that retries "
                "etcd for retryTimeout could lose its key while still writing (Patroni's documented rule "
                "loop_wait + 2*retry_timeout <= ttl)", "ttl")

    vr = _Reader(pg_r.get("vip", dict, {}, required=True), f"{pg_r.key}.vip", problems)
    vip = vr.get("address", str, "", required=True, check=_ipv4_check)
    vip_interface = vr.get("interface", str, "eth0", check=_matches(_IFACE, "an interface name"))
    # 250 ms instead of vip-manager's 1000: the VIP follows the leader key within a quarter second, for four small
    # etcd reads a second per database host. Every switchover waits for this move.
    vip_interval = vr.get("intervalMs", int, 250, check=_in_range(100, 60000))
    vr.finish()
    if vip:
        _check_vip_placement(vr, "the database VIP", vip, hosts, pg_hosts, prefix_length)
        if vip == harbor_vip:
            vr.fail(f"{vip} is also vip.address (Harbor's VIP); the database VIP must differ", "address")

    synchronous = pg_r.get("synchronous", str, "off",
                           check=lambda v: None if v in ("off", "on", "strict") else "must be off, on or strict")
    et = _Reader(pg_r.get("etcd", dict, {}), f"{pg_r.key}.etcd", problems)
    # 2379/2380: etcd's registered client and peer ports.
    etcd_client_port = et.get("clientPort", int, 2379, check=_in_range(1, 65535))
    etcd_peer_port = et.get("peerPort", int, 2380, check=_in_range(1, 65535))
    et.finish()
    if etcd_client_port == etcd_peer_port:
        et.fail("must differ from clientPort", "peerPort")
    ports = {"port": pg_port, "patroni.restApiPort": rest_api_port, "etcd.clientPort": etcd_client_port,
             "etcd.peerPort": etcd_peer_port}
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            pg_r.fail(f"{port} is already postgres.{seen[port]}; the ports must differ", key)
        seen.setdefault(port, key)

    if pg_hosts and len(pg_hosts) < 3:
        roles.fail(f"postgres.mode patroni needs at least 3 hosts (a leader and two replicas, so one can fail "
                   f"while a copy remains), got {len(pg_hosts)}", "postgres")
    if synchronous != "off" and len(pg_hosts) - 1 < 2:
        pg_r.fail(f"synchronous {synchronous} with {max(len(pg_hosts) - 1, 0)} replica(s): the one synchronous "
                  "standby failing would stop (strict) or unprotect (on) every commit; needs 2 replicas",
                  "synchronous")
    members = etcd_hosts or pg_hosts
    if members and (len(members) % 2 == 0 or len(members) < 3):
        roles.fail(f"etcd needs an odd number of members, at least 3, got {len(members)}: an even number "
                   "tolerates no more failures than one member fewer", "etcd")
    return PatroniSettings(
        scope=scope, ttl=ttl, loop_wait=loop_wait, retry_timeout=retry_timeout, synchronous=synchronous,
        rest_api_port=rest_api_port, vip=vip, vip_interface=vip_interface, vip_interval_ms=vip_interval,
        etcd_client_port=etcd_client_port, etcd_peer_port=etcd_peer_port)


def _parse_backup(raw: Any, pg_mode: str, backup_hosts: list[Host], pg_hosts: list[Host], roles: _Reader,
                  problems: list[str]) -> Optional[BackupSettings]:
    """backup: pgBackRest's repository and schedules, restic's repository (None without the section)."""
    if raw is None:
        if backup_hosts:
            roles.fail("a backup host needs the harbor-ha:backup section", "backup")
        return None
    br = _Reader(raw, f"{NAMESPACE}:backup", problems)
    repository = br.get("repository", str, "host",
                        check=lambda v: None if v in ("host", "s3") else "must be host or s3")
    s3 = _Reader(br.get("s3", dict, {}, required=repository == "s3"), f"{NAMESPACE}:backup.s3", problems)
    backup = BackupSettings(
        repository=repository,
        s3_endpoint=s3.get("endpoint", str, None, required=repository == "s3", check=_matches(_DNS_NAME, "a host")),
        s3_bucket=s3.get("bucket", str, None, required=repository == "s3"),
        s3_region=s3.get("region", str, "us-east-1"),
        # path: MinIO, Ceph RGW and Garage serve path-style requests without wildcard DNS.
        s3_uri_style=s3.get("uriStyle", str, "path", check=lambda v: None if v in ("host", "path")
                            else "must be host or path"),
        # 443: HTTPS, which pgBackRest always speaks to S3 (MinIO's own default is 9000).
        s3_port=s3.get("port", int, 443, check=_in_range(1, 65535)),
        # A private CA (on-premises MinIO, Ceph RGW): pgBackRest and restic verify the endpoint's certificate
        # against it; they never skip the verification.
        s3_ca_certificate=s3.get("caCertificate", str, None,
                                 check=lambda v: None if _PEM_CERTS.match(v) else
                                 "is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)"),
        path=br.get("path", str, "/var/lib/pgbackrest", check=_matches(_PATH, "an absolute path")),
        # 2 full backups (with their WAL): a point in time restore can reach back one to two full periods.
        retention_full=br.get("retentionFull", int, 2, check=_in_range(1, 9999)),
        retention_diff=br.get("retentionDiff", int, 6, check=_in_range(1, 9999)),
        # Weekly full on Sunday night, differential the other nights: the schedule pgBackRest's user guide uses.
        full_schedule=br.get("fullSchedule", str, "Sun *-*-* 01:00:00",
                             check=_matches(_ONCALENDAR, "a systemd OnCalendar expression")),
        diff_schedule=br.get("diffSchedule", str, "Mon..Sat *-*-* 01:00:00",
                             check=_matches(_ONCALENDAR, "a systemd OnCalendar expression")),
        # 8432: pgBackRest's documented default tls-server-port.
        tls_port=br.get("tlsPort", int, 8432, check=_in_range(1, 65535)),
        restic_repository=br.get("resticRepository", str, None,
                                 check=lambda v: None if v.startswith(("/", "sftp:", "s3:", "rest:"))
                                 else f"{v!r} is not a restic repository (/path, sftp:, s3: or rest:)"),
    )
    s3.finish()
    br.finish()
    # pgBackRest runs beside PostgreSQL: on the single server or on every Patroni member (a mode without a database
    # host of ours has nowhere to run it).
    if pg_mode not in ("single", "patroni"):
        br.fail(f"backups need a database host of the cluster's own (postgres.mode single or patroni, not {pg_mode})")
    if repository == "host":
        if not backup_hosts:
            roles.fail("backup.repository host needs roles.backup: the host that keeps the repository", "backup")
        elif backup_hosts[0] in pg_hosts:
            roles.fail(f"{backup_hosts[0].name!r} is a database host; the repository must survive losing it",
                       "backup")
    return backup


# ---------------------------------------------------------------------------------------------------------------
# Monitoring (components/monitoring/)
# ---------------------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_PROM_SIZE = re.compile(r"^[0-9]+(B|KB|MB|GB|TB|PB|EB)$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")


def _email_list_check(value: str) -> Optional[str]:
    bad = [a for a in value.split(",") if not _EMAIL.match(a.strip())]
    return f"{bad[0].strip()!r} is not an e-mail address" if bad else None


def _parse_monitoring(raw: Any, monitoring_hosts: list[Host], harbor_nodes: list[Host], harbor: HarborSettings,
                      roles: _Reader, secrets_present: Sequence[str],
                      problems: list[str]) -> Optional[MonitoringSettings]:
    """monitoring: Prometheus, Alertmanager and its receivers (None when roles.monitoring is unset: off).

    Every key is read even when monitoring is off, so a section without roles.monitoring is still checked (and
    reported as unused) and docs/configuration.md lists it.
    """
    mo = _Reader(raw, f"{NAMESPACE}:monitoring", problems)
    # 9090/9093: Prometheus's and Alertmanager's registered ports.
    prometheus_port = mo.get("prometheusPort", int, 9090, check=_in_range(1, 65535))
    alertmanager_port = mo.get("alertmanagerPort", int, 9093, check=_in_range(1, 65535))
    # Unset: only the monitoring hosts themselves; Prometheus and Alertmanager have no login, so a Grafana or an
    # operator's network is named explicitly (an SSH tunnel works without it).
    query_sources = _cidrs(mo.get("querySources", list, None, check=_cidrs_check)) or ()
    # 15d: Prometheus's own default; a quarter of samples of a small cluster fit in a few GB.
    retention = mo.get("retention", str, "15d", check=_matches(_DURATION, "a duration like 15d"))
    retention_size = mo.get("retentionSize", str, None, check=_matches(_PROM_SIZE, "a size like 20GB"))
    # Debian's packaged default, which its unit may write.
    storage_path = mo.get("storagePath", str, "/var/lib/prometheus/metrics2", check=_matches(_PATH, "an absolute path"))
    # 15s: a VIP without holder is seen within one interval, and 2 x interval is the shortest `for:` that rides out
    # one lost scrape.
    scrape_interval = mo.get("scrapeInterval", str, "15s", check=_matches(_DURATION, "a duration like 15s"))
    # 21 days: three weekly runs of `pulumi up` (or of the renewal) before users see an expired certificate.
    cert_days = mo.get("certificateWarningDays", int, 21, check=_in_range(1, 365))
    # 26 h: the nightly backup's period plus two hours for the run itself.
    backup_hours = mo.get("backupMaxAgeHours", int, 26, check=_in_range(1, 24 * 60))
    # 16 MiB: one WAL segment; a replica further behind than a segment is not keeping up.
    lag_bytes = mo.get("replicationLagBytes", int, 16 * 1024 * 1024, check=_in_range(1024, 1 << 40))
    # Unset: a user certificate chains to the system's CAs; a self-signed one is trusted as it is.
    vip_ca = mo.get("vipCaCertificate", str, None, check=lambda v: None if _PEM_CERTS.match(v) else
                    "is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)")
    rc = _Reader(mo.get("receivers", dict, {}), f"{NAMESPACE}:monitoring.receivers", problems)
    webhook = email = slack = None
    wh = _Reader(rc.get("webhook", dict, {}), f"{NAMESPACE}:monitoring.receivers.webhook", problems)
    wh_url = wh.get("url", str, None, check=lambda v: None if re.match(r"^https?://[^\s]+$", v)
                    else f"{v!r} is not an http(s) URL")
    # On: a receiver that heard of an alert also hears that it ended (what the drills check).
    wh_resolved = wh.get("sendResolved", bool, True)
    wh.finish()
    if wh_url:
        webhook = WebhookReceiver(url=wh_url, send_resolved=wh_resolved,
                                  bearer_token="monitoringWebhookToken" in secrets_present)
    elif "monitoringWebhookToken" in secrets_present:
        problems.append(f"{NAMESPACE}:monitoringWebhookToken: set, but monitoring.receivers.webhook.url is not")
    em = _Reader(rc.get("email", dict, {}), f"{NAMESPACE}:monitoring.receivers.email", problems)
    em_given = bool(em.data)
    em_to = em.get("to", str, None, required=em_given, check=_email_list_check)
    em_from = em.get("from", str, None, required=em_given, check=_matches(_EMAIL, "an e-mail address"))
    em_host = em.get("smarthost", str, None, required=em_given, check=_matches(_HOST_PORT, "host:port"))
    em_user = em.get("username", str, None)
    # On: the SMTP login and the alerts' contents never cross the network in clear.
    em_tls = em.get("requireTls", bool, True)
    em.finish()
    if em_given and em_to and em_from and em_host:
        email = EmailReceiver(to=em_to, from_email=em_from, smarthost=em_host, username=em_user, require_tls=em_tls)
        if em_user and "monitoringSmtpPassword" not in secrets_present:
            problems.append(f"{NAMESPACE}:monitoringSmtpPassword: monitoring.receivers.email.username needs it "
                            "(pulumi config set --secret)")
    sl = _Reader(rc.get("slack", dict, {}), f"{NAMESPACE}:monitoring.receivers.slack", problems)
    sl_given = bool(sl.data)
    sl_channel = sl.get("channel", str, None, required=sl_given,
                        check=_matches(re.compile(r"^[#@][A-Za-z0-9._-]+$"), "a channel like #harbor-alerts"))
    sl.finish()
    if sl_channel:
        slack = SlackReceiver(channel=sl_channel)
        if "monitoringSlackApiUrl" not in secrets_present:
            problems.append(f"{NAMESPACE}:monitoringSlackApiUrl: monitoring.receivers.slack needs the incoming "
                            "webhook URL (pulumi config set --secret)")
    rc.finish()
    mo.finish()
    if not monitoring_hosts:
        if raw is not None:
            mo.fail("set roles.monitoring (the hosts of Prometheus and Alertmanager) to turn monitoring on")
        return None
    if len(monitoring_hosts) > 2:
        roles.fail(f"takes 1 or 2 hosts (two scrape independently and share alerts), got {len(monitoring_hosts)}",
                   "monitoring")
    if not (webhook or email or slack) and not any(p.startswith(f"{NAMESPACE}:monitoring.receivers") for p in problems):
        rc.fail("needs at least one of webhook, email or slack: alerts nobody receives are not monitoring")
    if prometheus_port == alertmanager_port:
        mo.fail("must differ from prometheusPort", "alertmanagerPort")
    if set(monitoring_hosts) & set(harbor_nodes):
        for key, port in (("prometheusPort", prometheus_port), ("alertmanagerPort", alertmanager_port)):
            if port in (harbor.metrics_port, harbor.http_port, harbor.https_port):
                mo.fail(f"{port} is taken by Harbor on the monitoring hosts that are Harbor nodes; pick another "
                        "port", key)
    return MonitoringSettings(
        prometheus_port=prometheus_port, alertmanager_port=alertmanager_port, query_sources=query_sources,
        retention=retention, retention_size=retention_size, storage_path=storage_path,
        scrape_interval=scrape_interval, certificate_warning_days=cert_days, backup_max_age_hours=backup_hours,
        replication_lag_bytes=lag_bytes, vip_ca_certificate=vip_ca, webhook=webhook, email=email, slack=slack)
# --- storage: Harbor's images on S3 and the Garage cluster of roles.objectStore (issue 23) -------------------

GARAGE_DEFAULT_VERSION = "2.5.0"
# Garage's published static builds (garagehq.deuxfleurs.fr/download); a site mirrors one and sets storage.garage.url.
GARAGE_RELEASE_URL = "https://garagehq.deuxfleurs.fr/_releases/v{version}/x86_64-unknown-linux-musl/garage"
MIB = 1 << 20
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
_CAPACITY = re.compile(r"^[1-9][0-9]*(K|M|G|T|P)B?$")
_SNAPSHOT_INTERVAL = re.compile(r"^[1-9][0-9]*(s|m|h|d)$")


def _not_one(check: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    # Harbor's prepare writes each storage_service.s3 value with `value == True` -> `true` (make/photon/prepare/
    # utils/registry.py get_storage_provider_info), so an integer 1 would reach the registry as a boolean.
    return lambda v: "must not be 1: Harbor's prepare writes 1 as `true`" if v == 1 else check(v)


def _parse_storage(raw: Any, object_store_hosts: list[Host], secrets_present: Sequence[str], sandbox: bool,
                   roles: _Reader, problems: list[str]) -> StorageSettings:
    """storage: where Harbor's registry keeps images (mode nfs or s3), the bucket, and the Garage cluster."""
    st = _Reader(raw, f"{NAMESPACE}:storage", problems)
    # nfs: the data volume every node mounts, as before this key existed; s3 keeps no image on any one host.
    mode = st.get("mode", str, "nfs", check=lambda v: None if v in ("nfs", "s3") else "must be nfs or s3")
    s3r = _Reader(st.get("s3", dict, {}), f"{NAMESPACE}:storage.s3", problems)
    s3 = S3Settings(
        # Unset with roles.objectStore: the role's TLS endpoint; unset without it: AWS S3 itself, by region.
        endpoint=s3r.get("endpoint", str, None, check=_matches(_S3_URL, "an endpoint URL like https://s3.internal")),
        # us-east-1: what S3-compatible stores accept when they have no regions; the role sets Garage's to it.
        region=s3r.get("region", str, "us-east-1", check=_matches(re.compile(r"^[a-z0-9-]{1,32}$"), "a region")),
        # harbor-registry: a name of its own, so the bucket is obviously Harbor's when listed with others.
        bucket=s3r.get("bucket", str, "harbor-registry", check=_matches(_S3_BUCKET, "an S3 bucket name")),
        # true: self-hosted stores (Garage, Ceph RGW, MinIO) serve path-style requests without wildcard DNS.
        path_style=s3r.get("pathStyle", bool, True),
        # A private CA: appended to the bundle Harbor's containers trust (storage_service.ca_bundle).
        ca_certificate=s3r.get("caCertificate", str, None,
                               check=lambda v: None if _PEM_CERTS.match(v) else
                               "is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)"),
        # false: clients are never sent to the S3 endpoint itself, which is internal and often unreachable for
        # them, and whose presigned URLs break behind a proxy (goharbor/harbor#20588, #23050).
        redirect=s3r.get("redirect", bool, False),
        root_directory=s3r.get("rootDirectory", str, None, check=_matches(_PATH, "an absolute path")),
        # 10 MiB: the registry's own default (twice the S3 minimum part size of 5 MiB).
        chunk_size=s3r.get("chunkSize", int, 10 * MIB, check=_in_range(5 * MIB, 5 * 1024 * MIB)),
        # 32 MiB, 100 and 32 MiB: the registry's own defaults for moving a finished upload to its blob path.
        multipart_copy_chunk_size=s3r.get("multipartCopyChunkSize", int, 32 * MIB,
                                          check=_in_range(5 * MIB, 5 * 1024 * MIB)),
        multipart_copy_max_concurrency=s3r.get("multipartCopyMaxConcurrency", int, 100,
                                               check=_not_one(_in_range(1, 1000))),
        multipart_copy_threshold_size=s3r.get("multipartCopyThresholdSize", int, 32 * MIB,
                                              check=_not_one(_in_range(0, 5 * 1024 * MIB))),
    )
    s3r.finish()

    ga = _Reader(st.get("garage", dict, {}), f"{NAMESPACE}:storage.garage", problems)
    version = ga.get("version", str, GARAGE_DEFAULT_VERSION, check=_matches(_VERSION, "a version like 2.5.0"))
    garage = GarageSettings(
        version=version,
        # Garage's static musl build of `version`; air-gapped sites serve a copy and set the URL.
        url=ga.get("url", str, GARAGE_RELEASE_URL.format(version=version),
                   check=lambda v: None if v.startswith(("https://", "http://")) else f"{v!r} is not an http(s) URL"),
        # Required: the host installs no binary it cannot check (sha256sum of the file at url).
        sha256=ga.get("sha256", str, "", required=bool(object_store_hosts),
                      check=_matches(_SHA256, "a lowercase hex sha256")),
        # 100G: only the ratio between hosts matters to Garage; equal hosts need no setting.
        capacity=ga.get("capacity", str, "100G", check=_matches(_CAPACITY, "a size like 100G or 2T")),
        # 3: every object on three hosts in three zones; one host may fail and writes still reach a quorum of 2.
        replication_factor=ga.get("replicationFactor", int, 3, check=lambda v: None if v in (3, 5)
                                  else "must be 3 or 5 (an odd number of copies with a write quorum)"),
        # consistent: read-after-write for the registry (a manifest written through one node is read by another).
        consistency_mode=ga.get("consistencyMode", str, "consistent",
                                check=lambda v: None if v == "consistent" else
                                "must be consistent: the registry reads what another node has just written"),
        # 3943: next to Garage's own 3900-3903, free on every other role's host.
        https_port=ga.get("httpsPort", int, 3943, check=_in_range(1, 65535)),
        # 3944: beside httpsPort; on the node's address, so it may share a host with an object-store host's front.
        proxy_port=ga.get("proxyPort", int, 3944, check=_in_range(1, 65535)),
        # 3901, 3900, 3903: Garage's documented RPC, S3 and admin ports.
        rpc_port=ga.get("rpcPort", int, 3901, check=_in_range(1, 65535)),
        s3_port=ga.get("s3Port", int, 3900, check=_in_range(1, 65535)),
        admin_port=ga.get("adminPort", int, 3903, check=_in_range(1, 65535)),
        # Garage's documented layout: metadata and data apart, so metadata can live on a faster disk.
        metadata_dir=ga.get("metadataDir", str, "/var/lib/garage/meta", check=_matches(_PATH, "an absolute path")),
        data_dir=ga.get("dataDir", str, "/var/lib/garage/data", check=_matches(_PATH, "an absolute path")),
        # 6h: a consistent copy of the metadata database on each host four times a day, what a restore starts from.
        metadata_snapshots=ga.get("metadataSnapshots", str, "6h",
                                  check=_matches(_SNAPSHOT_INTERVAL, "a duration like 6h")),
    )
    ga.finish()
    st.finish()

    ports = {"httpsPort": garage.https_port, "proxyPort": garage.proxy_port, "rpcPort": garage.rpc_port,
             "s3Port": garage.s3_port, "adminPort": garage.admin_port}
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            ga.fail(f"{port} is already storage.garage.{seen[port]}; the ports must differ", key)
        seen.setdefault(port, key)
    if garage.data_dir == garage.metadata_dir:
        ga.fail("must differ from metadataDir", "dataDir")

    given = [k for k in ("storageS3AccessKey", "storageS3SecretKey") if k in secrets_present]
    if object_store_hosts:
        if len(object_store_hosts) < garage.replication_factor:
            roles.fail(f"{len(object_store_hosts)} host(s) cannot hold storage.garage.replicationFactor "
                       f"{garage.replication_factor} copies in separate zones", "objectStore")
        if s3.endpoint:
            s3r.fail("must be unset with roles.objectStore: Harbor uses the role's own TLS endpoint", "endpoint")
        for key in given:
            problems.append(f"{NAMESPACE}:{key}: must not be set with roles.objectStore: the program creates "
                            "Harbor's Garage key")
    elif mode == "s3":
        for key in ("storageS3AccessKey", "storageS3SecretKey"):
            if key not in given:
                problems.append(f"{NAMESPACE}:{key}: storage.mode s3 without roles.objectStore needs it "
                                "(pulumi config set --secret)")
    if mode == "s3" and sandbox:
        st.fail("s3 is not built for the sandbox (its nodes share a Docker volume)", "mode")
    if mode == "s3" and not s3.path_style and s3.endpoint:
        s3r.fail("false needs AWS itself (no endpoint): Harbor's registry always sends path-style requests to a "
                 "custom endpoint", "pathStyle")
    if st.data.get("garage") is not None and not object_store_hosts:
        st.fail("only used with roles.objectStore (the Garage cluster the program deploys)", "garage")
    if mode == "nfs" and not object_store_hosts:
        # With roles.objectStore in mode nfs, storage.s3 names the bucket the move from NFS copies into.
        if st.data.get("s3") is not None:
            st.fail("only used with storage.mode s3 or roles.objectStore", "s3")
        return StorageSettings(mode=mode)
    return StorageSettings(mode=mode, s3=s3, garage=garage if object_store_hosts else None)


def load_stack_file(path: str) -> tuple[dict[str, Any], list[str]]:
    """Read a `Pulumi.<stack>.yaml` without the Pulumi CLI: (plain values by key, names of secret keys set).

    Used by scripts/ and the tests; the program itself reads config through pulumi.Config. Raises ConfigError for a
    file that is not YAML (naming the line), not a mapping, or with keys outside a namespace or in a misspelt one
    (`harbour-ha:vip` would otherwise be dropped and reported as a missing `harbor-ha:vip`).
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError([f"YAML syntax error at {where}: {e.problem or e.context}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"YAML error: {e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text (byte {e.start})"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError([f"the file must be a mapping with a `config:` key, got a {type(doc).__name__}"])
    config = doc.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError([f"config: must be a mapping of `{NAMESPACE}:<key>: value`, got a {type(config).__name__}"])
    values: dict[str, Any] = {}
    secrets: list[str] = []
    problems: list[str] = []
    for full_key, value in config.items():
        namespace, colon, key = str(full_key).partition(":")
        if not colon:
            # The Pulumi CLI refuses such a key too (configuration keys are `<namespace>:<name>`).
            problems.append(f"{full_key}: a key needs its namespace; did you mean '{NAMESPACE}:{full_key}'?")
            continue
        if namespace != NAMESPACE:
            # Other namespaces configure providers (`command:`, `tls:`): only a near-miss of ours is a typo.
            if did_you_mean(namespace, [NAMESPACE]):
                problems.append(f"{full_key}: unknown namespace {namespace!r}; did you mean '{NAMESPACE}:{key}'?")
            continue
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secrets.append(key)
        else:
            values[key] = value
    if problems:
        raise ConfigError(problems)
    return values, secrets


_KEY_PATH = re.compile(r"^([A-Za-z0-9_.-]+:[A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)")


def problem_line(path: str, problem: str) -> Optional[int]:
    """The line of `path` that the key a problem names (`harbor-ha:hosts[1].address: ...`) is on: the deepest part
    of that key present in the file (None when the file cannot be read or the key is not in it)."""
    import yaml

    match = _KEY_PATH.match(problem)
    if not match:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            node = yaml.compose(f)
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return None
    line = None
    steps: list[str | int] = ["config", match.group(1)]
    steps += [key or int(index) for key, index in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(2))]
    for step in steps:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            found = [(k, v) for k, v in node.value if k.value == step]
            if not found:
                break
            # A key given twice: YAML keeps the last one, and so does the parser.
            line, node = found[-1][0].start_mark.line + 1, found[-1][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line


def describe_problems(path: str, problems: Sequence[str]) -> list[str]:
    """Each problem as one line `FILE:LINE: problem` (`FILE: problem` when no line is known), as editors and
    compilers print them."""
    name = os.path.basename(path)
    out = []
    for problem in problems:
        line = problem_line(path, problem)
        out.append(f"{name}:{line}: {problem}" if line else f"{name}: {problem}")
    return out


def from_pulumi_config() -> ClusterConfig:
    """Parse the running stack's `harbor-ha:*` config (inside `pulumi up` / preview / the mock tests)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    cfg = pulumi.Config(NAMESPACE)
    # pulumi.Config can only look keys up by name; the full map is needed to reject typos as unknown keys.
    present = {k.partition(":")[2] for k in (*runtime_config.CONFIG.get(), *runtime_config.get_config_env())
               if k.startswith(f"{NAMESPACE}:")}
    values: dict[str, Any] = {}
    secrets_present = []
    secret_sections = []
    for key in sorted(present):
        if key in SECRET_KEYS:
            if pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
                secrets_present.append(key)
            else:
                values[key] = "<plain>"  # reported by parse_cluster_config: must be set with --secret
        elif pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
            # A key holding a value set with `config set --secret --path`: the CLI passes the whole key decrypted
            # (as JSON) and marks it secret (Map.Decrypt, Map.SecureKeys in the Go SDK's resource/config). In
            # harborApi/migration the Harbor resources mark those fields secret again in their inputs;
            # parse_cluster_config refuses one anywhere else.
            text = runtime_config.get_config(f"{NAMESPACE}:{key}")
            try:
                values[key] = json.loads(text)
            except ValueError:  # a whole key set with --secret as a plain string
                values[key] = text
            secret_sections.append(key)
        else:
            values[key] = cfg.get_object(key)
    return parse_cluster_config(values, secrets_present=secrets_present, secret_sections=secret_sections,
                                check_files=True)
