"""Real Debian 12 hosts with the monitoring role in the patroni and sentinel modes (labs/hosts/host_lab.py observe
--shape patroni, labs/hosts/observe.py): the dev shape's three hosts each a Patroni member (strict synchronous, etcd
beside it), a Redis server and a sentinel; Debian's Prometheus, Alertmanager and exporters, Patroni's own metrics.
After a short quiet watch, drills that each fire exactly their alerts at a recording webhook receiver and resolve:
the Patroni leader's host powered off (HostDown only: the failover is shorter than PostgresLeaderMissing's `for:`),
both replicas' Patroni stopped (PostgresSyncStandbyLost, and ExporterDown for their REST APIs), two sentinels stopped
(SentinelQuorumLost), the Redis master killed (RedisInstanceDown only: the sentinels promote a replica). Harbor and
NFS are stand-ins. Slow (38 min measured twice, load ~20-25): marker `monitoring_patroni`. Environment: HHA_ROOT,
HHA_BRIDGE, HHA_NET."""

from __future__ import annotations

import pytest

from labs.hosts import observe

pytestmark = pytest.mark.monitoring_patroni

DRILLS = ["patroni_leader_power_cut", "sync_standby_lost", "sentinel_quorum_lost", "redis_master_kill"]


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    # 3 minutes: longer than every `for:` of the patroni and sentinel alerts (2m at most) plus Alertmanager's wait;
    # the dev shape's tier watches 10.
    return lab_report("observe-patroni", lambda path: observe.observe(path, quiet_minutes=3, keep=False,
                                                                      shape="patroni"))


def test_monitoring_applies_on_the_patroni_sentinel_shape_and_every_target_is_scraped(report):
    assert report["apply_ok"] and report["targets_down"] == [], report


def test_a_healthy_patroni_sentinel_cluster_fires_no_alert(report):
    assert report["false_alerts"] == 0, report["false_alert_names"]


def test_cluster_dashboard_reads_only_metrics_the_patroni_lab_scrapes(report):
    assert report["dashboards"]["metrics_missing"] == 0, report["dashboards"]


@pytest.mark.parametrize("drill", DRILLS)
def test_patroni_sentinel_drill_fires_exactly_its_alerts_and_resolves(report, drill):
    result = report["drills"][drill]
    assert result["fired_s"] is not None and result["resolved_s"] is not None, result
    assert result["other_alerts"] == [], result
