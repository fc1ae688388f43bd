"""Test hosts as network namespaces on one bridge, for tests that start real servers on rendered configs.

Network safety (../shared/notes/real-services.md): the topology comes from labs/netns.py (addresses in
198.18.0.0/15 only, a blackhole route for that range in the root namespace while a lab exists), and every request is
sent from inside a test namespace. `close()` stops every process the lab started (by PID), deletes the namespaces
and removes the blackhole route, and is safe to call after a partial set-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Optional
from collections.abc import Mapping, Sequence

from labs import netns as netns_lab

TEST_RANGE = netns_lab.TEST_RANGE


class Lab:
    """Namespaces `<prefix>-<n>`, each with `eth0` on the bridge of namespace `<prefix>-br` and `lo` up."""

    def __init__(self, prefix_length: int):
        self.prefix_length = prefix_length
        self.prefix = f"hha{os.getpid()}x{time.monotonic_ns() % 100000}"
        self.bridge_ns = f"{self.prefix}-br"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        # Each lab adds its own blackhole route (a metric of its own) and deletes exactly that one, so labs of
        # other test runs on the machine keep theirs.
        self._blackhole = netns_lab.blackhole(100000 + os.getpid() % 100000)
        self._owns_blackhole = False
        self._bridge_ready = False

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup_bridge(self) -> None:
        netns_lab.ip("route", "replace", *self._blackhole)
        self._owns_blackhole = True
        self.namespaces.append(self.bridge_ns)
        netns_lab.add_bridge(self.bridge_ns)
        self._bridge_ready = True

    def add_host(self, address: str) -> str:
        """A namespace whose eth0 carries `address` (must be in 198.18.0.0/15); returns its name."""
        if not self._bridge_ready:
            self._setup_bridge()
        n = len(self.namespaces)
        ns = f"{self.prefix}-{n}"
        self.namespaces.append(ns)  # before creating it: close() deletes what a failed add left
        netns_lab.add_host(self.bridge_ns, ns, f"p{n}", address, self.prefix_length)
        return ns

    def run(self, ns: str, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            timeout: float = 15) -> subprocess.CompletedProcess:
        """Run a command inside `ns` and capture its output (secrets go in `env`, never in `argv`)."""
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              env=full_env, timeout=timeout)

    def start(self, ns: str, argv: Sequence[str], *, log: str) -> subprocess.Popen:
        """Start a long-running process in `ns`; `ip netns exec` execs it, so the PID is the server's own."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.namespaces.clear()
        if self._owns_blackhole:
            subprocess.run(["ip", "route", "del", *self._blackhole], capture_output=True, timeout=10)
            self._owns_blackhole = False


def stop_process(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM by PID, then SIGKILL if it is still there after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def wait_until(check, *, what: str, timeout: float = 10, interval: float = 0.1):
    """Call `check()` until it returns a truthy value (returned), at most `timeout` seconds; else AssertionError
    with the last value seen, so a failing test says what it was waiting for."""
    deadline = time.monotonic() + timeout
    attempts = int(timeout / interval) + 1
    last = None
    for _ in range(attempts):
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last result: {last!r}")
