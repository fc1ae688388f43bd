"""What the HA drills measure, independent of where they run (shared by labs/ha_lab.py and scripts/ha_drill.py).

A `Site` knows how to run the client (scripts/drills/ha_client.py) on the client host and how to watch and read the VIP
on the two LB hosts: network namespaces in the lab, SSH on a real cluster. The functions here drive a drill on a
Site and turn raw observations into the figures the bench reports; they never decide how a fault is injected.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol
from collections.abc import Callable, Sequence

CLIENT_PY = Path(__file__).resolve().parent / "ha_client.py"
LB_SCENARIOS = ("lb_crash", "nginx_death", "keepalived_stop", "node_death")
SCENARIOS = LB_SCENARIOS + ("redis_master_death", "data_path")
PROBE_REPO = "lab/probe"
IMAGE_REPO, IMAGE_TAG = "lab/busybox", "v1"

# The load each LB scenario runs: 200 requests, one every 40 ms (8 s), the fault 1.5 s in. A request fails when it
# has no complete answer within 2 s (see scripts/drills/ha_client.py): a docker client waits longer (30 s to connect),
# so these failure counts are an upper bound for docker pulls; the stall itself shows in max_ms.
STREAM_COUNT, STREAM_PERIOD, STREAM_TIMEOUT, FAULT_AFTER = 200, 0.04, 5.0, 1.5
# The targets a drill is judged by (docs/ha.md), per LB scenario: the VIP on the backup within this many ms (None:
# the VIP must not move) and at most this many failed requests of STREAM_COUNT.
LB_TARGETS = {"lb_crash": (1000, 1), "nginx_death": (500, 1), "keepalived_stop": (1000, 1), "node_death": (None, 0)}
# Redis: writes resume within the sentinels' downAfterMs plus this much (the failover and the client's reconnect).
REDIS_RESUME_MARGIN_MS = 5000


class Site(Protocol):
    """Where a drill runs."""

    vip: str
    lb_hosts: tuple[str, str]  #: names of the LB hosts, the preferred VRRP master first

    def client(self, args: Sequence[str], env: Optional[dict] = None) -> subprocess.Popen:
        """Start scripts/drills/ha_client.py ARGS on the client host (stdout/stderr piped, text); `env`: secret values
        for its environment (REDIS_PASSWORD, HARBOR_USER, HARBOR_PASSWORD), never put on a command line. The
        Site adds its TLS settings to the HTTPS modes (`https_args`, HA_CA_PEM)."""

    def watch_addresses(self, lb: str) -> subprocess.Popen:
        """Start `ip -ts -o monitor address` with TZ=UTC on LB host `lb` (stdout piped, text)."""

    def vip_holders(self) -> list[str]:
        """The LB hosts that hold the VIP right now."""


def https_args(args: Sequence[str], port: int, server_name: str, insecure: bool = False) -> list[str]:
    """ARGS of scripts/drills/ha_client.py with the HTTPS settings its HTTP modes take (the redis mode takes none)."""
    if args[0] == "redis":
        return list(args)
    return [*args, "--port", str(port), "--server-name", server_name, *(["--insecure"] if insecure else [])]


def run_client(site: Site, args: Sequence[str], env: Optional[dict] = None, timeout: float = 120) -> dict:
    """Run the client to completion and return its JSON result."""
    proc = site.client(args, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"client {' '.join(args[:1])} failed (rc {proc.returncode}): {err.strip()[-2000:]}")
    return json.loads(out)


def _wait_started(proc: subprocess.Popen, timeout: float) -> float:
    """Read the client's stderr up to its "started <epoch>" line."""
    box: list = []

    def read() -> None:
        for line in proc.stderr:
            if line.startswith("started "):
                box.append(float(line.split()[1]))
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise RuntimeError(f"the client did not start within {timeout} s")
    return box[0]


class AddressWatch:
    """Every address event on one LB host, with the kernel-side timestamp `ip -ts` prints."""

    def __init__(self, site: Site, lb: str):
        self.proc = site.watch_addresses(lb)
        self.events: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("["):
                stamp, _, rest = line[1:].partition("] ")
                # Sites run `ip` with TZ=UTC, so the zone-less stamp is UTC whatever the host's zone.
                when = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC)
                self.events.append((when.timestamp(), rest))

    def first_add(self, address: str, after: float) -> Optional[float]:
        for t, rest in self.events:
            if t >= after and not rest.startswith("Deleted") and f" {address}/" in rest:
                return t
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(2)


@dataclass
class StreamResult:
    """One LB scenario's figures."""

    vip_move_ms: Optional[float]  #: fault to the VIP appearing on the other LB host (None: it did not move)
    failed: int  #: failed requests
    total: int  #: requests sent
    max_ms: Optional[float]  #: slowest request (the stall a client saw)
    failures: list  #: the failed requests (time after the fault, path, error)
    #: fault to the end of the first good request started after it and after the last failed one (None: never)
    recovered_ms: Optional[float] = None

    def summary(self) -> dict:
        return {"vip_move_ms": self.vip_move_ms, "failed": self.failed, "total": self.total,
                "recovered_ms": self.recovered_ms}


def recovered_ms(requests: Sequence[dict], t_fault: float) -> Optional[float]:
    """Kill to first good request: the end of the first successful request that started after the fault and after
    every failed one, in ms after the fault."""
    last_bad = max((r["start"] for r in requests if not r["ok"]), default=t_fault)
    good = [r["start"] + r["ms"] / 1000 for r in requests if r["ok"] and r["start"] >= max(last_bad, t_fault)]
    return round((min(good) - t_fault) * 1000, 1) if good else None


def stream_drill(site: Site, fault: Callable[[], float], blob: str, *, expect_move: bool,
                 repo: str = PROBE_REPO, env: Optional[dict] = None) -> StreamResult:
    """Run the request stream through the VIP, call `fault` (returns the epoch it struck) 1.5 s in, measure."""
    if site.vip_holders() != [site.lb_hosts[0]]:
        raise RuntimeError(f"the VIP must be on {site.lb_hosts[0]} alone before a drill, "
                           f"it is on {site.vip_holders() or 'no host'}")
    watch = AddressWatch(site, site.lb_hosts[1])
    proc = None
    try:
        time.sleep(0.2)  # the monitor is subscribed before anything can move
        proc = site.client(["stream", site.vip, "--count", str(STREAM_COUNT), "--period", str(STREAM_PERIOD),
                            "--timeout", str(STREAM_TIMEOUT), "--repo", repo, "--blob", blob], env)
        _wait_started(proc, 30)
        time.sleep(FAULT_AFTER)
        t_fault = fault()
        out, _ = proc.communicate(timeout=STREAM_COUNT * STREAM_PERIOD + STREAM_TIMEOUT + 30)
        result = json.loads(out)
        time.sleep(0.1)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        watch.stop()
    moved = watch.first_add(site.vip, t_fault)
    if moved is None and expect_move and site.lb_hosts[1] in site.vip_holders():
        raise RuntimeError("the VIP is on the backup but its address event was not seen")
    failures = [{"after_fault_ms": round((r["start"] - t_fault) * 1000), "path": r["path"], "error": r["error"]}
                for r in result["requests"] if not r["ok"]]
    return StreamResult(vip_move_ms=None if moved is None else round((moved - t_fault) * 1000, 1),
                        failed=result["failed"], total=result["total"], max_ms=result["max_ms"], failures=failures,
                        recovered_ms=recovered_ms(result["requests"], t_fault))


def redis_drill(site: Site, sentinels: Sequence[str], master_set: str, old_master: str, password: str,
                fault: Callable[[], float], duration: float) -> dict:
    """Follow the sentinels from the client host, call `fault` (kills the master), measure promotion and writes."""
    proc = site.client(["redis", *sentinels, "--master-set", master_set, "--duration", str(duration)],
                       {"REDIS_PASSWORD": password})
    try:
        _wait_started(proc, 30)
        time.sleep(1.0)
        t_fault = fault()
        out, err = proc.communicate(timeout=duration + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = json.loads(out)["events"]
    before = [e for e in events if e["t"] < t_fault]
    after = [e for e in events if e["t"] >= t_fault]
    promoted = next((e for e in after if e["master"] not in (None, old_master)), None)
    failed = next((e for e in after if e["outcome"] != "ok"), None)
    writes_again = next((e for e in after if e["outcome"] == "ok" and failed and e["t"] > failed["t"]), None)
    return {
        "old_master": old_master,
        "wrote_before_fault": bool(before) and before[-1]["outcome"] == "ok",
        "new_master": promoted["master"] if promoted else None,
        "promoted_ms": round((promoted["t"] - t_fault) * 1000) if promoted else None,
        "writes_again_ms": round((writes_again["t"] - t_fault) * 1000) if writes_again else None,
        "writes_again_on": writes_again["master"] if writes_again else None,
        "events": [{**e, "t": round((e["t"] - t_fault) * 1000)} for e in events],
    }


def data_path_drill(site: Site, nodes: Sequence[str], kill_node: Callable[[str], None],
                    heal_node: Callable[[str], None], env: Optional[dict] = None, repo: str = IMAGE_REPO) -> dict:
    """Push an image through the VIP, kill the node that took the manifest, pull it through the VIP, compare.

    When the nodes do not say who answered (a real Harbor sends no X-Lab-Node header), every node takes its turn:
    kill it, pull, bring it back.
    """
    pushed = run_client(site, ["push", site.vip, "--repo", repo, "--tag", IMAGE_TAG], env)
    victims = [pushed["manifest_node"]] if pushed["manifest_node"] else list(nodes)
    pulls = []
    for node in victims:
        kill_node(node)
        try:
            pulled = run_client(site, ["pull", site.vip, "--repo", repo, "--tag", IMAGE_TAG], env)
        finally:
            heal_node(node)
        pulls.append({"killed_node": node, "pulled_digest": pulled["digest"],
                      "registry_digest": pulled["registry_digest"], "bad_blobs": pulled["bad_blobs"],
                      "served_by": pulled["served"]})
    return {
        "pushed_digest": pushed["digest"], "push_served_by": pushed["served"], "pulls": pulls,
        "same_digest": all(p["pulled_digest"] == pushed["digest"] and not p["bad_blobs"] for p in pulls),
    }


def unmet_targets(scenario: str, result: dict, down_after_ms: int) -> list[str]:
    """The targets a drill's result missed, one sentence each (empty: every target met)."""
    unmet = []
    if scenario in LB_TARGETS:
        move_limit, failed_limit = LB_TARGETS[scenario]
        move = result["vip_move_ms"]
        if move_limit is None and move is not None:
            unmet.append(f"the VIP moved ({move} ms after the fault); it must stay")
        elif move_limit is not None and (move is None or move > move_limit):
            unmet.append(f"VIP on the backup after {'never' if move is None else f'{move} ms'}, "
                         f"target {move_limit} ms")
        if result["failed"] > failed_limit:
            unmet.append(f"{result['failed']} of {result['total']} requests failed, target at most {failed_limit}")
    elif scenario == "redis_master_death":
        limit = down_after_ms + REDIS_RESUME_MARGIN_MS
        resumed = result["writes_again_ms"]
        failed_writes = any(e["outcome"] != "ok" for e in result["events"] if e["t"] >= 0)
        if failed_writes and resumed is None:
            unmet.append("writes did not resume after the master was killed")
        elif resumed is not None and resumed > limit:
            unmet.append(f"writes resumed after {resumed} ms, target {limit} ms (downAfterMs + "
                         f"{REDIS_RESUME_MARGIN_MS})")
    elif scenario == "data_path" and not result["same_digest"]:
        unmet.append("the image pulled after the node died differs from the one pushed")
    return unmet


def print_table(results: dict, out=None) -> None:
    """Side-by-side table: VIP move, failed requests and the slowest request, classic recipe vs our defaults."""
    def cell(r: Optional[dict]) -> tuple[str, str, str]:
        if not r:
            return "-", "-", "-"
        move = "no move" if r["vip_move_ms"] is None else f"{r['vip_move_ms']:.0f} ms"
        slowest = "-" if r.get("max_ms") is None else f"{r['max_ms']:.0f} ms"
        return move, f"{r['failed']} of {r['total']}", slowest

    head = (f"{'scenario':<16} | {'VIP move':>9} {'failed':>10} {'slowest':>8} | {'VIP move':>9} {'failed':>10} "
            f"{'slowest':>8}")
    lines = [f"{'':<16} | {'classic recipe':^29} | {'harbor-ha defaults':^29}", head, "-" * len(head)]
    for s in LB_SCENARIOS:
        c = cell(results.get("classic", {}).get(s))
        d = cell(results.get("defaults", {}).get(s))
        lines.append(f"{s:<16} | {c[0]:>9} {c[1]:>10} {c[2]:>8} | {d[0]:>9} {d[1]:>10} {d[2]:>8}")
    print("\n".join(lines), file=out, flush=True)
