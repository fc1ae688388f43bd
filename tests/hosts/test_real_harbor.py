"""Real Harbor on real Debian 12 hosts: labs/harbor/build_installer.py builds Harbor v2.15.2's offline installer from
its source archives (cached by digest), then labs/hosts/host_lab.py boots systemd-nspawn machines (labs/hosts/
debhosts.sh), applies every role of the dev shape over SSH as the program registers it, the harbor-node role
installing that installer with Docker inside the hosts, and a Docker client pushes and pulls through the VIP and
through each node alone; the stack's migration section pulls an old docker-registry on data1 into Harbor through its
jobservice and verify_migration.py compares every tag; the provider's contract cases run against it; Harbor's Trivy
adapter (built here with Trivy) is checked healthy, registered and asked to scan.
Stand-ins: NFS (a bind mount), the portal (a placeholder page), `docker run --privileged`
(the lab's docker wrapper drops it; see the lab's docstring), Trivy's vulnerability database (there is none).
Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET, HHA_UPSTREAM (the source archives)."""

from __future__ import annotations


import pytest

from labs.hosts import host_lab
from tests.support import harbor_contract

# A slow tier (the cold build alone takes half an hour): CI's part runs it when .ci/tiers says so, --full always.
pytestmark = pytest.mark.realharbor


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("real-harbor", lambda path: host_lab.verify(path, [host_lab.DEV], day2=False, harbor="real"))


def test_harbor_is_the_version_built_from_source_and_every_node_reports_every_component_healthy(report):
    harbor = report["harbor"]
    assert harbor["version"] == f"v{host_lab.REAL_VERSION}" and harbor["built_from_source"]
    assert harbor["nodes_healthy"] == len(host_lab.DEV.roles["harborNodes"]), harbor["health"]


def test_docker_push_through_the_vip_and_pull_from_another_host_give_one_digest(report):
    assert report["harbor"]["push_pull_via_vip"] == {**report["harbor"]["push_pull_via_vip"], "ok": True,
                                                     "digest_equal": True}


def test_push_through_one_node_pull_through_the_other_and_a_token_of_one_node_opens_the_other(report):
    assert report["harbor"]["push_pull_per_node"]["digest_equal"], report["harbor"]["push_pull_per_node"]
    assert report["harbor"]["cross_node_token"]


def test_a_robot_account_logs_in_and_pulls(report):
    assert report["harbor"]["robot_pull"]


def test_trivy_is_healthy_on_every_node_harbors_default_scanner_answers_and_takes_a_scan(report):
    """harbor.trivy with trivySkipUpdate and trivyOfflineScan: core registers the adapter as the default scanner; its
    metadata comes from the adapter (Trivy's version, from the image built here); a scan request reaches it."""
    trivy = report["harbor"]["trivy"]
    assert trivy["healthy_nodes"] == len(host_lab.DEV.roles["harborNodes"]), report["harbor"]["health"]
    assert trivy["registered"] and trivy["default"] and trivy["url"] == "http://trivy-adapter:8080", trivy
    assert trivy["metadata_ok"] and trivy["scanner"] == {"name": "Trivy", "vendor": "Aqua Security",
                                                         "version": "v0.72.0"}, trivy


def test_a_scan_without_a_vulnerability_database_fails_saying_why_and_with_the_empty_stand_in_trivy_scans(report):
    """No database can be downloaded here: Trivy, told to skip the update, refuses the first scan and Harbor's scan
    log says so; with labs/harbor/trivy_db_standin.py's empty database on every node the scan runs end to end (Trivy
    pulls the image from Harbor and analyses it) and finds nothing, there being no advisory (docs/real-hosts.md)."""
    trivy = report["harbor"]["trivy"]
    print(f"trivy: without a database {trivy['without_db']}; with the empty stand-in {trivy['standin_db']}")
    assert trivy["without_db"]["request"] == 202 and trivy["without_db"]["status"] == "Error", trivy
    assert trivy["without_db"]["log_says_first_run"], trivy  # "--skip-db-update cannot be specified on the first run"
    assert trivy["standin_db"]["request"] == 202 and trivy["standin_db"]["status"] == "Success", trivy
    assert trivy["standin_db"]["vulnerabilities"] in (0, None), trivy


def test_every_role_is_applied_unchanged_by_a_second_apply_active_after_reboot_and_deleted(report):
    assert all(r["applied"] for r in report["roles"].values()), report["roles"]
    assert {n: r["second_apply_changed"] for n, r in report["roles"].items() if r["second_apply_changed"]} == {}
    assert [n for n, r in report["roles"].items() if not r["active_after_reboot"]] == []
    assert [n for n, r in report["roles"].items() if not r["delete_stops_keeps_data"]] == []


def test_the_api_provider_creates_every_kind_on_real_harbor_and_an_unchanged_run_writes_nothing(report):
    api = report["harbor"]["api_objects"]
    assert api["kinds"] == 4 and api["second_run_writes"] == 0, api["details"]


def test_harbor_refuses_a_registry_it_cannot_reach_and_the_provider_says_what_to_check(report):
    refused = report["harbor"]["api_objects"]["details"]["unreachable registry"]
    assert refused["create_refused"] and refused["update_refused"] and refused["url_kept"], refused
    assert "Harbor could not reach http://127.0.0.1:1" in refused["create_message"], refused


def test_the_migration_section_pulls_every_tag_of_an_old_registry_through_the_jobservice_digests_equal(report):
    migration = report["harbor"]["migration"]
    # team/app v1 v2 (v0 deleted before), tools/cli 1.0 latest (one manifest), team/multi v1 (an index).
    assert migration.get("tags") == 5 and migration["verified_equal"] == 5, migration
    assert migration["execution"]["status"] == "Succeed" and migration["deleted_tag_absent"], migration


def test_a_tag_changed_on_the_source_after_the_migration_is_reported_as_a_difference(report):
    migration = report["harbor"]["migration"]
    assert migration.get("differences_found") == 1 and migration["mismatched_after_change"] == ["v1"], migration


def test_the_providers_contract_tests_hold_against_real_harbor(report):
    """tests/support/harbor_contract.py, the cases test_harbor_provider_crud.py runs against the emulator."""
    assert report["harbor"]["contract"] == {name: [] for name in harbor_contract.CASES}


def test_admin_password_rotation_takes_effect_keeps_robots_and_objects_working_and_survives_a_reboot(report):
    # harbor_api_check.rotate_admin: harborAdminPassword set on the running cluster through the VIP.
    rotation = report["harbor"]["admin_rotation"]
    print(f"admin rotation: {rotation['rotate_s']} s, {rotation['rotate_writes']} write(s); new password "
          f"{rotation['new_status']}, old {rotation['old_status']}; next run {rotation['second_run']}; after the "
          f"reboot {rotation.get('after_reboot')}; wrong current password: {rotation['wrong_current_error']}")
    assert rotation["create_writes"] == 0  # the generated password is the one the nodes installed
    assert (rotation["rotate_writes"], rotation["new_status"], rotation["old_status"]) == (1, 200, 401), rotation
    assert rotation["docker_login_new"] == "logged in" and rotation["docker_login_old"] != "logged in", rotation
    assert rotation["robot_pull_after"]
    assert rotation["api_objects_after"]["kinds"] == 4 and rotation["api_objects_after"]["second_run_writes"] == 0
    assert rotation["second_run"] == {"read_equals_state": True, "diff_changes": False, "writes": 0}
    error = rotation["wrong_current_error"] or ""
    assert "accepts none of the admin passwords" in error and "harborAdminPassword" in error, error
    assert rotation["after_fix"] == {"writes": 0, "status": 200}
    assert rotation["after_reboot"] == {"new_status": 200, "initial_status": 401}
