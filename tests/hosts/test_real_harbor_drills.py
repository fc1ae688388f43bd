"""Real Harbor under faults on real Debian 12 hosts (labs/hosts/drills.py): the dev shape of
tests/hosts/test_real_harbor.py (Harbor v2.15.2 built from source, cached by digest; systemd-nspawn hosts from
labs/hosts/debhosts.sh) with Redis in sentinel mode, the drills' workload client (scripts/drills/ha_client.py) pushing
and pulling through the VIP over TLS from data1, and Harbor replicating the pushed repository through the VIP, while a
Harbor node loses power, nginx on the VIP holder is SIGKILLed, the VIP holder loses power, the Redis master is killed,
and the nodes are rebooted one after the other. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET, HHA_BASE, HHA_UPSTREAM."""

from __future__ import annotations


import pytest

from labs.hosts import drills
from tests.support.drill_checks import assert_no_image_lost, assert_no_job_lost

# A slow tier: CI's part runs it when .ci/tiers says so, --full always.
pytestmark = pytest.mark.realharbor_drills

DRILLS = ("node_power_cut", "nginx_crash", "vip_holder_power_cut", "redis_master_kill", "rolling_restart")


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    # Every drill but nfs_restart, which has a tier and a lab of its own (test_real_harbor_nfs_drill.py): these keep
    # the plain bind mount of the NFS stand-in they were measured on.
    return lab_report("harbor-drills", lambda path: drills.run_drills(path, only=[*DRILLS, "upgrade", "gc"]))


def test_the_lab_came_up_whole_with_real_harbor(report):
    assert report["lab"]["apply_ok"] and not report["lab"]["inactive"], report["lab"]


@pytest.mark.parametrize("name", DRILLS)
def test_no_image_reported_pushed_is_lost_or_corrupted_and_the_cluster_is_whole_again(report, name):
    assert_no_image_lost(report[name])


@pytest.mark.parametrize("name", DRILLS)
def test_the_replication_started_before_the_fault_lost_no_job(report, name):
    assert_no_job_lost(report[name])


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
