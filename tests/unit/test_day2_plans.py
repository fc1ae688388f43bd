"""What a second `pulumi up` does, for each day-2 change: the program under mocks twice (old config, new config) and
the engine's plan between the two runs, computed by labs/engine/engine_plan.py from the engine's own rules.

The rule every scenario checks: a change re-applies the roles it touches (an update), and only a role or host that
left the config is torn down (its delete command runs). A teardown is a Command replaced or deleted while its old
state holds a delete command: pulumi-command runs that command (see engine_plan rules 7 and 8).
"""

from __future__ import annotations

import copy
from typing import Any
from collections.abc import Callable

import pytest

from components.host import remote
from labs.engine import engine_plan
from labs.engine.pulumi_harness import Registered, depends_transitively, registrations, stack_config

COMMAND = "command:remote:Command"
ROLES = ("firewall", "nfs-server", "postgres", "redis", "sentinel", "harbor-node", "loadbalancer", "keepalived")


def role_of(r: Registered) -> str | None:
    """The role whose apply command this is, else None."""
    return next((role for role in ROLES if r.typ == COMMAND and f"/{role}.sh apply" in str(r.sent.get("create"))),
                None)


def host_of(r: Registered) -> str:
    return r.name.rsplit("-apply", 1)[0].rsplit("-", 1)[1]


def day2(stack: str, edit: Callable[[dict[str, Any]], None] | None = None, **new_run: Any):
    """(old registrations, new registrations, plan) for the stack and an edit of its config."""
    values, _ = stack_config(stack)
    old = registrations(values)
    changed = copy.deepcopy(values)
    if edit:
        edit(changed)
    new = registrations(changed, **new_run)
    return old, new, engine_plan.plan([r.as_planned() for r in old], [r.as_planned() for r in new])


def role_ops(regs: list[Registered], plan: engine_plan.Plan) -> dict[str, str]:
    """{"<role>@<host>": op} for every role apply command in `regs` (deletes are looked up by old URN)."""
    return {f"{role_of(r)}@{host_of(r)}": plan.steps[r.urn].op for r in regs if role_of(r)}


def assert_no_teardown(plan: engine_plan.Plan) -> None:
    assert not plan.teardowns(), f"roles torn down: {plan.teardowns()}"
    assert not plan.refusals(), f"the engine would refuse: {plan.refusals()}"
    assert not plan.by_op("replace") or all(
        s.urn.split("::")[2].endswith(("RandomPassword", "PrivateKey", "SelfSignedCert"))
        for s in plan.steps.values() if s.op == "replace"), plan.by_op("replace")


def updated(ops: dict[str, str]) -> set[str]:
    return {k for k, op in ops.items() if op == "update"}


def updated_services(ops: dict[str, str]) -> set[str]:
    """The updated roles but the host firewalls (they follow every change of who may reach whom)."""
    return {k for k in updated(ops) if not k.startswith("firewall@")}


def test_no_change_plans_nothing():
    _old, _new, plan = day2("prod")
    assert set(plan.ops().values()) == {"same"}, {u: o for u, o in plan.ops().items() if o != "same"}


def test_an_lb_setting_updates_nginx_on_both_lb_hosts_and_nothing_else():
    def edit(v):
        v["loadBalancer"] = {**v.get("loadBalancer", {}), "hsts": False}

    _old, new, plan = day2("prod", edit)
    assert_no_teardown(plan)
    assert updated(role_ops(new, plan)) == {"loadbalancer@lb1", "loadbalancer@lb2"}


def test_a_keepalived_setting_updates_keepalived_on_both_lb_hosts_only():
    def edit(v):
        v["keepalived"] = {**v.get("keepalived", {}), "advertInt": 0.5}

    _old, new, plan = day2("prod", edit)
    assert_no_teardown(plan)
    assert updated(role_ops(new, plan)) == {"keepalived@lb1", "keepalived@lb2"}


def test_a_postgres_setting_updates_the_protected_database_role_in_place():
    def edit(v):
        v["postgres"] = {**v["postgres"], "sharedBuffers": "2GB"}

    _old, new, plan = day2("prod", edit)
    assert_no_teardown(plan)
    assert updated(role_ops(new, plan)) == {"postgres@db1"}
    assert next(r for r in new if role_of(r) == "postgres").protect


def test_a_harbor_version_bump_updates_every_node_one_after_the_other_and_tears_none_down():
    def edit(v):
        v["harbor"] = {**v["harbor"], "version": "2.15.3", "installer": {
            "url": "https://github.com/goharbor/harbor/releases/download/v2.15.3/harbor-offline-installer-v2.15.3.tgz"}}

    _old, new, plan = day2("prod", edit)
    assert_no_teardown(plan)
    assert updated(role_ops(new, plan)) == {"harbor-node@harbor1", "harbor-node@harbor2", "harbor-node@harbor3"}
    nodes = [r for r in new if role_of(r) == "harbor-node"]

    def reaches(a: Registered, b: Registered) -> bool:
        return depends_transitively(new, a, b)

    # The engine updates in dependency order: node k+1 waits for node k's apply (health-gated), so one at a time.
    assert reaches(nodes[1], nodes[0]) and reaches(nodes[2], nodes[1]) and not reaches(nodes[0], nodes[1])


def test_adding_a_node_creates_its_role_and_updates_database_exports_and_lb():
    def edit(v):
        v["hosts"].append({"name": "harbor4", "address": "10.20.0.34", "user": "ubuntu"})
        v["roles"]["harborNodes"].append("harbor4")
        # Four nodes' connection pools need more than the 300 connections three nodes fit in (the config says so).
        v["postgres"] = {**v["postgres"], "maxConnections": 400}

    old, new, plan = day2("prod", edit)
    assert_no_teardown(plan)
    ops = role_ops(new, plan)
    assert ops["harbor-node@harbor4"] == "create" and ops["firewall@harbor4"] == "create"
    assert updated_services(ops) == {"postgres@db1", "nfs-server@nfs1", "loadbalancer@lb1", "loadbalancer@lb2"}


def test_removing_a_node_tears_down_that_node_only():
    def edit(v):
        v["roles"]["harborNodes"].remove("harbor3")

    old, new, plan = day2("prod", edit)
    assert not plan.refusals()
    removed = [r.urn for r in old if role_of(r) == "harbor-node" and host_of(r) == "harbor3"]
    assert plan.teardowns() == removed
    assert updated_services(role_ops(new, plan)) == {"postgres@db1", "nfs-server@nfs1", "loadbalancer@lb1",
                                                     "loadbalancer@lb2"}


def test_a_database_password_rotation_updates_postgres_and_every_node_without_teardown():
    # `pulumi up --replace <urn of harbor-secrets-db-password>`: a new value, the same resource graph.
    _old, new, plan = day2("prod", rotated=frozenset({"harbor-secrets-db-password"}))
    assert_no_teardown(plan)
    assert [s.urn.rsplit("::", 1)[1] for s in plan.steps.values() if s.op == "replace"] == []
    assert updated(role_ops(new, plan)) == {"postgres@db1", "harbor-node@harbor1", "harbor-node@harbor2",
                                            "harbor-node@harbor3"}


@pytest.mark.parametrize("before", ["Old-Adm1n-Pass", None], ids=["changed", "set-over-the-generated-one"])
def test_an_admin_password_change_goes_through_harbors_api_and_re_applies_no_role(before):
    # harbor.yml holds the generated initial password only: a new harborAdminPassword changes no host's files.
    values, _ = stack_config("prod")
    old = registrations(values, {"harborAdminPassword": before} if before else None)
    new = registrations(values, {"harborAdminPassword": "N3w-Adm1n-Pass"})
    plan = engine_plan.plan([r.as_planned() for r in old], [r.as_planned() for r in new])
    assert_no_teardown(plan)
    assert {urn.rsplit("::", 1)[1]: op for urn, op in plan.ops().items() if op != "same"} == {
        "harbor-admin-password": "update"}


def test_an_edit_of_lib_sh_re_applies_every_role_including_the_protected_ones(tmp_path, monkeypatch):
    edited = tmp_path / "lib.sh"
    edited.write_text(remote.LIB_SH.read_text() + "# a comment changes what every role ships\n")
    values, _ = stack_config("prod")
    old = registrations(values)
    monkeypatch.setattr(remote, "LIB_SH", edited)
    new = registrations(values)
    plan = engine_plan.plan([r.as_planned() for r in old], [r.as_planned() for r in new])
    assert_no_teardown(plan)
    ops = role_ops(new, plan)
    assert len(ops) == len([r for r in old if role_of(r)]) and set(ops.values()) == {"update"}


def test_a_re_addressed_host_gets_its_files_again_through_an_update():
    def edit(v):
        next(h for h in v["hosts"] if h["name"] == "redis2")["address"] = "10.20.0.52"

    _old, new, plan = day2("prod", edit)
    assert_no_teardown(plan)
    ops = role_ops(new, plan)
    # Its own roles run again over the new connection with every file (stdin); who names it is updated too.
    assert {"redis@redis2", "sentinel@redis2"} <= updated(ops)
    redis2 = next(r for r in new if role_of(r) == "redis" and host_of(r) == "redis2")
    assert "connection" in plan.steps[redis2.urn].diff_keys and "stdin" in plan.steps[redis2.urn].diff_keys


@pytest.mark.parametrize("aliased", [True, False], ids=["with-alias", "without-alias"])
def test_a_renamed_component_type_keeps_every_urn_through_its_alias(monkeypatch, aliased):
    """HostRole was harbor-ha:remote:HostRole: state made then is the old run. Without the alias the same change
    would recreate every role and tear the old ones down (the check can fail)."""
    values, _ = stack_config("prod")
    monkeypatch.setattr(remote, "TYPE", "harbor-ha:remote:HostRole")
    monkeypatch.setattr(remote, "FORMER_TYPES", ())
    old = registrations(values)
    monkeypatch.undo()
    if not aliased:
        monkeypatch.setattr(remote, "FORMER_TYPES", ())
    new = registrations(values)
    plan = engine_plan.plan([r.as_planned() for r in old], [r.as_planned() for r in new])
    if aliased:
        assert set(plan.ops().values()) == {"same"}, {u: o for u, o in plan.ops().items() if o != "same"}
    else:
        # Every role recreated and the old ones torn down, but NFS and PostgreSQL: refused (protected).
        roles = [r for r in old if role_of(r)]
        assert len(plan.teardowns()) == len(roles) - 2 and len(plan.refusals()) == 2


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_of_a_new_stack_has_nothing_a_provider_rejects_at_preview(stack):
    values, _ = stack_config(stack)
    new = registrations(values, preview=True)
    unknown = [r.name for r in new if engine_plan._has_unknown(r.sent)]
    assert unknown, "a preview of a new stack has unknown inputs (generated secrets): the mocks must give them"
    assert engine_plan.preview_rejections([r.as_planned() for r in new]) == []


def test_an_installer_upload_is_known_at_preview(tmp_path):
    installer = tmp_path / "harbor-offline-installer-v2.15.2.tgz"
    installer.write_bytes(b"stand-in")
    values, _ = stack_config("dev")
    values["harbor"] = {**values["harbor"], "installer": {"path": str(installer)}}
    new = registrations(values, preview=True)
    copies = [r for r in new if r.typ == "command:remote:CopyToRemote"]
    assert len(copies) == 2 and engine_plan.preview_rejections([r.as_planned() for r in new]) == []


def test_the_keys_that_make_data_readable_are_protected():
    values, _ = stack_config("prod")
    regs = registrations(values)
    protected = sorted(r.name for r in regs if r.protect)
    assert protected == ["harbor-nfs-nfs1-apply", "harbor-postgres-db1-apply", "harbor-secrets-core-key",
                         "harbor-secrets-harbor-secretkey", "harbor-secrets-registry-root-cert"]
