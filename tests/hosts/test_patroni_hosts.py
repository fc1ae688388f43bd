"""postgres.mode patroni on real Debian 12 hosts: labs/hosts/host_lab.py's patroni shape boots systemd-nspawn
machines (labs/hosts/debhosts.sh), applies every role over SSH as the program registers it (three members with etcd,
Patroni, PostgreSQL 15, vip-manager and pgBackRest's TLS server; the repository on the data host; Harbor's nodes and
load balancers as in the dev shape, Harbor and NFS stand-ins), then checks the cluster, the database VIP as Harbor's
user, pgBackRest, the firewall's flows, a second apply, a reboot of every host, a power cut of the leader's host and
the deletes. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET."""

from __future__ import annotations


import pytest

from labs.hosts import host_lab

# A slow tier (12 hosts, ~12 min): CI's part runs it when .ci/tiers says so, --full always.
pytestmark = pytest.mark.patroni_hosts


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("host-lab-patroni", lambda path: host_lab.verify(path, [host_lab.PATRONI], day2=False))


def test_patroni_shape_is_applied_by_the_engine_and_a_second_up_changes_nothing(report):
    assert report["apply"] == {"patroni": "engine"}
    second = report["second_up"]["patroni"]
    assert host_lab.unchanged_ok(second) and "preview_no_changes" in second, second


def test_patroni_shape_applies_every_role_and_a_second_apply_changes_nothing(report):
    roles = report["roles"]
    assert {r.split(" (")[0] for r in roles} == {"firewall", "nfs-server", "redis", "harbor-node", "loadbalancer",
                                                  "keepalived", *host_lab.PATRONI_ROLES}, roles
    assert [name for name, r in roles.items() if not r["applied"]] == []
    assert {name: r["second_apply_changed"] for name, r in roles.items() if r["second_apply_changed"]} == {}


def test_patroni_cluster_has_a_leader_and_two_streaming_replicas_in_strict_synchronous_mode(report):
    result = report["patroni"]
    print("members:", result["members"])
    assert result["cluster_ok"] and result["synchronous_mode_strict"], result["members"]


def test_patroni_database_vip_answers_harbors_user_on_the_leader_from_a_harbor_node(report):
    assert report["patroni"]["vip_ok"], report["patroni"]["vip_answer"]


def test_patroni_pgbackrest_check_and_a_full_backup_succeed_from_the_repository_host(report):
    result = report["patroni"]
    print(f"pgbackrest check {result['pgbackrest_check_s']} s, full backup {result['full_backup_s']} s")
    assert result["pgbackrest_check_ok"] and result["full_backup_ok"], result["pgbackrest_errors"]


def test_patroni_firewall_admits_exactly_the_flows_host_openings_names(report):
    flows = report["patroni"]["flows"]
    print(f"flows: {flows['probes']} probes, {flows['open']} open, {flows['timeout']} dropped")
    assert flows["open"] > 0 and flows["timeout"] > 0, flows
    assert flows["mismatches"] == []


def test_patroni_every_role_and_the_cluster_are_back_after_a_reboot_of_every_host(report):
    assert [name for name, r in report["roles"].items() if not r["active_after_reboot"]] == []
    after = report["patroni"]["after_reboot"]
    assert after["cluster_ok"] and after["vip_ok"], after


def test_patroni_power_cut_of_the_leader_host_elects_a_new_leader_and_the_old_one_rejoins(report):
    # The times are printed (no timing assertion): kill -> new leader, -> VIP answers on it, boot -> streaming.
    result = report["patroni"]["failover"]
    print(f"failover: new leader after {result['new_leader_s']} s, VIP answers after {result['vip_answers_s']} s, "
          f"old leader streaming {result['rejoined_s']} s after its boot")
    assert result["new_leader"] not in (None, result["old_leader"]), result
    assert result["vip_answers_s"] is not None and result["rejoined_s"] is not None, result


def test_patroni_delete_stops_every_role_and_keeps_its_data(report):
    assert [name for name, r in report["roles"].items() if not r["delete_stops_keeps_data"]] == []
