"""scripts/storage_to_s3.py, the copy step of the move from NFS to S3, against moto's in-process S3 (a test double
of the S3 API; the real proof against Garage is the host lab's s3 shape, tests/hosts/test_s3_hosts.py): the keys the
registry's S3 driver reads, write-once copies, re-runs that copy nothing, and every difference reported."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from scripts import storage_to_s3

BUCKET = "harbor"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def registry_tree(root: Path) -> dict[str, bytes]:
    """A registry's filesystem storage as Harbor's registry leaves it: a blob, a tag link, an unfinished upload."""
    layer = b"a layer of the image"
    digest = hashlib.sha256(layer).hexdigest()
    files = {f"blobs/sha256/{digest[:2]}/{digest}/data": layer,
             f"repositories/team/app/_layers/sha256/{digest}/link": f"sha256:{digest}".encode(),
             "repositories/team/app/_manifests/tags/v1/current/link": f"sha256:{digest}".encode(),
             "repositories/team/app/_uploads/0b5e/data": b"half a push"}
    for rel, data in files.items():
        path = root / "docker/registry/v2" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def run(source: Path, *extra: str, capsys) -> tuple[int, dict]:
    code = storage_to_s3.main(["--source", str(source), "--bucket", BUCKET, *extra])
    return code, json.loads(capsys.readouterr().out)


def test_every_file_but_unfinished_uploads_lands_under_the_keys_the_s3_driver_reads(s3, tmp_path, capsys):
    files = registry_tree(tmp_path)
    code, report = run(tmp_path, "--root-directory", "/harbor/", capsys=capsys)
    assert code == 0 and report["copied"] == report["verified_equal"] == 3 and report["blobs"] == 1, report
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {f"harbor/docker/registry/v2/{rel}" for rel in files if "/_uploads/" not in rel}


def test_a_second_run_copies_nothing_and_still_compares_every_object(s3, tmp_path, capsys):
    registry_tree(tmp_path)
    run(tmp_path, capsys=capsys)
    code, report = run(tmp_path, capsys=capsys)
    assert code == 0 and report["copied"] == 0 and report["present"] == report["verified_equal"] == 3, report


def test_an_object_with_other_bytes_is_reported_and_never_overwritten(s3, tmp_path, capsys):
    registry_tree(tmp_path)
    key = "docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"sha256:another")
    code, report = run(tmp_path, capsys=capsys)
    assert code == 1 and report["conflict"] == 1 and report["problems"][0]["key"] == key, report
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"sha256:another"


def test_a_blob_whose_bytes_do_not_match_its_digest_is_not_copied(s3, tmp_path, capsys):
    files = registry_tree(tmp_path)
    blob = next(rel for rel in files if rel.startswith("blobs/"))
    (tmp_path / "docker/registry/v2" / blob).write_bytes(b"bit rot")
    code, report = run(tmp_path, capsys=capsys)
    assert code == 1 and report["corrupt_source"] == 1 and report["copied"] == 2, report
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="docker/registry/v2/blobs/")


def test_a_folder_that_is_not_a_registry_storage_is_refused_by_name(s3, tmp_path, capsys):
    assert storage_to_s3.main(["--source", str(tmp_path), "--bucket", BUCKET]) == 2
    assert "docker/registry/v2" in capsys.readouterr().err


def test_missing_credentials_exit_2_before_anything_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    assert storage_to_s3.main(["--source", str(tmp_path), "--bucket", BUCKET]) == 2


def test_resolve_reaches_the_endpoints_name_at_the_given_address_and_leaves_other_names_alone(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)  # restored after the test
    storage_to_s3.resolve("s3.harbor-ha.invalid", "127.0.0.1")
    assert {a[4][0] for a in socket.getaddrinfo("s3.harbor-ha.invalid", 3944, socket.AF_INET)} == {"127.0.0.1"}
    assert {a[4][0] for a in socket.getaddrinfo("localhost", 1, socket.AF_INET)} == {"127.0.0.1"}


def test_a_resolve_without_an_address_exits_2(s3, tmp_path, capsys):
    registry_tree(tmp_path)
    assert storage_to_s3.main(["--source", str(tmp_path), "--bucket", BUCKET, "--resolve", "s3.example"]) == 2
    assert "is not NAME:ADDRESS" in capsys.readouterr().err
