"""Test hosts as network namespaces on one bridge, for tests that start real servers on rendered configs.

Network safety (../shared/notes/real-services.md): test hosts only get addresses in 198.18.0.0/15, the root namespace
gets a blackhole route for that range while a lab exists (the root namespace has a default route out of the
machine), and every request is sent from inside a test namespace. `close()` stops every process the lab started
(by PID), deletes the namespaces and removes the blackhole route, and is safe to call after a partial set-up.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from typing import Mapping, Optional, Sequence

TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


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
        self._blackhole = ["blackhole", str(TEST_RANGE), "metric", str(100000 + os.getpid() % 100000)]
        self._owns_blackhole = False
        self._bridge_ready = False

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup_bridge(self) -> None:
        ip("route", "replace", *self._blackhole)
        self._owns_blackhole = True
        ip("netns", "add", self.bridge_ns)
        self.namespaces.append(self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        self._bridge_ready = True

    def add_host(self, address: str) -> str:
        """A namespace whose eth0 carries `address` (must be in 198.18.0.0/15); returns its name."""
        if ipaddress.IPv4Address(address) not in TEST_RANGE:
            raise ValueError(f"{address} is outside {TEST_RANGE}: test hosts use the benchmarking range only")
        if not self._bridge_ready:
            self._setup_bridge()
        n = len(self.namespaces)
        ns = f"{self.prefix}-{n}"
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        port = f"p{n}"
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/{self.prefix_length}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
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
