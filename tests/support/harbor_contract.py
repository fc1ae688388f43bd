"""The providers' contract with Harbor, one definition for two Harbors: the emulator (tests/integration/
test_harbor_provider_crud.py) and the real Harbor of the host lab (labs/hosts/harbor_api_check.py, asserted by the
realharbor tier). Each case is driven through the SDK's own dynamic provider host (SdkHost), as the engine drives
it: check, create, read, the next run's diff (nothing to write), a change (diff, update, read: the new values, as
Harbor normalizes them), delete, and a read that finds the object gone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional
from collections.abc import Callable

from harbor_provider.client import ClientSettings, HarborError
from harbor_provider.resources import (ProjectProvider, RegistryProvider, ReplicationPolicyProvider,
                                       RobotAccountProvider)
from labs.engine.pulumi_harness import wire
from pulumi.runtime import proto
from tests.support.sdk_provider import ProviderAborted, SdkHost


@dataclass(frozen=True)
class Target:
    """A Harbor to hold the contract against: its connection inputs and a registry endpoint it can ping, written
    as a user might (Harbor adds the scheme and drops a trailing slash)."""

    conn: dict[str, Any]
    registry_url: str
    registry_user: Optional[str] = None
    registry_secret: Optional[str] = None
    settings: Optional[ClientSettings] = None


def registry_props(target: Target, name: str = "contract-registry", **kw: Any) -> dict:
    return {**target.conn, "name": name, "type": "docker-registry", "url": target.registry_url,
            "access_key": target.registry_user, "access_secret": target.registry_secret, "status": None, **kw}


def policy_props(target: Target, registry_id: int, **kw: Any) -> dict:
    return {**target.conn, "name": "contract-sync", "registry_id": registry_id, "direction": "push",
            "trigger": "scheduled", "cron": "0 0 2 * * *",
            "filters": [{"type": "name", "value": "team/**"}, {"type": "tag", "value": "v*", "decoration": "excludes"},
                        {"type": "label", "value": ["release"]}, {"type": "resource", "value": "image"}], **kw}


@dataclass(frozen=True)
class Case:
    provider: type
    props: Callable[[Target, Callable[[], int]], dict]  #: (target, a registry to depend on) -> inputs
    change: dict[str, Any]  #: a second run's edit: an update in place


CASES = {
    "registry": Case(RegistryProvider, lambda t, reg: registry_props(t), {"description": "moved"}),
    "policy": Case(ReplicationPolicyProvider, lambda t, reg: policy_props(t, reg()),
                   {"speed": 2048, "enabled": False}),
    "project": Case(ProjectProvider, lambda t, reg: {**t.conn, "name": "contract-project", "project_id": None},
                    {"public": True, "auto_scan": True}),
    "project-quota": Case(ProjectProvider, lambda t, reg: {**t.conn, "name": "contract-big",
                                                           "storage_limit": 10 * 2**30},
                          {"storage_limit": 20 * 2**30}),
    "robot": Case(RobotAccountProvider, lambda t, reg: {**t.conn, "name": "contract-peer", "harbor_name": None},
                  {"description": "for site B", "replicate_deletion": True}),
}


def _changes(host: SdkHost, provider: Any, id_: str, olds: dict, news: dict) -> list[str]:
    """What a run would write: the engine's verdict over the SDK (DIFF_SOME or not), and the provider's own list
    of fields (the SDK's answer does not carry the names)."""
    if host.diff(id_, olds, news).changes != proto.DiffResponse.DIFF_SOME:
        return []
    return sorted(provider.diff(id_, wire(olds), wire(news)).changed) or ["<unnamed>"]


def roundtrip(name: str, target: Target) -> list[str]:
    """Drive one case; returns the broken promises (empty: the contract holds)."""
    case = CASES[name]
    problems: list[str] = []
    helpers: list[tuple[SdkHost, str, dict]] = []

    def registry() -> int:
        host = SdkHost(RegistryProvider(target.settings))
        id_, outs = host.create(registry_props(target, "contract-dependency"))
        helpers.append((host, id_, outs))
        return int(id_)

    provider = case.provider(target.settings)
    host = SdkHost(provider)
    try:
        props = case.props(target, registry)
        inputs, failures = host.check({}, props)
        if failures:
            return [f"check refused the inputs: {failures}"]
        id_, created = host.create(inputs)
        _, read = host.read(id_, created)
        if read != created:
            problems.append(f"read after create differs: {_differences(created, read)}")
        if _changes(host, provider, id_, read, inputs):
            problems.append(f"an unchanged second run would write {_changes(host, provider, id_, read, inputs)}")
        news, _ = host.check(read, {**props, **case.change})
        changes, replaces = _changes(host, provider, id_, read, news), list(host.diff(id_, read, news).replaces)
        if changes != sorted(case.change) or replaces:
            problems.append(f"the change diffs as {changes} (replaces {replaces}), not {sorted(case.change)}")
        updated = host.update(id_, read, news)
        if {k: updated.get(k) for k in case.change} != case.change:
            problems.append(f"update returned {({k: updated.get(k) for k in case.change})}, not {case.change}")
        _, after = host.read(id_, updated)
        if _changes(host, provider, id_, after, news):
            problems.append(f"after the update a run would still write {_changes(host, provider, id_, after, news)}")
        host.delete(id_, after)
        gone, _ = host.read(id_, after)
        if gone:
            problems.append("read after delete still finds the object")
    except (HarborError, ProviderAborted) as e:
        problems.append(f"{type(e).__name__}: {str(e)[:400]}")
    finally:
        for helper, helper_id, outs in reversed(helpers):
            helper.delete(helper_id, outs)
    return problems


def _differences(a: dict, b: dict) -> dict:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
