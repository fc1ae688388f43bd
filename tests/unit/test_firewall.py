"""The host firewall model: each host opens the union of its roles' needs, to exactly their peers."""

from __future__ import annotations

import copy

import pytest

from components.config import ConfigError, parse_cluster_config
from components.firewall import host_openings, render_ruleset
from labs.engine.pulumi_harness import stack_config


def values(stack: str, **sections) -> dict:
    v = copy.deepcopy(stack_config(stack)[0])
    v.update(sections)
    return v


def openings(cfg, name):
    return {o.service: o for o in host_openings(cfg, cfg.host(name))}


def test_prod_hosts_open_only_what_their_roles_need():
    cfg = parse_cluster_config(values("prod"))
    nodes = {f"{h.address}/32" for h in cfg.harbor_nodes}
    assert set(openings(cfg, "db1")) == {"ssh", "postgres"}
    assert set(openings(cfg, "db1")["postgres"].sources) == nodes
    assert set(openings(cfg, "nfs1")) == {"ssh", "nfs"}
    assert set(openings(cfg, "nfs1")["nfs"].sources) == nodes
    lb1 = openings(cfg, "lb1")
    assert set(lb1) == {"ssh", "vip-http", "vip-https", "vrrp"}
    assert lb1["vrrp"].sources == (f"{cfg.host('lb2').address}/32",)
    assert lb1["vip-https"].daddr == cfg.vip and lb1["vip-https"].sources is None
    node = openings(cfg, "harbor1")
    # Metrics stay closed until firewall.metricsSources names the scrapers.
    assert set(node) == {"ssh", "harbor-https"}
    assert set(node["harbor-https"].sources) == {f"{h.address}/32" for h in cfg.lb_hosts}
    redis1 = openings(cfg, "redis1")
    peers = {f"{h.address}/32" for h in (*cfg.harbor_nodes, cfg.host("redis2"), cfg.host("redis3"))}
    assert set(redis1) == {"ssh", "redis", "sentinel"}
    assert set(redis1["redis"].sources) == set(redis1["sentinel"].sources) == peers


def test_shared_lb_and_node_hosts_get_the_union_and_never_list_themselves():
    cfg = parse_cluster_config(values("dev"))
    h1 = openings(cfg, "harbor1")
    assert set(h1) == {"ssh", "vip-http", "vip-https", "vrrp", "harbor-https"}
    assert h1["harbor-https"].sources == (f"{cfg.host('harbor2').address}/32",)
    assert h1["harbor-https"].port == 8443
    data1 = openings(cfg, "data1")
    assert set(data1) == {"ssh", "postgres", "redis", "nfs"}
    assert f"{cfg.host('data1').address}/32" not in data1["redis"].sources


def test_a_node_that_carries_redis_sentinel_or_the_database_admits_its_own_harbor_containers():
    three = ["data1", "harbor1", "harbor2"]
    cfg = parse_cluster_config(values("dev", roles={**values("dev")["roles"], "redis": three, "sentinels": three,
                                                    "postgres": "harbor1"}, redis={"mode": "sentinel"}))
    h1 = openings(cfg, "harbor1")
    local = {s: o for s, o in h1.items() if s.endswith("-local")}
    assert {s: o.port for s, o in local.items()} == {"redis-local": 6379, "sentinel-local": 26379,
                                                      "postgres-local": 5432}
    assert all(o.sources is None and o.iifname == "br-*" for o in local.values())
    assert 'iifname "br-*" tcp dport 6379 accept' in render_ruleset(cfg, cfg.host("harbor1"))
    # a Redis host that is no node has no Harbor containers to admit
    assert not any(s.endswith("-local") for s in openings(cfg, "data1"))


def test_an_lb_that_is_a_harbor_node_resets_its_containers_connections_to_the_vip_once_it_moved_away():
    """Only where Harbor's containers share a host with the VIP (the dev shape's nodes): their connections to the VIP
    while it was here were never masqueraded, and are reset rather than left to hang once it has moved."""
    rule = ('iifname "br-*" ip daddr {vip} meta l4proto tcp ct state established ct status ! snat '
            "reject with tcp reset")
    dev = parse_cluster_config(values("dev"))
    assert rule.format(vip=dev.vip) in render_ruleset(dev, dev.host("harbor1"))
    assert "vip_orphans" not in render_ruleset(dev, dev.host("data1"))
    prod = parse_cluster_config(values("prod"))
    assert not any("vip_orphans" in render_ruleset(prod, prod.host(h)) for h in ("lb1", "harbor1"))


def test_configured_sources_reach_ssh_vip_and_metrics():
    cfg = parse_cluster_config(values("prod", firewall={
        "adminSources": ["198.51.100.7", "203.0.113.0/24"], "clientSources": ["192.0.2.0/24"],
        "metricsSources": ["198.51.100.9"]}))
    lb1, node = openings(cfg, "lb1"), openings(cfg, "harbor1")
    assert lb1["ssh"].sources == ("198.51.100.7/32", "203.0.113.0/24")
    assert lb1["vip-http"].sources == lb1["vip-https"].sources == ("192.0.2.0/24",)
    assert node["harbor-metrics"].sources == ("198.51.100.9/32",) and node["harbor-metrics"].published
    text = render_ruleset(cfg, cfg.host("harbor1"))
    assert "ip saddr { 198.51.100.9/32 } tcp dport 9090 accept" in text
    assert "tcp dport { 80, 443, 9090 } jump published_allowed" in text


def test_nfs_v3_opens_its_pinned_side_services_to_the_nodes_only():
    cfg = parse_cluster_config(values("prod", nfs={"version": "3"}))
    ports = {(o.proto, o.port) for o in host_openings(cfg, cfg.nfs_host) if o.service != "ssh"}
    assert ports == {("tcp", 2049)} | {(p, n) for p in ("tcp", "udp") for n in (111, 20048, 32765, 32768)}


def test_ruleset_replaces_only_its_own_table():
    cfg = parse_cluster_config(values("prod"))
    text = render_ruleset(cfg, cfg.host("db1"))
    assert "flush ruleset" not in text
    assert text.index("table inet harbor_ha\ndelete table inet harbor_ha\n") < text.index("policy drop")


@pytest.mark.parametrize("section, expected", [
    ({"firewall": {"adminSources": ["10.0.0.1/8"]}},
     "harbor-ha:firewall.adminSources: [0] '10.0.0.1/8' is not an IPv4 address or CIDR"),
    ({"firewall": {"clientSources": []}}, "harbor-ha:firewall.clientSources: must list at least one"),
    ({"firewall": {"metricSources": ["10.0.0.0/8"]}}, "harbor-ha:firewall.metricSources: unknown key"),
    ({"loadBalancer": {"apiSources": "10.0.0.0/8"}}, "harbor-ha:loadBalancer.apiSources: must be a list"),
    ({"tls": {"internalCertDays": 30, "renewBeforeDays": 30}},
     "harbor-ha:tls.renewBeforeDays: 30 must be below internalCertDays (30)"),
])
def test_bad_firewall_and_tls_keys_are_named(section, expected):
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(values("prod", **section))
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems
