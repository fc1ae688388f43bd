"""The providers' create/read/update/delete/diff against the Harbor API emulator.

Integration: each test starts the emulator (an HTTP server thread on 127.0.0.1) and calls the provider methods
the Pulumi engine would call.
"""

import json

import dill
import pytest

from harbor_provider.client import HarborError
from harbor_provider.resources import (
    ProjectProvider,
    RegistryProvider,
    ReplicationPolicyProvider,
    ReplicationRunProvider,
    RobotAccountProvider,
)
from tests.support.harbor_api import (
    FAST,
    make_registry,
    policy_props,
    registry_props,
    run_props,
    wire,
)
from labs.fakes.harbor_emulator.server import RunPlan
from tests.support import harbor_contract


@pytest.mark.parametrize("case", harbor_contract.CASES)
def test_crud_roundtrip_through_the_sdk_without_spurious_diff(case, emulator, conn):
    """The contract the realharbor tier holds the real Harbor to (tests/support/harbor_contract.py)."""
    target = harbor_contract.Target(conn, "old.example:5000/", "u", "Passw0rd", FAST)
    assert harbor_contract.roundtrip(case, target) == []


def test_registry_outputs_are_harbor_normalized_and_keep_no_plain_secret(emulator, conn):
    outs = make_registry(conn).outs
    assert outs["url"] == "http://old.example:5000"
    assert outs["access_secret_set"] is True and "access_secret" not in outs
    assert "Passw0rd" not in repr(outs)


def test_rotated_registry_secret_is_detected_and_updated(emulator, conn):
    provider = RegistryProvider(FAST)
    created = provider.create(registry_props(conn))
    news = registry_props(conn, access_secret="N3wSecret")
    assert provider.diff(created.id, created.outs, news).changed == ["access_secret"]
    outs = provider.update(created.id, created.outs, news).outs
    assert emulator.registries[int(created.id)]["credential"]["access_secret"] == "N3wSecret"
    assert provider.diff(created.id, outs, news).changed == []


def test_admin_password_or_ca_change_alone_is_an_update_of_the_connection_only(emulator, conn):
    provider = RegistryProvider(FAST)
    created = provider.create(registry_props(conn))
    news = registry_props(conn, harbor_password="rotated-admin", harbor_ca_certificate="-----BEGIN CERTIFICATE-----")
    diff = provider.diff(created.id, created.outs, news)
    assert diff.changed == ["harbor_password", "harbor_ca_certificate"] and diff.replaces == []


def test_registry_type_change_replaces_and_url_change_updates(emulator, conn):
    provider = RegistryProvider(FAST)
    created = provider.create(registry_props(conn))
    assert provider.diff(created.id, created.outs, registry_props(conn, type="harbor")).replaces == ["type"]
    diff = provider.diff(created.id, created.outs, registry_props(conn, url="https://old.example:5000"))
    assert diff.changed == ["url"] and diff.replaces == []
    assert diff.delete_before_replace is False


def test_out_of_band_changes_show_as_drift(emulator, conn):
    registries, policies = RegistryProvider(FAST), ReplicationPolicyProvider(FAST)
    reg = registries.create(registry_props(conn))
    pol = policies.create(policy_props(conn, int(reg.id)))
    emulator.registries[int(reg.id)]["url"] = "http://elsewhere:5000"
    emulator.registries[int(reg.id)]["credential"]["access_secret"] = ""
    stored = emulator.policies[int(pol.id)]
    stored["filters"] = stored["filters"][:1]
    stored["speed"] = 100
    stored["replicate_deletion"] = True

    reg_read = registries.read(reg.id, reg.outs)
    assert sorted(registries.diff(reg.id, reg_read.outs, registry_props(conn)).changed) == \
        ["access_secret_set", "url"]
    pol_read = policies.read(pol.id, pol.outs)
    assert sorted(policies.diff(pol.id, pol_read.outs, policy_props(conn, int(reg.id))).changed) == \
        ["filters", "replicate_deletion", "speed"]


def test_robot_and_project_drift(emulator, conn):
    robots, projects = RobotAccountProvider(FAST), ProjectProvider(FAST)
    robot = robots.create({**conn, "name": "peer"})
    project = projects.create({**conn, "name": "library"})
    emulator.robots[int(robot.id)]["permissions"][1]["access"].pop()
    emulator.projects[int(project.id)]["metadata"]["public"] = "true"
    assert robots.diff(robot.id, robots.read(robot.id, robot.outs).outs,
                       {**conn, "name": "peer"}).changed == ["permissions"]
    assert projects.diff(project.id, projects.read(project.id, project.outs).outs,
                         {**conn, "name": "library"}).changed == ["public"]


def test_unsetting_project_severity_removes_it_from_harbor(emulator, conn):
    provider = ProjectProvider(FAST)
    created = provider.create(wire({**conn, "name": "scanned", "prevent_vulnerable": True, "severity": "high"}))
    assert emulator.projects[int(created.id)]["metadata"]["severity"] == "high"
    news = wire({**conn, "name": "scanned", "prevent_vulnerable": True})
    assert provider.diff(created.id, wire(created.outs), news).changed == ["severity"]

    updated = provider.update(created.id, wire(created.outs), news)
    assert "severity" not in emulator.projects[int(created.id)]["metadata"]
    assert updated.outs["severity"] is None
    after = provider.read(created.id, wire(updated.outs))
    assert provider.diff(created.id, wire(after.outs), news).changed == []
    assert ("DELETE", f"/api/v2.0/projects/{created.id}/metadatas/severity",
            "deleteProjectMetadata") in emulator.calls


def test_robot_secret_output_and_rotation(emulator, conn):
    provider = RobotAccountProvider(FAST)
    created = provider.create({**conn, "name": "peer"})
    stored = emulator.robots[int(created.id)]
    assert created.outs["harbor_name"] == "robot$peer" and created.outs["secret"] == stored["secret"]
    news = {**conn, "name": "peer", "secret": "R0tatedSecret"}
    assert provider.diff(created.id, created.outs, news).changed == ["secret"]
    updated = provider.update(created.id, created.outs, news)
    assert updated.outs["secret"] == "R0tatedSecret" == stored["secret"]
    assert provider.diff(created.id, updated.outs, news).changed == []


def test_duplicate_name_error_says_how_to_adopt(emulator, conn):
    make_registry(conn)
    with pytest.raises(HarborError, match="adopt: true"):
        RegistryProvider(FAST).create(registry_props(conn))
    assert len(emulator.registries) == 1


def test_adopt_takes_over_the_existing_object_and_applies_the_args(emulator, conn):
    first = make_registry(conn)
    adopted = RegistryProvider(FAST).create(registry_props(conn, adopt=True, description="adopted"))
    assert adopted.id == first.id and len(emulator.registries) == 1
    assert emulator.registries[int(first.id)]["description"] == "adopted"


def test_adopted_robot_gets_a_fresh_known_secret(emulator, conn):
    robots = RobotAccountProvider(FAST)
    robots.create({**conn, "name": "peer"})
    adopted = robots.create({**conn, "name": "peer", "adopt": True})
    assert len(emulator.robots) == 1
    assert adopted.outs["secret"] == emulator.robots[int(adopted.id)]["secret"]


def test_unreachable_registry_error_says_harbor_could_not_reach_it(emulator, conn):
    emulator.unreachable_hosts.add("old.example")
    with pytest.raises(HarborError, match="Harbor could not reach old.example:5000/"):
        make_registry(conn)


@pytest.mark.parametrize("url", ["http://old.example.invalid:5000", "http://127.0.0.1:1"],
                         ids=["name-that-never-resolves", "refused-loopback-port"])
def test_registry_harbor_cannot_ping_is_refused_on_create_and_update_with_what_to_check(url, emulator, conn):
    """Harbor pings an endpoint before storing it, on create and on update (controller/registry validate)."""
    with pytest.raises(HarborError, match=f"cannot create registry 'old': Harbor could not reach {url}.*firewall"):
        RegistryProvider(FAST).create(registry_props(conn, url=url))
    created = make_registry(conn)
    with pytest.raises(HarborError, match=f"cannot update registry 'old': Harbor could not reach {url}"):
        RegistryProvider(FAST).update(created.id, created.outs, registry_props(conn, url=url))
    assert emulator.registries[int(created.id)]["url"] == "http://old.example:5000"


def test_unreachable_loopback_registry_error_says_it_is_harbors_own_container(emulator, conn):
    with pytest.raises(HarborError, match="127.0.0.1 is the core container itself"):
        RegistryProvider(FAST).create(registry_props(conn, url="127.0.0.1:1/"))


def test_registry_ping_endpoint_answers_as_harbor_does(emulator, conn):
    import requests

    def ping(body):
        return requests.post(f"{emulator.url}/api/v2.0/registries/ping", json=body,
                             auth=(conn["harbor_username"], conn["harbor_password"]),
                             timeout=5).status_code

    assert ping({"type": "docker-registry", "url": "http://old.example:5000"}) == 200
    assert ping({"type": "docker-registry", "url": "http://old.example.invalid:5000"}) == 400
    assert ping({"type": "docker-registry"}) == 400


def test_deleting_a_used_registry_names_the_policy(emulator, conn):
    reg = make_registry(conn)
    ReplicationPolicyProvider(FAST).create(policy_props(conn, int(reg.id)))
    with pytest.raises(HarborError, match="still use it: sync"):
        RegistryProvider(FAST).delete(reg.id, reg.outs)


def test_replication_run_waits_and_reports_counters(emulator, conn):
    pol = ReplicationPolicyProvider(FAST).create(policy_props(conn, int(make_registry(conn).id)))
    emulator.run_plans[int(pol.id)] = RunPlan(seconds=0.3, tasks=[("a:1", "Succeed"), ("b:1", "Succeed")])
    provider = ReplicationRunProvider(FAST)
    created = provider.create(run_props(conn, int(pol.id)))
    assert created.outs["status"] == "Succeed" and created.outs["succeed"] == 2
    assert provider.read(created.id, created.outs).outs == created.outs
    assert provider.diff(created.id, created.outs, run_props(conn, int(pol.id))).changed == []
    assert provider.diff(created.id, created.outs, run_props(conn, int(pol.id), run_key="again")).replaces == \
        ["run_key"]


def test_failed_replication_run_names_counters_and_failed_tasks(emulator, conn):
    pol = ReplicationPolicyProvider(FAST).create(policy_props(conn, int(make_registry(conn).id)))
    emulator.run_plans[int(pol.id)] = RunPlan(status="Failed", tasks=[("a:1", "Succeed"), ("team/b:2", "Failed")])
    with pytest.raises(HarborError, match=r"ended Failed \(total 2, succeed 1, failed 1.*team/b:2"):
        ReplicationRunProvider(FAST).create(run_props(conn, int(pol.id)))


def test_replication_run_times_out_with_counters(emulator, conn):
    pol = ReplicationPolicyProvider(FAST).create(policy_props(conn, int(make_registry(conn).id)))
    emulator.run_plans[int(pol.id)] = RunPlan(seconds=30)
    with pytest.raises(HarborError, match=r"still running after 1 s \(total 1, succeed 0, failed 0, in_progress 1"):
        ReplicationRunProvider(FAST).create(run_props(conn, int(pol.id), timeout_seconds=1, poll_seconds=0.2))


def test_credentials_from_environment_and_provider_config(emulator, monkeypatch):
    monkeypatch.setenv("HARBOR_URL", emulator.url)
    monkeypatch.setenv("HARBOR_USERNAME", "admin")
    monkeypatch.setenv("HARBOR_PASSWORD", emulator.password)
    provider = ProjectProvider(FAST)
    assert provider.create({"name": "fromenv"}).outs["name"] == "fromenv"

    monkeypatch.setenv("HARBOR_PASSWORD", "wrong")
    from pulumi.dynamic import Config, ConfigureRequest
    section = json.dumps({"harborPassword": emulator.password})
    provider.configure(ConfigureRequest(Config({"harbor-ha:harborApi": section}, "harbor-ha")))
    assert provider.create({"name": "fromconfig"}).outs["name"] == "fromconfig"


def test_pickled_provider_carries_no_credential(emulator, conn):
    from pulumi.dynamic import Config, ConfigureRequest
    provider = RegistryProvider(FAST)
    provider.create(registry_props(conn))
    section = json.dumps({"harborUrl": emulator.url, "harborPassword": "cfg-pw"})
    provider.configure(ConfigureRequest(Config({"harbor-ha:harborApi": section}, "harbor-ha")))
    assert provider._provider_config["password"] == "cfg-pw"  # loaded, so the pickle below could carry it
    pickled = dill.dumps(provider)
    assert emulator.password.encode() not in pickled and b"cfg-pw" not in pickled
    restored = dill.loads(pickled)
    assert restored.settings == FAST and restored._provider_config == {}


def test_client_never_sends_a_cookie(emulator, conn):
    provider = ProjectProvider(FAST)
    created = provider.create({**conn, "name": "nocookie"})
    provider.update(created.id, created.outs, {**conn, "name": "nocookie", "public": True})
    assert emulator.count() >= 4 and emulator.requests_with_cookie == 0


def test_migration_section_objects_are_accepted_by_harbor_and_run(emulator, conn):
    """The args the `migration:` section generates pass the emulator's swagger validation end to end."""
    import dataclasses

    from harbor_provider.stack_config import parse_migration_section

    section = parse_migration_section({"sourceUrl": "http://old-registry:5000/", "username": "migrator",
                                       "password": "Passw0rd", "targetProject": "legacy",
                                       "nameFilter": "team/**", "tagFilter": "v*", "runNow": True})
    ProjectProvider(FAST).create({**conn, "name": "legacy"})  # already there: the section adopts it
    project = ProjectProvider(FAST).create({**conn, **dataclasses.asdict(section.projects[0])})
    registry = RegistryProvider(FAST).create({**conn, **dataclasses.asdict(section.registries[0])})
    policy_args = dataclasses.asdict(section.policies[0].to_args(int(registry.id)))
    policy = ReplicationPolicyProvider(FAST).create({**conn, **policy_args})
    run = section.policies[0].run
    done = ReplicationRunProvider(FAST).create(run_props(conn, int(policy.id), run_key=run.key))
    assert len(emulator.projects) == 1 and project.outs["name"] == "legacy"
    assert policy.outs["direction"] == "pull" and policy.outs["dest_namespace"] == "legacy"
    assert policy.outs["filters"] == [{"type": "name", "value": "team/**"},
                                      {"type": "tag", "value": "v*", "decoration": "matches"}]
    assert done.outs["status"] == "Succeed"


def test_deleting_a_project_with_repositories_says_what_to_do(emulator, conn):
    provider = ProjectProvider(FAST)
    created = provider.create({**conn, "name": "busy"})
    emulator.projects[int(created.id)]["repo_count"] = 3
    with pytest.raises(HarborError, match="still holds repositories.*retain_on_delete"):
        provider.delete(created.id, created.outs)
    assert int(created.id) in emulator.projects
