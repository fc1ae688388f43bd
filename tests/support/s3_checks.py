"""What real Harbor on S3 must show on the host lab, whichever S3 (tests/hosts/test_s3_*real_harbor.py)."""

from __future__ import annotations

from collections.abc import Callable

from labs.hosts import host_lab


def real_harbor_report(lab_report: Callable, name: str, shape: host_lab.Shape) -> dict:
    """`host_lab.py verify --harbor real` on `shape` without the day-2 scenarios, through conftest's lab_report."""
    return lab_report(name, lambda path: host_lab.verify(path, [shape], day2=False, harbor="real"))


def assert_harbor_pushes_and_pulls_across_the_nodes(report: dict) -> None:
    """Every component healthy on both nodes; a push through the VIP pulled through the other node, and through each
    node alone, with one digest; the storage checks saw the same."""
    harbor, storage = report["harbor"], report["storage"]
    assert harbor["nodes_healthy"] == 2, harbor["health"]
    assert harbor["push_pull_via_vip"]["digest_equal"] and harbor["push_pull_per_node"]["digest_equal"], harbor
    assert storage["push_pull"] == {"ok": True, "digest_equal": True}, storage


def assert_every_role_applied_unchanged_rebooted_and_deleted(roles: dict) -> None:
    """Every role applied, a second apply changed nothing, active after the reboot, its delete stopped it and kept
    its data."""
    assert roles, "no role in the report"
    assert [n for n, r in roles.items() if not r["applied"]] == []
    assert {n: r["second_apply_changed"] for n, r in roles.items() if r["second_apply_changed"]} == {}
    assert [n for n, r in roles.items() if not (r["active_after_reboot"] and r["delete_stops_keeps_data"])] == []
