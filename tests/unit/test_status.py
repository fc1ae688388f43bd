"""scripts/status.py's reading of what a host's checks printed (pure): Harbor's health answer, Redis's replication
info (with the carriage returns redis-cli prints), the LB certificate's expiry. The checks run against real hosts in
tests/hosts/test_operator_hosts.py."""

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

    cfg = _cfg()
    script = "".join(host_script(cfg, h) for h in cfg.hosts)
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
