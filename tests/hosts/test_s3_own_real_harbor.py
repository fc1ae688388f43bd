"""Real Harbor on an S3 of one's own (storage.mode s3 with storage.s3.endpoint, no roles.objectStore):
labs/harbor/build_installer.py's Harbor v2.15.2 (built from source, cached by digest) installed by the harbor-node role
on the host lab's s3-own shape (labs/hosts/host_lab.py, systemd-nspawn machines of labs/hosts/debhosts.sh): PostgreSQL
and Redis on the data host, Harbor and the LBs on two nodes, and outside the stack a host where the lab sets up by
hand the S3 a site already has: one Garage node (built from crates.io) behind stunnel with a CA of its own, a bucket
and Harbor's key (labs/hosts/s3_harbor.py start_own_s3). The stack names the endpoint, bucket, region and CA, and the
key as secret config. Then docker pushes through the VIP and pulls through the other node; Harbor's prepare made the
registry container's config.yml from the rendered storage_service.s3; the images' blobs are listed in that bucket
with the S3 API, none on the nodes' data volumes; no role ran on the S3's host. Then a second apply, a reboot of
every host and the deletes. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET, HHA_UPSTREAM."""

from __future__ import annotations

import pytest

from labs.hosts import host_lab, s3_harbor
from tests.support.s3_checks import (assert_every_role_applied_unchanged_rebooted_and_deleted,
                                     assert_harbor_pushes_and_pulls_across_the_nodes, real_harbor_report)

# Real Harbor's install and reboot on three hosts and the S3's: a tier of its own.
pytestmark = pytest.mark.realharbor_s3_own


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return real_harbor_report(lab_report, "real-harbor-s3-own", host_lab.S3_OWN)


def test_real_harbor_on_an_s3_of_ones_own_pushes_through_the_vip_and_pulls_through_the_other_node(report):
    assert_harbor_pushes_and_pulls_across_the_nodes(report)
    assert report["storage"]["backend"] == "own", report["storage"]


def test_harbors_registry_container_reads_the_own_endpoint_with_its_ca_and_the_blobs_are_in_that_bucket(report):
    storage = report["storage"]
    config, bucket = storage["registry_config"], storage["bucket"]
    print(f"endpoint {storage['endpoint']}: bucket {bucket['objects']} objects, {bucket['blobs']} blobs")
    assert storage["endpoint"] == f"https://{host_lab.address(host_lab.MACHINES[s3_harbor.OWN_S3])}:" \
                                  f"{s3_harbor.OWN_S3_PORT}", storage
    for node, seen in config["nodes"].items():
        assert seen["drivers"] == ["s3"] and seen["regionendpoint"] == storage["endpoint"], (node, seen)
        assert seen["bucket"] == s3_harbor.OWN_S3_BUCKET and seen["redirect_disabled"] is True, (node, seen)
    assert config["ok"] and config["http_secret_equal"], config
    assert bucket["ok"] and bucket["probe_layers"] > 0 and bucket["missing"] == [], bucket
    assert storage["on_data_volume"] == {"node1": 0, "node2": 0}


def test_no_role_of_the_program_runs_on_the_s3_of_ones_own(report):
    assert report["storage"]["s3_host_untouched"] is True
    assert not any(r.startswith("object-store") for r in report["roles"]), report["roles"]


def test_every_role_is_applied_unchanged_by_a_second_apply_active_after_reboot_and_deleted(report):
    assert_every_role_applied_unchanged_rebooted_and_deleted(report["roles"])
