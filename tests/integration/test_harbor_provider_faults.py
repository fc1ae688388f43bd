"""Bad inputs are refused by `check` before any API call; injected faults converge without duplicates.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1) and injects faults.
"""

import dataclasses
import socket
import time

import pytest

from harbor_provider.client import ClientSettings, Credentials, HarborClient, HarborError
from harbor_provider.resources import (
    ProjectProvider,
    RegistryProvider,
    ReplicationPolicyProvider,
    ReplicationRunProvider,
    RobotAccountProvider,
)
from pulumi.runtime import proto
from tests.support.harbor_api import (
    FAST,
    make_registry,
    policy_props,
    registry_props,
    run_props,
)
from tests.support.sdk_provider import UNKNOWN, SdkHost

from labs import certs as lab_certs

LONG = "x" * 65
BAD_POLICIES = [
    ({"cron": "0 2 * * *"}, "cron", "has 5 fields"),
    ({"cron": "30 0 2 * * *"}, "cron", "seconds field must be 0"),
    ({"cron": "0 * 2 * * *"}, "cron", "minutes field must not be '*'"),
    ({"trigger": "manual"}, "cron", "only used with trigger 'scheduled'"),
    ({"trigger": "event_based", "cron": None, "direction": "pull"}, "trigger", "only for push policies"),
    ({"trigger": "event_based", "cron": None, "single_active_replication": True},
     "single_active_replication", "cannot be combined"),
    ({"filters": [{"type": "name", "value": "a/**", "decoration": "excludes"}]}, "filters[0].decoration",
     "takes no decoration"),
    ({"filters": [{"type": "resource", "value": "image", "decoration": "matches"}]}, "filters[0].decoration",
     "takes no decoration"),
    ({"filters": [{"type": "resource", "value": "chart"}]}, "filters[0].value", "image or artifact"),
    ({"filters": [{"type": "label", "value": "release"}]}, "filters[0].value", "list of label names"),
    ({"name": LONG}, "name", "at most 64"),
    ({"speed": 0}, "speed", "-1 for unlimited"),
    ({"direction": "both"}, "direction", "push or pull"),
    ({"registry_id": "one"}, "registry_id", "expected int"),
    ({"colour": "red"}, "colour", "unknown input"),
]


@pytest.mark.parametrize("change,field,reason", BAD_POLICIES, ids=[c[1] + ":" + c[2] for c in BAD_POLICIES])
def test_bad_policy_input_is_refused_by_check_without_api_call(change, field, reason, emulator, conn):
    failures = ReplicationPolicyProvider(FAST).check({}, {**policy_props(conn, 1), **change}).failures
    assert [f.property for f in failures] == [field]
    assert reason in failures[0].reason
    assert emulator.count() == 0


BAD_OTHERS = [
    (RegistryProvider, lambda c: registry_props(c, type="docker"), "type", "huawei-SWR, github-ghcr"),
    (RegistryProvider, lambda c: registry_props(c, name=LONG), "name", "at most 64"),
    (RegistryProvider, lambda c: registry_props(c, url="ftp://old"), "url", "only http:// and https://"),
    (RegistryProvider, lambda c: registry_props(c, access_secret=None), "access_secret", "go together"),
    (ProjectProvider, lambda c: {**c, "name": "My_Project"}, "name", "lowercase"),
    (ProjectProvider, lambda c: {**c, "name": "p", "severity": "urgent"}, "severity", "one of none"),
    (RobotAccountProvider, lambda c: {**c, "name": LONG}, "name", "at most 64"),
    (RobotAccountProvider, lambda c: {**c, "name": "r", "secret": "short"}, "secret", "8-128 characters"),
    (ReplicationRunProvider, lambda c: run_props(c, 1, timeout_seconds=0), "timeout_seconds", "positive"),
]


@pytest.mark.parametrize("provider_cls,make,field,reason", BAD_OTHERS,
                         ids=[f"{c[0].kind}:{c[2]}" for c in BAD_OTHERS])
def test_bad_input_of_other_resources_is_refused_by_check(provider_cls, make, field, reason, emulator, conn):
    failures = provider_cls(FAST).check({}, make(conn)).failures
    assert [f.property for f in failures] == [field]
    assert reason in failures[0].reason
    assert emulator.count() == 0


def test_5xx_on_create_is_retried_without_duplicate(emulator, conn):
    emulator.inject("POST", "/registries$", "status", status=503, times=2)
    created = make_registry(conn)
    assert list(emulator.registries) == [int(created.id)]


def test_429_on_read_is_retried(emulator, conn):
    created = make_registry(conn)
    emulator.inject("GET", "/registries/", "status", status=429)
    assert RegistryProvider(FAST).read(created.id, created.outs).outs["name"] == "old"


@pytest.mark.parametrize("provider_cls,path,make", [
    (RegistryProvider, "/registries$", registry_props),
    (ProjectProvider, "/projects$", lambda c: {**c, "name": "library"}),
    (RobotAccountProvider, "/robots$", lambda c: {**c, "name": "peer"}),
])
def test_create_whose_answer_was_dropped_adopts_instead_of_duplicating(provider_cls, path, make, emulator, conn):
    emulator.inject("POST", path, "drop")
    created = provider_cls(FAST).create(make(conn))
    table = {"/registries$": emulator.registries, "/projects$": emulator.projects, "/robots$": emulator.robots}
    assert list(table[path]) == [int(created.id)]
    if provider_cls is RobotAccountProvider:  # the secret of the lost answer is replaced by a known one
        assert created.outs["secret"] == emulator.robots[int(created.id)]["secret"]


def test_policy_create_dropped_then_converges(emulator, conn):
    registry_id = int(make_registry(conn).id)
    emulator.inject("POST", "/replication/policies$", "drop")
    created = ReplicationPolicyProvider(FAST).create(policy_props(conn, registry_id))
    assert list(emulator.policies) == [int(created.id)]
    assert ReplicationPolicyProvider(FAST).diff(created.id, created.outs, policy_props(conn, registry_id)) \
        .changed == []


def test_slow_create_times_out_then_converges_to_one_object(emulator, conn):
    emulator.inject("POST", "/projects$", "slow", seconds=1.5)
    created = ProjectProvider(FAST).create({**conn, "name": "library"})
    time.sleep(1.6)  # let the slow first request finish: it must hit 409, not create a second project
    assert list(emulator.projects) == [int(created.id)]
    assert [c[2] for c in emulator.calls].count("createProject") == 2


def test_run_start_whose_answer_was_dropped_adopts_the_execution(emulator, conn):
    policy = ReplicationPolicyProvider(FAST).create(policy_props(conn, int(make_registry(conn).id)))
    emulator.inject("POST", "/replication/executions$", "drop")
    created = ReplicationRunProvider(FAST).create(run_props(conn, int(policy.id)))
    assert list(emulator.executions) == [int(created.id)] and created.outs["status"] == "Succeed"


def test_run_start_500_is_not_blindly_replayed(emulator, conn):
    policy = ReplicationPolicyProvider(FAST).create(policy_props(conn, int(make_registry(conn).id)))
    emulator.inject("POST", "/replication/executions$", "status", status=500)
    with pytest.raises(HarborError, match="answered 500"):
        ReplicationRunProvider(FAST).create(run_props(conn, int(policy.id)))
    assert emulator.executions == {}


def test_delete_retried_after_5xx(emulator, conn):
    created = make_registry(conn)
    emulator.inject("DELETE", "/registries/", "status", status=502)
    RegistryProvider(FAST).delete(created.id, created.outs)
    assert emulator.registries == {}


def test_persistent_5xx_gives_an_error_with_harbor_message(emulator, conn):
    emulator.inject("POST", "/projects$", "status", status=500, times=10)
    with pytest.raises(HarborError, match="answered 500: injected fault 500"):
        ProjectProvider(FAST).create({**conn, "name": "library"})
    assert emulator.count() == FAST.attempts


def test_4xx_is_not_retried(emulator, conn):
    with pytest.raises(HarborError, match="401"):
        ProjectProvider(FAST).create({**conn, "name": "library", "harbor_password": "wrong"})
    assert emulator.count() == 1


def test_missing_credential_names_the_stack_config_key_and_the_variable(monkeypatch):
    monkeypatch.delenv("HARBOR_PASSWORD", raising=False)
    with pytest.raises(HarborError) as caught:
        Credentials.resolve({"harbor_url": "https://h.example.com", "harbor_username": "admin"}, {})
    assert str(caught.value) == ("no Harbor password: set harborPassword in the stack config key "
                                 "`harbor-ha:harborApi` or the environment variable HARBOR_PASSWORD")


def test_unreachable_harbor_reports_tries(emulator):
    url = emulator.url
    emulator.stop()
    client = HarborClient(Credentials(url, "admin", "pw"), ClientSettings(connect_timeout=1, attempts=2,
                                                                          backoff=0.01))
    with pytest.raises(HarborError, match="did not answer after 2 tries"):
        client.request("GET", "/ping")


def test_unresolvable_harbor_name_says_the_machine_running_pulumi_must_resolve_it(monkeypatch):
    """No DNS query leaves this machine: the resolver itself is made to fail, as it does for a name only the hosts
    know (the engine lab's harbor.hostlab.internal before it ran the engine with that name resolved)."""
    def no_such_name(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    client = HarborClient(Credentials("https://harbor.site.internal", "admin", "pw"),
                          ClientSettings(connect_timeout=1, attempts=2, backoff=0.01))
    with pytest.raises(HarborError, match=r"did not answer after 2 tries \(ConnectionError\); this machine cannot "
                                          r"resolve harbor.site.internal: the machine running `pulumi` must resolve"):
        client.request("PUT", "/users/1/password", replay_safe=False)  # never sent: retried even so


def test_list_all_follows_link_pages(emulator, conn):
    registry_id = int(make_registry(conn).id)
    for i in range(250):
        emulator.policies[1000 + i] = {"id": 1000 + i, "name": f"p{i}", "src_registry_id": 0,
                                       "dest_registry_id": registry_id, "replicate_deletion": False}
    emulator.reset_calls()
    client = HarborClient(Credentials.resolve(conn, {}), FAST)
    names = [p["name"] for p in client.list_all("/replication/policies")]
    assert names == [f"p{i}" for i in range(250)] and emulator.count() == 3


def test_redirect_is_reported_with_the_url_to_use(emulator):
    emulator.inject("GET", "/ping$", "status", status=308, headers={"Location": "https://harbor.example/api"})
    client = HarborClient(Credentials(emulator.url, "admin", emulator.password), FAST)
    with pytest.raises(HarborError, match="answered 308.*redirected to https://harbor.example/api: use that"):
        client.request("GET", "/ping")


def _self_signed_ca_and_server_cert(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `directory`."""
    ca, cert, key = lab_certs.ca_and_server("harbor", ["127.0.0.1"])
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    for name, pem in (("ca", ca), ("cert", cert), ("key", key)):
        paths[name].write_bytes(pem)
    return paths


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # the lab mode is insecure
def test_tls_with_the_cluster_ca_works_and_an_untrusted_certificate_is_explained(tmp_path):
    """Starts the emulator over HTTPS (thread on 127.0.0.1) with a certificate from a CA the test makes."""
    from labs.fakes.harbor_emulator.server import HarborEmulator

    paths = _self_signed_ca_and_server_cert(tmp_path)
    emu = HarborEmulator()
    emu.start(tls=(str(paths["cert"]), str(paths["key"])))
    try:
        creds = Credentials(emu.url, "admin", emu.password)
        trusted = HarborClient(creds, ClientSettings(attempts=2, backoff=0.01, ca_bundle=str(paths["ca"])))
        assert trusted.request("GET", "/ping").body == "Pong"
        with pytest.raises(HarborError, match="HARBOR_CA_BUNDLE"):
            HarborClient(creds, ClientSettings(attempts=2, backoff=0.01)).request("GET", "/ping")
        insecure = HarborClient(creds, ClientSettings(attempts=2, backoff=0.01, verify_tls=False))
        assert insecure.request("GET", "/ping").body == "Pong"
        # The cluster's CA as a resource input (PEM text), e.g. from the cluster's Outputs:
        provider = ProjectProvider(ClientSettings(attempts=2, backoff=0.01))
        created = provider.create({"harbor_url": emu.url, "harbor_username": "admin",
                                   "harbor_password": emu.password, "harbor_ca_certificate": paths["ca"].read_text(),
                                   "name": "over-tls"})
        assert created.outs["name"] == "over-tls"
    finally:
        emu.stop()


@pytest.mark.parametrize("provider_cls,make", [
    (RegistryProvider, registry_props),
    (ReplicationPolicyProvider, lambda c: policy_props(c, 1)),
    (ProjectProvider, lambda c: {**c, "name": "library", "storage_limit": 2**30}),
    (RobotAccountProvider, lambda c: {**c, "name": "peer", "secret": "S3cretValue"}),
    (ReplicationRunProvider, lambda c: run_props(c, 1)),
])
def test_preview_with_any_unknown_input_checks_and_diffs_without_error(provider_cls, make, emulator, conn):
    """Through the SDK's provider host, which hands check and diff `pulumi.output.Unknown` objects."""
    host = SdkHost(provider_cls(FAST))
    props = make(conn)
    for field in [f.name for f in dataclasses.fields(provider_cls.args_type)]:
        failures, diff = host.preview(props, {**props, field: UNKNOWN}, "1")
        assert failures == [], field
        if field not in ("adopt", "timeout_seconds", "poll_seconds"):
            assert diff.changes == proto.DiffResponse.DIFF_SOME, field
    assert emulator.count() == 0


def test_adopting_a_name_with_query_syntax_characters_lists_instead_of_querying(emulator, conn):
    make_registry(conn)  # "old"
    weird = registry_props(conn, name="old,type=harbor")
    RegistryProvider(FAST).create(weird)
    adopted = RegistryProvider(FAST).create({**weird, "adopt": True})
    assert emulator.registries[int(adopted.id)]["name"] == "old,type=harbor" and len(emulator.registries) == 2
