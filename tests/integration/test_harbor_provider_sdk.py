"""The providers driven through the SDK's own dynamic provider host (pulumi/dynamic/__main__.py), as the engine
drives them: requests as protobuf Structs, preview-time unknowns as the engine's sentinel on the wire, which the
SDK hands to check/diff as `pulumi.output.Unknown` objects.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest

from harbor_provider.resources import (
    ProjectProvider,
    ReplicationPolicyProvider,
    ReplicationRunProvider,
    RobotAccountProvider,
)
from pulumi.runtime import proto
from tests.support.harbor_api import FAST, make_registry, policy_props, run_props, unmanaged_robot
from tests.support.sdk_provider import UNKNOWN, ProviderAborted, SdkHost

SECRET = "Peer5ecretValue"


# -- 1. preview with values unknown until apply ----------------------------------------------------------------

@pytest.mark.parametrize("provider_cls,news", [
    (ReplicationPolicyProvider, lambda c: policy_props(c, UNKNOWN)),  # its registry is created in the same update
    (ReplicationPolicyProvider, lambda c: policy_props(c, 1, cron=UNKNOWN)),
    (ReplicationRunProvider, lambda c: run_props(c, UNKNOWN)),  # its policy is created in the same update
    (RobotAccountProvider, lambda c: {**c, "name": "peer", "projects": [UNKNOWN]}),
], ids=["policy.registry_id", "policy.cron", "run.policy_id", "robot.projects[0]"])
def test_preview_check_accepts_unknown_inputs_as_the_sdk_delivers_them(provider_cls, news, emulator, conn):
    failures, _ = SdkHost(provider_cls(FAST)).preview({}, news(conn))
    assert failures == []
    assert emulator.count() == 0


def test_preview_diff_with_an_unknown_harbor_url_reports_a_change_without_crashing(emulator, conn):
    host = SdkHost(ProjectProvider(FAST))
    id_, outs = host.create({**conn, "name": "library"})
    emulator.reset_calls()
    failures, diff = host.preview(outs, {**conn, "name": "library", "harbor_url": UNKNOWN}, id_)
    assert failures == [] and diff.changes == proto.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    assert emulator.count() == 0


def test_preview_of_an_unchanged_policy_with_known_inputs_shows_no_change(emulator, conn):
    host = SdkHost(ReplicationPolicyProvider(FAST))
    registry_id = int(make_registry(conn).id)
    id_, outs = host.create(policy_props(conn, registry_id))
    failures, diff = host.preview(outs, policy_props(conn, registry_id), id_)
    assert failures == [] and diff.changes == proto.DiffResponse.DIFF_NONE


# -- 2. a new admin password ------------------------------------------------------------------------------------

def test_password_only_change_updates_the_stored_credential_for_refresh_and_delete(emulator, conn):
    host = SdkHost(ProjectProvider(FAST))
    id_, outs = host.create({**conn, "name": "library"})
    emulator.password = "N3wAdminPassword"  # rotated in Harbor (e.g. by the cluster's admin password change)
    news = {**conn, "name": "library", "harbor_password": emulator.password}
    _, diff = host.preview(outs, news, id_)
    assert diff.changes == proto.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    emulator.reset_calls()
    outs = host.update(id_, outs, news)
    assert outs["harbor_password"] == emulator.password
    assert emulator.count("PUT") == 0  # nothing of the project changed: no write
    assert host.read(id_, outs)[1]["name"] == "library"
    host.delete(id_, outs)
    assert emulator.projects == {}


# -- 3. a declared robot secret ---------------------------------------------------------------------------------

def test_declared_robot_secret_is_the_one_harbor_holds_after_create(emulator, conn):
    host = SdkHost(RobotAccountProvider(FAST))
    id_, outs = host.create({**conn, "name": "peer", "secret": SECRET})
    assert emulator.robots[int(id_)]["secret"] == SECRET
    assert outs["secret"] == SECRET
    assert emulator.robot_can_log_in("robot$peer", SECRET)


def test_robot_whose_secret_harbor_refuses_to_take_fails_the_create(emulator, conn):
    emulator.refresh_ignores_secret = True  # a Harbor that answers 200 but keeps its own secret
    with pytest.raises(ProviderAborted, match="cannot log in with the declared secret"):
        SdkHost(RobotAccountProvider(FAST)).create({**conn, "name": "peer", "secret": SECRET})


# -- 4. what Harbor refuses with 400 is refused by check ---------------------------------------------------------

BAD = [
    (RobotAccountProvider, lambda c: {**c, "name": "Peer"}, "name", "lower case"),
    (RobotAccountProvider, lambda c: {**c, "name": "peer+1"}, "name", "lower case"),
    (RobotAccountProvider, lambda c: {**c, "name": "peer", "duration_days": 2**31}, "duration_days", "2147483647"),
    (ReplicationPolicyProvider, lambda c: policy_props(c, 1, dest_namespace="Team/App"), "dest_namespace",
     "repository name"),
    (ReplicationPolicyProvider, lambda c: policy_props(c, 1, dest_namespace="team//app"), "dest_namespace",
     "repository name"),
    (ReplicationPolicyProvider, lambda c: policy_props(c, 1, cron="0 0 25 * * *"), "cron", "hours"),
]


@pytest.mark.parametrize("provider_cls,news,field,reason", BAD, ids=[f"{b[0].kind}:{b[2]}" for b in BAD])
def test_check_refuses_what_harbor_refuses_with_400(provider_cls, news, field, reason, emulator, conn):
    _, failures = SdkHost(provider_cls(FAST)).check({}, news(conn))
    assert [f for f, _ in failures] == [field]
    assert reason in failures[0][1]
    assert emulator.count() == 0


def test_check_accepts_a_namespace_with_path_components(emulator, conn):
    _, failures = SdkHost(ReplicationPolicyProvider(FAST)).check(
        {}, policy_props(conn, 1, dest_namespace="mirror/team_a/app-1"))
    assert failures == []


# -- 5. no silent takeover after a 503 --------------------------------------------------------------------------

def test_409_after_a_503_does_not_take_over_an_unmanaged_robot(emulator, conn):
    unmanaged_robot(conn, "peer")
    secret_before = next(iter(emulator.robots.values()))["secret"]
    emulator.inject("POST", "/robots$", "status", status=503)
    with pytest.raises(ProviderAborted, match="already exists"):
        SdkHost(RobotAccountProvider(FAST)).create({**conn, "name": "peer"})
    assert next(iter(emulator.robots.values()))["secret"] == secret_before and emulator.count("PATCH") == 0


def test_409_after_a_503_adopts_when_adopt_is_set(emulator, conn):
    existing = unmanaged_robot(conn, "peer")
    emulator.inject("POST", "/robots$", "status", status=503)
    id_, outs = SdkHost(RobotAccountProvider(FAST)).create({**conn, "name": "peer", "adopt": True})
    assert id_ == existing and outs["secret"] == emulator.robots[int(id_)]["secret"]


def test_409_after_a_timeout_adopts_the_object_the_first_try_created(emulator, conn):
    emulator.inject("POST", "/projects$", "late", seconds=1.5)  # applied, answered after the client gave up
    id_, _ = SdkHost(ProjectProvider(FAST)).create({**conn, "name": "library"})
    assert list(emulator.projects) == [int(id_)]
