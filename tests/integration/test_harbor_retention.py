"""A project's tag retention policy through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
from pulumi.runtime import proto

from harbor_provider.resources import ProjectProvider
from harbor_provider.retention import RetentionPolicyProvider
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import UNKNOWN, ProviderAborted, SdkHost

RULES = [{"template": "latestPushedK", "count": 10, "repositories": "team/**", "tags": "v*"},
         {"template": "nDaysSinceLastPull", "count": 30, "untagged": False},
         {"template": "always", "tags": "release-*", "exclude_repositories": True, "repositories": "tmp/**"}]


@pytest.fixture
def project_id(emulator, conn):
    return int(ProjectProvider(FAST).create({**conn, "name": "library"}).id)


def props(conn, project_id, **kw):
    return {**conn, "project_id": project_id, "rules": RULES, "cron": "0 0 0 * * 0", **kw}


def test_retention_lifecycle_reads_back_every_rule_within_call_budget(emulator, conn, project_id):
    host = SdkHost(RetentionPolicyProvider(FAST))
    emulator.reset_calls()
    id_, outs = host.create(props(conn, project_id))
    assert emulator.count() == 2
    assert emulator.projects[project_id]["metadata"]["retention_id"] == id_
    assert outs["rules"][0] == {"template": "latestPushedK", "count": 10, "repositories": "team/**",
                                "exclude_repositories": False, "tags": "v*", "exclude_tags": False,
                                "untagged": True, "disabled": False}
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and read["rules"] == outs["rules"] and read["cron"] == "0 0 0 * * 0"
    assert host.diff(id_, read, props(conn, project_id)).changes == proto.DiffResponse.DIFF_NONE
    news = props(conn, project_id, rules=RULES[:2], cron=None)
    assert host.diff(id_, read, news).changes == proto.DiffResponse.DIFF_SOME
    emulator.reset_calls()
    outs = host.update(id_, read, news)
    assert emulator.count() == 2 and len(outs["rules"]) == 2 and "cron" not in outs  # None is dropped on the wire
    emulator.reset_calls()
    host.delete(id_, outs)
    assert emulator.count() == 1 and emulator.retentions == {}
    assert "retention_id" not in emulator.projects[project_id]["metadata"]


def test_rule_changed_in_the_ui_shows_as_drift(emulator, conn, project_id):
    host = SdkHost(RetentionPolicyProvider(FAST))
    id_, outs = host.create(props(conn, project_id))
    emulator.retentions[int(id_)]["rules"][0]["params"]["latestPushedK"] = 3
    _, read = host.read(id_, outs)
    assert read["rules"][0]["count"] == 3
    assert host.diff(id_, read, props(conn, project_id)).changes == proto.DiffResponse.DIFF_SOME


def test_existing_policy_of_the_project_is_not_taken_over_unless_adopt(emulator, conn, project_id):
    host = SdkHost(RetentionPolicyProvider(FAST))
    first, _ = host.create(props(conn, project_id, rules=RULES[:1]))
    with pytest.raises(ProviderAborted, match="retention policy of project .* already exists.*adopt"):
        host.create(props(conn, project_id))
    adopted, outs = host.create(props(conn, project_id, adopt=True))
    assert adopted == first and len(outs["rules"]) == 3 and len(emulator.retentions) == 1


def test_delete_of_a_policy_already_gone_succeeds(emulator, conn, project_id):
    host = SdkHost(RetentionPolicyProvider(FAST))
    id_, outs = host.create(props(conn, project_id))
    del emulator.retentions[int(id_)]
    host.delete(id_, outs)


BAD = [
    ({"rules": [{"template": "latestPushedK"}]}, "rules[0].count", "needs a count of 0..32766"),
    ({"rules": [{"template": "always", "count": 1}]}, "rules[0].count", "takes no count"),
    ({"rules": [{"template": "newest", "count": 1}]}, "rules[0].template", "must be one of"),
    ({"rules": [{"template": "nDaysSinceLastPush", "count": 20190905}]}, "rules[0].count", "0..20190904"),
    ({"rules": [{"template": "always", "tags": ""}]}, "rules[0].tags", "needs a pattern"),
    ({"rules": [{"template": "always"}] * 2}, "rules[1]", "same as rules[0]"),
    ({"rules": [{"template": "latestPushedK", "count": i} for i in range(16)]}, "rules", "at most 15"),
    ({"cron": "0 0 0 * *"}, "cron", "has 5 fields"),
    ({"project_id": 0}, "project_id", "positive"),
]


@pytest.mark.parametrize("change,field,reason", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_retention_input_is_refused_by_check_naming_the_key(change, field, reason, emulator, conn):
    _, failures = SdkHost(RetentionPolicyProvider(FAST)).check({}, {**props(conn, 1), **change})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]
    assert emulator.count() == 0


def test_unknown_project_id_at_preview_is_accepted(emulator, conn):
    assert SdkHost(RetentionPolicyProvider(FAST)).check({}, props(conn, UNKNOWN))[1] == []
