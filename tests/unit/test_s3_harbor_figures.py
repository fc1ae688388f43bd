"""The bucket figures of `host_lab.py verify --shape s3 --harbor real` (labs/hosts/s3_harbor.py) from a listing of
the bucket's keys, and what makes its storage checks pass."""

from __future__ import annotations

from labs.hosts import host_lab, s3_harbor

LAYER, CONFIG, MANIFEST = "sha256:" + "a1" * 32, "sha256:" + "b2" * 32, "sha256:" + "c3" * 32
REPO = "docker/registry/v2/repositories/library/hostlab-probe"


def keys(*digests: str) -> list[str]:
    return [f"{REPO}/_layers/sha256/{d[7:]}/link" for d in (LAYER, CONFIG)] + [s3_harbor.blob_key(d) for d in digests]


def test_a_blob_is_the_data_object_under_the_first_two_hex_digits_of_its_digest():
    assert s3_harbor.blob_key(LAYER) == f"docker/registry/v2/blobs/sha256/a1/{LAYER[7:]}/data"


def test_every_linked_layer_and_pushed_manifest_in_the_bucket_is_ok():
    figures = s3_harbor.bucket_figures(keys(LAYER, CONFIG, MANIFEST), {"vip": MANIFEST})
    assert figures == {"objects": 5, "blobs": 3, "manifests": 1, "probe_layers": 2, "missing": [], "ok": True}


def test_a_layer_or_manifest_missing_from_the_bucket_is_named():
    figures = s3_harbor.bucket_figures(keys(CONFIG), {"vip": MANIFEST})
    assert figures["missing"] == sorted([LAYER, MANIFEST]) and figures["ok"] is False


def test_an_empty_bucket_or_no_pushed_image_is_not_ok():
    assert s3_harbor.bucket_figures([], {"vip": MANIFEST})["ok"] is False
    assert s3_harbor.bucket_figures(keys(LAYER, CONFIG), {})["ok"] is False


def passing() -> dict:
    fault = {"images_pushed": 20, "images_lost": 0, "images_corrupted": 0, "healthy_ms": 70000, "failed_ops": 3}
    return {"push_pull": {"ok": True, "digest_equal": True}, "registry_config": {"ok": True}, "bucket": {"ok": True},
            "on_data_volume": {"node1": 0, "node2": 0}, "node_power_cut": dict(fault), "node_frozen": dict(fault),
            "node_replaced": True}


def test_failed_operations_during_a_fault_are_figures_but_an_image_lost_to_the_freeze_fails_the_checks():
    result = passing()
    assert s3_harbor.storage_ok(result) is True
    result["node_frozen"]["images_lost"] = 1
    assert s3_harbor.storage_ok(result) is False


def test_garage_never_healthy_after_the_thaw_or_no_image_pushed_during_it_fails_the_checks():
    for key, value in (("healthy_ms", None), ("images_pushed", 0)):
        result = passing()
        result["node_frozen"][key] = value
        assert s3_harbor.storage_ok(result) is False, key


def test_a_dead_object_store_host_not_replaced_fails_the_checks():
    result = passing()
    result["node_replaced"] = False
    assert s3_harbor.storage_ok(result) is False


def test_both_tiers_cut_the_first_object_store_host_then_freeze_another_watched_from_a_third():
    assert host_lab.store_fault_plan(["s3a", "s3b", "s3c"]) == [("cut", "s3a", "s3b"), ("freeze", "s3b", "s3c")]
    assert sorted(host_lab.STORE_FAULTS.values()) == ["node_frozen", "node_power_cut"]


def test_an_s3_of_ones_own_passes_without_the_garage_roles_faults_but_not_when_the_program_touched_its_host():
    result = {key: value for key, value in passing().items()
              if key not in ("node_power_cut", "node_frozen", "node_replaced")}
    result.update(backend="own", s3_host_untouched=True)
    assert s3_harbor.storage_ok(result) is True
    result["s3_host_untouched"] = False
    assert s3_harbor.storage_ok(result) is False
