"""The Harbor API provider (harbor_provider/) against the real Harbor of the host lab, driven as the engine drives a
dynamic provider: create, then the next run's read and diff (an unchanged run must find nothing to write), then
delete. Every value passes through the engine's wire format (numbers become floats)."""

from __future__ import annotations

from typing import Any

from harbor_provider.client import HarborError
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
