"""The database VIP's nftables table (components/patroni render_db_vip_nft) on a member, in network namespaces
(tests/support/netlab.py): a client whose ARP entry still names a member that no longer holds the VIP, as during
a leader change, is refused at once instead of waiting for TCP's SYN retry; the holder is not affected. Starts
`nft` and a Python TCP listener inside the namespaces, nothing else."""

from __future__ import annotations

import time

import pytest

from components.config import parse_cluster_config
from components.patroni import DB_VIP_TABLE, render_db_vip_nft
from labs.engine.pulumi_harness import patroni_values
from tests.support.netlab import Lab

MEMBER, CLIENT, VIP = "198.18.17.11", "198.18.17.31", "198.18.17.50"
# Connects to the VIP and prints how it ended: "open", "refused" or "timeout" (0.8 s: under TCP's 1 s SYN retry).
PROBE = f"""
import socket
s = socket.socket(); s.settimeout(0.8)
try:
    s.connect(("{VIP}", 5432)); print("open")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""
LISTENER = f"import socket, time; s = socket.create_server(('{VIP}', 5432)); time.sleep(60)"


def _ruleset(tmp_path) -> str:
    """The rendered table of db1, with the example stack moved into the lab's /24 (db1 = MEMBER)."""
    values = patroni_values()
    for i, h in enumerate(values["hosts"]):
        h["address"] = MEMBER if h["name"] == "db1" else f"198.18.17.{100 + i}"
    values["vip"]["address"] = "198.18.17.99"
    values["postgres"]["vip"]["address"] = VIP
    cfg = parse_cluster_config(values)
    path = tmp_path / "db-vip.nft"
    path.write_text(render_db_vip_nft(cfg, cfg.host("db1")))
    return str(path)


@pytest.fixture
def lab():
    with Lab(prefix_length=24) as lab:
        member, client = lab.add_host(MEMBER), lab.add_host(CLIENT)
        mac = lab.run(member, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
        # The client's ARP entry for the VIP names the member, as it did while the member held the VIP.
        lab.run(client, ["ip", "neigh", "replace", VIP, "lladdr", mac, "dev", "eth0", "nud", "permanent"])
        yield lab, member, client


def _probe(lab: Lab, client: str) -> tuple[str, float]:
    t0 = time.monotonic()
    out = lab.run(client, ["python3", "-c", PROBE]).stdout.strip()
    return out, time.monotonic() - t0


def test_a_member_without_the_vip_refuses_connections_to_it_at_once(lab, tmp_path):
    lab, member, client = lab
    assert _probe(lab, client)[0] == "timeout"  # without the table the SYN is dropped: TCP retries after 1 s
    r = lab.run(member, ["nft", "-f", _ruleset(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert DB_VIP_TABLE in lab.run(member, ["nft", "list", "tables"]).stdout
    result, seconds = _probe(lab, client)
    print(f"refused after {seconds * 1000:.0f} ms")
    assert result == "refused"


def test_the_member_holding_the_vip_still_accepts_connections_to_it(lab, tmp_path):
    lab, member, client = lab
    assert lab.run(member, ["nft", "-f", _ruleset(tmp_path)]).returncode == 0
    lab.run(member, ["ip", "addr", "add", f"{VIP}/24", "dev", "eth0"])
    lab.start(member, ["python3", "-c", LISTENER], log=str(tmp_path / "listener.log"))
    for _ in range(50):  # the listener binds within a moment
        if _probe(lab, client)[0] == "open":
            break
        time.sleep(0.1)
    assert _probe(lab, client)[0] == "open"
