"""Global and project labels through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
from pulumi.runtime import proto

from harbor_provider.labels import LabelProvider
from harbor_provider.resources import ProjectProvider
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import ProviderAborted, SdkHost


@pytest.mark.parametrize("scope", ["global", "project"])
def test_label_lifecycle_within_call_budget(scope, emulator, conn):
    project_id = int(ProjectProvider(FAST).create({**conn, "name": "library"}).id) if scope == "project" else None
    props = {**conn, "name": "release", "color": "#0065AB", **({"project_id": project_id} if project_id else {})}
    host = SdkHost(LabelProvider(FAST))
    emulator.reset_calls()
    id_, outs = host.create(props)
    assert emulator.count() == 2 and outs["color"] == "#0065AB" and outs.get("project_id") == project_id
    assert emulator.labels[int(id_)]["scope"] == ("p" if project_id else "g")
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and host.diff(id_, read, props).changes == proto.DiffResponse.DIFF_NONE
    emulator.reset_calls()
    outs = host.update(id_, read, {**props, "description": "shipped"})
    assert emulator.count() == 2 and outs["description"] == "shipped"
    emulator.reset_calls()
    host.delete(id_, outs)
    assert emulator.count() == 1 and emulator.labels == {}


def test_moving_a_label_to_a_project_replaces_it(emulator, conn):
    host = SdkHost(LabelProvider(FAST))
    id_, outs = host.create({**conn, "name": "release"})
    assert list(host.diff(id_, outs, {**conn, "name": "release", "project_id": 7}).replaces) == ["project_id"]


def test_label_taken_in_its_scope_is_adopted_only_with_adopt(emulator, conn):
    host = SdkHost(LabelProvider(FAST))
    first, _ = host.create({**conn, "name": "release"})
    with pytest.raises(ProviderAborted, match="label 'release' already exists"):
        host.create({**conn, "name": "release", "color": "#FF0000"})
    adopted, outs = host.create({**conn, "name": "release", "color": "#FF0000", "adopt": True})
    assert adopted == first and emulator.labels[int(first)]["color"] == "#FF0000"


@pytest.mark.parametrize("change,field,reason", [
    ({"name": "x" * 129}, "name", "1-128"), ({"name": ""}, "name", "1-128"),
    ({"project_id": 0}, "project_id", "positive"),
])
def test_bad_label_input_is_refused_by_check(change, field, reason, emulator, conn):
    _, failures = SdkHost(LabelProvider(FAST)).check({}, {**conn, "name": "release", **change})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]
