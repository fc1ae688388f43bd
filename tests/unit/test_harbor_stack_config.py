"""The `harbor-ha:harborApi` and `harbor-ha:migration` stack config sections: typed parsing, errors naming the
key, and the resources they declare (Pulumi mocks: no engine, no Harbor)."""

import base64
import itertools

import dill
import pulumi
import pytest

from harbor_provider.resources import ReplicationPolicyProvider
from harbor_provider.retention import ImmutableTagRuleProvider, RetentionPolicyProvider
from harbor_provider.stack_config import (
    declare_harbor_objects,
    merge_sections,
    parse_harbor_section,
    parse_migration_section,
)
from harbor_provider.typed import ConfigError
from tests.support import ROOT

ADMIN_PASSWORD = "Generated-Adm1n-Password"

TWO_SITE = {
    "registries": [{"name": "site-b", "type": "harbor", "url": "https://harbor-b.example.com",
                    "accessKey": "robot$site-a", "accessSecret": "S3cret-of-robot"}],
    "projects": [{"name": "library", "autoScan": True, "storageLimit": 107374182400}],
    "robots": [{"name": "site-b", "replicateDeletion": True}],
    "policies": [
        {"name": "to-site-b", "registry": "site-b", "trigger": {"type": "event_based"}, "replicateDeletion": True},
        {"name": "to-site-b-nightly", "registry": "site-b", "trigger": {"type": "scheduled", "cron": "0 0 2 * * *"},
         "singleActiveReplication": True, "filters": [{"type": "tag", "value": "dev-*", "decoration": "excludes"}]},
    ],
}


def problems_of(raw, parse=parse_harbor_section):
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    return caught.value.problems


def test_valid_section_parses_into_typed_objects():
    section = parse_harbor_section(TWO_SITE)
    assert section.registries[0].access_key == "robot$site-a"
    assert section.projects[0].storage_limit == 107374182400
    assert section.policies[1].trigger.cron == "0 0 2 * * *"
    assert section.policies[1].filters[0].decoration == "excludes"


@pytest.mark.parametrize("path,value,expected", [
    (("policies", 1, "trigger", "cron"), "0 0 2 * *",
     "harbor-ha:harborApi.policies[1].trigger.cron: '0 0 2 * *' has 5 fields"),
    (("policies", 0, "trigger", "type"), "hourly", "harbor-ha:harborApi.policies[0].trigger.type: 'hourly'"),
    (("policies", 0, "registry"), "nope", "harbor-ha:harborApi.policies[0].registry: unknown registry 'nope'"),
    (("policies", 1, "filters", 0, "type"), "name",
     "harbor-ha:harborApi.policies[1].filters[0].decoration: a name filter"),
    (("registries", 0, "type"), "harbor2", "harbor-ha:harborApi.registries[0].type: unknown registry type 'harbor2'"),
    (("projects", 0, "name"), "Library", "harbor-ha:harborApi.projects[0].name: 'Library'"),
    (("robots", 0, "durationDays"), 0, "harbor-ha:harborApi.robots[0].durationDays: must be -1 (never) or 1.."),
    (("policies", 0, "speed"), "fast", "harbor-ha:harborApi.policies[0].speed: expected int"),
    (("registries", 0, "colour"), "red", "harbor-ha:harborApi.registries[0].colour: unknown key"),
])
def test_bad_value_error_names_the_key(path, value, expected):
    import copy
    raw = copy.deepcopy(TWO_SITE)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(p.startswith(expected) for p in problems_of(raw)), problems_of(raw)


@pytest.mark.parametrize("raw,parse,key", [
    ({"harborUrl": "https://h.example.com", "harborPassword": 20261122}, parse_harbor_section,
     "harbor-ha:harborApi.harborPassword"),
    ({"registries": [{"name": "b", "type": "harbor", "url": "https://b.example.com", "accessKey": "robot$a",
                      "accessSecret": 20261122}]},
     parse_harbor_section, "harbor-ha:harborApi.registries[0].accessSecret"),
    ({"sourceUrl": "https://old:5000", "username": "u", "password": 20261122, "targetProject": "legacy"},
     parse_migration_section, "harbor-ha:migration.password"),
])
def test_type_error_names_the_key_but_not_the_secret_value(raw, parse, key):
    problems = problems_of(raw, parse)
    assert f"{key}: expected str, got int" in problems, problems
    assert not any("20261122" in p for p in problems), problems


def test_event_based_pull_and_duplicate_names_are_reported_together():
    raw = {"registries": [{"name": "old", "type": "docker-registry", "url": "http://old:5000"}],
           "policies": [{"name": "p", "registry": "old", "direction": "pull", "trigger": {"type": "event_based"}},
                        {"name": "p", "registry": "old", "direction": "pull"}]}
    problems = problems_of(raw)
    assert problems[0].startswith("harbor-ha:harborApi.policies[0].trigger.type: event_based works only for push")
    assert "harbor-ha:harborApi.policies[1].name: 'p' is declared twice" in problems


def test_existing_harbor_needs_a_password():
    assert problems_of({"harborUrl": "https://harbor.example.com"}) == [
        "harbor-ha:harborApi.harborPassword: required with harborUrl (set it with --secret)"]


def test_migration_section_becomes_registry_project_pull_policy_and_run():
    section = parse_migration_section({"sourceUrl": "https://old:5000", "username": "migrator",
                                       "password": "pw", "insecure": True, "targetProject": "legacy",
                                       "nameFilter": "team/**", "tagFilter": "v*", "runNow": True})
    policy = section.policies[0]
    assert section.registries[0].type == "docker-registry" and section.registries[0].insecure
    assert section.projects[0].name == "legacy" and section.projects[0].adopt
    assert (policy.direction, policy.dest_namespace, policy.dest_namespace_replace_count) == ("pull", "legacy", 0)
    assert [(f.type, f.value) for f in policy.filters] == [("name", "team/**"), ("tag", "v*")]
    assert policy.run is not None and policy.trigger.type == "manual"


def test_migration_errors_name_migration_keys():
    problems = problems_of({"sourceUrl": "ftp://old", "targetProject": "Legacy", "username": "u"},
                           parse_migration_section)
    assert "harbor-ha:migration.sourceUrl: 'ftp://old': Harbor accepts only http:// and https:// URLs" in problems
    assert any(p.startswith("harbor-ha:migration.targetProject: 'Legacy'") for p in problems)
    assert any(p.startswith("harbor-ha:migration.password: access_key and access_secret go together") for p in problems)


def test_merge_refuses_clashing_names():
    migration = parse_migration_section({"sourceUrl": "http://old:5000", "targetProject": "library"})
    with pytest.raises(ConfigError) as caught:
        merge_sections(parse_harbor_section(TWO_SITE), migration)
    assert caught.value.problems == ["harbor-ha:harborApi.projects[0].name and harbor-ha:migration.targetProject "
                                     "both declare project 'library'"]


def test_merge_names_the_migration_keys_of_each_clashing_object():
    harbor = parse_harbor_section({"registries": [{"name": "migration-source", "type": "docker-registry",
                                                   "url": "http://a:5000"}],
                                   "projects": [{"name": "x"}]})
    migration = parse_migration_section({"sourceUrl": "http://old:5000", "targetProject": "x"})
    with pytest.raises(ConfigError) as caught:
        merge_sections(harbor, migration)
    assert caught.value.problems == [
        "harbor-ha:harborApi.registries[0].name and harbor-ha:migration.registryName both declare registry "
        "'migration-source'",
        "harbor-ha:harborApi.projects[0].name and harbor-ha:migration.targetProject both declare project 'x'"]


# -- declared resources (Pulumi mocks) -----------------------------------------------------------------------


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.created: dict[str, tuple[str, dict]] = {}
        self.ids = itertools.count(1)

    def new_resource(self, args):
        self.created[args.name] = (args.typ, args.inputs)
        state = dict(args.inputs)
        if args.typ.endswith(":RobotAccount"):
            state["secret"] = "generated-by-harbor"  # what the provider's create would return
        return [str(next(self.ids)), state]

    def call(self, args):
        return {}


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also keeping each RegisterResource's `additionalSecretOutputs`: the engine encrypts
    exactly those outputs in the state, so they are what protects a secret the provider returns."""

    def __init__(self, mocks):
        super().__init__(mocks)
        self.secret_outputs: dict[str, set[str]] = {}

    def RegisterResource(self, request):
        self.secret_outputs[request.name] = set(request.additionalSecretOutputs)
        return super().RegisterResource(request)


@pytest.fixture
def mocks():
    mocks = Mocks()
    mocks.monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, preview=False, monitor=mocks.monitor)
    return mocks


def _declare():
    section = merge_sections(parse_harbor_section(TWO_SITE),
                             parse_migration_section({"sourceUrl": "http://old:5000", "targetProject": "legacy",
                                                      "runNow": True}))
    return declare_harbor_objects(section, url="https://harbor.example.com", username="admin",
                                  password=pulumi.Output.secret(ADMIN_PASSWORD))


def _all_ids(objects):
    """Every declared resource's id: the mocks have seen all registrations once these resolve."""
    return [r.id for group in (objects.registries, objects.projects, objects.robots, objects.policies, objects.runs)
            for r in group.values()]


@pulumi.runtime.test
def test_section_declares_every_resource_wired_by_id(mocks):
    objects = _declare()

    def check(values):
        policy_registry, run_policy, registry_id, policy_id = values
        assert sorted(mocks.created) == sorted([
            "harbor-registry-site-b", "harbor-registry-migration-source", "harbor-project-library",
            "harbor-project-legacy", "harbor-robot-site-b", "harbor-policy-to-site-b",
            "harbor-policy-to-site-b-nightly", "harbor-policy-migration-pull", "harbor-run-migration-pull"])
        assert mocks.created["harbor-policy-to-site-b"][0] == "pulumi-python:dynamic/harbor:ReplicationPolicy"
        assert policy_registry == int(registry_id) and run_policy == int(policy_id)
        inputs = mocks.created["harbor-policy-to-site-b-nightly"][1]
        assert inputs["filters"] == [{"type": "tag", "value": "dev-*", "decoration": "excludes"}]
        assert ReplicationPolicyProvider().check({}, inputs).failures == []

    return pulumi.Output.all(objects.policies["migration-pull"].registry_id,
                             objects.runs["migration-pull"].policy_id,
                             objects.registries["migration-source"].id,
                             objects.policies["migration-pull"].id, *_all_ids(objects)).apply(
        lambda values: check(values[:4]))


@pulumi.runtime.test
def test_every_secret_a_provider_returns_is_registered_as_a_secret_output(mocks):
    objects = _declare()
    credentials = {"harbor_password"}
    salted = {"secret_salt"}
    expected = {  # resource type -> outputs that carry a secret or a hash/salt of one
        "Registry": credentials | {"access_secret", "access_secret_hash"} | salted,
        "RobotAccount": credentials | {"secret", "secret_hash"} | salted,
        "Project": credentials, "ReplicationPolicy": credentials, "ReplicationRun": credentials,
    }

    def check(_):
        assert len(mocks.created) == 9
        for name, (typ, _inputs) in mocks.created.items():
            missing = expected[typ.rsplit(":", 1)[1]] - mocks.monitor.secret_outputs[name]
            assert not missing, (name, missing)

    return pulumi.Output.all(*_all_ids(objects)).apply(check)


@pulumi.runtime.test
def test_admin_password_and_registry_secret_stay_secret_in_the_program(mocks):
    objects = _declare()
    registry = objects.registries["site-b"]

    def check(flags):
        assert flags == [True, True]

    return pulumi.Output.all(pulumi.Output.from_input(registry.harbor_password.is_secret()),
                             pulumi.Output.from_input(registry.access_secret.is_secret())).apply(check)


def _unwrap(value):
    """A secret input as the mock monitor sees it: {<secret signature>: ..., "value": ...}."""
    return value["value"] if isinstance(value, dict) and "value" in value else value


@pulumi.runtime.test
def test_pickled_provider_in_the_inputs_carries_no_credential(mocks):
    objects = _declare()

    def check(_):
        for name, (_, inputs) in mocks.created.items():
            pickled = base64.b64decode(_unwrap(inputs["__provider"]))
            assert ADMIN_PASSWORD.encode() not in pickled and b"S3cret-of-robot" not in pickled, name
            provider = dill.loads(pickled)
            assert ADMIN_PASSWORD not in repr(vars(provider)), name
            assert _unwrap(inputs["harbor_password"]) == ADMIN_PASSWORD  # passed as a (secret) input instead

    return pulumi.Output.all(*_all_ids(objects)).apply(check)


@pulumi.runtime.test
def test_existing_harbor_from_the_section_replaces_the_cluster_connection(mocks):
    section = parse_harbor_section({"harborUrl": "https://old-harbor.example.com", "harborPassword": "Old-Adm1n",
                                    "projects": [{"name": "library", "adopt": True}]})
    objects = declare_harbor_objects(section, url="https://cluster.example.com", password="unused")

    def check(_):
        inputs = mocks.created["harbor-project-library"][1]
        assert inputs["harbor_url"] == "https://old-harbor.example.com"
        assert inputs["harbor_username"] == "admin" and _unwrap(inputs["harbor_password"]) == "Old-Adm1n"
        assert isinstance(inputs["harbor_password"], dict)  # sent as a secret

    return objects.projects["library"].id.apply(check)


@pulumi.runtime.test
def test_pickled_provider_loads_in_a_fresh_interpreter_by_module_reference(mocks):
    """Starts a child `python3` (as the dynamic provider host would) that unpickles a provider from the state.
    The provider is pickled by reference to `harbor_provider.resources`: importing it there registers nothing."""
    import subprocess
    import sys

    objects = _declare()

    def check(_):
        pickled = _unwrap(mocks.created["harbor-registry-site-b"][1]["__provider"])
        code = ("import base64, sys, dill; p = dill.loads(base64.b64decode(sys.stdin.read())); "
                "print(type(p).__module__, type(p).__name__)")
        done = subprocess.run([sys.executable, "-c", code], input=pickled, capture_output=True, text=True,
                              cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["harbor_provider.resources", "RegistryProvider"]

    return objects.registries["site-b"].id.apply(check)


@pytest.mark.parametrize("page,at_least", [("docs/migration.md", 2), ("docs/harbor-as-code.md", 10)])
def test_every_config_example_in_the_docs_parses_with_its_secrets(page, at_least):
    """As the stack file holds them (`{secure: ...}`, read offline); tests/unit/test_docs_stacks_with_secrets.py
    takes them through render.py and the program too."""
    import re

    import yaml

    text = (ROOT / page).read_text()
    sections = 0
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        for key, value in (yaml.safe_load(block).get("config") or {}).items():
            if key.endswith(":harborApi"):
                parse_harbor_section(value)
                sections += 1
            elif key.endswith(":migration"):
                parse_migration_section(value)
                sections += 1
    assert sections >= at_least


def _declare_section(raw):
    return declare_harbor_objects(merge_sections(parse_harbor_section(raw)), url="https://h.example.com",
                                  password=pulumi.Output.secret(ADMIN_PASSWORD))


def _assert_provider_accepts(inputs, provider_cls):
    """The inputs a resource registered, as its provider's check gets them, pass that check."""
    inputs = {k: _unwrap(v) for k, v in inputs.items() if k != "__provider"}
    assert provider_cls().check({}, inputs).failures == [], inputs


SCHEDULES = {"gcSchedule": {"cron": "0 0 3 * * 6", "deleteUntagged": True, "workers": 2},
             "auditLogPurgeSchedule": {"cron": "0 0 4 * * *", "retentionHours": 168,
                                       "operations": ["pull_artifact", "other"]},
             "scanAllSchedule": {"cron": "0 0 1 * * 0"}}


@pytest.mark.parametrize("key,field,value,expected", [
    ("gcSchedule", "workers", 0, "harbor-ha:harborApi.gcSchedule.workers: 0: Harbor allows 1..10"),
    ("gcSchedule", "cron", "0 3 * * 6", "harbor-ha:harborApi.gcSchedule.cron: '0 3 * * 6' has 5 fields"),
    ("auditLogPurgeSchedule", "retentionHours", -1, "harbor-ha:harborApi.auditLogPurgeSchedule.retentionHours: -1"),
    ("auditLogPurgeSchedule", "operations", ["push"], "harbor-ha:harborApi.auditLogPurgeSchedule.operations[0]: "),
    ("scanAllSchedule", "every", "day", "harbor-ha:harborApi.scanAllSchedule.every: unknown key"),
])
def test_bad_schedule_value_error_names_the_key(key, field, value, expected):
    raw = {**SCHEDULES, key: {**SCHEDULES[key], field: value}}
    assert any(p.startswith(expected) for p in problems_of(raw)), problems_of(raw)


def test_a_schedule_declared_in_two_sections_is_refused():
    with pytest.raises(ConfigError, match="gcSchedule: declared in more than one section"):
        merge_sections(parse_harbor_section(SCHEDULES), parse_harbor_section({"gcSchedule": SCHEDULES["gcSchedule"]}))


@pulumi.runtime.test
def test_schedules_are_declared_once_each_with_inputs_their_provider_accepts(mocks):
    from harbor_provider.schedules import AuditLogPurgeScheduleProvider, GcScheduleProvider, ScanAllScheduleProvider

    objects = _declare_section(SCHEDULES)
    providers = {"GcSchedule": GcScheduleProvider, "AuditLogPurgeSchedule": AuditLogPurgeScheduleProvider,
                 "ScanAllSchedule": ScanAllScheduleProvider}

    def check(_):
        assert sorted(mocks.created) == ["harbor-audit-log-purge-schedule", "harbor-gc-schedule",
                                         "harbor-scan-all-schedule"]
        for typ, inputs in mocks.created.values():
            _assert_provider_accepts(inputs, providers[typ.rsplit(":", 1)[1]])
        assert mocks.created["harbor-gc-schedule"][1]["workers"] == 2

    return pulumi.Output.all(*[s.id for s in objects.singletons.values()]).apply(check)


RETENTION = {"projects": [{"name": "library"}],
             "retentionPolicies": [{"project": "library", "cron": "0 0 0 * * 0",
                                    "rules": [{"template": "latestPushedK", "count": 10, "repositories": "team/**"},
                                              {"template": "always", "tags": "release-*"}]}]}


@pytest.mark.parametrize("change,expected", [
    ({"project": "nope"}, "harbor-ha:harborApi.retentionPolicies[0].project: unknown project 'nope'"),
    ({"cron": "0 0 * *"}, "harbor-ha:harborApi.retentionPolicies[0].cron: '0 0 * *' has 4 fields"),
    ({"rules": [{"template": "latestPushedK"}]}, "harbor-ha:harborApi.retentionPolicies[0].rules[0].count: "),
    ({"rules": [{"template": "always", "colour": "red"}]},
     "harbor-ha:harborApi.retentionPolicies[0].rules[0].colour: unknown key"),
])
def test_bad_retention_value_error_names_the_key(change, expected):
    raw = {**RETENTION, "retentionPolicies": [{**RETENTION["retentionPolicies"][0], **change}]}
    assert any(p.startswith(expected) for p in problems_of(raw)), problems_of(raw)


def test_two_retention_policies_of_one_project_are_refused():
    raw = {**RETENTION, "retentionPolicies": RETENTION["retentionPolicies"] * 2}
    assert "harbor-ha:harborApi.retentionPolicies[1].project: 'library' is declared twice" in problems_of(raw)


IMMUTABLE = {"projects": [{"name": "library"}],
             "immutableTagRules": [{"project": "library", "repositories": "team/**", "tags": "v*"},
                                   {"project": "library", "tags": "release-*", "disabled": True}]}


def test_immutable_rules_parse_and_errors_name_the_key():
    section = parse_harbor_section(IMMUTABLE)
    assert [r.name for r in section.immutable_tag_rules] == ["library:team/**:v*", "library:**:release-*"]
    raw = {**IMMUTABLE, "immutableTagRules": [{"project": "other", "tags": ""}] + IMMUTABLE["immutableTagRules"] * 2}
    problems = problems_of(raw)
    assert "harbor-ha:harborApi.immutableTagRules[0].tags: needs a pattern, e.g. '**' for all" in problems
    assert any(p.startswith("harbor-ha:harborApi.immutableTagRules[0].project: unknown project 'other'")
               for p in problems)
    assert "harbor-ha:harborApi.immutableTagRules[3].tags: 'library:team/**:v*' is declared twice" in problems


@pytest.mark.parametrize("raw,names,provider_cls", [
    (RETENTION, ["harbor-retention-library"], RetentionPolicyProvider),
    (IMMUTABLE, ["harbor-immutable-library:team/**:v*", "harbor-immutable-library:**:release-*"],
     ImmutableTagRuleProvider),
], ids=["retention", "immutable"])
@pulumi.runtime.test
def test_project_scoped_objects_are_declared_with_their_project_id(mocks, raw, names, provider_cls):
    objects = _declare_section(raw)

    def check(project_id):
        for name in names:
            inputs = mocks.created[name][1]
            assert inputs["project_id"] == int(project_id)
            _assert_provider_accepts(inputs, provider_cls)

    resources = [*objects.retention_policies.values(), *objects.immutable_tag_rules.values()]
    return pulumi.Output.all(*[r.id for r in resources]).apply(lambda _: objects.projects["library"].id).apply(check)


ACCESS = {"projects": [{"name": "library"}],
          "userGroups": [{"name": "devs", "type": "ldap", "ldapGroupDn": "cn=devs,ou=groups,dc=example,dc=com"},
                         {"name": "platform-team"}],
          "members": [{"project": "library", "role": "developer", "group": "devs"},
                      {"project": "library", "role": "projectAdmin", "user": "alice"}]}


def test_access_errors_name_the_key():
    raw = {**ACCESS, "members": [{"project": "library", "role": "owner", "group": "ops"},
                                 {"project": "library", "role": "guest"}]}
    problems = problems_of(raw)
    assert any(p.startswith("harbor-ha:harborApi.members[0].role: 'owner'") for p in problems), problems
    assert any(p.startswith("harbor-ha:harborApi.members[0].group: unknown group 'ops'") for p in problems)
    assert "harbor-ha:harborApi.members[1].user: give exactly one of username and group_id" in problems
    raw = {**ACCESS, "userGroups": [{"name": "devs", "type": "ldap"}]}
    assert "harbor-ha:harborApi.userGroups[0].ldapGroupDn: an ldap group needs its DN" in problems_of(raw)


@pulumi.runtime.test
def test_members_are_declared_with_their_project_and_group_ids(mocks):
    from harbor_provider.access import ProjectMemberProvider

    objects = _declare_section(ACCESS)

    def check(ids):
        project_id, group_id = int(ids[0]), int(ids[1])
        group_member = mocks.created["harbor-member-library:group:devs"][1]
        assert group_member["project_id"] == project_id and group_member["group_id"] == group_id
        assert mocks.created["harbor-member-library:user:alice"][1]["username"] == "alice"
        for name in ("harbor-member-library:group:devs", "harbor-member-library:user:alice"):
            _assert_provider_accepts(mocks.created[name][1], ProjectMemberProvider)

    return pulumi.Output.all(objects.projects["library"].id, objects.user_groups["devs"].id,
                             *[m.id for m in objects.members.values()]).apply(check)


USERS = {"projects": [{"name": "library"}],
         "users": [{"username": "bob", "email": "bob@example.com", "password": "B0b-Passw0rd", "admin": True}],
         "members": [{"project": "library", "role": "maintainer", "user": "bob"}]}


def test_user_errors_name_the_key():
    raw = {**USERS, "users": USERS["users"] * 2 + [{"username": "eve", "email": "eve", "password": "short"}]}
    problems = problems_of(raw)
    assert "harbor-ha:harborApi.users[1].username: 'bob' is declared twice" in problems
    assert any(p.startswith("harbor-ha:harborApi.users[2].email: 'eve'") for p in problems)
    assert any(p.startswith("harbor-ha:harborApi.users[2].password: Harbor wants 8-128") for p in problems)
    assert not any("short" in p for p in problems)  # never the secret in a message


@pulumi.runtime.test
def test_user_password_is_a_secret_input_and_its_hash_a_secret_output(mocks):
    from harbor_provider.access import LocalUserProvider

    objects = _declare_section(USERS)

    def check(_):
        typ, inputs = mocks.created["harbor-user-bob"]
        assert typ == "pulumi-python:dynamic/harbor:LocalUser" and _unwrap(inputs["password"]) == "B0b-Passw0rd"
        assert inputs["password"] != "B0b-Passw0rd"  # wrapped as a secret
        assert {"password", "password_hash", "secret_salt"} <= mocks.monitor.secret_outputs["harbor-user-bob"]
        _assert_provider_accepts(inputs, LocalUserProvider)

    return pulumi.Output.all(objects.users["bob"].id, *[m.id for m in objects.members.values()]).apply(check)


def test_configuration_errors_name_the_key_and_secrets_stay_out_of_messages():
    raw = {"configuration": {"settings": {"auth_mode": "saml", "oidc_client_secret": "Cl1ent-Secret"},
                             "secrets": {"oidc_client_secret": "Cl1ent-Secret"}}}
    problems = problems_of(raw)
    assert any(p.startswith("harbor-ha:harborApi.configuration.settings.auth_mode: 'saml'") for p in problems)
    assert any(p.startswith("harbor-ha:harborApi.configuration.settings.oidc_client_secret: is a secret")
               for p in problems)
    assert not any("Cl1ent-Secret" in p for p in problems)


@pulumi.runtime.test
def test_configuration_secrets_are_secret_inputs_and_outputs(mocks):
    from harbor_provider.configuration import ConfigurationProvider

    objects = _declare_section({"configuration": {"settings": {"auth_mode": "oidc_auth"},
                                                  "secrets": {"oidc_client_secret": "Cl1ent-Secret"}}})

    def check(_):
        typ, inputs = mocks.created["harbor-configuration"]
        assert typ == "pulumi-python:dynamic/harbor:Configuration"
        assert _unwrap(inputs["secrets"]) == {"oidc_client_secret": "Cl1ent-Secret"} != inputs["secrets"]
        assert {"secrets", "secrets_hash", "secret_salt"} <= mocks.monitor.secret_outputs["harbor-configuration"]
        _assert_provider_accepts(inputs, ConfigurationProvider)

    return objects.singletons["configuration"].id.apply(check)


LABELS = {"projects": [{"name": "library"}],
          "labels": [{"name": "release", "color": "#0065AB"}, {"name": "release", "project": "library"}]}


def test_labels_are_unique_per_scope_and_errors_name_the_key():
    assert [lb.identity for lb in parse_harbor_section(LABELS).labels] == ["release", "library:release"]
    problems = problems_of({**LABELS, "labels": LABELS["labels"] * 2 + [{"name": "", "project": "nope"}]})
    assert "harbor-ha:harborApi.labels[2].name: 'release' is declared twice" in problems
    assert "harbor-ha:harborApi.labels[4].name: must be 1-128 characters" in problems
    assert any(p.startswith("harbor-ha:harborApi.labels[4].project: unknown project 'nope'") for p in problems)


@pulumi.runtime.test
def test_project_label_is_declared_with_its_project_id_and_global_without(mocks):
    from harbor_provider.labels import LabelProvider

    objects = _declare_section(LABELS)

    def check(project_id):
        assert "project_id" not in mocks.created["harbor-label-release"][1]
        assert mocks.created["harbor-label-library:release"][1]["project_id"] == int(project_id)
        for name in ("harbor-label-release", "harbor-label-library:release"):
            _assert_provider_accepts(mocks.created[name][1], LabelProvider)

    labels = [lb.id for lb in objects.labels.values()]
    return pulumi.Output.all(*labels).apply(lambda _: objects.projects["library"].id).apply(check)


WEBHOOKS = {"projects": [{"name": "library"}],
            "webhooks": [{"project": "library", "name": "ci", "address": "https://ci.example.com/hooks",
                          "eventTypes": ["PUSH_ARTIFACT"], "authHeader": "Bearer S3cret"}]}


def test_webhook_errors_name_the_key():
    raw = {**WEBHOOKS, "webhooks": WEBHOOKS["webhooks"] * 2 + [
        {"project": "library", "name": "x", "address": "https://x", "eventTypes": ["PUSH_IMAGE"]}]}
    problems = problems_of(raw)
    assert "harbor-ha:harborApi.webhooks[1].name: 'library:ci' is declared twice" in problems
    assert any(p.startswith("harbor-ha:harborApi.webhooks[2].eventTypes[0]: 'PUSH_IMAGE'") for p in problems)


@pulumi.runtime.test
def test_webhook_auth_header_is_a_secret_input_and_its_hash_a_secret_output(mocks):
    from harbor_provider.webhooks import WebhookProvider

    objects = _declare_section(WEBHOOKS)

    def check(_):
        inputs = mocks.created["harbor-webhook-library:ci"][1]
        assert _unwrap(inputs["auth_header"]) == "Bearer S3cret" != inputs["auth_header"]
        assert {"auth_header", "auth_header_hash"} <= mocks.monitor.secret_outputs["harbor-webhook-library:ci"]
        _assert_provider_accepts(inputs, WebhookProvider)

    return objects.webhooks["library:ci"].id.apply(check)
