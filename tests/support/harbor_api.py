"""Helpers of the Harbor provider tests: fast client settings and the wire form of resource inputs (the emulator
fixtures are in tests/conftest.py)."""

from __future__ import annotations

from harbor_provider.client import ClientSettings, Credentials, HarborClient
from harbor_provider.resources import RegistryProvider
from labs.engine.pulumi_harness import wire  # noqa: F401 (the tests import it from here)

# Short timeouts and backoff keep the fault tests fast; retries are still exercised.
FAST = ClientSettings(connect_timeout=2.0, read_timeout=1.0, attempts=4, backoff=0.01)




# Inputs of the resources as the engine would pass them (with the connection inputs).


def registry_props(conn, **kw):
    return {**conn, "name": "old", "type": "docker-registry", "url": "old.example:5000/", "access_key": "u",
            "access_secret": "Passw0rd", "status": None, **kw}


def make_registry(conn):
    return RegistryProvider(FAST).create(registry_props(conn))


def unmanaged_robot(conn, name: str) -> str:
    """A system robot made by someone else (straight through the API, not by the provider); its id."""
    client = HarborClient(Credentials.resolve(conn, {}), FAST)
    body = {"name": name, "level": "system", "duration": -1,
            "permissions": [{"kind": "system", "namespace": "/", "access": [{"resource": "project",
                                                                              "action": "list"}]}]}
    return client.request("POST", "/robots", json_body=body, ok=(201,)).location_id()


def policy_props(conn, registry_id, **kw):
    return {**conn, "name": "sync", "registry_id": registry_id, "direction": "push", "trigger": "scheduled",
            "cron": "0 0 2 * * *", "filters": [{"type": "name", "value": "team/**"},
                                               {"type": "tag", "value": "v*", "decoration": "excludes"},
                                               {"type": "label", "value": ["release"]},
                                               {"type": "resource", "value": "image"}], **kw}


def run_props(conn, policy_id, **kw):
    return {**conn, "policy_id": policy_id, "timeout_seconds": 5, "poll_seconds": 0.05, **kw}
