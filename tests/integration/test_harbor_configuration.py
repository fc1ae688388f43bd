"""Harbor's configuration through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
import yaml
from pulumi.runtime import proto

from harbor_provider import models
from harbor_provider.configuration import ConfigurationProvider
from labs.fakes.harbor_emulator.schema import SWAGGER
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import UNKNOWN, SdkHost

OIDC = {"auth_mode": "oidc_auth", "oidc_name": "keycloak", "oidc_endpoint": "https://sso.example.com/realms/x",
        "oidc_client_id": "harbor", "oidc_scope": "openid,profile,email,offline_access", "oidc_auto_onboard": True,
        "project_creation_restriction": "adminonly", "robot_token_duration": 90}


def props(conn, **kw):
    return {**conn, "settings": OIDC, "secrets": {"oidc_client_secret": "Cl1ent-Secret"}, **kw}


def test_configuration_writes_and_reads_only_the_managed_keys_within_call_budget(emulator, conn):
    emulator.configurations["banner_message"] = "set in the UI"
    host = SdkHost(ConfigurationProvider(FAST))
    id_, outs = host.create(props(conn))
    assert emulator.count() == 2 and outs["settings"] == OIDC
    assert emulator.configurations["oidc_client_secret"] == "Cl1ent-Secret"
    assert "Cl1ent-Secret" not in str(outs) and set(outs["secrets_hash"]) == {"oidc_client_secret"}
    assert emulator.configurations["banner_message"] == "set in the UI"  # unmanaged: left alone
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and read["settings"] == OIDC
    assert host.diff(id_, read, props(conn)).changes == proto.DiffResponse.DIFF_NONE
    news = props(conn, settings={**OIDC, "read_only": True}, secrets={"oidc_client_secret": "R0tated-Secret"})
    assert ConfigurationProvider(FAST).diff(id_, read, news).changed == ["settings.read_only",
                                                                        "secrets.oidc_client_secret"]
    emulator.reset_calls()
    outs = host.update(id_, read, news)
    assert emulator.count() == 2 and emulator.configurations["read_only"] is True
    assert emulator.configurations["oidc_client_secret"] == "R0tated-Secret"
    emulator.reset_calls()
    host.delete(id_, outs)
    assert emulator.count() == 0 and emulator.configurations["auth_mode"] == "oidc_auth"


def test_a_managed_key_changed_in_the_ui_shows_as_drift(emulator, conn):
    host = SdkHost(ConfigurationProvider(FAST))
    id_, outs = host.create(props(conn))
    emulator.configurations["project_creation_restriction"] = "everyone"
    _, read = host.read(id_, outs)
    assert read["settings"]["project_creation_restriction"] == "everyone"
    assert ConfigurationProvider(FAST).diff(id_, read, props(conn)).changed == ["settings.project_creation_restriction"]


@pytest.mark.parametrize("settings,secrets,field,reason", [
    ({"auth_mode": "saml"}, {}, "settings.auth_mode", "must be one of db_auth"),
    ({"read_only": "yes"}, {}, "settings.read_only", "expected bool"),
    ({"robot_token_duration": "90"}, {}, "settings.robot_token_duration", "expected int"),
    ({"ldap_scope": 3}, {}, "settings.ldap_scope", "must be one of 0, 1, 2"),
    ({"oidc_client_secret": "x"}, {}, "settings.oidc_client_secret", "give it in `secrets`"),
    ({"colour": "red"}, {}, "settings.colour", "no configuration key"),
    ({}, {"oidc_name": "x"}, "secrets.oidc_name", "not a secret key"),
])
def test_bad_configuration_is_refused_by_check_naming_the_key(settings, secrets, field, reason, emulator, conn):
    _, failures = SdkHost(ConfigurationProvider(FAST)).check({}, {**conn, "settings": settings, "secrets": secrets})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]


def test_unknown_secret_at_preview_is_a_change(emulator, conn):
    host = SdkHost(ConfigurationProvider(FAST))
    id_, outs = host.create(props(conn))
    failures, diff = host.preview(outs, props(conn, secrets={"oidc_client_secret": UNKNOWN}), id_)
    assert failures == [] and diff.changes == proto.DiffResponse.DIFF_SOME


def test_key_table_matches_harbor_swagger():
    """The provider's table of keys is the swagger's `Configurations` definition, by type."""
    spec = yaml.safe_load(SWAGGER.read_text())["definitions"]["Configurations"]["properties"]
    by_type = {"boolean": set(models.CONFIG_BOOLEANS), "integer": set(models.CONFIG_INTEGERS),
               "string": set(models.CONFIG_STRINGS) | set(models.CONFIG_SECRETS)}
    assert {t: {k for k, v in spec.items() if v["type"] == t} for t in by_type} == by_type
