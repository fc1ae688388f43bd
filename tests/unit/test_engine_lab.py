"""The real-engine lab's own logic (labs/engine/engine_lab.py) on recorded shapes of the CLI's output: the plan's
ops per resource, the comparison with the model, the stack file it rewrites, where each role was applied."""

from pathlib import Path

import yaml

from components.host.remote import apply_command
from labs.engine import engine_lab
from labs.hosts import host_lab

STACK_URN = "urn:pulumi:lab::harbor-ha::pulumi:pulumi:Stack::harbor-ha-lab"
APPLY = "urn:pulumi:lab::harbor-ha::harbor-ha:cluster:HarborCluster$command:remote:Command::postgres-data1-apply"


def test_engine_ops_counts_a_replace_once_and_skips_the_stack_and_providers():
    preview = {"steps": [
        {"op": "same", "urn": STACK_URN},
        {"op": "same", "urn": "urn:pulumi:lab::harbor-ha::pulumi:providers:command::default_1_2_1"},
        {"op": "create-replacement", "urn": APPLY},
        {"op": "replace", "urn": APPLY},
        {"op": "delete-replaced", "urn": APPLY},
        {"op": "update", "urn": "urn:pulumi:lab::harbor-ha::random:index/randomPassword:RandomPassword::pw"},
    ]}
    assert engine_lab.engine_ops(preview) == {
        "harbor-ha:cluster:HarborCluster$command:remote:Command::postgres-data1-apply": "replace",
        "random:index/randomPassword:RandomPassword::pw": "update"}


def test_compare_names_each_resource_where_engine_and_model_differ_and_takes_absent_as_same():
    engine = {"a::x": "update", "a::y": "same", "a::z": "create"}
    model = {"a::x": "replace", "a::z": "create"}
    assert engine_lab.compare(engine, model) == ["a::x: engine update, model replace"]
    assert engine_lab.compare({"a::y": "same"}, {}) == []


def test_write_config_keeps_secure_values_the_salt_and_kept_sections(tmp_path):
    engine = engine_lab.Engine(tmp_path, tmp_path / "state", "lab")
    engine.stack_file.write_text(yaml.safe_dump({
        "encryptionsalt": "v1:salt", "config": {
            "harbor-ha:sshPrivateKey": {"secure": "v1:abc"},
            "harbor-ha:harborApi": {"harborUrl": "http://127.0.0.1:1", "harborPassword": {"secure": "v1:def"}},
            "harbor-ha:loadBalancer": {"readTimeout": 901}, "harbor-ha:roles": {"nfs": "old"}}}))
    engine.write_config({"roles": {"nfs": "data1"}, "harborApi": {"harborUrl": "elsewhere"}}, keep=("harborApi",))
    doc = yaml.safe_load(engine.stack_file.read_text())
    assert doc["encryptionsalt"] == "v1:salt"
    assert doc["config"] == {
        "harbor-ha:sshPrivateKey": {"secure": "v1:abc"},
        "harbor-ha:harborApi": {"harborUrl": "http://127.0.0.1:1", "harborPassword": {"secure": "v1:def"}},
        "harbor-ha:roles": {"nfs": "data1"}}  # loadBalancer left the values: gone from the stack too


def test_role_placements_read_the_apply_commands_of_the_state():
    data1 = host_lab.address(host_lab.MACHINES["data1"])
    state = [{"urn": APPLY, "type": "command:remote:Command",
              "inputs": {"create": apply_command("postgres"), "connection": {"host": data1}}},
             {"urn": APPLY.replace("-apply", "-installer"), "type": "command:remote:CopyToRemote",
              "inputs": {"connection": {"host": data1}}}]
    assert engine_lab.role_placements(state) == [("postgres", "data1")]


def test_role_placements_find_a_readdressed_host_by_the_stacks_hosts():
    values = {"hosts": [{"name": "data1", "address": "198.19.1.60", "hostKey": "k"}], "roles": {}}
    moved = engine_lab.readdressed(values, "data1", "198.19.1.61")
    assert moved["hosts"] == [{"name": "data1", "address": "198.19.1.61", "hostKey": "k"}]
    assert values["hosts"][0]["address"] == "198.19.1.60"
    state = [{"urn": APPLY, "type": "command:remote:Command",
              "inputs": {"create": apply_command("postgres"), "connection": {"host": "198.19.1.61"}}}]
    assert engine_lab.role_placements(state, moved["hosts"]) == [("postgres", "data1")]


def test_passed_judges_only_what_ran_and_never_an_absent_field():
    assert engine_lab.passed({"preview_new_stack": {"dev": {"ok": True}}})
    assert not engine_lab.passed({"up": {"ok": True}, "second_up_changes": 2})
    assert not engine_lab.passed({"day2": {"lb": {"ok": True, "agrees_with_model": False}}})


def test_plain_unwraps_the_secrets_of_a_stack_export_at_any_depth():
    sig = "4dabf18193072939515e22adc298bd5a"
    secret = {sig: "1b47061264138c4ac30d75fd1ac4e0d9", "plaintext": '{"host": "10.0.0.1", "privateKey": "k"}'}
    assert engine_lab.plain({"inputs": {"connection": secret, "create": "x"}}) == {
        "inputs": {"connection": {"host": "10.0.0.1", "privateKey": "k"}, "create": "x"}}


def test_resolving_runs_the_cli_with_this_machines_hosts_file_plus_the_clusters_name(tmp_path):
    prefix = engine_lab.resolving({"harbor.lab.internal": "198.19.1.100"}, tmp_path)
    hosts = (tmp_path / "engine-hosts").read_text()
    assert hosts.startswith(Path("/etc/hosts").read_text().rstrip("\n") + "\n")
    assert hosts.endswith("\n198.19.1.100 harbor.lab.internal\n")
    assert prefix[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert prefix[-1] == str(tmp_path / "engine-hosts") and "mount --bind" in prefix[-2]


def test_errored_reads_each_failed_resource_from_the_diagnostics_and_leaves_the_stack_summary_out():
    output = ("Diagnostics:\n  command:remote:Command (harbor-node-harbor1-harbor1-apply):\n"
              "    [harbor-ha harbor-node] installed /etc/x\n    error: Process exited with status 1\n"
              "    error: second line\n\n  pulumi:pulumi:Stack (harbor-ha-sandbox):\n    error: update failed\n")
    assert engine_lab.errored(output) == {"harbor-node-harbor1-harbor1-apply": "Process exited with status 1"}


def test_sandbox_values_move_the_sandbox_stack_to_the_labs_network_with_the_local_image_and_installer(tmp_path):
    values = engine_lab.sandbox_values(tmp_path / "installer.tgz", "img:1")
    net = engine_lab.SANDBOX_NET
    assert values["sandbox"]["subnet"] == f"{net}.0/24" and values["sandbox"]["image"] == "img:1"
    assert {h["address"].rsplit(".", 1)[0] for h in values["hosts"]} == {net}
    assert values["vip"]["address"] == f"{net}.100"
    assert values["harbor"]["installer"] == {"path": str(tmp_path / "installer.tgz")}
