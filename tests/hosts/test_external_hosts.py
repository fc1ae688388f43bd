"""Bring your own services on real Debian 12 hosts: labs/hosts/host_lab.py's external shape boots systemd-nspawn
machines (labs/hosts/debhosts.sh), starts a PostgreSQL 15 and a Redis (both TLS with their own CA, passwords) by
hand on a host that is in no stack, applies the roles of a stack whose postgres, redis and nfs are `mode: external`
(the NFS export is the lab's stand-in folder) with the real engine's `pulumi up` (labs/engine/build_toolchain.sh's
CLI and plugins), and checks from the Harbor nodes, with what the program rendered, that they reach those services.
Harbor and NFS are stand-ins (see the lab's docstring).
Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET (HHA_BASE to share a base rootfs).
Run: `sudo venv/bin/python -m pytest -m external_hosts tests/hosts/test_external_hosts.py`."""

from __future__ import annotations


import pytest

from labs.hosts import host_lab

pytestmark = pytest.mark.external_hosts


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("host-lab-external", lambda path: host_lab.verify(path, [host_lab.EXTERNAL], day2=False))


def test_external_shape_is_applied_by_the_engine_and_a_second_up_changes_nothing(report):
    assert report["apply"] == {"external": "engine"}
    second = report["second_up"]["external"]
    assert host_lab.unchanged_ok(second) and "preview_no_changes" in second, second


def test_only_the_nodes_and_load_balancers_roles_are_applied_and_a_second_apply_changes_nothing(report):
    roles = report["roles"]
    assert {r.split(" (")[0] for r in roles} == {"firewall", "harbor-node", "loadbalancer", "keepalived"}, roles
    assert [name for name, r in roles.items() if not r["applied"]] == []
    assert {name: r["second_apply_changed"] for name, r in roles.items() if r["second_apply_changed"]} == {}


def test_a_node_logs_in_to_the_existing_postgresql_as_harbor_does_with_verify_full(report):
    result = report["external"]
    print("harbor.yml:", result["harbor_yml_database"], "->", result["database_login"])
    assert result["database_ok"], result["database_login"]
    # The CA the stack names is what makes verify-full pass: the cluster CA alone is refused.
    assert result["database_refused_without_its_ca"]


def test_a_node_uses_the_existing_redis_over_tls_with_its_password(report):
    result = report["external"]
    assert result["redis_tls"] and result["redis_ok"], result["redis_answer"]
    assert result["redis_refused_without_its_ca"]


def test_both_nodes_mount_the_existing_export_and_share_the_cluster_keys_on_it(report):
    assert report["external"]["mount_ok"], report["external"]["mounts"]


def test_the_program_touches_nothing_on_the_services_host(report):
    assert report["external"]["services_host_untouched"]


def test_roles_are_back_after_a_reboot_and_their_delete_keeps_the_data(report):
    assert [name for name, r in report["roles"].items() if not r["active_after_reboot"]] == []
    assert [name for name, r in report["roles"].items() if not r["delete_stops_keeps_data"]] == []
