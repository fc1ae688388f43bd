"""Real Debian 12 hosts: labs/hosts/host_lab.py boots systemd-nspawn machines (labs/hosts/debhosts.sh: systemd as
PID 1, sshd with pinned host keys, apt through a caching proxy, Docker), applies every role over SSH, and checks
services, a second apply, reboots, deletes and the day-2 changes under a client's requests through the VIP. Both
shapes are applied by the real Pulumi engine (the CLI and plugins of labs/engine/build_toolchain.sh, cached; a file
backend, a stack per shape; `pulumi destroy` for the delete); the forced re-run of every role's apply is the lab's
own (the engine never re-runs an unchanged command). Harbor and NFS are stand-ins (see the lab's docstring).
Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET."""

from __future__ import annotations


import pytest

from labs.hosts import host_lab

# Failed requests allowed per day-2 change while the client requests through the VIP (issue 8): none for an LB
# setting (a reload), one for a node upgrade or removal (its drain), one for a rotation (each node re-prepared).
DAY2_LIMITS = {"lb_setting": 0, "harbor_version_bump": 1, "added_node": 0, "removed_node": 1,
               "db_password_rotation": 1}


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("host-lab", lambda path: host_lab.verify(path, [host_lab.DEV, host_lab.PROD]))


def test_every_role_of_both_shapes_is_applied(report):
    assert {r.split(" (")[0] for r in report["roles"]} == set(host_lab.UNITS) - set(host_lab.PATRONI_ROLES) - set(
        host_lab.S3_ROLES)
    assert all(r["applied"] for r in report["roles"].values()), report["roles"]


def test_both_shapes_are_applied_by_the_engine(report):
    assert report["apply"] == {"dev": "engine", "prod": "engine"}


@pytest.mark.parametrize("shape", ["dev", "prod"])
def test_after_the_engine_s_up_a_preview_expects_no_changes_and_a_second_up_changes_nothing(report, shape):
    second = report["second_up"][shape]
    assert host_lab.unchanged_ok(second) and "preview_no_changes" in second, second


def test_a_second_apply_installs_nothing_and_restarts_nothing(report):
    assert {name: r["second_apply_changed"] for name, r in report["roles"].items()
            if r["second_apply_changed"]} == {}


def test_every_role_is_active_again_after_a_reboot_with_docker_after_the_data_mount(report):
    assert [name for name, r in report["roles"].items() if not r["active_after_reboot"]] == []


def test_delete_stops_every_role_and_keeps_its_data(report):
    assert [name for name, r in report["roles"].items() if not r["delete_stops_keeps_data"]] == []


@pytest.mark.parametrize("scenario", sorted(DAY2_LIMITS))
def test_day2_change_runs_without_teardown_within_its_failed_request_limit(report, scenario):
    result = report["day2"][scenario]
    assert result["teardowns"] == 0 and result["failed_requests"] <= DAY2_LIMITS[scenario], result
    assert result["ok"], result


def test_nginx_killed_on_the_vip_holder_costs_at_most_one_request(report):
    # systemd's Restart= in the LB's drop-in brings nginx back; recovered_ms is printed, not asserted.
    for name, result in report["ha"].items():
        print(f"{name}: recovered in {result['recovered_ms']} ms, failed {result['failed']} of {result['total']}")
        assert result["failed"] <= 1, (name, result)
