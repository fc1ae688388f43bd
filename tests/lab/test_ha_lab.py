"""The HA lab's scenarios with the program's defaults, as tests (root: network namespaces).

Starts, through labs/ha_lab.py, real keepalived + nginx (two LB namespaces), two docker-registry nodes,
PostgreSQL, redis-server (master + replica) and three redis-sentinel processes on the rendered configs, all in
network namespaces addressed in 198.18.0.0/15 with the lab's blackhole route in the root namespace. The module
fixture runs `down` in a finally block, so a failing test leaves no namespace, process or route behind. The first
test runs before that fixture exists (the namespace names are fixed, so only one lab can be up).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labs import ha_lab
from scripts import drills as ha_drills
from tests.support import ROOT

LAB = ROOT / "labs" / "ha_lab.py"



def lab_cmd(state: Path, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAB), "--state-dir", str(state), *args], capture_output=True,
                          text=True, timeout=timeout)


def state_dir() -> Path:
    # Not pytest's tmp_path: it is private to root (0700) and PostgreSQL runs as postgres below it.
    base = Path(tempfile.mkdtemp(prefix="harbor-ha-lab-"))
    os.chmod(base, 0o755)
    return base / "state"


def assert_nothing_left(recorded: dict) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [line for line in listed.splitlines() if line.split()[0] in recorded["namespaces"]]
    routes = subprocess.run(["ip", "route", "show", ha_lab.LAB_RANGE], capture_output=True, text=True).stdout
    assert f"metric {ha_lab.BLACKHOLE_METRIC}" not in routes
    assert not [name for name, rec in recorded["procs"].items() if ha_lab.alive(rec)]


def test_down_cleans_up_after_up_was_killed_half_way():
    state = state_dir()
    up = subprocess.Popen([sys.executable, str(LAB), "--state-dir", str(state), "up"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    recorded: dict = {}
    try:
        # Kill it once some services run but before it is done (it takes about 3 s).
        end = time.monotonic() + 30
        while time.monotonic() < end and up.poll() is None:
            if (state / "state.json").exists():
                recorded = json.loads((state / "state.json").read_text())
                if len(recorded.get("procs", {})) >= 4:
                    break
            time.sleep(0.05)
        assert up.poll() is None, "up finished before it could be killed"
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        recorded = json.loads((state / "state.json").read_text())
        assert recorded["procs"], "nothing was started before the kill"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        r = lab_cmd(state, "down")
        shutil.rmtree(state.parent, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    assert_nothing_left(recorded)


@pytest.fixture(scope="module")
def lab():
    state = state_dir()
    base = state.parent
    try:
        r = lab_cmd(state, "up")
        assert r.returncode == 0, f"ha_lab.py up failed:\n{r.stdout}\n{r.stderr}"
        yield state
    finally:
        lab_cmd(state, "down")
        shutil.rmtree(base, ignore_errors=True)


def drill(state: Path, scenario: str) -> dict:
    out = state.parent / f"{scenario}.json"
    r = lab_cmd(state, "drill", scenario, "--json", str(out))
    assert r.returncode == 0, f"drill {scenario} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_lab_postgres_admits_harbor_from_nodes_only_per_rendered_pg_hba(lab):
    state = ha_lab.Lab(lab)
    from_node = state.psql_as_harbor("node1")
    assert from_node.returncode == 0 and from_node.stdout.strip() == "1", from_node.stderr
    from_client = state.psql_as_harbor("client")
    assert from_client.returncode != 0 and "no pg_hba.conf entry" in from_client.stderr


# What the LB tests check is behaviour, not speed (the figures are `ha_lab.py bench`'s): the VIP reached the
# backup while the request stream still ran, no request started after the move failed, and the lab healed.
STREAM_AFTER_FAULT_MS = (ha_drills.STREAM_COUNT * ha_drills.STREAM_PERIOD - ha_drills.FAULT_AFTER) * 1000


def assert_vip_moved_and_later_requests_served(r: dict) -> None:
    assert r["total"] == ha_drills.STREAM_COUNT, r
    assert r["vip_move_ms"] is not None and 0 <= r["vip_move_ms"] < STREAM_AFTER_FAULT_MS, r
    # One VRRP advert interval of grace: the backup's gratuitous ARP has to reach the client first.
    grace_ms = ha_lab.lab_config("defaults").vrrp.advert_int * 1000
    late = [f for f in r["failures"] if f["after_fault_ms"] > r["vip_move_ms"] + grace_ms]
    assert not late, late


def assert_healed(state: Path) -> None:
    assert ha_lab.Lab(state).site().vip_holders() == ["lb1"]


# nginx_death: the lab cannot run track_process (see ha_lab.lab_values): nginx's death is seen by the 1 s curl check.
@pytest.mark.parametrize("scenario", ["lb_crash", "nginx_death", "keepalived_stop"])
def test_lb_failure_moves_the_vip_and_requests_after_the_move_succeed(lab, scenario):
    r = drill(lab, scenario)
    assert_vip_moved_and_later_requests_served(r)
    assert_healed(lab)


def test_node_death_fails_no_get_started_after_it_and_keeps_the_vip(lab):
    """nginx retries a GET on the other node (proxy_next_upstream): a behaviour, so no request started after the
    registry's SIGKILL may fail. One whose response had begun when it died cannot be retried by any proxy (nginx
    retries only before it sends anything to the client): such a request, started before the kill, may end with a cut
    body, and nothing else. Seen once at load 14: a blob GET 16 ms before the kill, a 200 with a short body."""
    r = drill(lab, "node_death")
    assert r["vip_move_ms"] is None, r
    assert r["total"] == 200, r
    after = [f for f in r["failures"] if f["after_fault_ms"] >= 0]
    cut = [f for f in r["failures"] if f["after_fault_ms"] < 0]
    assert not after, after
    assert all(f["error"] == "blob content does not match its digest" or f["error"].startswith("IncompleteRead")
               for f in cut), cut
    assert_healed(lab)


def test_redis_master_death_sentinels_promote_replica_and_writes_resume(lab):
    r = drill(lab, "redis_master_death")
    cfg = ha_lab.lab_config("defaults")
    replica = f"{cfg.redis_hosts[1].address}:{cfg.redis.port}"
    assert r["wrote_before_fault"], r["events"]
    assert r["new_master"] == replica and r["writes_again_on"] == replica, r["events"]
    # Structural, not a target: Sentinel cannot promote before down-after-milliseconds has passed.
    assert r["writes_again_ms"] is not None and r["writes_again_ms"] >= r["down_after_ms"], r["events"]


def test_data_path_pull_after_killing_the_push_node_returns_the_same_digest(lab):
    r = drill(lab, "data_path")
    assert len(r["pulls"]) == 1, "the registry nodes must name themselves (X-Lab-Node)"
    pull = r["pulls"][0]
    assert r["same_digest"] and pull["pulled_digest"] == pull["registry_digest"] == r["pushed_digest"], r
    assert not pull["bad_blobs"]
    assert {node for _, node in pull["served_by"]} == {"node1", "node2"} - {pull["killed_node"]}


def test_ssh_drill_site_reaches_the_lab_through_an_ssh_stand_in(lab, tmp_path, monkeypatch):
    """ha_drill.py's SshSite against the lab: an `ssh` stand-in runs the remote command in the namespace of the
    host it is addressed to, so the client piped on stdin (with its secret), `ip monitor` and the VIP lookup run
    exactly as they would over SSH; a keepalived stop is then measured through it. The faults themselves
    (systemctl, docker) have no stand-in: the lab's own stop stands in for them."""
    from scripts import ha_drill

    by_address = {address: ha_lab.ns(name) for name, address in ha_lab.HOSTS.items()}
    fake = tmp_path / "ssh"
    fake.write_text("#!/usr/bin/env python3\n"
                    "import os, sys\n"
                    "args = sys.argv[1:]\n"
                    "while args[0] in ('-o', '-p'):\n"
                    "    args = args[2:]\n"
                    f"ns = {by_address!r}[args[0].rpartition('@')[2]]\n"
                    "os.execvp('ip', ['ip', 'netns', 'exec', ns, 'sh', '-c', args[1]])\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    state = ha_lab.Lab(lab)
    cfg = state.cfg
    # The lab's own CA, as `ha_drill.py --ca-file` would send it: the client verifies the LB's certificate.
    site = ha_drill.SshSite(cfg, f"root@{ha_lab.HOSTS['client']}", dry_run=False,
                            ca_pem=(lab / "ca.crt").read_text())
    assert site.vip_holders() == ["lb1"]
    password = state.secret("redis_password")
    sentinels = [f"{h.address}:{cfg.redis.sentinel_port}" for h in cfg.sentinel_hosts]
    proc = site.client(["redis", *sentinels, "--master-set", cfg.redis.master_set, "--duration", "1"],
                       {"REDIS_PASSWORD": password})
    assert password not in " ".join(proc.args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = json.loads(out)["events"]
    assert events and all(e["outcome"] == "ok" for e in events), events
    try:
        r = ha_drills.stream_drill(site, state.fault("keepalived_stop"), state.state["probe_blob"], expect_move=True)
    finally:
        state.heal()
    assert_vip_moved_and_later_requests_served({**r.summary(), "failures": r.failures})


def test_down_removes_namespaces_processes_and_route(lab):
    recorded = json.loads((lab / "state.json").read_text())
    r = lab_cmd(lab, "down")
    assert r.returncode == 0, r.stderr
    assert not lab.exists()
    assert_nothing_left(recorded)
