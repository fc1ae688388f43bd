"""The bucket figures of `host_lab.py verify --shape s3 --harbor real` (labs/hosts/s3_harbor.py) from a listing of
the bucket's keys."""

from __future__ import annotations

from labs.hosts import s3_harbor

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
