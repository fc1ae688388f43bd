"""Test hosts as network namespaces on one bridge: the topology shared by labs/ha_lab.py and tests/support/netlab.py.

Network safety (../shared/notes/real-services.md): test hosts only get addresses in 198.18.0.0/15, and the root
namespace gets a blackhole route for that range while a lab exists (it has a default route out of the machine).
Each lab owns its blackhole route by its own metric, so labs of other runs keep theirs. The callers record what
they create and delete it: in-process (tests/support/netlab.py) or in a state file another process reads (ha_lab.py).
"""

from __future__ import annotations

import ipaddress
import subprocess

TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


def blackhole(metric: int | str) -> list[str]:
    """The `ip route` arguments of a lab's blackhole route for the test range."""
    return ["blackhole", str(TEST_RANGE), "metric", str(metric)]


def add_bridge(bridge_ns: str) -> None:
    """Namespace `bridge_ns` holding the bridge `br0` every host's eth0 is plugged into."""
    ip("netns", "add", bridge_ns)
    ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
    ip("-n", bridge_ns, "link", "set", "br0", "up")


def add_host(bridge_ns: str, ns: str, port: str, address: str, prefix_length: int) -> None:
    """Namespace `ns` whose eth0 carries `address` (in 198.18.0.0/15 only), its peer `port` on the bridge."""
    if ipaddress.IPv4Address(address) not in TEST_RANGE:
        raise ValueError(f"{address} is outside {TEST_RANGE}: test hosts use the benchmarking range only")
    ip("netns", "add", ns)
    ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", bridge_ns)
    ip("-n", bridge_ns, "link", "set", port, "master", "br0", "up")
    ip("-n", ns, "addr", "add", f"{address}/{prefix_length}", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")
