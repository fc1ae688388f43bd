"""The sandbox stack under mocks: its containers, keys and volumes, and the unchanged cluster deployed onto them."""

from __future__ import annotations

from collections import Counter

import pulumi
import pytest

from components.config import ConfigError, parse_cluster_config
from components.sandbox import AUTHORIZED_KEYS_PATH, HOST_KEY_PATH, NESTED_DOCKER_PATH
from labs.engine.pulumi_harness import Registered, run_program, stack_config
from tests.unit.test_program import apply_commands, by_type

CONTAINER = "docker:index/container:Container"
REMOTE = ("command:remote:Command", "command:remote:CopyToRemote")


def sandbox_values(**changes) -> dict:
    values, _secrets = stack_config("sandbox")
    return {**values, **changes}


def containers_by_address(regs: list[Registered]) -> dict[str, Registered]:
    return {c.inputs["networksAdvanced"][0]["ipv4Address"]: c for c in by_type(regs, CONTAINER)
            if c.inputs["networksAdvanced"][0].get("ipv4Address")}


def upload(container: Registered, path: str) -> str:
    (content,) = [u["content"] for u in container.inputs["uploads"] if u["file"] == path]
    return content


@pulumi.runtime.test
def test_sandbox_stack_registers_a_network_an_image_keys_volumes_and_one_container_per_host():
    program = run_program(sandbox_values())

    def check(regs):
        types = Counter(r.typ for r in regs)
        assert types["harbor-ha:sandbox:SandboxHosts"] == 1
        assert types["docker:index/network:Network"] == 1
        assert types["docker:index/image:Image"] == 1  # no sandbox.image: built from components/sandbox/
        assert types[CONTAINER] == 3
        # The shared data volume and one nested-engine volume per Harbor node.
        assert types["docker:index/volume:Volume"] == 3
        # The client key and one host key per container.
        assert types["tls:index/privateKey:PrivateKey"] >= 4
        (network,) = by_type(regs, "docker:index/network:Network")
        assert network.inputs["ipamConfigs"] == [{"subnet": "198.19.211.0/24", "gateway": "198.19.211.1"}]
        assert sorted(containers_by_address(regs)) == ["198.19.211.10", "198.19.211.11", "198.19.211.12"]
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_every_ssh_connection_pins_the_host_key_injected_into_its_container_and_waits_for_it():
    program = run_program(sandbox_values())

    def check(regs):
        by_address = containers_by_address(regs)
        client_keys = [r for r in by_type(regs, "tls:index/privateKey:PrivateKey") if r.name == "sandbox-ssh-key"]
        assert len(client_keys) == 1
        remote = [r for r in regs if r.typ in REMOTE]
        assert remote
        for r in remote:
            conn = r.inputs["connection"]
            container = by_address[conn["host"]]
            host_public = upload(container, f"{HOST_KEY_PATH}.pub")
            assert conn["hostKey"] == host_public.strip(), r.urn
            assert conn["hostKey"].startswith("ssh-ed25519 "), r.urn
            assert upload(container, HOST_KEY_PATH).startswith("-----BEGIN OPENSSH PRIVATE KEY-----"), r.urn
            # The connection's key is the one whose public half the container accepts.
            assert conn["user"] == "root" and conn["privateKey"] == program.monitor.mocks.generated["sandbox-ssh-key"]
            assert upload(container, AUTHORIZED_KEYS_PATH).startswith("ssh-ed25519 "), r.urn
            assert container.urn in r.dependencies, f"{r.urn} does not wait for {container.name}"
        # The private keys travel to the containers as secrets.
        for c in by_type(regs, CONTAINER):
            assert "uploads" in c.additional_secret_outputs, c.urn
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_sandbox_deploys_the_same_roles_as_the_dev_stack_except_the_nfs_server():
    """No second code path: the role components and scripts are the ones every stack runs."""
    sandbox = run_program(sandbox_values())

    def check(regs):
        found = {role: len(apply_commands(regs, role)) for role in
                 ("nfs-server", "postgres", "redis", "harbor-node", "loadbalancer", "keepalived")}
        assert found == {"nfs-server": 0, "postgres": 1, "redis": 1, "harbor-node": 2, "loadbalancer": 2,
                         "keepalived": 2}
        types = Counter(r.typ for r in regs)
        assert types["harbor-ha:cluster:HarborCluster"] == 1 and types["harbor-ha:nfs:NfsServer"] == 0
        return regs

    return sandbox.all_registered().apply(check)


@pulumi.runtime.test
def test_containers_boot_systemd_without_privileged_or_the_machines_cgroups():
    program = run_program(sandbox_values())

    def check(regs):
        for c in by_type(regs, CONTAINER):
            i = c.inputs
            assert not i.get("privileged"), c.urn
            assert i["command"] == ["/usr/local/sbin/harbor-ha-init"] and i["stopSignal"] == "SIGRTMIN+3", c.urn
            assert i["cgroupnsMode"] == "private" and set(i["tmpfs"]) == {"/run", "/run/lock"}, c.urn
            assert i["capabilities"] == {"adds": ["ALL"], "drops": ["SYS_RESOURCE"]}, c.urn
            assert "systempaths=unconfined" not in i["securityOpts"] and "apparmor=unconfined" in i["securityOpts"]
            assert not any(v.get("hostPath") for v in i.get("volumes", [])), c.urn
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_harbor_nodes_share_the_data_volume_and_have_their_own_docker_volume_lbs_bind_the_vip():
    program = run_program(sandbox_values())

    def check(regs):
        by_address = containers_by_address(regs)
        data1, node1, node2 = (by_address[f"198.19.211.{n}"] for n in (10, 11, 12))
        mounts = {c.name: {v["containerPath"]: v["volumeName"] for v in c.inputs.get("volumes", [])}
                  for c in (data1, node1, node2)}
        assert mounts[data1.name] == {}
        assert mounts[node1.name]["/data"] == mounts[node2.name]["/data"] == "harbor-ha-sandbox-data"
        assert mounts[node1.name][NESTED_DOCKER_PATH] != mounts[node2.name][NESTED_DOCKER_PATH]
        for node in (node1, node2):
            assert node.inputs["sysctls"] == {"net.ipv4.ip_forward": "1", "net.ipv4.ip_nonlocal_bind": "1"}
        assert "sysctls" not in data1.inputs
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_publish_https_forwards_a_loopback_port_to_the_vip_and_a_given_image_is_not_built():
    program = run_program(sandbox_values(
        sandbox={"subnet": "198.19.211.0/24", "publishHttps": True, "image": "hosts:test"},
        loadBalancer={"httpsPort": 9443}))

    def check(regs):
        assert not by_type(regs, "docker:index/image:Image")
        (forwarder,) = [c for c in by_type(regs, CONTAINER) if c.name == "sandbox-vip-https"]
        assert forwarder.inputs["ports"] == [{"internal": 9443, "external": 9443, "ip": "127.0.0.1"}]
        assert forwarder.inputs["command"][-1] == "TCP:198.19.211.100:9443"
        assert {c.inputs["image"] for c in by_type(regs, CONTAINER)} == {"hosts:test"}
        return regs

    return program.all_registered().apply(check)


@pytest.mark.parametrize("change, secrets, expected", [
    ({"roles": {"nfs": "data1", "postgres": "data1", "redis": ["data1"], "harborNodes": ["harbor1", "harbor2"],
                "loadBalancers": ["harbor1", "harbor2"]}}, (), "harbor-ha:roles.nfs: must not be set with sandbox"),
    ({"sandbox": {"subnet": "198.19.212.0/24"}}, (),
     "harbor-ha:hosts[0].address: 198.19.211.10 is not a free address of sandbox.subnet"),
    ({"sandbox": {"subnet": "198.19.211.0/24", "imag": "x"}}, (), "harbor-ha:sandbox.imag: unknown key"),
    ({"sandbox": {"subnet": "198.19.211.0/29"}}, (), "harbor-ha:sandbox.subnet: 198.19.211.0/29 is too small"),
    ({"sandbox": {}}, (), "harbor-ha:sandbox.subnet: is required"),
    ({}, ("sshPrivateKey",), "harbor-ha:sshPrivateKey: must not be set with sandbox"),
])
def test_sandbox_config_errors_name_the_key(change, secrets, expected):
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(sandbox_values(**change), secrets_present=secrets)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_sandbox_hosts_must_be_root_on_port_22():
    values = sandbox_values()
    values["hosts"] = [dict(values["hosts"][0], user="debian"), *values["hosts"][1:]]
    with pytest.raises(ConfigError, match=r"harbor-ha:hosts\[0\]: the sandbox's containers take SSH as root"):
        parse_cluster_config(values)
