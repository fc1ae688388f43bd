"""`host_lab.py observe`: the monitoring role on real Debian 12 hosts, drills that must fire exactly their alert.

    sudo venv/bin/python labs/hosts/host_lab.py observe --json FILE [--quiet-minutes 10] [--keep] [--shape patroni]

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

`--shape patroni`: the same three hosts with PostgreSQL in patroni mode (strict synchronous; etcd and Patroni on
all three) and Redis in sentinel mode (a server and a sentinel on each), the alerts of those modes drilled: the
Patroni leader's host powered off (a failover within the leader alert's `for:`: only HostDown fires), both
replicas' Patroni stopped (no synchronous standby), two sentinels stopped (below the quorum), the Redis master
killed (the sentinels promote a replica: only the dead server's alert fires). Prometheus's own view of each drill
(alerts pending or firing, inhibited ones too) is reported beside what reached the receiver.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
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
IGNORED = {"NfsExportUnreachable": "the lab's NFS is a bind mount: nothing listens on 2049",
           # Seen pending on every lab host (2026-12-05, the machine's disk at 80 % and filling with the full suite's
           # lanes): true there, and no fault of the cluster's; with `for: 30m` it fires in a long run.
           "DiskWillFillIn24h": "the lab hosts' filesystems are the machine's own disk, shared with every other lab"}
OBSERVE = Shape("observe", DEV.hosts, {**DEV.roles, "monitoring": [MONITOR]})
# The patroni and sentinel modes on the same three hosts: config.py's minimum of three Patroni members and three
# sentinels, each host a member, a Redis server and a sentinel; no backup section (BackupTooOld is the dev drills'
# business). The monitoring host is a member too, so the leader's power cut aims at a node (drills switch over first).
OBSERVE_PATRONI = Shape("observe-patroni", DEV.hosts, {
    **OBSERVE.roles, "postgres": DEV.hosts, "redis": DEV.hosts, "sentinels": DEV.hosts},
    {"postgres": {"mode": "patroni", "vip": {"address": f"{host_lab.NET}.101", "interface": "host0"},
                  "synchronous": "strict"},
     "redis": {"mode": "sentinel"}}, parallel=True)
SHAPES = {"dev": OBSERVE, "patroni": OBSERVE_PATRONI}  #: `--shape`


@dataclass
class Drill:
    name: str
    alert: str  #: the one alert it must fire
    labels: dict[str, str]  #: labels that alert must carry
    brk: Callable[[], None]  #: break it
    repair: Callable[[], None]  #: repair it
    budget_s: float  #: `for:` + scrape interval + group wait + evaluation, with room for a loaded machine
    also: tuple[str, ...] = ()  #: further alerts the fault rightly fires too (each must fire, and resolve)


class Observe:
    def __init__(self, lab: HostLab, shape: Shape = OBSERVE):
        self.lab, self.shape = lab, shape
        self.monitor = MACHINES[MONITOR]

    def values(self) -> dict[str, Any]:
        values = self.lab.values(self.shape)
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

    def targets_down(self, expected: int) -> list[str]:
        """Every target not up, and how many of the `expected` (prometheus.yml's) Prometheus does not list yet: just
        after its start the list is empty until its first discovery sync, and an empty list has nothing down."""
        active = self.prometheus("/api/v1/targets?state=active")["data"]["activeTargets"]
        missing = [f"{expected - len(active)} of {expected} targets not listed yet"] if len(active) < expected else []
        return missing + [f"{t['labels'].get('job')}@{t['labels'].get('host', t['labels'].get('instance'))}: "
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
        """Break, wait for the alert (and its `also`), repair, wait for their resolution; `settle`: then wait for a
        quiet cluster. `seen` is what Prometheus showed pending or firing meanwhile (inhibited alerts too)."""
        start = time.time()
        seen: set[str] = set()
        log(f"drill {drill.name}: breaking (expects {drill.alert} {drill.labels}, also {list(drill.also)})")
        drill.brk()  # labels may be filled in by brk (the target it chose)

        def matches(entry: dict, status: str, since: float, alert: str, labels: dict[str, str]) -> bool:
            return (entry["t"] >= since and entry["status"] == status and entry["labels"].get("alertname") == alert
                    and all(entry["labels"].get(k) == v for k, v in labels.items()))

        def all_there(status: str, since: float) -> bool:
            if status == "firing":
                seen.update(self.firing())
            got = self.received()
            return all(any(matches(e, status, since, alert, labels) for e in got)
                       for alert, labels in [(drill.alert, drill.labels), *((a, {}) for a in drill.also)])

        fired = self.wait(f"{drill.alert} {list(drill.also)} to fire", lambda: all_there("firing", start),
                          drill.budget_s)
        repaired = time.time()
        log(f"drill {drill.name}: fired after {fired} s; repairing")
        drill.repair()
        resolved = self.wait(f"{drill.alert} {list(drill.also)} to resolve", lambda: all_there("resolved", repaired),
                             300)
        names = {e["labels"].get("alertname") for e in self.received() if e["t"] >= start and e["status"] == "firing"}
        others = sorted(names - {drill.alert, *drill.also} - set(IGNORED))
        result = {"alert": drill.alert, **({"also": list(drill.also)} if drill.also else {}),
                  "labels": dict(drill.labels), "fired_s": fired, "resolved_s": resolved, "other_alerts": others,
                  "seen_in_prometheus": sorted(seen)}
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
        if self.shape is OBSERVE_PATRONI:
            return self.patroni_drills()
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


    def prometheus_hosts(self, query: str) -> list[str]:
        """The `host` label of each series `query` returns, from this lab's Prometheus."""
        result = self.prometheus(f"/api/v1/query?query={urllib.parse.quote(query)}")["data"]["result"]
        return sorted(r["metric"]["host"] for r in result)

    def patroni_drills(self) -> list[Drill]:
        """The patroni and sentinel modes' drills; each picks its target when it breaks (the leader, the master of
        that moment), and its repair waits until the database cluster or Redis is whole again."""
        lab, dbs = self.lab, self.shape.roles["postgres"]
        members = {h: MACHINES[h] for h in self.shape.hosts}
        leader_target: dict[str, str] = {}  #: HostDown's labels: the leader's host, set when it is powered off
        replicas: list[str] = []  #: the members whose Patroni sync_standby_lost stopped
        master: list[str] = []  #: the Redis master's host redis_master_kill killed
        master_target: dict[str, str] = {}  #: RedisInstanceDown's labels: the killed master's host

        def leader() -> str:
            found = [m["Member"] for m in lab.members(dbs) if m["Role"] == "Leader"]
            if len(found) != 1:
                raise RuntimeError(f"not one Patroni leader: {lab.describe(lab.members(dbs))}")
            return found[0]

        def whole() -> None:
            members_now = lab.wait_cluster(dbs, 300)
            if not lab.cluster_ok(members_now, len(dbs)):
                raise RuntimeError(f"the database cluster is not whole after 300 s: {lab.describe(members_now)}")

        def power_cut_leader() -> None:
            whole()
            if leader() == MONITOR:
                # The monitoring host must see the drill: the leader moves to the synchronous standby (the only
                # candidate strict synchronous mode allows), a planned switchover, before the fault.
                standby = next(m["Member"] for m in lab.members(dbs) if m["Role"] == "Sync Standby")
                ssh(members[MONITOR], f"{host_lab.PATRONICTL} switchover --candidate {standby} --force", timeout=120)
                lab.wait_cluster(dbs, 300)
            leader_target["host"] = leader()
            debhosts("kill", members[leader_target["host"]])

        def power_on_whole() -> None:
            lab.power_on()
            whole()

        def stop_replicas() -> None:
            whole()
            replicas[:] = [m["Member"] for m in lab.members(dbs) if m["Role"] != "Leader"]
            for host in replicas:
                ssh(members[host], "systemctl stop patroni")

        def start_replicas() -> None:
            for host in replicas:
                ssh(members[host], "systemctl start patroni")
            whole()

        sentinels = [h for h in self.shape.roles["sentinels"] if h != MONITOR]  # two of three: below quorum 2

        def kill_master() -> None:
            # The master as Prometheus sees it: redis_exporter's role label.
            master[:] = self.prometheus_hosts('redis_instance_info{role="master"}')
            if len(master) != 1:
                raise RuntimeError(f"not one Redis master: {master}")
            master_target["host"] = master[0]
            # Stopped after the kill, as in the dev drill: systemd's Restart= would bring it back before the
            # sentinels' down-after (5 s), and there would be no failover.
            ssh(members[master[0]], "systemctl kill -s KILL redis-server; systemctl stop redis-server")

        def start_old_master() -> None:
            # The sentinels turn the returning server into a replica of the master they promoted.
            ssh(members[master[0]], "systemctl start redis-server")
            self.wait("one Redis master and every server up", lambda: len(self.prometheus_hosts(
                'redis_instance_info{role="master"}')) == 1 and not self.prometheus_hosts('redis_up{job="redis"} == 0'),
                300, 5)

        return [
            # ttl 20 s + the member probe and promotion: shorter than PostgresLeaderMissing's `for: 1m`, and the
            # synchronous standby is promoted and names the other replica within a loop: neither fires. The host's
            # own alerts (its Patroni, Redis, LB, Harbor) are inhibited by HostDown.
            Drill("patroni_leader_power_cut", "HostDown", leader_target, power_cut_leader, power_on_whole, 150),
            # Strict synchronous mode with no replica left: commits stop. Stopping Patroni takes its REST API (the
            # `patroni` scrape job) with it: ExporterDown (for 2m) for both members is right too.
            Drill("sync_standby_lost", "PostgresSyncStandbyLost", {}, stop_replicas, start_replicas, 300,
                  also=("ExporterDown",)),
            Drill("sentinel_quorum_lost", "SentinelQuorumLost", {},
                  lambda: [ssh(members[h], "systemctl stop redis-sentinel") for h in sentinels],
                  lambda: [ssh(members[h], "systemctl start redis-sentinel") for h in sentinels], 150),
            # The sentinels promote a replica within seconds (down-after 5 s): RedisMasterMissing (for 1m) stays
            # quiet, the dead server is what is left to repair.
            Drill("redis_master_kill", "RedisInstanceDown", master_target, kill_master, start_old_master, 150),
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


def acme(json_path: Path) -> dict:
    """The `acme` figures: the acme lab (labs/hosts/acme_hosts.py, without its expiry alert, whose `for: 10m` is its
    own tier's) on its own hosts, which it brings down; its whole report beside `json_path` (NAME.acme.json)."""
    from labs.hosts import acme_hosts  # it builds on this module

    path = json_path.with_name(f"{json_path.stem}.acme.json")
    try:
        report = acme_hosts.run_acme(path, keep=False, alert=False)
    except Exception as e:  # the monitoring lab runs after it either way; the figures say it failed
        log(f"observe: the acme lab failed: {e!r}")
        return {"issued": False, "renewed_on_both_lbs": False, "renewal_during_failover": False,
                "error": repr(e)[-500:], "report": str(path)}
    return {**acme_hosts.figures(report), "passed": acme_hosts.passed(report, alert=False), "report": str(path),
            "seconds": report.get("seconds")}


def observe(json_path: Path, *, quiet_minutes: float, keep: bool, shape: str = "dev", with_acme: bool = True) -> dict:
    """The monitoring lab; on the dev shape (the issue's command) the acme lab first, on its own hosts (`acme`):
    tls.mode acme needs pebble and a cluster applied with it, while the monitoring drills need the lab's own
    certificate (the expiry alert must stay quiet), so the two do not share one apply."""
    t0 = time.monotonic()
    report: dict[str, Any] = {**rules_tested(), "drills": {}, "quiet_minutes": quiet_minutes,
                              "apply": "replay of the program's registered commands (labs/hosts/replay.py)",
                              "standins": ["Harbor installer (metrics: harbor_up from its health)",
                                           "NFS (bind mount; the NFS port probe finds no listener)"]}
    if shape == "dev" and with_acme:
        report["acme"] = acme(json_path)
        log(f"observe: acme {report['acme']}")
    lab = HostLab(host_lab.ROOT / "lab")
    obs = Observe(lab, SHAPES[shape])
    report["shape"] = shape
    try:
        lab.boot(obs.shape.boots)
        lab.replay.parallel = obs.shape.parallel
        lab.prepare_standins(obs.shape)
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
        up_s = obs.wait("every scrape target up", lambda: all(t.startswith(nfs) for t in obs.targets_down(
            report["targets"])), 240, 5)
        report["targets_down"] = obs.targets_down(report["targets"])
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
        drills = obs.drills()
        for i, drill in enumerate(drills):  # after the last one, nothing needs a quiet cluster
            report["drills"][drill.name] = obs.run_drill(drill, settle=i + 1 < len(drills))
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
    if "acme" in report:
        print(f"acme: {report['acme']}")


def passed(report: dict) -> bool:
    drills = report.get("drills", {})
    acme_ok = "acme" not in report or bool(report["acme"].get("passed"))
    return bool(report.get("apply_ok") and acme_ok and not report.get("promtool_failed")
                and report.get("false_alerts") == 0
                and drills and all(d["fired_s"] is not None and d["resolved_s"] is not None
                                   and not d["other_alerts"] for d in drills.values()))
