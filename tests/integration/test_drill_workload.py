"""The drills' workload client (scripts/drills/ha_client.py `workload`) against a real registry: Debian's
docker-registry serving TLS on 127.0.0.1 (a test CA), stopped and started again on the same port and storage for the
outage test, by its PID."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from labs import certs
from labs.fakes.registries import RegistryServer
from scripts.drills import ha_client

REPO = "drill/workload"


@pytest.fixture
def tls_registry(tmp_path):
    ca, cert, key = certs.ca_and_server("registry.lab.test", ["registry.lab.test"])
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server = RegistryServer(tmp_path)
    server.extra = {"http": {"addr": f"127.0.0.1:{server.port}", "secret": "workload-test",
                             "tls": {"certificate": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}}}
    server.start()
    ha_client.configure_tls(server.port, ca.decode(), insecure=False, server_name="registry.lab.test")
    try:
        yield server, ca
    finally:
        server.stop()
        ha_client._TLS.update(port=443, context=None, server_name=None)


def test_a_healthy_workload_pushes_pulls_and_verifies_every_image(tls_registry):
    out = ha_client.workload("127.0.0.1", REPO, count=4, duration=60, layer_size=4096, attempts=2, delay=0.1)
    assert (out["pushes"], out["pushes_failed"], out["pulls"], out["pulls_failed"]) == (4, 0, 4, 0), out["ops"]
    assert out["images_pushed"] == 4 and out["images_lost"] == 0 and out["images_corrupted"] == 0
    assert len(set(out["pushed"].values())) == 4, "every image has its own layer, so its own digest"
    assert out["max_push_gap_ms"] > 0


def test_an_image_deleted_after_its_push_is_counted_lost(tls_registry):
    out = ha_client.workload("127.0.0.1", REPO, count=3, duration=60, layer_size=1024, attempts=1, delay=0,
                             verify=False)
    assert out["images_lost"] is None and out["images_pushed"] == 3
    tag, digest = next(iter(out["pushed"].items()))
    # the registry's own API deletes the manifest (storage.delete.enabled), as an operator's mistake would
    status, _, body = ha_client.request("127.0.0.1", "DELETE", f"/v2/{REPO}/manifests/{digest}")
    assert status == 202, body
    checks = ha_client.verify_images("127.0.0.1", REPO, out["pushed"], attempts=2, delay=0.1)
    assert [c["ref"] for c in checks if c["state"] == "lost"] == [tag]
    assert sum(c["state"] == "ok" for c in checks) == 2


def test_an_image_whose_layer_is_gone_is_counted_lost_with_the_blobs_status_first(tls_registry):
    """A blob the registry answers with an error is unreadable, not corrupted: the pull is retried, then the image
    counts as lost, and the error names the blob's status within the 140 characters the drills' reports keep."""
    out = ha_client.workload("127.0.0.1", REPO, count=2, duration=60, layer_size=1024, attempts=1, delay=0,
                             verify=False)
    tag, digest = next(iter(out["pushed"].items()))
    status, _, body = ha_client.request("127.0.0.1", "GET", f"/v2/{REPO}/manifests/{digest}",
                                        headers={"Accept": ha_client.OCI_MANIFEST})
    layer = json.loads(body)["layers"][0]["digest"]
    assert ha_client.request("127.0.0.1", "DELETE", f"/v2/{REPO}/blobs/{layer}")[0] == 202
    checks = {c["ref"]: c for c in ha_client.verify_images("127.0.0.1", REPO, out["pushed"], attempts=2, delay=0.1)}
    assert [c["state"] for c in checks.values()].count("ok") == 1
    assert checks[tag]["state"] == "lost" and len(checks[tag]["errors"]) == 2, checks[tag]
    assert f"pulling blob {layer[:19]}: HTTP 404" in checks[tag]["errors"][0][:140]


def test_an_outage_is_retried_through_and_shows_as_the_longest_push_gap(tls_registry):
    server, _ = tls_registry
    outage_s = 2.0
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(ha_client.workload(
        "127.0.0.1", REPO, count=200, duration=6, layer_size=2048, attempts=5, delay=0.5)))
    worker.start()
    time.sleep(1.5)
    server.process.kill()  # a crash: no graceful stop
    server.process.wait(5)
    down_at = time.time()
    time.sleep(outage_s)
    server.start()  # same port, same storage
    worker.join(120)
    assert not worker.is_alive(), "the workload is bounded by its duration and its retries"
    assert result["images_lost"] == 0 and result["images_corrupted"] == 0
    assert result["max_push_gap_ms"] >= outage_s * 1000 * 0.9, "no push can complete while the registry is down"
    retried = [o for o in result["ops"] if o["attempts"] > 1]
    assert retried, "an operation in flight during the outage was retried"
    assert all(o["ok"] for o in retried) and result["pushes_failed"] == result["pulls_failed"] == 0
    assert any(o["start"] < down_at + outage_s and o["end"] > down_at + outage_s for o in retried)


def test_the_stop_file_ends_the_load_and_every_image_pushed_before_it_is_verified(tls_registry, tmp_path):
    stop = tmp_path / "stop"
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(ha_client.workload(
        "127.0.0.1", REPO, count=10_000, duration=120, layer_size=1024, attempts=2, delay=0.1, stop_file=str(stop))))
    worker.start()
    time.sleep(1.5)
    stop.touch()
    worker.join(60)
    assert not worker.is_alive(), "no new round starts once the stop file exists"
    assert 0 < result["images_pushed"] < 10_000 and len(result["checks"]) == result["images_pushed"]
    assert result["images_lost"] == 0 and result["images_corrupted"] == 0


def test_workload_over_plain_http_pushes_through_one_registry_and_pulls_through_the_next(tmp_path):
    """Two Debian docker-registry processes on one storage folder, on 127.0.0.1 and 127.0.0.2 (same port, plain
    HTTP), as the host lab's s3 shape has one registry per node: rounds alternate, every pull goes through the other
    registry than the push, and `verify_everywhere` reads every image through both; one deleted manifest is lost
    through both."""
    first = RegistryServer(tmp_path, name="first")
    second = RegistryServer(tmp_path, name="second")
    second.port = first.port
    storage = {"filesystem": {"rootdirectory": str(tmp_path / "shared")}, "delete": {"enabled": True}}
    for server, address in ((first, "127.0.0.1"), (second, "127.0.0.2")):
        server.extra = {"storage": storage, "http": {"addr": f"{address}:{first.port}", "secret": "shared-secret"}}
        server.start()
    deadline = time.monotonic() + 30  # start() waits for 127.0.0.1, where the first one already listens
    while True:
        try:
            socket.create_connection(("127.0.0.2", first.port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the second registry did not listen on 127.0.0.2 within 30 s"
            time.sleep(0.1)
    ha_client.configure_tls(first.port, None, insecure=False, server_name=None, plain=True)
    try:
        out = ha_client.workload("127.0.0.1", REPO, count=4, duration=60, layer_size=2048, attempts=1, delay=0,
                                 verify=False, also=("127.0.0.2",))
        assert out["pushes_failed"] == out["pulls_failed"] == 0 and len(out["pushed"]) == 4, out["ops"]
        assert [o["host"] for o in out["ops"] if o["op"] == "push"] == ["127.0.0.1", "127.0.0.2"] * 2
        assert [o["host"] for o in out["ops"] if o["op"] == "pull"] == ["127.0.0.2", "127.0.0.1"] * 2
        checked = ha_client.verify_everywhere(["127.0.0.1", "127.0.0.2"], REPO, out["pushed"], attempts=1, delay=0)
        assert (checked["images"], checked["pulls"], checked["images_lost"]) == (4, 8, 0), checked
        tag, digest = next(iter(out["pushed"].items()))
        assert ha_client.request("127.0.0.2", "DELETE", f"/v2/{REPO}/manifests/{digest}")[0] == 202
        checked = ha_client.verify_everywhere(["127.0.0.1", "127.0.0.2"], REPO, out["pushed"], attempts=1, delay=0)
        assert checked["images_lost"] == 1 and {f["host"] for f in checked["failed"]} == {"127.0.0.1", "127.0.0.2"}
    finally:
        first.stop()
        second.stop()
        ha_client._TLS.update(port=443, context=None, server_name=None, plain=False)
