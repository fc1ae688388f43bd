"""storage.mode s3 on real Debian 12 hosts: labs/hosts/host_lab.py's s3 shape boots systemd-nspawn machines
(labs/hosts/debhosts.sh), applies every role over SSH as the program registers it (Garage built here from crates.io
on three object-store hosts behind their TLS fronts, the layout, bucket and key from the first; PostgreSQL and Redis
on the data host; the Harbor nodes with the stand-in installer), runs Debian's docker-registry (distribution 2.8, what
Harbor's registry is built from) on each node on the node's rendered S3 settings, pushes and pulls across the nodes
with digest checks, cuts the power of the object-store host the registries dial first during a push/pull loop, then
checks a second apply, a reboot and the deletes. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET."""

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


def test_power_cut_of_an_object_store_host_loses_no_image(report):
    cut = report["storage"]["node_power_cut"]
    print(f"power cut of {cut['host']}: {cut['failed_ops']} of {cut['ops']} operations failed, longest gap "
          f"{cut['max_gap_ms']} ms, healthy again {cut['healthy_again_s']} s after the boot")
    assert cut["images"] > 0 and cut["images_lost"] == 0, cut
    assert cut["healthy_again_s"] is not None, cut


def test_every_role_is_active_again_after_a_reboot_and_its_delete_keeps_its_data(report):
    assert [n for n, r in report["roles"].items() if not (r["active_after_reboot"] and r["delete_stops_keeps_data"])] \
        == []
