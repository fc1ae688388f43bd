"""A project's tag immutability rules through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
from pulumi.runtime import proto

from harbor_provider.resources import ProjectProvider
from harbor_provider.retention import ImmutableTagRuleProvider
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import ProviderAborted, SdkHost


@pytest.fixture
def project_id(emulator, conn):
    return int(ProjectProvider(FAST).create({**conn, "name": "library"}).id)


def props(conn, project_id, **kw):
    return {**conn, "project_id": project_id, "repositories": "team/**", "tags": "v*", **kw}


def test_immutable_rule_lifecycle_within_call_budget(emulator, conn, project_id):
    host = SdkHost(ImmutableTagRuleProvider(FAST))
    emulator.reset_calls()
    id_, outs = host.create(props(conn, project_id))
    assert emulator.count() == 2 and outs["project_id"] == project_id and outs["tags"] == "v*"
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and read["repositories"] == "team/**" and read["disabled"] is False
    assert host.diff(id_, read, props(conn, project_id)).changes == proto.DiffResponse.DIFF_NONE
    news = props(conn, project_id)
    for change in ({"tags": "release-*"}, {"disabled": True}):  # one PUT each
        news.update(change)
        emulator.reset_calls()
        read = host.update(id_, read, news)
        assert emulator.count() == 2 and all(read[k] == v for k, v in change.items())
    assert emulator.immutable_rules[int(id_)]["rule"]["disabled"] is True
    assert list(host.diff(id_, read, {**news, "project_id": project_id + 1}).replaces) == ["project_id"]
    emulator.reset_calls()
    host.delete(id_, read)
    assert emulator.count() == 1 and emulator.immutable_rules == {}


def test_changing_patterns_and_disabled_together_applies_both(emulator, conn, project_id):
    """Harbor's PUT with a different `disabled` only toggles: the patterns must go in their own PUT first."""
    host = SdkHost(ImmutableTagRuleProvider(FAST))
    id_, outs = host.create(props(conn, project_id))
    outs = host.update(id_, outs, props(conn, project_id, tags="release-*", disabled=True))
    rule = emulator.immutable_rules[int(id_)]["rule"]
    assert rule["disabled"] is True and rule["tag_selectors"][0]["pattern"] == "release-*"
    assert outs["tags"] == "release-*" and outs["disabled"] is True


def test_a_rule_declared_disabled_is_disabled_after_create(emulator, conn, project_id):
    id_, outs = SdkHost(ImmutableTagRuleProvider(FAST)).create(props(conn, project_id, disabled=True))
    assert emulator.immutable_rules[int(id_)]["rule"]["disabled"] is True and outs["disabled"] is True


def test_same_rule_made_in_the_ui_is_adopted_only_with_adopt(emulator, conn, project_id):
    host = SdkHost(ImmutableTagRuleProvider(FAST))
    first, _ = host.create(props(conn, project_id))
    with pytest.raises(ProviderAborted, match="immutable tag rule 'team/\\*\\*':'v\\*' of project .* already exists"):
        host.create(props(conn, project_id))
    adopted, _ = host.create(props(conn, project_id, adopt=True))
    assert adopted == first and len(emulator.immutable_rules) == 1


def test_rule_deleted_in_the_ui_reads_as_gone(emulator, conn, project_id):
    host = SdkHost(ImmutableTagRuleProvider(FAST))
    id_, outs = host.create(props(conn, project_id))
    emulator.immutable_rules.clear()
    assert host.read(id_, outs) == ("", {})


@pytest.mark.parametrize("change,field,reason", [
    ({"tags": ""}, "tags", "needs a pattern"), ({"project_id": -1}, "project_id", "positive"),
    ({"action": "immutable"}, "action", "unknown input"),
])
def test_bad_immutable_rule_input_is_refused_by_check(change, field, reason, emulator, conn):
    _, failures = SdkHost(ImmutableTagRuleProvider(FAST)).check({}, {**props(conn, 1), **change})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]
