"""scripts/preflight.py and scripts/status.py against real Debian 12 hosts: the host lab's dev shape
(labs/hosts/host_lab.py: three systemd-nspawn machines with sshd and pinned host keys; every role applied over SSH as
the program registers it; Harbor and NFS are the lab's stand-ins). Preflight on the fresh hosts, then with a wrong
host key; status once deployed (healthy), with a role file edited on a host (named), then with one node's host
killed (a power cut): exit 1 naming it, and preflight naming it within seconds. Environment: HHA_ROOT, HHA_BRIDGE,
HHA_NET (HHA_BASE) as the lab takes them. Figures are printed (`-s`), not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from components.host.remote import STAGE_ROOT
from labs import certs as lab_certs
from labs.hosts import host_lab
from tests.support import ROOT

KEY = host_lab.ROOT / "id_ed25519"
pytestmark = pytest.mark.operator_hosts


def booted_lab(work: Path, shape: host_lab.Shape, hosts: int) -> host_lab.HostLab:
    """`hosts` booted hosts with `shape`'s stand-ins (the caller brings them down) and an LB certificate of 90 days:
    the lab's own lives 2 days, which status rightly reports as due for renewal."""
    lab = host_lab.HostLab(work)
    ca, cert, key = lab_certs.ca_and_server(host_lab.HOSTNAME, [host_lab.HOSTNAME, lab.vip], days=90)
    lab.ca, lab.tls = ca.decode(), {"tlsCertificate": cert.decode(), "tlsPrivateKey": key.decode()}
    lab.replay.parallel = shape.parallel
    lab.boot(hosts)
    lab.prepare_standins(shape)
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Three booted hosts of the dev shape with the lab's stand-ins, brought down at the end (also on failure)."""
    try:
        yield booted_lab(tmp_path_factory.mktemp("operator-lab"), host_lab.DEV, 3)
    finally:
        host_lab.down()


def stack_file(lab: host_lab.HostLab, folder: Path, shape: host_lab.Shape = host_lab.DEV, **host_keys: str) -> Path:
    """`shape` as a stack file (with the deploy key set as a secret), host keys replaced as given."""
    values = lab.values(shape)
    for host in values["hosts"]:
        host["hostKey"] = host_keys.get(host["name"], host["hostKey"])
    config = {f"harbor-ha:{k}": v for k, v in values.items()}
    config["harbor-ha:sshPrivateKey"] = {"secure": "v1:bGFiOmtleQ==:c3RhbmQtaW4="}
    path = folder / "Pulumi.oplab.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path


def run(script: str, stack: Path, *extra: str) -> tuple[int, dict, float]:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--stack", str(stack), "--key", str(KEY),
                           "--json", "-", *extra], capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout), elapsed


def wait_status(stack: Path, wanted: int, limit: float) -> tuple[dict, float]:
    """status.py until it exits `wanted` (keepalived takes the VIP, a dead host's checks fail), at most `limit` s."""
    t0 = time.monotonic()
    while True:
        rc, doc, _ = run("status.py", stack, "--timeout", "5")
        if rc == wanted or time.monotonic() - t0 > limit:
            return doc, time.monotonic() - t0
        time.sleep(3)


def print_checks(doc: dict, *, failed_only: bool = False) -> None:
    """status.py's checks (its --json document), one line each as it prints them."""
    for check in doc["checks"]:
        if not (failed_only and check["ok"]):
            print(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['role']} {check['host']} {check['check']}: "
                  f"{check['detail']}")


def test_preflight_passes_on_the_fresh_hosts_and_names_a_wrong_host_key(lab, tmp_path):
    rc, doc, elapsed = run("preflight.py", stack_file(lab, tmp_path))
    print(f"preflight, 3 fresh hosts: exit {rc} in {elapsed:.1f} s; "
          + "; ".join(f"{h['host']} {h['os']} {h['seconds']} s" for h in doc["hosts"]))
    assert rc == 0, doc
    keys = host_lab.host_keys()
    rc, doc, elapsed = run("preflight.py", stack_file(lab, tmp_path, node1=keys["h1"]))
    failed = {h["host"]: h["problems"] for h in doc["hosts"] if not h["ok"]}
    print(f"preflight, node1 pinned to data1's key: exit {rc} in {elapsed:.1f} s: {failed}")
    assert rc == 1 and list(failed) == ["node1"] and "not the pinned hostKey" in failed["node1"][0]


def test_status_is_healthy_once_deployed_and_names_a_dead_node(lab, tmp_path):
    stack = stack_file(lab, tmp_path)
    result = lab.up(lab.values(host_lab.DEV))
    assert all(r.rc == 0 for r in result.ran), [r.name for r in result.ran if r.rc != 0]
    doc, waited = wait_status(stack, 0, 90)
    print(f"status after the deploy: healthy={doc['healthy']} after {waited:.1f} s, {len(doc['checks'])} checks")
    print_checks(doc)
    assert doc["healthy"], [c for c in doc["checks"] if not c["ok"]]
    assert {c["role"] for c in doc["checks"] if c["check"] == "files"} >= {"loadbalancer", "harbor-node"}

    # A role file edited on node1 behind the program's back: named by the files check of its role, healthy again
    # once it is back.
    machine = host_lab.MACHINES["node1"]
    stage = f"{STAGE_ROOT}/loadbalancer"
    path = host_lab.ssh(machine, f"awk '$2 ~ /^\\/etc\\/nginx\\/.*\\.conf$/ {{print $2; exit}}' {stage}/MANIFEST"
                        ).stdout.strip()
    host_lab.ssh(machine, f"cp -p {path} /root/status-drift.orig && echo '# edited by hand' >> {path}")
    try:
        rc, edited, _ = run("status.py", stack, "--timeout", "5")
    finally:
        host_lab.ssh(machine, f"cp -p /root/status-drift.orig {path} && rm /root/status-drift.orig")
    bad = [(c["role"], c["host"], c["check"], c["detail"]) for c in edited["checks"] if not c["ok"]]
    print(f"status with {path} edited on node1: exit {rc}: {bad}")
    assert rc == 1 and bad == [("loadbalancer", "node1", "files", f"edited on the host: {path}")]

    host_lab.debhosts("kill", host_lab.MACHINES["node2"])
    doc, waited = wait_status(stack, 1, 60)
    bad = sorted({(c["host"], c["check"]) for c in doc["checks"] if not c["ok"]})
    print(f"status with node2's host killed: unhealthy after {waited:.1f} s: {bad}")
    assert not doc["healthy"] and ("node2", "ssh") in bad
    assert ("node1", "backend:node2") in bad  # the LB on node1 sees its backend gone
    rc, pre, elapsed = run("preflight.py", stack, "--timeout", "5")
    failed = {h["host"]: h["problems"] for h in pre["hosts"] if not h["ok"]}
    print(f"preflight with node2 dead: exit {rc} in {elapsed:.1f} s: {failed}")
    assert rc == 1 and list(failed) == ["node2"]
