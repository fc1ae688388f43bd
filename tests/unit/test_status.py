"""scripts/status.py's reading of what a host's checks printed (pure): Harbor's health answer, Redis's replication
info (with the carriage returns redis-cli prints), the LB certificate's expiry, Patroni's member list and the
leader's replication streams, the sentinels' answers. The checks run against real hosts in
tests/hosts/test_operator_hosts.py and tests/hosts/test_operator_patroni_hosts.py."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from components.config import load_stack_file, parse_cluster_config
from labs import certs as lab_certs
from scripts.status import cluster_checks, host_script, judge_host
from tests.support import ROOT

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def _cfg():
    values, secrets = load_stack_file(str(ROOT / "Pulumi.dev.yaml"))
    return parse_cluster_config(values, secrets_present=secrets)


def _patroni_cfg():
    """Pulumi.prod.yaml (Redis Sentinel on redis1..3) with PostgreSQL under Patroni on those three hosts too."""
    values, secrets = load_stack_file(str(ROOT / "Pulumi.prod.yaml"))
    values["roles"] = {**values["roles"], "postgres": ["redis1", "redis2", "redis3"]}
    values["postgres"] = {"mode": "patroni", "vip": {"address": "10.20.0.50", "interface": "ens3"},
                          "synchronous": "strict"}
    return parse_cluster_config(values, secrets_present=secrets)


# `patronictl list -f json` as Patroni 3.0.2 writes it (patroni/ctl.py output_members, print_output: empty fields are
# left out, so the leader has no lag; a member without a WAL position has the lag "unknown").
MEMBERS = [{"Cluster": "harbor", "Member": "redis1", "Host": "10.20.0.21", "Role": "Leader", "State": "running",
            "TL": 1},
           {"Cluster": "harbor", "Member": "redis2", "Host": "10.20.0.22", "Role": "Sync Standby",
            "State": "running", "TL": 1, "Lag in MB": 0},
           {"Cluster": "harbor", "Member": "redis3", "Host": "10.20.0.23", "Role": "Replica", "State": "running",
            "TL": 1, "Lag in MB": 0}]
QUORUM = "OK 3 usable Sentinels. Quorum and failover authorization can be reached"


def _line(name: str, rc: int, text: str) -> str:
    return f"CHECK|{name}|{rc}|{text.replace(chr(13), ' ').replace(chr(10), ' ')}"


def test_a_healthy_lb_node_reads_as_healthy_and_a_down_backend_is_named():
    cfg = _cfg()
    host = cfg.host("harbor1")
    healthy = json.dumps({"status": "healthy", "components": [{"name": "core", "status": "healthy"}]})
    cert = base64.b64encode(lab_certs.ca_and_server("h", ["h"], days=90)[1]).decode()
    out = "\n".join([_line("nginx", 0, "active"), _line("keepalived", 0, "active"), _line("vip", 0, "holder"),
                     _line("lb-health", 0, "ok"), _line("lb-cert", 0, cert), _line("backend:harbor1", 0, healthy),
                     _line("backend:harbor2", 7, "curl: (7) Failed to connect"), _line("docker", 0, "active"),
                     _line("data-volume", 0, "/data is a mountpoint"), _line("harbor-health", 0, healthy)])
    checks = judge_host(cfg, host, out, NOW)
    assert [(c.check, c.detail) for c in checks if not c.ok] == [
        ("backend:harbor2", "harbor2 curl: (7) Failed to connect")]
    assert {c.check for c in checks} >= {"vip", "certificate", "harbor-health"}


def test_redis_info_with_carriage_returns_and_one_master():
    cfg = _cfg()
    out = _line("redis", 0, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n")
    checks = judge_host(cfg, cfg.host("data1"), out, NOW)
    redis = next(c for c in checks if c.check == "redis")
    assert redis.ok and redis.detail == "master, 0 replicas"
    assert [c.ok for c in cluster_checks(cfg, checks) if c.check == "redis-master"] == [True]


def test_a_certificate_due_for_renewal_and_an_unhealthy_component_are_unhealthy():
    cfg = _cfg()
    soon = base64.b64encode(lab_certs.ca_and_server("h", ["h"], days=2)[1]).decode()
    bad = json.dumps({"status": "unhealthy", "components": [{"name": "jobservice", "status": "unhealthy"}]})
    checks = judge_host(cfg, cfg.host("harbor1"), "\n".join([_line("lb-cert", 0, soon),
                                                             _line("harbor-health", 0, bad)]), NOW)
    by_name = {c.check: c for c in checks}
    assert not by_name["certificate"].ok and not by_name["harbor-health"].ok
    assert by_name["harbor-health"].detail == "unhealthy: jobservice"


def test_the_host_script_passes_shellcheck_and_carries_no_secret():
    import subprocess

    from tests.support import tool

    script = "".join(host_script(cfg, h) for cfg in (_cfg(), _patroni_cfg()) for h in cfg.hosts)
    done = subprocess.run([tool("shellcheck") or "shellcheck", "-s", "bash", "-S", "warning", "-"], input=script,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert "requirepass" in script and "REDISCLI_AUTH=$(" in script  # read on the host, never sent


def test_the_last_backup_is_healthy_while_younger_than_36_hours():
    cfg = _cfg()
    recent = {"timestamp": {"start": NOW.timestamp() - 7300, "stop": NOW.timestamp() - 7200}}
    info = [{"name": "harbor", "backup": [recent, {"timestamp": {"start": 0, "stop": 100}}]}]
    fresh = judge_host(cfg, cfg.host("data1"), _line("backup", 0, json.dumps(info)), NOW)
    assert [(c.ok, c.detail) for c in fresh if c.check == "last-backup"] == [
        (True, "last 2026-12-04 22:00 UTC (2.0 h ago)")]
    info[0]["backup"] = info[0]["backup"][1:]
    old = judge_host(cfg, cfg.host("data1"), _line("backup", 0, json.dumps(info)), NOW)
    assert [c.ok for c in old if c.check == "last-backup"] == [False]


def test_patroni_members_their_lag_the_leaders_streams_and_the_sentinels_agreeing_read_as_healthy():
    cfg = _patroni_cfg()
    members = json.dumps(MEMBERS)
    sentinel = [_line("sentinel", 0, "10.20.0.21\n6379"), _line("sentinel-quorum", 0, QUORUM)]
    streams = "redis2|streaming|sync\nredis3|streaming|async"
    outs = {"redis1": [_line("patroni", 0, members), _line("streams", 0, streams),
                       _line("redis", 0, "role:master\r\nconnected_slaves:2"), *sentinel],
            **{h: [_line("patroni", 0, members), _line("streams", 0, ""),
                   _line("redis", 0, "role:slave\r\nmaster_host:10.20.0.21\r\nmaster_link_status:up"), *sentinel]
               for h in ("redis2", "redis3")}}
    checks = [c for h, lines in outs.items() for c in judge_host(cfg, cfg.host(h), "\n".join(lines), NOW)]
    checks += cluster_checks(cfg, checks)
    detail = {(c.host, c.check): (c.ok, c.detail) for c in checks if c.role in ("patroni", "sentinel")}
    assert detail[("redis1", "patroni")] == (True, "Leader running, timeline 1")
    assert detail[("redis3", "patroni")] == (True, "Replica running, lag 0 MB")
    assert detail[("redis1", "replication")] == (True, "redis2 streaming sync, redis3 streaming async")
    assert detail[("cluster", "patroni-leader")] == (True, "leader: redis1; synchronous standby: redis2")
    assert detail[("cluster", "sentinels-agree")] == (
        True, "sentinels name 10.20.0.21:6379; the master is 10.20.0.21:6379")


def test_a_stopped_member_a_replica_not_streaming_and_a_sentinel_naming_another_master_are_unhealthy():
    cfg = _patroni_cfg()
    members = [*MEMBERS[:2], {**MEMBERS[2], "State": "stopped", "Lag in MB": "unknown"}]
    leader = judge_host(cfg, cfg.host("redis1"), "\n".join([
        _line("patroni", 0, json.dumps(members)), _line("streams", 0, "redis2|streaming|sync"),
        _line("redis", 0, "role:master"), _line("sentinel", 0, "10.20.0.21\n6379"),
        _line("sentinel-quorum", 0, QUORUM)]), NOW)
    stale = judge_host(cfg, cfg.host("redis3"), "\n".join([
        _line("patroni", 0, json.dumps(members)), _line("sentinel", 0, "10.20.0.22\n6379"),
        _line("sentinel-quorum", 1, "NOQUORUM 1 usable Sentinels.")]), NOW)
    bad = {(c.host, c.check): c.detail for c in [*leader, *stale, *cluster_checks(cfg, [*leader, *stale])]
           if not c.ok}
    assert bad[("redis1", "replication")] == "redis2 streaming sync, redis3 not streaming"
    assert bad[("redis3", "patroni")] == "Replica stopped, lag unknown"
    assert bad[("redis3", "sentinel")] == "master 10.20.0.22:6379; NOQUORUM 1 usable Sentinels."
    assert bad[("cluster", "sentinels-agree")].startswith("sentinels name 10.20.0.21:6379, 10.20.0.22:6379")


def test_a_role_file_edited_on_the_host_is_named_and_a_stage_without_check_is_not_failed():
    cfg = _cfg()
    host = cfg.host("harbor1")
    edited = ("[harbor-ha loadbalancer] drift: /etc/nginx/conf.d/harbor.conf differs from what harbor-ha applied "
              "drift: /etc/nginx/nginx.conf differs from what harbor-ha applied")
    out = "\n".join([_line("files:loadbalancer", 1, edited),
                     _line("files:harbor-node", 0, "[harbor-ha harbor-node] every file as applied"),
                     _line("files:keepalived", 1, "[harbor-ha keepalived] ERROR: unknown action 'check' (apply, "
                                                  "delete)"),
                     _line("files:redis", 1, "bash: /var/lib/harbor-ha/stage/redis/redis.sh: Permission denied")])
    checks = {c.role: c for c in judge_host(cfg, host, out, NOW) if c.check == "files"}
    assert {r: (c.ok, c.detail) for r, c in checks.items()} == {
        "loadbalancer": (False, "edited on the host: /etc/nginx/conf.d/harbor.conf, /etc/nginx/nginx.conf"),
        "harbor-node": (True, "as applied"),
        "keepalived": (True, "not checked: staged before `check` existed, the next apply adds it"),
        "redis": (False, "bash: /var/lib/harbor-ha/stage/redis/redis.sh: Permission denied")}
