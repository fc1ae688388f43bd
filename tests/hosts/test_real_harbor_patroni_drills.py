"""Real Harbor on the patroni shape of the host lab (labs/hosts/drills.py `--shape patroni`: Harbor v2.15.2 built from
source on node1 and node2, nginx and keepalived on them, three PostgreSQL members db1-db3 under Patroni with etcd and
vip-manager, NFS stand-in and Redis on data1; systemd-nspawn hosts from labs/hosts/debhosts.sh) while Patroni's leader
host loses power: the drills' workload client (scripts/drills/ha_client.py) pushes and pulls through the VIP over TLS
from data1 and Harbor replicates the pushed repository through the VIP meanwhile. Environment: HHA_ROOT, HHA_BRIDGE,
HHA_NET, HHA_BASE, HHA_UPSTREAM."""

from __future__ import annotations

import pytest

from labs.hosts import drills
from tests.support.drill_checks import assert_no_image_lost, assert_no_job_lost

# A slow tier of its own (a second cluster, six hosts): CI's part runs it when .ci/tiers says so, --full always.
pytestmark = pytest.mark.realharbor_patroni_drills

DRILL = "postgres_leader_power_cut"


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("harbor-patroni-drills",
                      lambda path: drills.run_drills(path, only=[DRILL], shape="patroni"))


def test_the_patroni_shape_came_up_whole_with_real_harbor(report):
    assert report["lab"]["apply_ok"] and not report["lab"]["inactive"], report["lab"]


def test_no_image_reported_pushed_is_lost_or_corrupted_when_the_database_leader_loses_power(report):
    assert_no_image_lost(report[DRILL])


def test_the_replication_started_before_the_database_leader_power_cut_lost_no_job(report):
    assert_no_job_lost(report[DRILL])
