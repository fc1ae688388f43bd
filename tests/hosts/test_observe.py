"""Real Debian 12 hosts with the monitoring role (labs/hosts/host_lab.py observe, labs/hosts/observe.py): Debian's
Prometheus, Alertmanager and exporters on the dev shape, a healthy cluster that stays quiet, and drills that each fire
exactly their alert at a recording webhook receiver and resolve after the repair; and, first, on its own hosts, the
acme lab without its expiry alert (labs/hosts/acme_hosts.py: pebble, issuance, renewal on both LBs, a power cut of
the VIP holder during a renewal) for the command's `acme` figures. Harbor and NFS are stand-ins.
Slow (about 46 min with 10 quiet minutes, 14 of them the acme lab): marker `monitoring`. Environment: HHA_ROOT,
HHA_BRIDGE, HHA_NET."""

from __future__ import annotations


import pytest

from labs.hosts import observe

pytestmark = pytest.mark.monitoring


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("observe", lambda path: observe.observe(path, quiet_minutes=10, keep=False))


def test_monitoring_applies_and_every_target_is_scraped(report):
    assert report["apply_ok"] and report["targets_down"] == [], report


def test_every_alert_rule_passes_its_promtool_case(report):
    assert report["promtool_failed"] == [] and report["rules_tested"] >= 20


def test_a_healthy_cluster_fires_no_alert_for_ten_minutes(report):
    assert report["quiet_minutes"] == 10 and report["false_alerts"] == 0, report["false_alert_names"]


def test_cluster_dashboard_reads_only_metrics_the_lab_scrapes(report):
    assert report["dashboards"]["panels"] > 0 and report["dashboards"]["metrics_missing"] == 0, report["dashboards"]


@pytest.mark.parametrize("drill", ["node_power_cut", "lb_crash", "postgres_stop", "redis_master_kill",
                                   "exporter_stopped"])
def test_drill_fires_exactly_its_alert_and_resolves(report, drill):
    result = report["drills"][drill]
    assert result["fired_s"] is not None and result["resolved_s"] is not None, result
    assert result["other_alerts"] == [], result


def test_the_acme_figures_come_with_the_one_command(report):
    """`host_lab.py observe` carries the issue's `acme` figures: the acme lab (without its expiry alert, which is the
    acme_hosts tier's) run first on its own hosts."""
    acme = report["acme"]
    assert acme["issued"] is True and acme["renewed_on_both_lbs"] is True, acme
    assert acme["renewal_during_failover"] is True and acme["passed"], acme
    details = acme["renewal_during_failover_details"]
    assert details["tls_failures"] == 0 and details["renewed_by"] in details["served"], details
