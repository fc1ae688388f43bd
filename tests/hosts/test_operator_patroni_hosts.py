"""scripts/status.py against real Debian 12 hosts in the patroni shape with Redis Sentinel (labs/hosts/host_lab.py:
seven systemd-nspawn machines with sshd and pinned host keys; every role applied over SSH as the program registers
it): three hosts carry etcd, Patroni with PostgreSQL 15 (strict synchronous mode), vip-manager, Redis (a master and
two replicas) and three sentinels; the data host the pgBackRest repository; Harbor and NFS are the lab's stand-ins.
Status once deployed and backed up (healthy: one Patroni leader, two streaming replicas and their lag, one Redis
master the three sentinels agree on), then with Patroni stopped on a replica and one sentinel stopped: exit 1 naming
both. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET (HHA_BASE) as the lab takes them. Figures are printed (`-s`)."""

from __future__ import annotations

import pytest

from labs.hosts import host_lab
from tests.hosts.test_operator_hosts import booted_lab, print_checks, stack_file, wait_status

# A slow tier of its own (seven hosts, ~18 min): the dev shape's operator_hosts stays short.
pytestmark = pytest.mark.operator_patroni_hosts

# The patroni shape's database cluster and Redis Sentinel on the same three hosts (redis1..3 are h5..h7).
DBS = ["redis1", "redis2", "redis3"]
SHAPE = host_lab.Shape("patroni-sentinel", ["data1", "node1", "node2", *DBS], {
    "nfs": "data1", "postgres": DBS, "redis": DBS, "sentinels": DBS, "backup": "data1",
    "harborNodes": ["node1", "node2"], "loadBalancers": ["node1", "node2"]},
    {"postgres": {"mode": "patroni", "vip": {"address": f"{host_lab.NET}.101", "interface": "host0"},
                  "synchronous": "strict"},
     "redis": {"mode": "sentinel"}, "backup": {"repository": "host"}}, parallel=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The shape's hosts (h1..h7, h4 idle) deployed, brought down at the end (also on failure)."""
    try:
        lab = booted_lab(tmp_path_factory.mktemp("operator-patroni-lab"), SHAPE, 7)
        result = lab.up(lab.values(SHAPE))
        assert all(r.rc == 0 for r in result.ran), [r.name for r in result.ran if r.rc != 0]
        yield lab
    finally:
        host_lab.down()


def by_check(doc: dict, name: str) -> list[dict]:
    return [c for c in doc["checks"] if c["check"] == name]


def test_status_reports_the_patroni_leader_replicas_lag_and_the_sentinels_master_then_names_what_stops(lab,
                                                                                                      tmp_path):
    stack = stack_file(lab, tmp_path, SHAPE)
    members = lab.wait_cluster(DBS, 300)
    print("patronictl:", lab.describe(members))
    # A first full backup, as the repository's timer would make it: status judges the last backup's age.
    repo = host_lab.MACHINES["data1"]
    backup = host_lab.ssh(repo, f"{host_lab.PGBACKREST} --type=full backup", check=False, timeout=900)
    assert backup.returncode == 0, backup.stderr[-600:]

    doc, waited = wait_status(stack, 0, 180)
    print(f"status after the deploy: healthy={doc['healthy']} after {waited:.1f} s, {len(doc['checks'])} checks")
    print_checks(doc)
    assert doc["healthy"], [c for c in doc["checks"] if not c["ok"]]
    assert [c["ok"] for c in by_check(doc, "patroni-leader")] == [True]
    assert {c["host"] for c in by_check(doc, "patroni")} == set(DBS)
    assert [c["ok"] for c in by_check(doc, "replication")] == [True]  # on the leader: both replicas stream
    assert [c["ok"] for c in by_check(doc, "sentinels-agree")] == [True]

    replica = next(c["host"] for c in by_check(doc, "patroni") if "Leader" not in c["detail"])
    master = next(c["host"] for c in by_check(doc, "redis") if c["detail"].startswith("master"))
    sentinel = next(h for h in DBS if h != master)
    host_lab.ssh(host_lab.MACHINES[replica], "systemctl stop patroni")
    host_lab.ssh(host_lab.MACHINES[sentinel], "systemctl stop redis-sentinel")
    doc, waited = wait_status(stack, 1, 120)
    bad = sorted({(c["host"], c["check"]) for c in doc["checks"] if not c["ok"]})
    print(f"status with patroni stopped on {replica} and the sentinel on {sentinel}: unhealthy after {waited:.1f} s:")
    print_checks(doc, failed_only=True)
    assert not doc["healthy"] and (replica, "patroni") in bad and (sentinel, "sentinel") in bad, bad
