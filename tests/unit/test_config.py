"""The stack config model: the example stacks parse, and each bad input fails naming its key."""

from __future__ import annotations

import copy

import pytest

from components.config import ConfigError, parse_cluster_config
from components.keepalived import vrrp_roles
from labs.engine.pulumi_harness import stack_config


def dev_values() -> dict:
    values, _ = stack_config("dev")
    return copy.deepcopy(values)


def prod_values() -> dict:
    values, _ = stack_config("prod")
    return copy.deepcopy(values)


def problems_of(values: dict, secrets: tuple[str, ...] = (), **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(values, secrets_present=secrets, **kwargs)
    return err.value.problems


def test_example_stacks_parse_with_their_topologies():
    dev = parse_cluster_config(dev_values())
    assert [h.name for h in dev.harbor_nodes] == ["harbor1", "harbor2"]
    assert dev.redis.mode == "standalone" and dev.sentinel_hosts == ()
    assert dev.lb_on_harbor_nodes and dev.harbor.http_port == 8080
    assert not dev.vrrp.track_process  # Harbor's own nginx container would hide the LB's nginx dying
    prod = parse_cluster_config(prod_values())
    assert prod.redis.mode == "sentinel" and len(prod.sentinel_hosts) == 3 and prod.redis.quorum == 2
    assert not prod.lb_on_harbor_nodes and prod.harbor.http_port == 80
    assert prod.vrrp.track_process
    assert prod.postgres.version == 16


def test_vrrp_roles_derive_master_and_backup_in_one_place():
    first, second = vrrp_roles(parse_cluster_config(dev_values()))
    assert (first.state, first.priority, first.peer.name) == ("MASTER", 150, "harbor2")
    assert (second.state, second.priority, second.peer.name) == ("BACKUP", 100, "harbor1")
    # nopreempt only works from BACKUP state: both start there, priority still elects the first.
    first, second = vrrp_roles(parse_cluster_config(prod_values()))
    assert (first.state, second.state) == ("BACKUP", "BACKUP") and first.priority > second.priority


def _with(values: dict, path: str, value) -> dict:
    node = values
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return values


@pytest.mark.parametrize("change, expected", [
    (lambda v: _with(v, "hosts.2.name", "harbor1"), "harbor-ha:hosts[2].name: duplicate host name 'harbor1'"),
    (lambda v: _with(v, "hosts.2.address", "192.168.56.11"),
     "harbor-ha:hosts[2].address: duplicate address 192.168.56.11"),
    (lambda v: _with(v, "roles.postgres", "db9"), "harbor-ha:roles.postgres: unknown host 'db9'"),
    (lambda v: _with(v, "roles.harborNodes", ["harbor1"]),
     "harbor-ha:roles.harborNodes: needs at least 2 Harbor nodes for HA, got 1"),
    (lambda v: _with(v, "vip.address", "192.168.56.11"),
     "harbor-ha:vip.address: 192.168.56.11 is the address of host 'harbor1'"),
    (lambda v: _with(v, "vip.address", "192.168.57.100"),
     "harbor-ha:vip.address: 192.168.57.100 is outside the subnet of host 'harbor1'"),
    (lambda v: _with(v, "vip.virtualRouterId", 0), "harbor-ha:vip.virtualRouterId: must be between 1 and 255"),
    (lambda v: _with(v, "vip.virtualRouterId", 256), "harbor-ha:vip.virtualRouterId: must be between 1 and 255"),
    (lambda v: _with(v, "harbor.installer", {"sha256": "0" * 64}), "harbor-ha:harbor.installer: missing installer"),
    (lambda v: _with(v, "vip.adress", "192.168.56.100"), "harbor-ha:vip.adress: unknown key"),
    (lambda v: _with(v, "keepalived.advertInt", 0.001), "harbor-ha:keepalived.advertInt: must be between"),
    (lambda v: _with(v, "keepalived", {"vrrpVersion": 2, "advertInt": 0.5}),
     "harbor-ha:keepalived.advertInt: fractional advert interval 0.5 needs vrrpVersion 3"),
    (lambda v: _with(v, "keepalived", {"priorityMaster": 100, "priorityBackup": 100}),
     "harbor-ha:keepalived.priorityBackup: priorityBackup (100) must be lower"),
    (lambda v: _with(v, "harbor.hostname", "not a name"), "harbor-ha:harbor.hostname: 'not a name' is not a DNS name"),
    (lambda v: _with(v, "loadBalancer.hsts", "yes"), "harbor-ha:loadBalancer.hsts: must be true or false"),
    (lambda v: _with(v, "harbor.httpPort", 443), "harbor-ha:harbor.httpPort: 443 is taken by the load balancer"),
    (lambda v: _with(v, "nfs.version", "5"), "harbor-ha:nfs.version: must be 3, 4, 4.1 or 4.2"),
    (lambda v: _with(v, "loadBalancer.healthPort", 80), "harbor-ha:loadBalancer.healthPort: 80 is already httpPort"),
    (lambda v: {**v, "vpi": {}}, "harbor-ha:vpi: unknown key"),
    (lambda v: _with(v, "keepalived.trackProcess", True),
     "harbor-ha:keepalived.trackProcess: cannot track nginx on LB hosts that are Harbor nodes too"),
    (lambda v: {**v, "sshPrivateKey": "-----BEGIN"}, "harbor-ha:sshPrivateKey: must be set as a secret"),
    (lambda v: _with(v, "harbor.proxy", {"http": "proxy:3128"}),
     "harbor-ha:harbor.proxy.http: 'proxy:3128' is not a proxy URL"),
    (lambda v: _with(v, "harbor.proxy", {"htps": "http://p:3128"}), "harbor-ha:harbor.proxy.htps: unknown key"),
    (lambda v: _with(v, "harbor.trivySkipUpdate", "yes"), "harbor-ha:harbor.trivySkipUpdate: must be true or false"),
    (lambda v: _with(v, "roles.retiringNodes", ["harbor2"]),
     "harbor-ha:roles.retiringNodes[0]: host 'harbor2' is in harborNodes too"),
])
def test_bad_dev_config_names_the_key(change, expected):
    problems = problems_of(change(dev_values()))
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize("change, expected", [
    (lambda v: _with(v, "roles.sentinels", ["redis1", "redis2"]),
     "harbor-ha:roles.sentinels: sentinel mode needs an odd number of sentinels, at least 3, got 2"),
    (lambda v: _with(v, "roles.sentinels", ["redis1", "redis2", "redis3", "nfs1"]),
     "harbor-ha:roles.sentinels: sentinel mode needs an odd number of sentinels, at least 3, got 4"),
    (lambda v: _with(v, "roles.redis", ["redis1"]),
     "harbor-ha:roles.redis: sentinel mode needs a master and at least one replica"),
    (lambda v: _with(v, "redis.quorum", 4), "harbor-ha:redis.quorum: quorum 4 exceeds the 3 sentinels"),
    (lambda v: _with(v, "harbor.dbMaxOpenConns", 40),
     "harbor-ha:harbor.dbMaxOpenConns: 3 nodes x 3 pools x 40 = 360 connections exceed postgres.maxConnections 300"),
    (lambda v: _with(v, "roles.loadBalancers", ["lb1"]),
     "harbor-ha:roles.loadBalancers: needs exactly 2 hosts (the keepalived pair), got 1"),
    (lambda v: _with(v, "harbor.installer", {"url": "https://x/h.tgz", "path": "h.tgz"}),
     "harbor-ha:harbor.installer: set either url or path, not both"),
])
def test_bad_prod_config_names_the_key(change, expected):
    problems = problems_of(change(prod_values()))
    assert any(p.startswith(expected) for p in problems), problems


def test_tls_certificate_without_key_is_refused():
    assert problems_of(dev_values(), secrets=("tlsCertificate",)) == [
        "harbor-ha:tlsPrivateKey: tlsCertificate is set but its private key is not"]
    assert problems_of(dev_values(), secrets=("tlsPrivateKey",)) == [
        "harbor-ha:tlsCertificate: tlsPrivateKey is set but the certificate is not"]
    cfg = parse_cluster_config(dev_values(), secrets_present=("tlsCertificate", "tlsPrivateKey"))
    assert cfg.tls.user_certificate


def test_missing_uploaded_installer_is_refused_when_the_program_runs(tmp_path):
    values = _with(prod_values(), "harbor.installer", {"path": str(tmp_path / "missing.tgz")})
    assert parse_cluster_config(values).harbor.installer_path  # render.py uploads nothing: no check
    problems = problems_of(values, check_files=True)
    assert problems == [f"harbor-ha:harbor.installer.path: no such file '{tmp_path / 'missing.tgz'}'"]


def test_every_problem_is_reported_at_once():
    values = _with(_with(dev_values(), "vip.virtualRouterId", 0), "roles.nfs", "nope")
    problems = problems_of(values)
    assert len(problems) == 2 and {p.split(":")[1].split()[0] for p in problems} == {
        "vip.virtualRouterId", "roles.nfs"}
