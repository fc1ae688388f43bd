"""Grafana dashboards for a Grafana the user already has (Grafana is not in Debian): pure functions of the stack.

Two dashboards, written by us (not Harbor's contrib/grafana-dashboard): `harbor-ha-cluster` (VIP, load balancers,
hosts, database, Redis, storage, backups, probes, alerts), with a panel only for what the stack runs, and
`harbor-ha-harbor` (Harbor's own metrics: components, requests, the registry, jobs, projects). Both use a
`datasource` variable, so they import into any Grafana with a Prometheus data source. `metrics_of` lists the metric
names a dashboard's queries read: the host lab checks them against what its Prometheus returns, the unit tests the
Harbor ones against the names in Harbor 2.15.2's source.
"""

from __future__ import annotations

import json
import re
from typing import Any

from components.config import ClusterConfig

# (title, [(PromQL, legend)], unit)
Panel = tuple[str, list[tuple[str, str]], str]


def cluster_panels(cfg: ClusterConfig) -> list[Panel]:
    panels: list[Panel] = [
        ("VIP holders (1 = healthy)", [("sum(harbor_ha_vip_held)", "hosts holding the VIP")], "none"),
        ("VIP held by", [("harbor_ha_vip_held", "{{host}}")], "none"),
        ("Harbor health through the VIP", [("probe_success{job=\"blackbox-vip\"}", "VIP"),
                                           ("probe_success{job=\"blackbox-node\"}", "{{host}}")], "none"),
        ("Health probe latency", [("probe_duration_seconds{job=~\"blackbox-vip|blackbox-node\"}",
                                   "{{job}} {{host}}")], "s"),
        ("Certificate expiry", [("probe_ssl_earliest_cert_expiry - time()", "{{instance}}")], "s"),
        ("nginx up", [("nginx_up", "{{host}}")], "none"),
        ("nginx connections", [("nginx_connections_active", "{{host}} active")], "none"),
        ("nginx requests/s", [("rate(nginx_http_requests_total[5m])", "{{host}}")], "reqps"),
        ("Hosts up", [("up{job=\"node\"}", "{{host}}")], "none"),
        ("CPU busy", [("1 - avg by (host) (rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))", "{{host}}")],
         "percentunit"),
        ("Memory available", [("node_memory_MemAvailable_bytes", "{{host}}")], "bytes"),
        ("Filesystem free", [("node_filesystem_avail_bytes{fstype!~\"tmpfs|ramfs|overlay|squashfs|nsfs\"} / "
                              "node_filesystem_size_bytes{fstype!~\"tmpfs|ramfs|overlay|squashfs|nsfs\"}",
                              "{{host}} {{mountpoint}}")], "percentunit"),
        ("PostgreSQL up", [("pg_up", "{{host}}")], "none"),
        ("PostgreSQL connections", [("sum by (host) (pg_stat_database_numbackends)", "{{host}}")], "none"),
        ("Redis up", [("redis_up{job=\"redis\"}", "{{host}}")], "none"),
        ("Redis clients", [("redis_connected_clients", "{{host}}")], "none"),
        ("Redis memory", [("redis_memory_used_bytes", "{{host}}")], "bytes"),
        ("Scrape targets down", [("count(up == 0) or vector(0)", "down")], "none"),
        ("Alerts firing", [("sum by (alertname) (ALERTS{alertstate=\"firing\"})", "{{alertname}}")], "none"),
    ]
    if cfg.patroni:
        panels += [("PostgreSQL leader", [("patroni_primary", "{{host}}")], "none"),
                   ("Synchronous standby", [("patroni_sync_standby", "{{host}}")], "none"),
                   ("Replication lag", [("scalar(max(patroni_xlog_location and on(instance) (patroni_primary == 1)))"
                                         " - (patroni_xlog_replayed_location and on(instance) (patroni_replica == 1))",
                                         "{{host}}")], "bytes")]
    if cfg.redis.mode == "sentinel":
        panels.append(("Sentinels answering", [("redis_up{job=\"redis-sentinel\"}", "{{host}}")], "none"))
    if cfg.nfs_host:
        panels.append(("NFS export reachable", [("probe_success{job=\"blackbox-nfs\"}", "{{host}}")], "none"))
    if cfg.backup:
        panels.append(("Newest backup age", [("time() - max(harbor_ha_backup_last_success_timestamp_seconds)",
                                              "age")], "s"))
    return panels


def harbor_panels() -> list[Panel]:
    return [
        ("Harbor components up", [("harbor_up", "{{host}} {{component}}")], "none"),
        ("Core requests/s by code", [("sum by (code) (rate(harbor_core_http_request_total[5m]))", "{{code}}")],
         "reqps"),
        ("Core request time (p99)", [("max by (operation) (harbor_core_http_request_duration_seconds"
                                      "{quantile=\"0.99\"})", "{{operation}}")], "s"),
        ("Core requests in flight", [("sum(harbor_core_http_inflight_requests)", "in flight")], "none"),
        ("Registry requests/s by handler", [("sum by (handler) (rate(registry_http_requests_total[5m]))",
                                             "{{handler}}")], "reqps"),
        ("Pull and push success", [("harbor_ha:pull_success:ratio_rate5m", "pull"),
                                   ("harbor_ha:push_success:ratio_rate5m", "push")], "percentunit"),
        ("Pull and push latency (p99)", [("harbor_ha:pull_latency_seconds:p99_5m", "pull"),
                                         ("harbor_ha:push_latency_seconds:p99_5m", "push")], "s"),
        ("Jobs finished/min by type and status",
         [("sum by (type, status) (increase(harbor_jobservice_task_total[1m]))", "{{type}} {{status}}")], "none"),
        ("Job queue size", [("harbor_task_queue_size", "{{type}}")], "none"),
        ("Job queue latency", [("harbor_task_queue_latency", "{{type}}")], "s"),
        ("Projects", [("harbor_statistics_total_project_amount", "projects")], "none"),
        ("Storage used", [("harbor_statistics_total_storage_consumption", "bytes")], "bytes"),
    ]


def _dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    body = []
    for i, (panel_title, queries, unit) in enumerate(panels):
        body.append({
            "id": i + 1, "type": "timeseries", "title": panel_title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for j, (expr, legend) in enumerate(queries)],
        })
    return {
        "uid": uid, "title": title, "tags": ["harbor-ha"], "schemaVersion": 38, "version": 1, "editable": True,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": body,
    }


def render_cluster_dashboard(cfg: ClusterConfig) -> str:
    return json.dumps(_dashboard("harbor-ha-cluster", f"harbor-ha cluster ({cfg.harbor.hostname})",
                                 cluster_panels(cfg)), indent=2) + "\n"


def render_harbor_dashboard() -> str:
    return json.dumps(_dashboard("harbor-ha-harbor", "harbor-ha: Harbor", harbor_panels()), indent=2) + "\n"


# PromQL words that look like metric names: functions are followed by `(`, these are not always.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "sum", "max", "min", "avg", "count", "inf", "nan"}


def metrics_of(dashboard_json: str) -> set[str]:
    """Every metric name the dashboard's queries read (recording rules included)."""
    names: set[str] = set()
    for panel in json.loads(dashboard_json)["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}", "", target["expr"])  # label matchers
            expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
            expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
            for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
                rest = expr[match.end():].lstrip()
                if match.group() not in _KEYWORDS and not rest.startswith("("):
                    names.add(match.group())
    return names
