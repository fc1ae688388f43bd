"""scripts/registry_inventory.py against a real source registry (Debian docker-registry on 127.0.0.1, started and
stopped by PID by the module fixture, with the Basic and token targets of the verification tests beside it)."""
from __future__ import annotations

import json
import subprocess
import sys


from tests.support.registries import BASE_LAYER, MULTI_ARCH, SCRIPTS, SOURCE_IMAGES
from labs.fakes.registries import config_for, layer



def distinct_blob_sizes(images) -> dict[str, int]:
    """{digest: size} of the layers and configs of (layers, architecture) images, each blob once."""
    return {blob.digest: len(blob.data) for layers, arch in images for blob in (*layers, config_for(layers, arch))}


def expected_rows() -> dict[str, dict[str, int]]:
    repository, _, content = MULTI_ARCH
    images = {repo: [(layers, "amd64") for layers in tags.values()] for repo, tags in SOURCE_IMAGES.items()}
    images[repository] = [([layer(f"hello-{arch}", content + arch.encode())], arch) for arch in ("amd64", "arm64")]
    return {repo: distinct_blob_sizes(imgs) for repo, imgs in images.items()}


def test_inventory_counts_tags_distinct_manifests_and_blob_bytes_through_the_index(registries):
    result = subprocess.run([sys.executable, str(SCRIPTS / "registry_inventory.py"), "--source", registries.source.url,
                             "--json", "-", "--page-size", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    rows = {r["repository"]: r for r in document["repositories"]}
    expected = expected_rows()
    assert sorted(rows) == sorted(expected)
    for repository, blobs in expected.items():
        assert rows[repository]["size_bytes"] == sum(blobs.values()), repository
        assert rows[repository]["error"] is None
    # "latest" and "3.19" are one manifest; the index counts as one manifest holding both platforms' blobs.
    assert (rows["library/alpine"]["tags"], rows["library/alpine"]["manifests"]) == (3, 2)
    assert (rows["team/app"]["tags"], rows["team/app"]["manifests"]) == (4, 4)
    assert (rows[MULTI_ARCH[0]]["tags"], rows[MULTI_ARCH[0]]["manifests"]) == (1, 1)
    # The total counts the base layer shared by two repositories once.
    all_blobs = {d: s for blobs in expected.values() for d, s in blobs.items()}
    assert BASE_LAYER.digest in all_blobs
    assert document["totals"]["size_bytes"] == sum(all_blobs.values()) < sum(r["size_bytes"] for r in rows.values())
    assert document["totals"]["tags"] == 8


def test_inventory_table_lists_every_repository_and_the_total(registries):
    result = subprocess.run([sys.executable, str(SCRIPTS / "registry_inventory.py"), "--source", registries.source.url],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAGS", "MANIFESTS", "BYTES", "SIZE"]
    assert [line.split()[0] for line in lines[2:5]] == sorted(expected_rows())
    assert lines[5].startswith("TOTAL (distinct blobs)")


def test_inventory_of_a_registry_that_refuses_anonymous_access_exits_2(registries):
    result = subprocess.run([sys.executable, str(SCRIPTS / "registry_inventory.py"), "--source", registries.basic.url],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "requires a user name and password" in result.stderr
