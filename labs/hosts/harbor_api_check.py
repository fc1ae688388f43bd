"""The Harbor API provider (harbor_provider/) against the real Harbor of the host lab, driven as the engine drives a
dynamic provider: create, then the next run's read and diff (an unchanged run must find nothing to write), then
delete; and the admin password's rotation (rotate_admin). Every value passes through the engine's wire format
(numbers become floats)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from harbor_provider.admin import AdminPasswordProvider
from harbor_provider.client import ClientSettings, Credentials, HarborClient, HarborError
from harbor_provider.resources import (ProjectProvider, RegistryProvider, ReplicationPolicyProvider,
                                       ReplicationRunProvider, RobotAccountProvider)
from harbor_provider.stack_config import parse_migration_section
from labs.engine.pulumi_harness import wire
from tests.support import harbor_contract


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

    # Harbor pings a registry when it is created or updated (unreachable: 400 "the registry is unhealthy"):
    # Harbor's own registry as core reaches it on the compose network, anonymously (a 401 proves it reachable,
    # pkg/reg/adapter/native PingSimple).
    source = {**conn, "name": "hostlab-source", "type": "docker-registry", "url": "http://registry:5000",
              "access_key": None, "access_secret": None, "status": None}
    registry = one("registry", RegistryProvider(), source)
    details["unreachable registry"] = unreachable(registry, source)
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


UNREACHABLE = "http://127.0.0.1:1"  #: nothing listens there inside core's container: the connect is refused


def unreachable(registry_id: str | None, props: dict) -> dict[str, Any]:
    """A registry endpoint Harbor cannot reach, created and (for the registry `registry_id` made from `props`)
    updated to: Harbor must refuse both, and the provider must say what to check. Returns the messages and
    whether the stored registry kept its URL."""
    out: dict[str, Any] = {}
    provider = RegistryProvider()
    def create() -> Any:
        created = provider.create(wire({**props, "name": "hostlab-nowhere", "url": UNREACHABLE}))
        provider.delete(created.id, wire(created.outs or {}))  # accepted after all: not left behind
    attempts = [("create", create)]
    if registry_id:
        def update() -> Any:
            outs = provider.read(registry_id, wire(props)).outs or {}
            return provider.update(registry_id, wire(outs), wire({**props, "url": UNREACHABLE}))
        attempts.append(("update", update))
    for action, attempt in attempts:
        try:
            attempt()
            out[f"{action}_refused"] = False
        except HarborError as e:
            out[f"{action}_refused"] = e.status == 400
            out[f"{action}_message"] = str(e)[:400]
    if registry_id:
        out["url_kept"] = (provider.read(registry_id, wire(props)).outs or {}).get("url") == props["url"]
    return out


def migrate(conn: dict[str, Any], migration: dict[str, Any]) -> dict[str, Any]:
    """The stack's `migration` section (as a stack file holds it) applied as the program declares it: the target
    project, the source registry, the pull policy, then the run, which starts an execution of Harbor's jobservice
    and waits for it (ReplicationRunProvider, as `pulumi up` does). Returns the run's outputs (status, counters);
    a failed or timed-out execution raises HarborError naming its counters and failed tasks."""
    section = parse_migration_section(migration)
    assert section is not None and section.policies[0].run is not None, "the lab's migration has runNow"
    ProjectProvider().create(wire({**conn, **dataclasses.asdict(section.projects[0])}))
    registry = RegistryProvider().create(wire({**conn, **dataclasses.asdict(section.registries[0])}))
    policy_args = dataclasses.asdict(section.policies[0].to_args(int(registry.id)))
    policy = ReplicationPolicyProvider().create(wire({**conn, **policy_args}))
    run = section.policies[0].run
    done = ReplicationRunProvider().create(wire({
        **conn, "policy_id": int(policy.id), "run_key": run.key, "timeout_seconds": run.timeout_seconds,
        "poll_seconds": run.poll_seconds}))
    return {k: (done.outs or {}).get(k) for k in ("execution_id", "status", "total", "succeed", "failed")}


def contract(conn: dict[str, Any]) -> dict[str, list[str]]:
    """The providers' contract tests (tests/support/harbor_contract.py, the same the emulator passes) against this
    Harbor: per case, the broken promises (empty: held). The registry endpoint is Harbor's own registry as core
    reaches it, written without scheme and with a trailing slash for Harbor to normalize."""
    target = harbor_contract.Target(conn, "registry:5000/")
    return {name: harbor_contract.roundtrip(name, target) for name in harbor_contract.CASES}
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
