"""Real Harbor while the NFS server of its data volume is stopped and comes back (labs/hosts/drills.py `--only
nfs_restart`): the dev shape of tests/hosts/test_real_harbor_drills.py (Harbor v2.15.2 built from source, Redis in
sentinel mode; systemd-nspawn hosts from labs/hosts/debhosts.sh) with the data volume reached through the lab's FUSE
front (labs/hosts/nfs_front.py: bindfs on the machine, the stand-in for the NFS server), which is SIGSTOPped for
drills.NFS_DOWN_S and resumed while the drills' workload client (scripts/drills/ha_client.py) pushes and pulls through
the VIP over TLS from data1 and Harbor replicates the pushed repository. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET,
HHA_BASE, HHA_UPSTREAM."""

from __future__ import annotations

import pytest

from labs.hosts import drills
from tests.support.drill_checks import assert_no_image_lost, assert_no_job_lost

# A slow tier of its own (a cluster of its own): CI's part runs it when .ci/tiers says so, --full always.
pytestmark = pytest.mark.realharbor_nfs_drill

DRILL = "nfs_restart"


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("harbor-nfs-drill", lambda path: drills.run_drills(path, only=[DRILL]))


def test_the_lab_came_up_whole_with_real_harbor_behind_the_nfs_front(report):
    assert report["lab"]["apply_ok"] and not report["lab"]["inactive"], report["lab"]
    assert "FUSE" in report["lab"]["standins"][0], report["lab"]


def test_the_nodes_were_asked_for_their_health_while_the_nfs_server_was_stopped(report):
    outage = report[DRILL].get("outage") or []
    assert outage and all(set(s) >= {"s", "node1", "node2", "vip"} for s in outage), report[DRILL]
    assert outage[-1]["s"] >= drills.NFS_DOWN_S / 2, outage


def test_no_image_reported_pushed_is_lost_or_corrupted_when_the_nfs_server_restarts(report):
    assert_no_image_lost(report[DRILL])


def test_the_replication_started_before_the_nfs_server_stopped_lost_no_job(report):
    assert_no_job_lost(report[DRILL])
