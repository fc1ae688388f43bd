"""Project webhooks through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
from pulumi.runtime import proto

from harbor_provider.resources import ProjectProvider
from harbor_provider.webhooks import WebhookProvider
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import ProviderAborted, SdkHost


@pytest.fixture
def project_id(emulator, conn):
    return int(ProjectProvider(FAST).create({**conn, "name": "library"}).id)


def props(conn, project_id, **kw):
    return {**conn, "project_id": project_id, "name": "ci", "address": "ci.example.com/hooks/harbor?token=x",
            "event_types": ["SCANNING_COMPLETED", "PUSH_ARTIFACT"], "auth_header": "Bearer S3cret", **kw}


def test_webhook_lifecycle_reads_back_as_harbor_normalizes_within_call_budget(emulator, conn, project_id):
    host = SdkHost(WebhookProvider(FAST))
    emulator.reset_calls()
    id_, outs = host.create(props(conn, project_id))
    assert emulator.count() == 2
    assert outs["address"] == "http://ci.example.com/hooks/harbor" and outs["payload_format"] == "Default"
    assert outs["event_types"] == ["PUSH_ARTIFACT", "SCANNING_COMPLETED"]
    assert "S3cret" not in str(outs) and outs["auth_header_hash"]
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1
    assert host.diff(id_, read, props(conn, project_id)).changes == proto.DiffResponse.DIFF_NONE
    news = props(conn, project_id, auth_header="Bearer R0tated", enabled=False)
    assert WebhookProvider(FAST).diff(id_, read, news).changed == ["enabled", "auth_header"]
    emulator.reset_calls()
    outs = host.update(id_, read, news)
    assert emulator.count() == 2 and outs["enabled"] is False
    assert emulator.webhooks[int(id_)]["targets"][0]["auth_header"] == "Bearer R0tated"
    emulator.reset_calls()
    host.delete(id_, outs)
    assert emulator.count() == 1 and emulator.webhooks == {}


def test_webhook_name_taken_in_the_project_is_adopted_only_with_adopt(emulator, conn, project_id):
    host = SdkHost(WebhookProvider(FAST))
    first, _ = host.create(props(conn, project_id))
    with pytest.raises(ProviderAborted, match="webhook 'ci' of project .* already exists"):
        host.create(props(conn, project_id, event_types=["REPLICATION"]))
    adopted, outs = host.create(props(conn, project_id, event_types=["REPLICATION"], adopt=True))
    assert adopted == first and emulator.webhooks[int(first)]["event_types"] == ["REPLICATION"]


@pytest.mark.parametrize("change,field,reason", [
    ({"event_types": ["PUSH_IMAGE"]}, "event_types[0]", "must be one of PUSH_ARTIFACT"),
    ({"event_types": []}, "event_types", "at least one"),
    ({"type": "slack", "payload_format": "Default"}, "payload_format", "no payload format for slack"),
    ({"payload_format": "Json"}, "payload_format", "Default, CloudEvents"),
    ({"type": "teams"}, "type", "http, slack"),
    ({"address": "ftp://x"}, "address", "only http:// and https://"),
])
def test_bad_webhook_input_is_refused_by_check(change, field, reason, emulator, conn):
    _, failures = SdkHost(WebhookProvider(FAST)).check({}, props(conn, 1, **change))
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]
