"""storage.mode s3 on real Debian 12 hosts: labs/hosts/host_lab.py's s3 shape boots systemd-nspawn machines
(labs/hosts/debhosts.sh), applies every role over SSH as the program registers it (Garage built here from crates.io
on three object-store hosts behind their TLS fronts, the layout, bucket and key from the first; PostgreSQL and Redis
on the data host; the Harbor nodes with the stand-in installer and their S3 proxies, HAProxy), runs Harbor's registry
binary (goharbor/distribution release-2.8, built here) on each node on the node's rendered S3 settings, pushes and
pulls across the nodes with digest checks (scripts/drills/ha_client.py on the data host), moves a registry's
filesystem storage (the NFS stand-in folder) into the bucket with scripts/storage_to_s3.py while pulls go on and
compares every tag (scripts/verify_migration.py), then during a push/pull loop cuts the power of one object-store
host, freezes another (SIGSTOP of all its processes), and replaces a third, dead, with a new host through the
program; then checks a second apply, a reboot and the deletes.
Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET."""

from __future__ import annotations


import pytest

from labs.hosts import host_lab

pytestmark = pytest.mark.garage


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("host-lab-s3", lambda path: host_lab.verify(path, [host_lab.S3], day2=False))


def test_s3_shape_applies_every_role_and_a_second_apply_changes_nothing(report):
    roles = report["roles"]
    assert {r.split(" (")[0] for r in roles} == {"firewall", "postgres", "redis", "harbor-node", "loadbalancer",
                                                  "keepalived", *host_lab.S3_ROLES}, roles
    assert [name for name, r in roles.items() if not r["applied"]] == []
    assert {name: r["second_apply_changed"] for name, r in roles.items() if r["second_apply_changed"]} == {}


def test_images_pushed_through_one_node_are_pulled_through_the_other_with_equal_digests(report):
    result = report["storage"]
    assert (result["backend"], result["nodes"], result["replication"]) == ("garage", 3, 3)
    assert result["push_pull"]["ok"] and result["push_pull"]["digest_equal"], result["push_pull"]


@pytest.mark.parametrize("fault", ["node_power_cut", "node_frozen"])
def test_an_object_store_host_cut_off_or_frozen_during_pushes_and_pulls_loses_no_image(report, fault):
    result = report["storage"][fault]
    print(f"{fault} of {result['host']}: {result['failed_ops']} of {result['ops']} operations failed, longest gap "
          f"{result['max_gap_ms']} ms, healthy again {result['healthy_again_s']} s after it came back")
    assert result["images"] > 0 and result["images_lost"] == 0 and result["images_corrupted"] == 0, result
    assert result["healthy_again_s"] is not None, result


def test_a_dead_object_store_host_is_replaced_through_the_program_and_no_image_is_lost(report):
    replaced = report["storage"]["node_replacement"]
    print(f"replacement of {replaced['dead']} by {replaced['new']}: {replaced['failed_ops']} of {replaced['ops']} "
          f"operations failed, longest gap {replaced['max_gap_ms']} ms, apply {replaced['apply_s']} s")
    assert replaced["apply_ok"] and replaced["layout_zones"] == sorted(["s3a", "s3b", replaced["new"]]), replaced
    assert replaced["health"] == "healthy" and replaced["images"] > 0 and replaced["images_lost"] == 0, replaced
    assert report["storage"]["node_replaced"] is True


def test_a_registry_on_nfs_storage_moves_to_the_bucket_with_every_tag_equal_and_no_failed_pull(report):
    moved = report["storage"]["nfs_to_s3"]
    copy = moved["copy"]
    print(f"move from NFS: {moved['verified_equal']} of {moved['tags']} tags equal, {moved['failed_pulls']} of "
          f"{moved['pulls_during_copy']} pulls during the copy failed; copy: {copy['copied']} of {copy['files']} "
          f"files, {copy['bytes_copied']} bytes in {copy['seconds']} s")
    assert moved["tags"] == moved["images"] > 0 and moved["verified_equal"] == moved["tags"], moved
    assert moved["failed_pulls"] == 0 and moved["pulls_during_copy"] > 0 and moved["push_refused_read_only"], moved
    assert copy["ok"] and copy["copied"] == copy["files"] > 0, moved
    assert moved["second_copy"]["ok"] and moved["second_copy"]["copied"] == 0, moved
    assert moved["ok"] is True


def test_every_role_is_active_again_after_a_reboot_and_its_delete_keeps_its_data(report):
    assert [n for n, r in report["roles"].items() if not (r["active_after_reboot"] and r["delete_stops_keeps_data"])] \
        == []
