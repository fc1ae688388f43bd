"""Real Harbor moved from NFS onto the Garage cluster (storage.mode s3): labs/harbor/build_installer.py's Harbor
v2.15.2 (built from source, cached by digest) installed by the harbor-node role on the host lab's s3 shape
(labs/hosts/host_lab.py, systemd-nspawn machines of labs/hosts/debhosts.sh): Garage (built from crates.io) on three
object-store hosts, the nodes' S3 proxies, PostgreSQL, Redis and the NFS stand-in on the data host. The stack is
first applied in the move's first stage (storage.mode nfs with roles.objectStore), holds images pushed through the
VIP, goes read-only while a pull loop runs, scripts/storage_to_s3.py copies the NFS folder into the bucket, the stack
is applied with storage.mode s3 and every tag Harbor listed before is listed and pulled with its digest. Then on S3:
docker pushes through the VIP and pulls through the other node; Harbor's prepare made the registry container's
config.yml from the rendered storage_service.s3; the drills' client (scripts/drills/ha_client.py) pushes and pulls
through the VIP while an object-store host loses its power, then while another is frozen (SIGSTOP of every
process), then while a third, dead, is replaced by a new host through the program; the images' blobs are listed in
the bucket with the S3 API, none on the nodes' data volumes (labs/hosts/s3_harbor.py). Then a second apply, a reboot
of every host and the deletes. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET, HHA_UPSTREAM."""

from __future__ import annotations

import pytest

from labs.hosts import host_lab
from tests.support.drill_checks import assert_no_image_lost
from tests.support.s3_checks import (assert_every_role_applied_unchanged_rebooted_and_deleted,
                                     assert_harbor_pushes_and_pulls_across_the_nodes, real_harbor_report)

# Real Harbor's install and reboot on seven hosts: longer than the garage tier, so a tier of its own.
pytestmark = pytest.mark.realharbor_garage


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return real_harbor_report(lab_report, "real-harbor-s3", host_lab.S3_HARBOR)


def test_real_harbor_on_garage_pushes_through_the_vip_and_pulls_through_the_other_node_with_one_digest(report):
    assert_harbor_pushes_and_pulls_across_the_nodes(report)
    harbor, storage = report["harbor"], report["storage"]
    assert harbor["cross_node_token"] and harbor["robot_pull"], harbor
    assert (storage["backend"], storage["nodes"], storage["replication"]) == ("garage", 3, 3)


def test_harbors_registry_container_reads_the_bucket_path_style_without_redirects_and_one_http_secret(report):
    config = report["storage"]["registry_config"]
    assert config["http_secret_equal"], config
    for node, seen in config["nodes"].items():
        assert seen["drivers"] == ["s3"] and seen["regionendpoint"] == config["endpoint"], (node, seen)
        assert seen["forcepathstyle"] is True and seen["redirect_disabled"] is True, (node, seen)
    assert config["ok"] is True


def test_the_pushed_images_blobs_are_objects_in_the_bucket_and_no_registry_file_is_on_a_data_volume(report):
    bucket = report["storage"]["bucket"]
    print(f"bucket: {bucket['objects']} objects, {bucket['blobs']} blobs; {bucket['manifests']} manifests and "
          f"{bucket['probe_layers']} layers checked")
    assert bucket["ok"] and bucket["manifests"] > 1 and bucket["probe_layers"] > 0 and bucket["missing"] == [], bucket
    assert report["storage"]["on_data_volume"] == {"node1": 0, "node2": 0}


@pytest.mark.parametrize("fault", ["node_power_cut", "node_frozen"])
def test_an_object_store_host_cut_off_or_frozen_under_pushes_and_pulls_through_real_harbor_loses_no_image(report,
                                                                                                          fault):
    result = report["storage"][fault]
    print(f"{fault} of {result['host']}: {result['failed_ops']} of {result['ops']} operations failed after docker's "
          f"retries ({result['retried_ok']} retried), longest push gap {result['max_gap_ms']} ms, recovered "
          f"{result['recovered_ms']} ms, Garage healthy {result['healthy_ms']} ms after the fault "
          f"({result['healthy_again_s']} s after the host's return)")
    assert_no_image_lost(result)


def test_a_dead_object_store_host_is_replaced_through_the_program_under_real_harbor_and_no_image_is_lost(report):
    replaced = report["storage"]["node_replacement"]
    print(f"replacement of {replaced['dead']} by {replaced['new']}: {replaced['failed_ops']} of {replaced['ops']} "
          f"operations failed after docker's retries, longest push gap {replaced['max_gap_ms']} ms, apply "
          f"{replaced['apply_s']} s, Garage healthy {replaced['healthy_ms']} ms after the cut")
    assert replaced["apply_ok"] and replaced["layout_zones"] == sorted(["s3a", "s3b", replaced["new"]]), replaced
    assert replaced["health"] == "healthy", replaced
    assert_no_image_lost(replaced)
    assert report["storage"]["node_replaced"] is True


def test_every_role_is_applied_unchanged_by_a_second_apply_active_after_reboot_and_deleted(report):
    assert_every_role_applied_unchanged_rebooted_and_deleted(report["roles"])


def test_the_move_from_nfs_copies_every_tag_into_the_bucket_and_the_switch_keeps_every_pull_working(report):
    moved = report["storage"]["nfs_to_s3"]
    print(f"move from NFS: {moved['verified_equal']} of {moved['tags']} tags equal, {moved['failed_pulls']} of "
          f"{moved['pulls_during_move']} pulls failed; copy {moved['copy']['copied']} files in "
          f"{moved['copy']['seconds']} s; switch {moved['switch'] and moved['switch']['seconds']} s")
    # scripts/verify_migration.py: every tag Harbor served before the copy (its record) equal after the switch; the
    # images pushed before the move are in that record with the pushes' digests and pull back equal.
    assert moved["tags"] >= moved["images"] > 0 and moved["verified_equal"] == moved["tags"], moved
    assert moved["recorded_as_pushed"] and moved["images_pulled_equal"] == moved["images"], moved
    assert moved["failed_pulls"] == 0 and moved["pulls_during_move"] > 0 and moved["push_refused_read_only"], moved
    assert moved["copy"]["ok"] and moved["second_copy"]["ok"] and moved["second_copy"]["copied"] == 0, moved
    assert moved["switch"]["ok"] and moved["switch"]["teardowns"] == [], moved
    assert moved["ok"] is True
