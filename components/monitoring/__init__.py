"""Monitoring: Prometheus, Alertmanager and the blackbox exporter on roles.monitoring; exporters on every host.

Everything monitoring lives here: which exporter runs on which host and on which port (`host_exporters`, the one
place that decides; the firewall opens exactly these to the monitoring hosts), the scrape jobs generated from the
stack, the alert and recording rules (rules.yml.j2, each alert with a `promtool test rules` case in
tests/integration/test_monitoring_tools.py and a runbook line in docs/operations/monitoring.md), Alertmanager's
receivers, and the two role scripts: `exporters.sh` (every host) and `monitoring.sh` (the monitoring hosts).

Credentials never cross the network: the PostgreSQL exporter logs in over the unix socket (peer authentication, a
`pg_monitor` role of its own), the Redis exporter reaches Redis on loopback; what the exporters serve is metrics only,
opened by the firewall to the monitoring hosts alone. Every exporter is Debian's package with its own unit; the
second Redis exporter (for the sentinel) is a unit of ours running the same program.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from collections.abc import Mapping

import pulumi
import yaml

from components.config import ClusterConfig, Host, MonitoringSettings
from components.monitoring.dashboards import render_cluster_dashboard, render_harbor_dashboard
from components.harbor_node import NODE_TLS_NAME
from components.host.files import FileSpec, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.pgbackrest import STANZA, db_paths

EXPORTERS_SCRIPT = Path(__file__).with_name("exporters.sh")  #: the role script of every host's exporters
MONITORING_SCRIPT = Path(__file__).with_name("monitoring.sh")  #: the role script of the monitoring hosts
TEXTFILE_SCRIPT = Path(__file__).with_name("textfile-metrics.sh")  #: writes the node exporter's harbor_ha metrics

# Exporter ports: each exporter's registered default (prometheus/prometheus wiki "Default port allocations"); the
# sentinel's exporter is a second redis_exporter and takes the port after it.
NODE_EXPORTER_PORT = 9100
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
SENTINEL_EXPORTER_PORT = 9122
NGINX_EXPORTER_PORT = 9113
BLACKBOX_PORT = 9115  #: on 127.0.0.1 of the monitoring hosts only: the probes go out from there
ALERTMANAGER_CLUSTER_PORT = 9094  #: Alertmanager's gossip between two monitoring hosts (tcp and udp)

PROMETHEUS_YML = "/etc/prometheus/prometheus.yml"
RULES_YML = "/etc/prometheus/harbor-ha-rules.yml"
ALERTMANAGER_YML = "/etc/prometheus/alertmanager.yml"
BLACKBOX_YML = "/etc/prometheus/blackbox.yml"
VIP_CA = "/etc/prometheus/harbor-ha/vip-ca.crt"
CLUSTER_CA = "/etc/prometheus/harbor-ha/cluster-ca.crt"
DASHBOARD_DIR = "/usr/share/harbor-ha/grafana"  #: the dashboards' JSON, for a Grafana's file provisioning
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  #: Debian's node exporter reads *.prom files here
TEXTFILE_BIN = "/usr/local/lib/harbor-ha/textfile-metrics.sh"
TEXTFILE_UNIT = "/etc/systemd/system/harbor-ha-textfile-metrics.service"
TEXTFILE_TIMER = "/etc/systemd/system/harbor-ha-textfile-metrics.timer"
SENTINEL_EXPORTER_UNIT = "/etc/systemd/system/harbor-ha-sentinel-exporter.service"
EXPORTER_DB_ROLE = "prometheus"  #: the PostgreSQL role of the exporter (peer authentication as the prometheus user)
# Units whose state the node exporter's systemd collector reports (the roles' services and ours).
SYSTEMD_UNITS = (r"(keepalived|nginx|redis-server|redis-sentinel|postgresql@.+|patroni|vip-manager|etcd|docker|"
                 r"pgbackrest|prometheus.*|harbor-ha-.+)\.service")
HEALTH_PATH = "/api/v2.0/health"
# Harbor's own nginx serves every component's metrics on metric.port: the exporter's by default, the others by
# `?comp=` (make/photon/prepare/templates/nginx/nginx.https.conf.jinja in the 2.15.2 source).
HARBOR_COMPONENTS = ("exporter", "core", "registry", "jobservice")
# Alertmanager's grouping: short waits so that a drill's alert arrives within its `for:` plus a scrape interval,
# and a resolved alert is reported within a minute; a still-firing alert repeats every 4 h.
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = "10s", "1m", "4h"


@dataclass(frozen=True)
class Exporter:
    """One exporter on one host."""

    job: str  #: Prometheus job name
    port: int  #: where it listens on the host's address
    package: Optional[str]  #: the Debian package that ships it (None: a service that is already there)
    unit: Optional[str]  #: its systemd unit (None: not ours to manage)
    path: str = "/metrics"  #: metrics path
    params: Optional[Mapping[str, str]] = None  #: query parameters of the scrape


def monitoring_settings(cfg: ClusterConfig) -> MonitoringSettings:
    if cfg.monitoring is None:
        raise ValueError("this stack has no monitoring (roles.monitoring)")
    return cfg.monitoring


def host_exporters(cfg: ClusterConfig, host: Host) -> list[Exporter]:
    """What Prometheus scrapes on `host` (pure): the node exporter everywhere, and what its roles serve."""
    out = [Exporter("node", NODE_EXPORTER_PORT, "prometheus-node-exporter", "prometheus-node-exporter")]
    if host in cfg.harbor_nodes:
        out += [Exporter(f"harbor-{c}", cfg.harbor.metrics_port, None, None,
                         params=None if c == "exporter" else {"comp": c}) for c in HARBOR_COMPONENTS]
    if host in cfg.postgres_hosts:
        out.append(Exporter("postgres", POSTGRES_EXPORTER_PORT, "prometheus-postgres-exporter",
                            "prometheus-postgres-exporter"))
        if cfg.patroni:
            # Patroni's REST API serves /metrics (leader, sync standby, WAL positions) without authentication.
            out.append(Exporter("patroni", cfg.patroni.rest_api_port, None, None))
    if host in cfg.redis_hosts:
        out.append(Exporter("redis", REDIS_EXPORTER_PORT, "prometheus-redis-exporter", "prometheus-redis-exporter"))
    if host in cfg.sentinel_hosts:
        out.append(Exporter("redis-sentinel", SENTINEL_EXPORTER_PORT, "prometheus-redis-exporter",
                            "harbor-ha-sentinel-exporter"))
    if host in cfg.lb_hosts:
        out.append(Exporter("nginx", NGINX_EXPORTER_PORT, "prometheus-nginx-exporter", "prometheus-nginx-exporter"))
    if host in cfg.monitoring_hosts:
        mo = monitoring_settings(cfg)
        out += [Exporter("prometheus", mo.prometheus_port, None, None),
                Exporter("alertmanager", mo.alertmanager_port, None, None)]
    return out


def scrape_targets(cfg: ClusterConfig) -> dict[str, list[tuple[Host, Exporter]]]:
    """{job: [(host, exporter), ...]} over every host, in stack order."""
    jobs: dict[str, list[tuple[Host, Exporter]]] = {}
    for host in cfg.hosts:
        for exporter in host_exporters(cfg, host):
            jobs.setdefault(exporter.job, []).append((host, exporter))
    return jobs


def probe_targets(cfg: ClusterConfig) -> dict[str, list[tuple[str, Optional[str]]]]:
    """{blackbox module: [(target, host name or None), ...]}: Harbor's health through the VIP and on each node (as
    the LBs reach it), and the NFS export's port."""
    port = "" if cfg.lb.https_port == 443 else f":{cfg.lb.https_port}"
    probes: dict[str, list[tuple[str, Optional[str]]]] = {
        "harbor_vip": [(f"https://{cfg.vip}{port}{HEALTH_PATH}", None)],
        "harbor_node": [(f"https://{h.address}:{cfg.harbor.https_port}{HEALTH_PATH}", h.name)
                        for h in cfg.harbor_nodes],
    }
    if cfg.nfs_host:
        probes["tcp_connect"] = [(f"{cfg.nfs_host.address}:2049", cfg.nfs_host.name)]
    return probes


PROBE_JOBS = {"harbor_vip": "blackbox-vip", "harbor_node": "blackbox-node", "tcp_connect": "blackbox-nfs"}


def _scrape_config(job: str, targets: list[tuple[Host, Exporter]], interval: str) -> dict[str, Any]:
    first = targets[0][1]
    config: dict[str, Any] = {"job_name": job, "scrape_interval": interval, "metrics_path": first.path}
    if first.params:
        config["params"] = {k: [v] for k, v in first.params.items()}
    config["static_configs"] = [{"targets": [f"{h.address}:{e.port}"], "labels": {"host": h.name}}
                                for h, e in targets]
    return config


def _probe_config(module: str, targets: list[tuple[str, Optional[str]]], interval: str) -> dict[str, Any]:
    return {
        "job_name": PROBE_JOBS[module], "scrape_interval": interval, "metrics_path": "/probe",
        "params": {"module": [module]},
        "static_configs": [{"targets": [t], "labels": {"host": h} if h else {}} for t, h in targets],
        # The blackbox exporter beside Prometheus probes the target named in `?target=`.
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{BLACKBOX_PORT}"},
        ],
    }


def render_prometheus_yml(cfg: ClusterConfig, host: Host) -> str:
    """prometheus.yml of one monitoring host (pure): every scrape job generated from the stack."""
    mo = monitoring_settings(cfg)
    jobs = [_scrape_config(job, targets, mo.scrape_interval) for job, targets in scrape_targets(cfg).items()]
    jobs += [_probe_config(module, targets, mo.scrape_interval) for module, targets in probe_targets(cfg).items()]
    config = {
        "global": {"scrape_interval": mo.scrape_interval, "evaluation_interval": mo.scrape_interval,
                   # `replica` tells the two Prometheus apart; it is dropped from alerts, so that Alertmanager
                   # sees the same alert from both and sends it once.
                   "external_labels": {"cluster": cfg.harbor.hostname, "replica": host.name}},
        "rule_files": [RULES_YML],
        "alerting": {
            "alert_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
            "alertmanagers": [{"static_configs": [{"targets": [f"{h.address}:{mo.alertmanager_port}"
                                                               for h in cfg.monitoring_hosts]}]}],
        },
        "scrape_configs": jobs,
    }
    return ("# Prometheus of harbor-ha: rendered by harbor-ha (components/monitoring/); pulumi up overwrites edits.\n"
            + yaml.safe_dump(config, sort_keys=False, default_flow_style=False))


def render_rules(cfg: ClusterConfig) -> str:
    """The alert and recording rules (pure): thresholds and the alerts that apply come from the stack."""
    mo = monitoring_settings(cfg)
    return render_template(
        "monitoring/rules.yml.j2", mo=mo, patroni=cfg.patroni, sentinel=cfg.redis.mode == "sentinel",
        quorum=cfg.redis.quorum, backup=cfg.backup is not None, nfs=cfg.nfs_host is not None,
        synchronous=bool(cfg.patroni and cfg.patroni.synchronous != "off"))


def render_alertmanager_yml(cfg: ClusterConfig, secrets: Mapping[str, str]) -> str:
    """alertmanager.yml (pure): one route to the receivers the stack names; `secrets` holds the ones they need."""
    mo = monitoring_settings(cfg)
    receiver: dict[str, Any] = {"name": "harbor-ha"}
    config: dict[str, Any] = {"global": {"resolve_timeout": "5m"}}
    if mo.webhook:
        webhook: dict[str, Any] = {"url": mo.webhook.url, "send_resolved": mo.webhook.send_resolved}
        if mo.webhook.bearer_token:
            webhook["http_config"] = {"authorization": {"type": "Bearer",
                                                        "credentials": secrets["monitoring_webhook_token"]}}
        receiver["webhook_configs"] = [webhook]
    if mo.email:
        email: dict[str, Any] = {"to": mo.email.to, "from": mo.email.from_email, "smarthost": mo.email.smarthost,
                                 "require_tls": mo.email.require_tls, "send_resolved": True}
        if mo.email.username:
            email.update(auth_username=mo.email.username, auth_password=secrets["monitoring_smtp_password"])
        receiver["email_configs"] = [email]
    if mo.slack:
        receiver["slack_configs"] = [{"api_url": secrets["monitoring_slack_api_url"], "channel": mo.slack.channel,
                                      "send_resolved": True}]
    config["route"] = {"receiver": "harbor-ha", "group_by": ["alertname", "host"], "group_wait": GROUP_WAIT,
                       "group_interval": GROUP_INTERVAL, "repeat_interval": REPEAT_INTERVAL}
    # A host that is down takes its exporters, probes and services with it: its HostDown is the one alert sent.
    config["inhibit_rules"] = [{"source_matchers": ["alertname = HostDown"],
                                "target_matchers": ["alertname != HostDown"], "equal": ["host"]}]
    config["receivers"] = [receiver]
    return ("# Alertmanager of harbor-ha: rendered by harbor-ha (components/monitoring/); pulumi up overwrites "
            "edits.\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False))


def alertmanager_needs(cfg: ClusterConfig) -> tuple[str, ...]:
    mo = monitoring_settings(cfg)
    return tuple(name for name, used in (("monitoring_webhook_token", mo.webhook and mo.webhook.bearer_token),
                                         ("monitoring_smtp_password", mo.email and mo.email.username),
                                         ("monitoring_slack_api_url", mo.slack)) if used)


def render_blackbox_yml(cfg: ClusterConfig) -> str:
    """blackbox.yml (pure): Harbor's health through the VIP (the name users connect to, the VIP's certificate) and
    on each node (the cluster CA's node certificate, as the LBs verify it); a TCP connect for NFS."""
    healthy = [r'^\s*\{\s*"status"\s*:\s*"healthy"']  # Harbor answers 200 with "unhealthy" too
    vip_tls: dict[str, Any] = {"server_name": cfg.harbor.hostname}
    if cfg.tls.mode == "self-signed" or monitoring_settings(cfg).vip_ca_certificate:
        vip_tls["ca_file"] = VIP_CA
    modules = {
        "harbor_vip": {"prober": "http", "timeout": "10s", "http": {
            "valid_status_codes": [200], "fail_if_not_ssl": True, "fail_if_body_not_matches_regexp": healthy,
            "headers": {"Host": cfg.harbor.hostname}, "tls_config": vip_tls, "preferred_ip_protocol": "ip4"}},
        "harbor_node": {"prober": "http", "timeout": "10s", "http": {
            "valid_status_codes": [200], "fail_if_not_ssl": True, "fail_if_body_not_matches_regexp": healthy,
            "tls_config": {"server_name": NODE_TLS_NAME, "ca_file": CLUSTER_CA}, "preferred_ip_protocol": "ip4"}},
        "tcp_connect": {"prober": "tcp", "timeout": "5s", "tcp": {"preferred_ip_protocol": "ip4"}},
    }
    return ("# blackbox exporter of harbor-ha: rendered by harbor-ha (components/monitoring/); pulumi up overwrites "
            "edits.\n" + yaml.safe_dump({"modules": modules}, sort_keys=False, default_flow_style=False))


def _args(*flags: str) -> str:
    return " ".join(flags)


def render_defaults(name: str, args: str, extra: Optional[Mapping[str, str]] = None) -> str:
    """/etc/default/<package> for Debian's unit (`ExecStart=... $ARGS`): the flags, and variables that must not be
    flags (a password in ARGS would show in `ps`)."""
    body = "".join(f"{k}={v}\n" for k, v in (extra or {}).items())
    return (f"# {name}: rendered by harbor-ha (components/monitoring/); pulumi up overwrites edits.\n"
            f"{body}ARGS=\"{args}\"\n")


def _peers_args(cfg: ClusterConfig, host: Host) -> list[str]:
    peers = [h for h in cfg.monitoring_hosts if h != host]
    if not peers:
        return ["--cluster.listen-address="]  # alone: no gossip port at all
    return [f"--cluster.listen-address={host.address}:{ALERTMANAGER_CLUSTER_PORT}"] + [
        f"--cluster.peer={p.address}:{ALERTMANAGER_CLUSTER_PORT}" for p in peers]


def monitoring_files(cfg: ClusterConfig, host: Host) -> list[FileSpec]:
    """What a monitoring host receives: Prometheus, Alertmanager, the blackbox exporter, the CAs its probes trust."""
    mo = monitoring_settings(cfg)
    prometheus_args = [f"--config.file={PROMETHEUS_YML}", f"--web.listen-address={host.address}:{mo.prometheus_port}",
                       f"--storage.tsdb.path={mo.storage_path}", f"--storage.tsdb.retention.time={mo.retention}"]
    if mo.retention_size:
        prometheus_args.append(f"--storage.tsdb.retention.size={mo.retention_size}")
    am_args = [f"--config.file={ALERTMANAGER_YML}", f"--web.listen-address={host.address}:{mo.alertmanager_port}",
               "--storage.path=/var/lib/prometheus/alertmanager", *_peers_args(cfg, host)]
    needs = alertmanager_needs(cfg)
    specs = [
        FileSpec(path=PROMETHEUS_YML, render=lambda _s: render_prometheus_yml(cfg, host)),
        FileSpec(path=RULES_YML, render=lambda _s: render_rules(cfg)),
        FileSpec(path="/etc/default/prometheus",
                 render=lambda _s: render_defaults("prometheus", _args(*prometheus_args))),
        FileSpec(path=ALERTMANAGER_YML, render=lambda s: render_alertmanager_yml(cfg, s), needs=needs,
                 mode=0o640 if needs else 0o644, group="prometheus"),
        FileSpec(path="/etc/default/prometheus-alertmanager",
                 render=lambda _s: render_defaults("prometheus-alertmanager", _args(*am_args))),
        FileSpec(path=BLACKBOX_YML, render=lambda _s: render_blackbox_yml(cfg)),
        FileSpec(path="/etc/default/prometheus-blackbox-exporter", render=lambda _s: render_defaults(
            "prometheus-blackbox-exporter",
            _args(f"--config.file={BLACKBOX_YML}", f"--web.listen-address=127.0.0.1:{BLACKBOX_PORT}"))),
        FileSpec(path=CLUSTER_CA, render=lambda s: s["cluster_ca_certificate"], needs=("cluster_ca_certificate",)),
        FileSpec(path=f"{DASHBOARD_DIR}/harbor-ha-cluster.json", render=lambda _s: render_cluster_dashboard(cfg)),
        FileSpec(path=f"{DASHBOARD_DIR}/harbor-ha-harbor.json", render=lambda _s: render_harbor_dashboard()),
        role_env("monitoring", {"STORAGE_PATH": mo.storage_path, "PROMETHEUS_YML": PROMETHEUS_YML,
                                "RULES_YML": RULES_YML, "ALERTMANAGER_YML": ALERTMANAGER_YML,
                                "BLACKBOX_YML": BLACKBOX_YML, "CLUSTER_CA": CLUSTER_CA, "VIP_CA": VIP_CA}),
    ]
    if mo.vip_ca_certificate:
        vip_ca = mo.vip_ca_certificate
        specs.append(FileSpec(path=VIP_CA, render=lambda _s: vip_ca))
    elif cfg.tls.mode == "self-signed":
        # The self-signed VIP certificate is its own CA; a user's or an ACME CA's chains to the system's CAs.
        specs.append(FileSpec(path=VIP_CA, render=lambda s: s["tls_certificate"], needs=("tls_certificate",)))
    return specs


def render_textfile_units(interval_s: int = 5) -> tuple[str, str]:
    """(service, timer) running the textfile metrics every `interval_s` seconds."""
    service = ("[Unit]\nDescription=harbor-ha metrics for the node exporter's textfile collector\n\n"
               "[Service]\nType=oneshot\n"
               f"ExecStart=/bin/bash {TEXTFILE_BIN}\n")
    # AccuracySec=1s: systemd's default of 1 min would let a VIP move go unseen for that long.
    timer = ("[Unit]\nDescription=harbor-ha metrics every few seconds\n\n"
             f"[Timer]\nOnBootSec={interval_s}s\nOnUnitActiveSec={interval_s}s\nAccuracySec=1s\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return service, timer


def render_sentinel_exporter_unit() -> str:
    """A second redis_exporter, for the sentinel on loopback (Debian's unit serves the Redis server)."""
    return ("[Unit]\nDescription=Prometheus exporter for Redis Sentinel (harbor-ha)\nAfter=redis-sentinel.service\n\n"
            "[Service]\nUser=prometheus\nEnvironmentFile=/etc/default/harbor-ha-sentinel-exporter\n"
            "ExecStart=/usr/bin/prometheus-redis-exporter $ARGS\nRestart=on-failure\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def exporter_files(cfg: ClusterConfig, host: Host) -> list[FileSpec]:
    """What every host receives for monitoring: its exporters' settings and the textfile metrics."""
    exporters = host_exporters(cfg, host)
    jobs = {e.job for e in exporters}
    node_args = _args(f"--web.listen-address={host.address}:{NODE_EXPORTER_PORT}",
                      f"--collector.textfile.directory={TEXTFILE_DIR}", "--collector.systemd",
                      f"--collector.systemd.unit-include={SYSTEMD_UNITS}")
    service, timer = render_textfile_units()
    env = {"TEXTFILE_DIR": TEXTFILE_DIR, "VIP": cfg.vip if host in cfg.lb_hosts else "",
           "BACKUP_INFO": "", "PG_ROLE": EXPORTER_DB_ROLE if "postgres" in jobs else ""}
    # Backups in either postgres mode (single or patroni) are read where pgBackRest keeps its repository's view.
    if cfg.backup and (host == cfg.backup_host or (cfg.backup.repository == "s3" and host in cfg.postgres_hosts)):
        env["BACKUP_INFO"] = (f"pgbackrest --config={db_paths(cfg).pgbackrest_conf} --stanza={STANZA} "
                              "--output=json info")
    specs = [
        FileSpec(path="/etc/default/prometheus-node-exporter",
                 render=lambda _s: render_defaults("prometheus-node-exporter", node_args)),
        FileSpec(path=TEXTFILE_BIN, render=lambda _s: TEXTFILE_SCRIPT.read_text(encoding="utf-8"), mode=0o755),
        FileSpec(path=TEXTFILE_UNIT, render=lambda _s: service),
        FileSpec(path=TEXTFILE_TIMER, render=lambda _s: timer),
        role_env("textfile-metrics", env),
    ]
    if "postgres" in jobs:
        socket_dir = "/var/run/postgresql"
        dsn = f"user={EXPORTER_DB_ROLE} host={socket_dir} port={cfg.postgres.port} dbname=postgres sslmode=disable"
        specs.append(FileSpec(path="/etc/default/prometheus-postgres-exporter", render=lambda _s: render_defaults(
            "prometheus-postgres-exporter", f"--web.listen-address={host.address}:{POSTGRES_EXPORTER_PORT}",
            {"DATA_SOURCE_NAME": f"'{dsn}'"})))
    if "redis" in jobs:
        # The password as redis_exporter's REDIS_PASSWORD variable, in a file only root and the exporter read.
        specs.append(FileSpec(
            path="/etc/default/prometheus-redis-exporter", needs=("redis_password",), mode=0o640, group="prometheus",
            render=lambda s: render_defaults(
                "prometheus-redis-exporter",
                f"-web.listen-address={host.address}:{REDIS_EXPORTER_PORT} "
                f"-redis.addr=redis://127.0.0.1:{cfg.redis.port}",
                {"REDIS_PASSWORD": s["redis_password"]})))
    if "redis-sentinel" in jobs:
        specs += [
            FileSpec(path=SENTINEL_EXPORTER_UNIT, render=lambda _s: render_sentinel_exporter_unit()),
            FileSpec(path="/etc/default/harbor-ha-sentinel-exporter", render=lambda _s: render_defaults(
                "harbor-ha-sentinel-exporter",
                f"-web.listen-address={host.address}:{SENTINEL_EXPORTER_PORT} "
                f"-redis.addr=redis://127.0.0.1:{cfg.redis.sentinel_port}"))]
    if "nginx" in jobs:
        specs.append(FileSpec(path="/etc/default/prometheus-nginx-exporter", render=lambda _s: render_defaults(
            "prometheus-nginx-exporter",
            f"-web.listen-address={host.address}:{NGINX_EXPORTER_PORT} "
            f"-nginx.scrape-uri=http://127.0.0.1:{cfg.lb.health_port}/stub_status")))
    packages = sorted({e.package for e in exporters if e.package})
    units = [e.unit for e in exporters if e.unit] + ["harbor-ha-textfile-metrics.timer"]
    specs.append(role_env("exporters", {"PACKAGES": " ".join(packages), "UNITS": " ".join(units),
                                        "TEXTFILE_DIR": TEXTFILE_DIR, "PG_ROLE": env["PG_ROLE"],
                                        "PG_PORT": str(cfg.postgres.port)}))
    return specs


class MonitoringArgs(RoleArgs):
    """Inputs of Monitoring (the common role inputs; `after` should be the whole cluster: exporters reach the
    services they watch)."""


class Monitoring(pulumi.ComponentResource):
    """Exporters on every host; Prometheus, Alertmanager and the blackbox exporter on the monitoring hosts."""

    exporters: list[HostRole]  #: one exporters deployment per host
    servers: list[HostRole]  #: one Prometheus/Alertmanager deployment per monitoring host
    prometheus_urls: list[str]  #: where each Prometheus answers
    alertmanager_urls: list[str]  #: where each Alertmanager answers

    def __init__(self, name: str, args: MonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:monitoring:Monitoring", name, None, opts)
        cfg = args.cfg
        mo = monitoring_settings(cfg)
        self.exporters = [deploy_role(self, f"{name}-exporters", h, EXPORTERS_SCRIPT, exporter_files(cfg, h), args)
                          for h in cfg.hosts]
        # After the exporters: Prometheus's first scrapes then find them.
        self.servers = [deploy_role(self, f"{name}-server", h, MONITORING_SCRIPT, monitoring_files(cfg, h), args,
                                    after=[*args.after, *self.exporters]) for h in cfg.monitoring_hosts]
        self.prometheus_urls = [f"http://{h.address}:{mo.prometheus_port}" for h in cfg.monitoring_hosts]
        self.alertmanager_urls = [f"http://{h.address}:{mo.alertmanager_port}" for h in cfg.monitoring_hosts]
        self.register_outputs({"prometheus_urls": self.prometheus_urls, "alertmanager_urls": self.alertmanager_urls})
