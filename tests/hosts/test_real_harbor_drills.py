"""Real Harbor under faults and change on real Debian 12 hosts: the one command of labs/hosts/drills.py,
`host_lab.py drills --harbor real --json FILE`, as written (no `--only`). The dev shape of
tests/hosts/test_real_harbor.py with Redis in sentinel mode (Harbor built from source, cached by digest;
systemd-nspawn hosts from labs/hosts/debhosts.sh) comes up on Harbor v2.14.2, with the data volume reached through the
lab's FUSE front (labs/hosts/nfs_front.py: bindfs on the machine, the NFS server's stand-in); the program upgrades it to
v2.15.2 under load; then, while the drills' workload client (scripts/drills/ha_client.py) pushes and pulls through the
VIP over TLS from data1 and Harbor replicates the pushed repository through the VIP, a Harbor node loses power, nginx
on the VIP holder is SIGKILLed, the VIP holder loses power, the Redis master is killed, the NFS front is SIGSTOPped for
drills.NFS_DOWN_S and resumed, and the nodes are rebooted one after the other; then a GC schedule from the stack runs,
and last the roll back by restoring the dump taken before the migration. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET,
HHA_BASE, HHA_UPSTREAM."""

from __future__ import annotations


import pytest

from labs.hosts import drills
from tests.support.drill_checks import assert_no_image_lost, assert_no_job_lost

# A slow tier: CI's part runs it when .ci/tiers says so, --full always.
pytestmark = pytest.mark.realharbor_drills

DRILLS = ("node_power_cut", "nginx_crash", "vip_holder_power_cut", "redis_master_kill", "nfs_restart",
          "rolling_restart")


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    # Exactly what the one command runs (host_lab.py's `drills` without --only).
    return lab_report("harbor-drills", drills.run_drills)


def test_the_lab_came_up_whole_with_real_harbor_behind_the_nfs_front(report):
    assert report["lab"]["apply_ok"] and not report["lab"]["inactive"], report["lab"]
    assert "FUSE" in report["lab"]["standins"][0], report["lab"]


def test_the_one_command_ran_every_drill_and_passed(report):
    """What its exit status says (drills.passed): every drill of the shape, the upgrade, GC and the roll back ran, each
    `ok`."""
    assert set(report) == {"lab", *DRILLS, "upgrade", "gc", "upgrade_rollback"}, sorted(report)
    assert drills.passed(report), {k: r.get("ok") for k, r in report.items() if k != "lab"}


@pytest.mark.parametrize("name", DRILLS)
def test_no_image_reported_pushed_is_lost_or_corrupted_and_the_cluster_is_whole_again(report, name):
    assert_no_image_lost(report[name])


@pytest.mark.parametrize("name", DRILLS)
def test_the_replication_started_before_the_fault_lost_no_job(report, name):
    assert_no_job_lost(report[name])


def test_the_nodes_were_asked_for_their_health_while_the_nfs_server_was_stopped(report):
    outage = report["nfs_restart"].get("outage") or []
    assert outage and all(set(s) >= {"s", "node1", "node2", "vip"} for s in outage), report["nfs_restart"]
    assert outage[-1]["s"] >= drills.NFS_DOWN_S / 2, outage


def test_the_rolling_upgrade_by_the_program_backs_up_before_the_migration_and_loses_no_image(report):
    """The cluster came up on 2.14.2; `harbor.version` 2.15.2 applied under the workload (labs/hosts/upgrade_drill.py):
    every image pushed before and during the upgrade is read back after it."""
    result = report["upgrade"]
    assert (result["from"], result["to"]) == ("v2.14.2", "v2.15.2"), result
    assert result["backup_before"] and result["schema_after"] > result["schema_before"], result
    assert result.get("images_pushed") and (result["images_lost"], result["images_corrupted"]) == (0, 0), result


def test_a_gc_schedule_from_the_stack_runs_once_for_the_cluster_and_frees_the_deleted_images_blobs(report):
    """labs/hosts/gc_drill.py: one execution for one tick of the schedule, the deleted images' blobs gone from the
    shared volume, every image the workload pushed meanwhile read back."""
    result = report["gc"]
    assert result["runs"] == 1 and result["run_status"] == ["Success"], result
    assert result["freed_bytes"] > 0 and result["victim_blobs_left"] == 0, result
    assert result.get("images_pushed") and (result["images_lost"], result["images_corrupted"]) == (0, 0), result


def test_a_roll_back_by_restoring_the_dump_brings_back_the_old_version_and_every_image_pushed_before_it(report):
    """labs/hosts/upgrade_drill.py rollback, the last step: Harbor stopped on both nodes, the dump restored,
    `harbor.version` 2.14.2 applied again."""
    result = report["upgrade_rollback"]
    assert result["apply_ok"] and set(result["versions"].values()) == {"v2.14.2"}, result
    assert result["before_backup"] and result["before_backup_readable"] == result["before_backup"], result
