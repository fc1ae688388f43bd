"""The engine-plan model (labs/engine/engine_plan.py) on small synthetic registrations, one rule per test."""

from types import SimpleNamespace

import pytest

from labs.engine.engine_plan import (DELETE_PROTECTED, REPLACE_PROTECTED, UNKNOWN, UNKNOWN_SECRET, Res, plan,
                                       preview_rejections, provider_replace_keys)

STACK = "urn:pulumi:dev::harbor-ha::"
CMD, COPY = "command:remote:Command", "command:remote:CopyToRemote"
PASSWORD = "random:index/randomPassword:RandomPassword"
CERT = "tls:index/selfSignedCert:SelfSignedCert"
NODE = "harbor:index:Node"
CONN = {"host": "10.0.0.1", "port": 22, "user": "root"}


def res(typ: str, name: str, inputs: dict, parent: Res | None = None, **opts) -> Res:
    qualified = f"{parent.urn.split('::')[2]}${typ}" if parent else typ
    if typ in (CMD, COPY):  # both Python SDK classes register replace_on_changes=["triggers[*]"] themselves
        opts.setdefault("replace_on_changes", ["triggers[*]"])
    return Res(urn=f"{STACK}{qualified}::{name}", typ=typ, name=name, parent=parent.urn if parent else "",
               inputs=inputs, dependencies=[], **opts)


def cmd(name: str = "apply", **inputs) -> Res:
    return res(CMD, name, {"connection": CONN, "create": "install.sh", "delete": "uninstall.sh", **inputs})


def test_unchanged_inputs_are_same():
    step = plan([cmd()], [cmd()]).steps[cmd().urn]
    assert (step.op, step.diff_keys, step.teardown, step.refused) == ("same", [], False, None)


def test_changed_command_is_an_update_without_teardown():
    step = plan([cmd()], [cmd(create="install.sh --v2")]).steps[cmd().urn]
    assert (step.op, step.diff_keys, step.replace_keys, step.teardown) == ("update", ["create"], [], False)


def test_connection_change_is_an_update():
    new = cmd(connection={**CONN, "host": "10.0.0.2"})
    assert plan([cmd()], [new]).ops() == {new.urn: "update"}


def test_trigger_element_change_replaces_through_sdk_replace_on_changes():
    step = plan([cmd(triggers=["a"])], [cmd(triggers=["b"])]).steps[cmd().urn]
    assert (step.op, step.replace_keys, step.teardown) == ("replace", ["triggers"], True)
    assert not step.delete_before_replace  # create first; the old delete command runs afterwards


def test_without_sdk_option_only_whole_triggers_changes_replace():
    bare = dict(replace_on_changes=[])
    old = res(CMD, "x", {"connection": CONN, "triggers": ["a"]}, **bare)
    element = res(CMD, "x", {"connection": CONN, "triggers": ["b"]}, **bare)
    removed = res(CMD, "x", {"connection": CONN}, **bare)
    assert plan([old], [element]).ops() == {old.urn: "update"}  # "triggers[0]" is not the provider's key
    assert plan([old], [removed]).ops() == {old.urn: "replace"}  # "triggers" itself is


def test_random_password_length_is_a_provider_replace_key():
    assert {"length", "special", "keepers"} <= provider_replace_keys(PASSWORD)
    old = res(PASSWORD, "pw", {"length": 32, "special": False})
    new = res(PASSWORD, "pw", {"length": 40, "special": False})
    step = plan([old], [new]).steps[old.urn]
    assert (step.op, step.replace_keys, step.teardown) == ("replace", ["length"], False)


def test_tls_cert_subject_replaces_but_early_renewal_updates():
    base = {"privateKeyPem": "K", "validityPeriodHours": 24, "allowedUses": ["server_auth"],
            "subject": {"commonName": "a"}}
    old = res(CERT, "c", base)
    assert plan([old], [res(CERT, "c", {**base, "subject": {"commonName": "b"}})]).ops()[old.urn] == "replace"
    assert plan([old], [res(CERT, "c", {**base, "earlyRenewalHours": 5})]).ops()[old.urn] == "update"


def test_protected_replace_is_refused_unless_unprotected_in_the_same_run():
    old, new = cmd(triggers=["a"]), cmd(triggers=["b"])
    old.protect = new.protect = True
    step = plan([old], [new]).steps[new.urn]
    assert (step.op, step.refused, step.teardown) == ("replace", REPLACE_PROTECTED.format(urn=new.urn), False)
    new.protect = False
    assert plan([old], [new]).refusals() == []


def test_protected_delete_is_refused():
    old = cmd()
    old.protect = True
    step = plan([old], []).steps[old.urn]
    assert (step.op, step.refused, step.teardown) == ("delete", DELETE_PROTECTED.format(urn=old.urn), False)
    assert "pulumi state unprotect" in step.refused


def test_alias_keeps_identity_and_parent_alias_carries_children():
    old_node = res(NODE, "pg", {}, custom=False)
    old_child = cmd("pg-apply")
    old_child = res(CMD, "pg-apply", old_child.inputs, parent=old_node)
    new_node = res(NODE, "postgres", {}, custom=False, aliases=[old_node.urn])
    new_child = res(CMD, "postgres-apply", old_child.inputs, parent=new_node)  # alias inherited from the parent
    p = plan([old_node, old_child], [new_node, new_child])
    assert p.ops() == {new_node.urn: "same", new_child.urn: "same"}
    assert p.by_op("delete") == [] and p.by_op("create") == []


def test_without_alias_a_rename_is_create_plus_delete_teardown():
    old, new = cmd("a"), cmd("b")
    p = plan([old], [new])
    assert p.ops() == {new.urn: "create", old.urn: "delete"} and p.teardowns() == [old.urn]


def test_ignore_changes_hides_the_path():
    new = cmd(create="changed")
    new.ignore_changes = ["create"]
    assert plan([cmd()], [new]).ops() == {new.urn: "same"}
    nested = cmd(connection={**CONN, "host": "other"})
    nested.ignore_changes = ["connection.host"]
    assert plan([cmd()], [nested]).ops() == {nested.urn: "same"}


def test_teardown_for_command_with_delete_only():
    copy = res(COPY, "f", {"connection": CONN, "source": "h1", "remotePath": "/etc/f"})
    silent = res(CMD, "s", {"connection": CONN, "create": "x"})
    p = plan([cmd(), copy, silent], [])
    assert p.by_op("delete") == [silent.urn, copy.urn, cmd().urn]  # dependents first: reverse snapshot order
    assert p.teardowns() == [cmd().urn]


def test_copy_to_remote_unknown_source_is_rejected_at_preview():
    unknown = res(COPY, "f", {"connection": CONN, "source": UNKNOWN, "remotePath": "/etc/f"})
    known = res(COPY, "g", {"connection": CONN, "source": "h1", "remotePath": "/etc/g"})
    assert preview_rejections([unknown, known]) == [unknown.urn]


def test_a_secret_not_yet_known_in_triggers_is_rejected_at_preview_an_unknown_plain_one_is_not():
    """The real engine (labs/engine/engine_lab.py, engine v3.274.1, pulumi-command 1.2.1) refused the former design's
    preview with "triggers[0]: malformed secret: missing value"; an unknown that is not secret passes."""
    secret = res(CMD, "s", {"connection": CONN, "create": "x", "triggers": [UNKNOWN_SECRET]})
    plain = res(CMD, "p", {"connection": CONN, "create": "x", "triggers": [UNKNOWN]})
    assert preview_rejections([secret, plain]) == [secret.urn]


def test_unknown_inputs_at_preview():
    assert plan([cmd()], [cmd(connection=UNKNOWN)], preview=True).ops()[cmd().urn] == "update"
    assert plan([cmd(triggers=["a"])], [cmd(triggers=UNKNOWN)], preview=True).ops()[cmd().urn] == "replace"
    assert plan([cmd(triggers=["a"])], [cmd(triggers=[UNKNOWN])], preview=True).ops()[cmd().urn] == "replace"
    with pytest.raises(ValueError):
        plan([cmd()], [cmd(connection=UNKNOWN)])


def test_components_are_same_and_children_of_a_removed_parent_are_deleted():
    node = res(NODE, "n", {}, custom=False)
    child = res(CMD, "n-apply", cmd().inputs, parent=node)
    assert plan([node, child], [node, child]).ops() == {node.urn: "same", child.urn: "same"}
    p = plan([node, child], [])
    assert p.ops() == {child.urn: "delete", node.urn: "delete"} and p.teardowns() == [child.urn]


def test_dynamic_resources_update_unless_their_diff_says_replace():
    typ = "pulumi-python:dynamic/harbor:Project"
    old, new = res(typ, "p", {"name": "a"}), res(typ, "p", {"name": "b"})
    assert plan([old], [new]).ops() == {old.urn: "update"}
    def hook(_t, o, n):
        return SimpleNamespace(changes=o != n, replaces=["name"], delete_before_replace=True)

    step = plan([old], [new], dynamic_diff=hook).steps[old.urn]
    assert (step.op, step.replace_keys, step.delete_before_replace) == ("replace", ["name"], True)
    def quiet(*_):
        return SimpleNamespace(changes=False, replaces=None, delete_before_replace=None)

    assert plan([old], [new], dynamic_diff=quiet).ops() == {old.urn: "same"}


def test_delete_before_replace_is_recorded_and_teardown_still_runs():
    new = cmd(triggers=["b"])
    new.delete_before_replace = True
    step = plan([cmd(triggers=["a"])], [new]).steps[new.urn]
    assert (step.op, step.delete_before_replace, step.teardown) == ("replace", True, True)


def test_a_replace_target_is_replaced_with_unchanged_inputs_blaming_its_id():
    # ENG stepGenerator.diff: isTargetedReplace -> DiffSome, ReplaceKeys ["id"] (`pulumi up --replace URN`)
    old = [res(PASSWORD, "pw", {"length": 32}), cmd()]
    new = [res(PASSWORD, "pw", {"length": 32}), cmd()]
    step = plan(old, new, replace_targets=frozenset({new[0].urn})).steps[new[0].urn]
    assert (step.op, step.diff_keys, step.replace_keys) == ("replace", ["id"], ["id"])
    assert plan(old, new).steps[new[0].urn].op == "same"
    assert plan(old, new, replace_targets=frozenset({new[0].urn})).steps[new[1].urn].op == "same"
