"""User groups and project members through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
from pulumi.runtime import proto

from harbor_provider.access import LocalUserProvider, ProjectMemberProvider, UserGroupProvider
from harbor_provider.resources import ProjectProvider
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import UNKNOWN, ProviderAborted, SdkHost

DN = "cn=devs,ou=groups,dc=example,dc=com"


@pytest.fixture
def project_id(emulator, conn):
    return int(ProjectProvider(FAST).create({**conn, "name": "library"}).id)


def test_user_group_lifecycle_within_call_budget(emulator, conn):
    host = SdkHost(UserGroupProvider(FAST))
    props = {**conn, "name": "devs", "type": "ldap", "ldap_group_dn": DN}
    id_, outs = host.create(props)
    assert emulator.count() == 2 and outs["type"] == "ldap" and outs["ldap_group_dn"] == DN
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and host.diff(id_, read, props).changes == proto.DiffResponse.DIFF_NONE
    assert list(host.diff(id_, read, {**props, "type": "oidc", "ldap_group_dn": None}).replaces) == \
        ["type", "ldap_group_dn"]
    emulator.reset_calls()
    outs = host.update(id_, read, {**props, "name": "developers"})
    assert emulator.count() == 2 and outs["name"] == "developers"
    emulator.reset_calls()
    host.delete(id_, outs)
    assert emulator.count() == 1 and emulator.usergroups == {}


def test_existing_group_is_adopted_only_with_adopt(emulator, conn):
    host = SdkHost(UserGroupProvider(FAST))
    first, _ = host.create({**conn, "name": "platform"})
    with pytest.raises(ProviderAborted, match="user group 'platform' already exists"):
        host.create({**conn, "name": "platform"})
    assert host.create({**conn, "name": "platform", "adopt": True})[0] == first


@pytest.mark.parametrize("props,field,reason", [
    ({"name": "devs", "type": "ldap"}, "ldap_group_dn", "needs its DN"),
    ({"name": "devs", "type": "oidc", "ldap_group_dn": DN}, "ldap_group_dn", "only for type ldap"),
    ({"name": "devs", "type": "ldap", "ldap_group_dn": "devs"}, "ldap_group_dn", "is not a DN"),
    ({"name": "devs", "type": "saml"}, "type", "must be one of ldap, http, oidc"),
])
def test_bad_user_group_input_is_refused_by_check(props, field, reason, emulator, conn):
    _, failures = SdkHost(UserGroupProvider(FAST)).check({}, {**conn, **props})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]


def test_member_user_and_group_lifecycle_within_call_budget(emulator, conn, project_id):
    emulator.add_user("alice")
    group_id = int(UserGroupProvider(FAST).create({**conn, "name": "devs"}).id)
    host = SdkHost(ProjectMemberProvider(FAST))
    for who in ({"username": "alice"}, {"group_id": group_id}):
        props = {**conn, "project_id": project_id, "role": "developer", **who}
        emulator.reset_calls()
        id_, outs = host.create(props)
        assert emulator.count() == 2 and outs["role"] == "developer"
        assert outs["entity_name"] == ("alice" if "username" in who else "devs")
        emulator.reset_calls()
        _, read = host.read(id_, outs)
        assert emulator.count() == 1 and host.diff(id_, read, props).changes == proto.DiffResponse.DIFF_NONE
        emulator.reset_calls()
        outs = host.update(id_, read, {**props, "role": "maintainer"})
        assert emulator.count() == 2 and outs["role"] == "maintainer"
        assert emulator.members[int(id_)]["role_id"] == 4
        emulator.reset_calls()
        host.delete(id_, outs)
        assert emulator.count() == 1 and int(id_) not in emulator.members


def test_existing_membership_is_adopted_only_with_adopt(emulator, conn, project_id):
    emulator.add_user("alice")
    host = SdkHost(ProjectMemberProvider(FAST))
    props = {**conn, "project_id": project_id, "role": "guest", "username": "alice"}
    first, _ = host.create(props)
    with pytest.raises(ProviderAborted, match="project member user 'alice' of project .* already exists"):
        host.create({**props, "role": "developer"})
    adopted, outs = host.create({**props, "role": "developer", "adopt": True})
    assert adopted == first and outs["role"] == "developer" and emulator.members[int(first)]["role_id"] == 2


@pytest.mark.parametrize("change,field,reason", [
    ({"role": "owner"}, "role", "must be one of projectAdmin"),
    ({"group_id": 3}, "username", "exactly one of username and group_id"),
    ({"username": None}, "username", "exactly one of username and group_id"),
])
def test_bad_member_input_is_refused_by_check(change, field, reason, emulator, conn):
    props = {**conn, "project_id": 1, "role": "guest", "username": "alice", **change}
    _, failures = SdkHost(ProjectMemberProvider(FAST)).check({}, {k: v for k, v in props.items() if v is not None})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]


def test_member_of_a_group_created_in_the_same_update_previews(emulator, conn):
    props = {**conn, "project_id": UNKNOWN, "role": "guest", "group_id": UNKNOWN}
    assert SdkHost(ProjectMemberProvider(FAST)).check({}, props)[1] == []


def user_props(conn, **kw):
    return {**conn, "username": "bob", "email": "bob@example.com", "password": "B0b-Passw0rd", **kw}


def test_local_user_lifecycle_within_call_budget_and_password_never_in_outputs(emulator, conn):
    host = SdkHost(LocalUserProvider(FAST))
    emulator.reset_calls()
    id_, outs = host.create(user_props(conn))
    assert emulator.count() == 2 and outs["realname"] == "bob" and outs["admin"] is False
    assert "password" not in outs and outs["password_hash"] and "B0b-Passw0rd" not in str(outs)
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and host.diff(id_, read, user_props(conn)).changes == proto.DiffResponse.DIFF_NONE
    news = user_props(conn)
    for change in ({"password": "N3w-Passw0rd"}, {"email": "robert@example.com"}, {"admin": True}):
        news = {**news, **change}
        assert LocalUserProvider(FAST).diff(id_, read, news).changed == list(change)
        emulator.reset_calls()
        read = host.update(id_, read, news)
        assert emulator.count() == 2, change
    user = emulator.users[int(id_)]
    assert (user["password"], user["email"], user["sysadmin_flag"]) == ("N3w-Passw0rd", "robert@example.com", True)
    emulator.reset_calls()
    host.delete(id_, read)
    assert emulator.count() == 1 and int(id_) not in emulator.users


def test_admin_user_is_admin_after_create(emulator, conn):
    id_, outs = SdkHost(LocalUserProvider(FAST)).create(user_props(conn, admin=True))
    assert emulator.users[int(id_)]["sysadmin_flag"] is True and outs["admin"] is True


def test_existing_user_is_adopted_only_with_adopt_and_gets_the_declared_password(emulator, conn):
    uid = emulator.add_user("bob", "Old-Passw0rd")
    host = SdkHost(LocalUserProvider(FAST))
    with pytest.raises(ProviderAborted, match="local user 'bob' already exists"):
        host.create(user_props(conn))
    adopted, _ = host.create(user_props(conn, adopt=True))
    assert adopted == str(uid) and emulator.users[uid]["password"] == "B0b-Passw0rd"


@pytest.mark.parametrize("change,field,reason", [
    ({"username": "bob#1"}, "username", "must not contain"),
    ({"email": "bob"}, "email", "not an e-mail address"),
    ({"password": "password"}, "password", "8-128 characters"),
    ({"comment": "x" * 31}, "comment", "at most 30"),
    ({"realname": "Bob $mith"}, "realname", "must not contain"),
])
def test_bad_local_user_input_is_refused_by_check(change, field, reason, emulator, conn):
    _, failures = SdkHost(LocalUserProvider(FAST)).check({}, user_props(conn, **change))
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]
