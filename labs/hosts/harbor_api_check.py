"""The Harbor API provider (harbor_provider/) against the real Harbor of the host lab, driven as the engine drives a
dynamic provider: create, then the next run's read and diff (an unchanged run must find nothing to write), then
delete; and the admin password's rotation (rotate_admin). Every value passes through the engine's wire format
(numbers become floats)."""

from __future__ import annotations

import time
from typing import Any

from harbor_provider.admin import AdminPasswordProvider
from harbor_provider.client import ClientSettings, Credentials, HarborClient, HarborError
from harbor_provider.resources import (ProjectProvider, RegistryProvider, ReplicationPolicyProvider,
                                       RobotAccountProvider)
from labs.engine.pulumi_harness import wire


KINDS = 4  #: registry, replication policy, project, robot account


def roundtrip(conn: dict[str, Any]) -> dict[str, Any]:
    """One object of each kind the provider manages (registry, replication policy, project with a quota, robot
    account): created, read back and diffed against what was declared; deleted at the end (dependents first).
    Returns {"kinds": N created and read back, "second_run_writes": fields an unchanged run would write,
    "details": per kind}."""
    done: list[tuple[Any, str, dict]] = []
    details: dict[str, Any] = {}

    def one(kind: str, provider: Any, props: dict) -> str | None:
        try:
            created = provider.create(wire(props))
            done.append((provider, created.id, created.outs))
            read = provider.read(created.id, wire(created.outs))
            changed = provider.diff(created.id, wire(read.outs), wire(props)).changed
            details[kind] = {"id": created.id, "second_run_changes": list(changed),
                             "read_equals_create": read.outs == created.outs}
            return str(created.id)
        except HarborError as e:
            details[kind] = {"error": str(e)[:300]}
            return None

    # Harbor pings a registry when it is created (an unreachable URL is refused: "registry is unhealthy"; the
    # emulator accepts it): Harbor's own registry as core reaches it on the compose network, anonymously (a 401
    # proves it reachable, pkg/reg/adapter/native PingSimple).
    registry = one("registry", RegistryProvider(), {
        **conn, "name": "hostlab-source", "type": "docker-registry", "url": "http://registry:5000",
        "access_key": None, "access_secret": None, "status": None})
    if registry:
        one("replication policy", ReplicationPolicyProvider(), {
            **conn, "name": "hostlab-pull", "registry_id": int(registry), "direction": "pull", "trigger": "manual",
            "filters": [{"type": "name", "value": "team/**"}, {"type": "tag", "value": "v*"}]})
    one("project", ProjectProvider(), {**conn, "name": "hostlab-team", "public": False, "auto_scan": False,
                                       "storage_limit": 10 * 2**30, "project_id": None})
    one("robot account", RobotAccountProvider(), {**conn, "name": "hostlab-ci", "harbor_name": None,
                                                  "description": "host lab", "projects": ["hostlab-team"]})
    for provider, object_id, outs in reversed(done):
        try:
            provider.delete(object_id, wire(outs))
        except HarborError as e:
            details.setdefault("delete errors", []).append(str(e)[:200])
    ok = [d for d in details.values() if isinstance(d, dict) and "id" in d]
    return {"kinds": sum(1 for d in ok if d["read_equals_create"]),
            "second_run_writes": sum(len(d["second_run_changes"]) for d in ok), "details": details}


class _CountingAdminProvider(AdminPasswordProvider):
    """The provider as the engine runs it, counting the writes (PUT, POST, DELETE) it sends to Harbor."""

    writes = 0

    def _client(self, props: dict, password: str) -> HarborClient:
        client = super()._client(props, password)
        send = client.request

        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            if method != "GET":
                self.writes += 1
            return send(method, path, *args, **kwargs)

        client.request = counted  # type: ignore[method-assign]
        return client


def logs_in(url: str, ca: str, password: str) -> int:
    """The HTTP status of GET /users/current as the admin with `password` (200 in, 401 refused)."""
    client = HarborClient(Credentials(url, "admin", password, ca), ClientSettings.from_env())
    try:
        return client.request("GET", "/users/current", ok=(200,)).status
    except HarborError as e:
        return e.status or 0


def rotate_admin(url: str, ca: str, initial: str, new: str) -> dict[str, Any]:
    """harbor_provider/admin.py's AdminPassword against the real Harbor, as the engine drives it: the state of a
    stack installed with the generated `initial` password, then harborAdminPassword set to `new` (update), the next
    run (read, diff; an update anyway counts its writes), and the state recording a password that is not in force
    (changed by hand: the actionable error, then the fix it names). Harbor's user lock (src/core/auth/
    authenticator.go: a failed login locks the user for 1.5 s in that core) is met on the way, as by a real run."""
    provider = _CountingAdminProvider()
    base = {"harbor_url": url, "harbor_username": "admin", "harbor_ca_certificate": ca, "initial_password": initial}
    installed = wire({**base, "password": initial})
    created = provider.create(installed)
    result: dict[str, Any] = {"create_writes": provider.writes}
    t0 = time.monotonic()
    provider.writes = 0
    updated = provider.update(created.id, wire(created.outs), wire({**base, "password": new}))
    result.update(rotate_s=round(time.monotonic() - t0, 1), rotate_writes=provider.writes,
                  new_status=logs_in(url, ca, new), old_status=logs_in(url, ca, initial))
    provider.writes = 0
    read = provider.read(created.id, wire(updated.outs))
    diff = provider.diff(created.id, wire(read.outs), wire({**base, "password": new}))
    provider.update(created.id, wire(read.outs), wire({**base, "password": new}))
    result["second_run"] = {"read_equals_state": read.outs == updated.outs, "diff_changes": diff.changes,
                            "writes": provider.writes}
    # The state records a password Harbor no longer takes (someone changed it in the UI), and the stack asks for
    # yet another one: nothing the stack knows logs in.
    stale = wire({**base, "password": "Changed8yHand"})
    try:
        provider.update(created.id, stale, wire({**base, "password": new + "X"}))
        result["wrong_current_error"] = None
    except HarborError as e:
        result["wrong_current_error"] = str(e)
    # The fix the message names: harborAdminPassword set to the password in force; the next run writes nothing.
    provider.writes = 0
    provider.update(created.id, stale, wire({**base, "password": new}))
    result["after_fix"] = {"writes": provider.writes, "status": logs_in(url, ca, new)}
    return result
