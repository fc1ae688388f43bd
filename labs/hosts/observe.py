"""`host_lab.py observe`: the monitoring role on real Debian 12 hosts, drills that must fire exactly their alert.

    sudo venv/bin/python labs/hosts/host_lab.py observe --json FILE [--quiet-minutes 10] [--keep]

The dev shape (data1: NFS stand-in, PostgreSQL, Redis; node1/node2: Harbor stand-ins, nginx and keepalived) with
roles.monitoring on data1. Alertmanager's webhook receiver is a small recorder on data1's loopback (RECEIVER): each
alert of each notification becomes one JSON line. After the apply the lab waits until every scrape target is up,
then watches the healthy cluster for --quiet-minutes (every alert that fires meanwhile is a false alert), then runs
each drill: break one thing, wait for its alert at the receiver (within its `for:` plus scrape and Alertmanager's
group wait), repair it, wait for the resolved notification. Every other alert that fired in a drill's window is
reported beside it. Real: Prometheus, Alertmanager, the blackbox, node, postgres, redis and nginx exporters from
Debian's packages, the rules and files the program renders, the alerts Alertmanager sends. Stand-ins: Harbor (its
metric port serves harbor_up from the stand-in core's health, labs/hosts/standin_installer.py) and NFS (nothing
listens on 2049, so the NFS probe is not scraped here: see `skipped`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from collections.abc import Callable

import yaml

from components.config import parse_cluster_config
from components.monitoring import render_rules
from components.monitoring.dashboards import metrics_of, render_cluster_dashboard
from labs.hosts import host_lab
from labs.hosts.host_lab import DEV, MACHINES, HostLab, Shape, address, debhosts, log, ssh

RECEIVER_PORT = 9099
RECEIVER_LOG = "/var/tmp/hha-alerts.jsonl"
RECEIVER = r"""
import http.server, json, sys, time
class Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(sys.argv[2], "a") as f:
            for a in body.get("alerts", []):
                f.write(json.dumps({"t": time.time(), "status": a["status"], "labels": a["labels"]}) + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Recorder).serve_forever()
"""
# Asks this host's Prometheus (argv[1]: base URL, argv[2]: API path with query) and prints the JSON answer.
QUERY = r"""
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1] + sys.argv[2], timeout=10).read().decode())
"""
MONITOR = "data1"
# True in this lab, and not what it tests: the NFS stand-in is a bind mount, nothing listens on 2049.
IGNORED = {"NfsExportUnreachable": "the lab's NFS is a bind mount: nothing listens on 2049"}
OBSERVE = Shape("observe", DEV.hosts, {**DEV.roles, "monitoring": [MONITOR]})


@dataclass
class Drill:
    name: str
    alert: str  #: the one alert it must fire
    labels: dict[str, str]  #: labels that alert must carry
    brk: Callable[[], None]  #: break it
    repair: Callable[[], None]  #: repair it
    budget_s: float  #: `for:` + scrape interval + group wait + evaluation, with room for a loaded machine


class Observe:
    def __init__(self, lab: HostLab):
        self.lab = lab
        self.monitor = MACHINES[MONITOR]

    def values(self) -> dict[str, Any]:
        values = self.lab.values(OBSERVE)
        values["monitoring"] = {
            "receivers": {"webhook": {"url": f"http://127.0.0.1:{RECEIVER_PORT}/alerts"}},
            # 5 s: drills fire within their `for:` plus seconds, on a machine shared with other labs.
            "scrapeInterval": "5s",
            # The lab's certificates live two days (labs/certs.py); 1 day keeps a healthy cluster quiet.
            "certificateWarningDays": 1,
            # The lab's VIP certificate is a user certificate from the lab's own CA.
            "vipCaCertificate": self.lab.ca,
        }
        return values

    def start_receiver(self) -> None:
        ssh(self.monitor, "cat > /var/tmp/hha-receiver.py", input=RECEIVER)
        ssh(self.monitor, f"rm -f {RECEIVER_LOG}; systemctl stop hha-receiver 2>/dev/null || true; "
            f"systemd-run --quiet --unit hha-receiver python3 /var/tmp/hha-receiver.py {RECEIVER_PORT} {RECEIVER_LOG}")

    def received(self) -> list[dict]:
        out = ssh(self.monitor, f"cat {RECEIVER_LOG} 2>/dev/null || true").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def prometheus(self, path: str) -> dict:
        base = f"http://{address(self.monitor)}:9090"
        out = ssh(self.monitor, f"python3 -c '{QUERY}' {base} '{path}'", timeout=30).stdout
        return json.loads(out)

    def targets_down(self) -> list[str]:
        active = self.prometheus("/api/v1/targets?state=active")["data"]["activeTargets"]
        return [f"{t['labels'].get('job')}@{t['labels'].get('host', t['labels'].get('instance'))}: "
                f"{t.get('lastError', '')}"[:160] for t in active if t["health"] != "up"]

    def firing(self) -> list[str]:
        result = self.prometheus("/api/v1/query?query=ALERTS")["data"]["result"]
        return sorted(f"{r['metric']['alertname']}({r['metric'].get('alertstate')})" for r in result
                      if r["metric"]["alertname"] not in IGNORED)

    def wait(self, what: str, check: Callable[[], bool], timeout: float, step: float = 2.0) -> Optional[float]:
        """Seconds until `check()` holds, None after `timeout` (said in the log)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if check():
                return round(time.monotonic() - t0, 1)
            time.sleep(step)
        log(f"observe: gave up waiting {timeout:.0f} s for {what}")
        return None

    def run_drill(self, drill: Drill, *, settle: bool = True) -> dict:
        """Break, wait for the alert, repair, wait for its resolution; `settle`: then wait for a quiet cluster."""
        start = time.time()
        log(f"drill {drill.name}: breaking (expects {drill.alert} {drill.labels})")
        drill.brk()

        def matches(entry: dict, status: str, since: float) -> bool:
            labels = entry["labels"]
            return (entry["t"] >= since and entry["status"] == status and labels.get("alertname") == drill.alert
                    and all(labels.get(k) == v for k, v in drill.labels.items()))

        fired = self.wait(f"{drill.alert} to fire", lambda: any(matches(e, "firing", start) for e in self.received()),
                          drill.budget_s)
        repaired = time.time()
        log(f"drill {drill.name}: fired after {fired} s; repairing")
        drill.repair()
        resolved = self.wait(f"{drill.alert} to resolve",
                             lambda: any(matches(e, "resolved", repaired) for e in self.received()), 300)
        names = {e["labels"].get("alertname") for e in self.received() if e["t"] >= start and e["status"] == "firing"}
        others = sorted(names - {drill.alert} - set(IGNORED))
        result = {"alert": drill.alert, "fired_s": fired, "resolved_s": resolved, "other_alerts": others}
        log(f"drill {drill.name}: {result}")
        if settle:  # the next drill starts from a quiet cluster
            self.wait("no alert pending or firing", lambda: not self.firing(), 300, step=5)
        return result

    def dashboards(self, cfg) -> dict:
        """The cluster dashboard's metrics against every metric name this Prometheus holds. (Harbor's dashboard
        reads Harbor's own metrics: the stand-in serves harbor_up only, so it is not checked here.)"""
        names = set(self.prometheus("/api/v1/label/__name__/values")["data"])
        dashboard = render_cluster_dashboard(cfg)
        # ALERTS is Prometheus's own series of pending and firing alerts: present whenever an alert is.
        missing = sorted(metrics_of(dashboard) - names - {"ALERTS"})
        result = {"panels": len(json.loads(dashboard)["panels"]), "metrics": len(metrics_of(dashboard)),
                  "metrics_missing": len(missing), "missing": missing}
        log(f"observe: cluster dashboard {result}")
        return result

    def drills(self) -> list[Drill]:
        lab, data1, node2 = self.lab, MACHINES["data1"], MACHINES["node2"]
        lbs = OBSERVE.roles["loadBalancers"]

        def holder() -> str:
            held = lab.vip_holder(lbs)
            return held[0] if held else lbs[0]

        lb = holder()

        return [
            Drill("node_power_cut", "HostDown", {"host": "node2"}, lambda: debhosts("kill", node2), lab.power_on, 150),
            Drill("lb_crash", "LoadBalancerDown", {"host": lb},
                  lambda: ssh(MACHINES[lb], "systemctl stop nginx.socket nginx"),
                  lambda: ssh(MACHINES[lb], "systemctl start nginx.socket nginx"), 120),
            Drill("postgres_stop", "PostgresLeaderMissing", {"host": "data1"},
                  lambda: ssh(data1, "systemctl stop postgresql@15-main"),
                  lambda: ssh(data1, "systemctl start postgresql@15-main"), 150),
            Drill("redis_master_kill", "RedisMasterMissing", {},
                  lambda: ssh(data1, "systemctl kill -s KILL redis-server; systemctl stop redis-server"),
                  lambda: ssh(data1, "systemctl start redis-server"), 120),
            Drill("exporter_stopped", "ExporterDown", {"job": "nginx", "host": "node2"},
                  lambda: ssh(node2, "systemctl stop prometheus-nginx-exporter"),
                  lambda: ssh(node2, "systemctl start prometheus-nginx-exporter"), 210),
        ]


def rules_tested() -> dict:
    """`promtool test rules` on the rules of each shape with a test file (tests/integration/promtool/): the number
    of alerts a passing case fires."""
    from tests.integration import test_monitoring_tools as tools

    fired, failed = set(), []
    for name, (_host, test_file) in tools.SHAPES.items():
        if not test_file:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "rules.yml").write_text(render_rules(tools.shape(name)), encoding="utf-8")
            shutil.copy(tools.PROMTOOL_TESTS / test_file, Path(tmp) / test_file)
            done = subprocess.run(["promtool", "test", "rules", test_file], cwd=tmp, capture_output=True, text=True,
                                  timeout=300)
        if done.returncode == 0:
            fired |= tools.fired_in(tools.PROMTOOL_TESTS / test_file)
        else:
            failed.append(name)
    return {"rules_tested": len(fired), "promtool_failed": failed}


def observe(json_path: Path, *, quiet_minutes: float, keep: bool) -> dict:
    t0 = time.monotonic()
    report: dict[str, Any] = {**rules_tested(), "drills": {}, "quiet_minutes": quiet_minutes,
                              "apply": "replay of the program's registered commands (labs/hosts/replay.py)",
                              "standins": ["Harbor installer (metrics: harbor_up from its health)",
                                           "NFS (bind mount; the NFS port probe finds no listener)"]}
    lab = HostLab(host_lab.ROOT / "lab")
    obs = Observe(lab)
    try:
        lab.boot(OBSERVE.boots)
        lab.prepare_standins(OBSERVE)
        obs.start_receiver()
        values = obs.values()
        first = lab.up(values)
        report["apply_ok"], report["apply_s"] = first.ok, round(first.seconds, 1)
        log(f"observe: apply ok={first.ok} in {first.seconds:.1f} s")
        if not first.ok:
            return report
        cfg = parse_cluster_config(values)
        report["targets"] = sum(len(g["targets"]) for job in yaml.safe_load(
            ssh(obs.monitor, "cat /etc/prometheus/prometheus.yml").stdout)["scrape_configs"]
            for g in job["static_configs"])
        # Every target up, except the NFS probe, which has no NFS server to find in this lab.
        nfs = f"blackbox-nfs@{cfg.nfs_server.name}"
        up_s = obs.wait("every scrape target up", lambda: all(t.startswith(nfs) for t in obs.targets_down()), 240, 5)
        report["targets_down"] = obs.targets_down()
        report["all_targets_up_s"] = up_s
        log(f"observe: targets up after {up_s} s; down: {report['targets_down']}")
        report["ignored"] = IGNORED
        report["dashboards"] = obs.dashboards(cfg)
        quiet_start = time.time()
        time.sleep(quiet_minutes * 60)
        false = sorted({e["labels"]["alertname"] for e in obs.received()
                        if e["status"] == "firing" and e["t"] >= quiet_start
                        and e["labels"].get("alertname") not in IGNORED})
        report["false_alerts"], report["false_alert_names"] = len(false), false
        log(f"observe: quiet {quiet_minutes} min: false alerts {false or 'none'}")
        for drill in obs.drills():
            report["drills"][drill.name] = obs.run_drill(drill)
    finally:
        host_lab.close_lab(json_path, report, t0, keep=keep)
    print_summary(report)
    return report


def print_summary(report: dict) -> None:
    print(f"rules tested by promtool: {report.get('rules_tested')} (failed shapes: {report.get('promtool_failed')})")
    print(f"apply ok: {report.get('apply_ok')} in {report.get('apply_s')} s; targets down: "
          f"{report.get('targets_down')}; dashboard: {report.get('dashboards')}")
    print(f"quiet minutes: {report.get('quiet_minutes')}; false alerts: {report.get('false_alerts')} "
          f"{report.get('false_alert_names') or ''}")
    print(f"{'drill':<20} {'alert':<24} {'fired s':>8} {'resolved s':>11}  other alerts")
    for name, d in report.get("drills", {}).items():
        print(f"{name:<20} {d['alert']:<24} {d['fired_s']!s:>8} {d['resolved_s']!s:>11}  {d['other_alerts']}")


def passed(report: dict) -> bool:
    drills = report.get("drills", {})
    return bool(report.get("apply_ok") and not report.get("promtool_failed") and report.get("false_alerts") == 0
                and drills and all(d["fired_s"] is not None and d["resolved_s"] is not None
                                   and not d["other_alerts"] for d in drills.values()))
