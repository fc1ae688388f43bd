"""The drills' workload client (scripts/drills/ha_client.py `workload`) against a real registry: Debian's
docker-registry serving TLS on 127.0.0.1 (a test CA), stopped and started again on the same port and storage for the
outage test, by its PID."""

from __future__ import annotations

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
