"""Harbor's admin password in code (harbor_provider/admin.py), driven through the SDK's own dynamic provider host
as the engine drives it, against the Harbor API emulator, which changes a password as Harbor 2.15.2's
handler/user.go UpdateUserPassword does (the current password required, the new one valid and different, the Basic
credentials of every later call checked against it).

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

from __future__ import annotations

import pytest

from harbor_provider.admin import AdminPasswordProvider
from harbor_provider.client import Credentials, HarborClient, HarborError
from harbor_provider.resources import ProjectProvider
from pulumi.runtime import proto
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import UNKNOWN, ProviderAborted, SdkHost

INITIAL = "Harbor12345"  # the emulator's admin password: the generated one the nodes installed Harbor with
WANTED = "Wanted-Adm1n-Pass"
NEXT = "N3xt-Adm1n-Pass"


def admin_props(emulator, password: str, initial: str = INITIAL) -> dict:
    return {"harbor_url": emulator.url, "harbor_username": "admin", "password": password,
            "initial_password": initial}


def logs_in(emulator, password: str) -> bool:
    return emulator.password == password


def test_the_generated_password_asks_nothing_of_harbor(emulator):
    id_, outs = SdkHost(AdminPasswordProvider(FAST)).create(admin_props(emulator, INITIAL))
    assert (id_, outs["password"]) == ("admin", INITIAL)
    assert emulator.count() == 0


def test_a_declared_password_is_set_over_the_initial_one_at_create(emulator):
    _id, outs = SdkHost(AdminPasswordProvider(FAST)).create(admin_props(emulator, WANTED))
    assert outs["password"] == WANTED and logs_in(emulator, WANTED)
    assert [c[2] for c in emulator.calls if c[0] == "PUT"] == ["updateUserPassword"]


def test_a_change_goes_through_the_api_and_the_harbor_objects_keep_working(emulator, conn):
    admin = SdkHost(AdminPasswordProvider(FAST))
    id_, outs = admin.create(admin_props(emulator, WANTED))
    project = SdkHost(ProjectProvider(FAST))
    pid, pouts = project.create({**conn, "harbor_password": WANTED, "name": "library"})

    _failures, diff = admin.preview(outs, admin_props(emulator, NEXT), id_)
    assert diff.changes == proto.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    outs = admin.update(id_, outs, admin_props(emulator, NEXT))
    assert outs["password"] == NEXT and logs_in(emulator, NEXT)
    # The project, next in the engine's order (it logs in with the cluster's output), stores the new credential.
    pouts = project.update(pid, pouts, {**conn, "harbor_password": NEXT, "name": "library"})
    assert project.read(pid, pouts)[1]["name"] == "library"
    assert admin.read(id_, outs)[1]["password"] == NEXT


def test_a_change_whose_answer_was_lost_is_recognised_on_the_retry(emulator):
    admin = SdkHost(AdminPasswordProvider(FAST))
    id_, outs = admin.create(admin_props(emulator, WANTED))
    # Harbor applies the change and the connection drops: the client's retry of the PUT, with the old Basic
    # credentials, is refused (401); the new password logging in shows the change was made.
    emulator.inject("PUT", r"/users/1/password$", "drop")
    emulator.reset_calls()
    outs = admin.update(id_, outs, admin_props(emulator, NEXT))
    assert outs["password"] == NEXT and logs_in(emulator, NEXT)
    assert [c[2] for c in emulator.calls if c[0] == "PUT"] == ["updateUserPassword", "updateUserPassword"]


def test_a_password_changed_in_harbors_ui_stops_the_update_with_the_fix(emulator):
    admin = SdkHost(AdminPasswordProvider(FAST))
    id_, outs = admin.create(admin_props(emulator, WANTED))
    emulator.password = "S0meone-Elses"
    with pytest.raises(ProviderAborted, match="changed outside the program.*harborAdminPassword to the one in force"):
        admin.update(id_, outs, admin_props(emulator, NEXT))
    assert logs_in(emulator, "S0meone-Elses")
    with pytest.raises(ProviderAborted, match="accepts none of the admin passwords"):
        admin.read(id_, outs)
    # The fix the message gives: harborAdminPassword set to the one in force is recorded without a change.
    emulator.reset_calls()
    outs = admin.update(id_, outs, admin_props(emulator, "S0meone-Elses"))
    assert outs["password"] == "S0meone-Elses" and emulator.count("PUT") == 0


def test_a_password_harbor_would_refuse_is_refused_by_check(emulator):
    _news, failures = SdkHost(AdminPasswordProvider(FAST)).check({}, admin_props(emulator, "alllowercase1"))
    assert [f for f, _ in failures] == ["password"] and "upper case" in failures[0][1]
    assert emulator.count() == 0
    _news, failures = SdkHost(AdminPasswordProvider(FAST)).check({}, admin_props(emulator, UNKNOWN))
    assert failures == []  # a generated password is unknown at the first preview


def test_the_old_password_is_what_harbor_requires(emulator):
    # Harbor's own rule, which the provider relies on: a wrong current password is a 403 and changes nothing.
    client = HarborClient(Credentials(emulator.url, "admin", INITIAL), FAST)
    with pytest.raises(HarborError, match="403.*Current password is incorrect"):
        client.request("PUT", "/users/1/password", json_body={"old_password": "Wr0ng-Pass", "new_password": NEXT})
    with pytest.raises(HarborError, match="400.*identical"):
        client.request("PUT", "/users/1/password", json_body={"old_password": INITIAL, "new_password": INITIAL})
    assert logs_in(emulator, INITIAL)


def test_outside_db_auth_only_the_local_admin_can_change_its_password(emulator):
    emulator.configurations["auth_mode"] = "ldap_auth"
    uid = emulator.add_user("alice")
    client = HarborClient(Credentials(emulator.url, "admin", INITIAL), FAST)
    with pytest.raises(HarborError, match="403.*can't be updated"):
        client.request("PUT", f"/users/{uid}/password", json_body={"new_password": NEXT})
    _id, outs = SdkHost(AdminPasswordProvider(FAST)).create(admin_props(emulator, WANTED))
    assert logs_in(emulator, WANTED)
