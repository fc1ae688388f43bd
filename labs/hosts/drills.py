"""`host_lab.py drills --harbor real`: real Harbor on the dev shape under faults, measured by what a CI system sees.

    sudo venv/bin/python labs/hosts/host_lab.py drills --harbor real --json FILE [--keep] [--only NAME]

The dev shape of `verify --harbor real` (data1: NFS stand-in, PostgreSQL, Redis; node1/node2: Harbor v2.15.2 built
from source, nginx and keepalived). For each drill, data1 runs the drills' client (scripts/drills/ha_client.py
`workload`: pushes of fresh images with a distinct random layer each, a pull of an earlier one after each push, every
operation retried as docker does, 5 tries, 5 s x attempt) through the VIP over TLS as Harbor's admin, then the lab
strikes, heals (a power-cut host is booted again after DOWN_S), waits until the cluster is whole (every role's units
active, Harbor healthy on every node, the VIP on one host), lets the load run TAIL_S more and stops it; the client
then pulls every image it was told was pushed and compares digests.

Figures per drill: ops and failed ops (after their retries), retried ops, the longest time without a completed push,
`recovered_ms` (fault to the first successful push or pull that started after the fault and after every failed one:
what the client sees), `healthy_ms` (fault to the whole cluster healthy again: the operator's view), images lost and
corrupted (0 is the bar). Jobs are not measured here (no replication is configured in this lab): `jobs_lost` is None.

Beside the fault drills (each in a module of its own): `upgrade` first (the cluster comes up on Harbor 2.14.2 and the
program upgrades it to 2.15.2 under the workload, upgrade_drill.py), `gc` after the faults (a GC schedule from the
stack while pushes continue, gc_drill.py), `upgrade_rollback` last (the restore of the dump taken before the
migration, back to 2.14.2).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from labs.hosts import gc_drill, host_lab, upgrade_drill
from labs.hosts.host_lab import DEV, HOSTNAME, MACHINES, HostLab, debhosts, log, ssh
from scripts import drills as drill_figures
from scripts.drills import https_args

CLIENT_HOST = "data1"  #: runs the workload: in the stack, but neither a Harbor node nor an LB
CLIENT_PY = Path(__file__).resolve().parents[2] / "scripts" / "drills" / "ha_client.py"
LEAD_S = 30.0  #: load before the fault (some images pushed, token fetched, both nodes serving)
DOWN_S = 20.0  #: how long a power-cut host stays off before it is booted again
TAIL_S = 30.0  #: load after the cluster is whole again (pushes through the healed cluster)
WHOLE_TIMEOUT_S = 900.0  #: real Harbor's containers after a boot on a loaded machine: minutes
MAX_LOAD_S = 1800.0  #: the client's own bound (`--duration`), in case the lab never touches its stop file
VERIFY_TIMEOUT_S = 1200.0  #: the client's final pull of every image (retries included) after the stop file


@dataclass
class Drill:
    name: str
    strike: Callable[[], float]  #: breaks it; returns the epoch of the fault
    heal: Callable[[], None]  #: what the operator (or nothing) does afterwards


def summary_figures(name: str, out: dict, t_fault: float, healthy_s: Optional[float]) -> dict:
    """The drill's figures from the client's `workload` output (pure: tested without hosts)."""
    ops = out.get("ops", [])
    requests = [{"start": o["start"], "ms": (o["end"] - o["start"]) * 1000, "ok": o["ok"]} for o in ops]
    lost, corrupted = out.get("images_lost"), out.get("images_corrupted")
    recovered = drill_figures.recovered_ms(requests, t_fault) if ops else None
    result = {
        "ok": bool(ops) and lost == 0 and corrupted == 0 and healthy_s is not None and recovered is not None,
        "ops": len(ops), "failed_ops": out.get("pushes_failed", 0) + out.get("pulls_failed", 0),
        "retried_ok": out.get("retried_ok"), "max_gap_ms": out.get("max_push_gap_ms"),
        "recovered_ms": recovered, "healthy_ms": None if healthy_s is None else round(healthy_s * 1000),
        "images_pushed": out.get("images_pushed"), "images_lost": lost, "images_corrupted": corrupted,
        "jobs_lost": None,
        "errors": sorted({e[:140] for o in ops for e in o.get("errors", [])})[:8]}
    log(f"drill {name}: {result}")
    return result


class HarborDrills:
    def __init__(self, lab: HostLab):
        self.lab = lab
        self.client = MACHINES[CLIENT_HOST]
        self.lbs = DEV.roles["loadBalancers"]
        self.notes: dict[str, bool] = {}  #: unit -> it was active again before the lab's own start

    # ------------------------------------------------------------------------------------------------ lab
    def bring_up(self, version: Optional[str] = None) -> dict:
        """New hosts each run: a second run's lab makes new cluster keys, which the harbor-node role rightly refuses
        to write over the first run's on the shared volume (components/host/lib.sh write_once)."""
        t0 = time.monotonic()
        self.lab.boot(len(DEV.machines))
        self.lab.prepare_standins(DEV)
        first = self.lab.up(self.lab.values(DEV, version=version))
        bad = self.lab.wait_active(WHOLE_TIMEOUT_S) if first.ok else {"apply": ["failed"]}
        ssh(self.client, "cat > /tmp/hha-drill-ca.pem", input=self.lab.ca)
        ssh(self.client, "cat > /tmp/ha_client.py", input=CLIENT_PY.read_text())
        log(f"drills: apply ok={first.ok} in {first.seconds:.1f} s; inactive: {bad or 'none'}")
        return {"apply_ok": first.ok, "apply_s": round(first.seconds, 1), "inactive": bad,
                "ready_s": round(time.monotonic() - t0, 1)}

    def holder(self) -> str:
        held = self.lab.vip_holder(self.lbs)
        if len(held) != 1:
            raise RuntimeError(f"the VIP is on {held or 'no host'} before a drill")
        return held[0]

    def wait_whole(self, what: str, since: float) -> Optional[float]:
        """Seconds from `since` (epoch) until every role is active, Harbor healthy on each node and the VIP on one
        host; None after WHOLE_TIMEOUT_S."""
        deadline = time.monotonic() + WHOLE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                bad = self.lab.inactive()
            except (RuntimeError, subprocess.TimeoutExpired) as e:  # a host still booting refuses SSH
                bad = {"ssh": [str(e)[:120]]}
            if not bad:
                return round(time.time() - since, 1)
            time.sleep(5)
        log(f"drills: {what}: the cluster was not whole within {WHOLE_TIMEOUT_S:.0f} s: {bad}")
        return None

    def power_on(self) -> None:
        time.sleep(DOWN_S)
        debhosts("up", str(len(DEV.machines)))

    def kill(self, node: str) -> float:
        t = time.time()
        debhosts("kill", MACHINES[node])
        return t

    def drills(self) -> list[Drill]:
        def other_node() -> str:
            return next(n for n in DEV.roles["harborNodes"] if n != self.holder())

        def nginx_crash() -> float:
            return float(ssh(MACHINES[self.holder()], "date +%s.%N; pkill -KILL -x nginx").stdout.split()[0])

        data1 = MACHINES["data1"]

        def redis_kill() -> float:
            return float(ssh(data1, "date +%s.%N; systemctl kill -s KILL redis-server").stdout.split()[0])

        def service_back(unit: str) -> Callable[[], None]:
            # Debian's units restart on failure; this is the operator's start where one did not (both are recorded
            # as `restarted_by_systemd`).
            def heal() -> None:
                time.sleep(10)
                self.notes[unit] = ssh(data1, f"systemctl is-active -q {unit}", check=False).returncode == 0
                ssh(data1, f"systemctl start {unit}")
            return heal

        def rolling_restart() -> float:
            t = time.time()
            for node in DEV.roles["harborNodes"]:
                self.lab.reboot([MACHINES[node]])
                if self.wait_whole(f"rolling restart after {node}", time.time()) is None:
                    break
            return t

        return [
            # The node without the VIP: its Harbor serves about half of the LB's upstream requests, so pushes are
            # mid-upload on it when it dies; the VIP and nginx stay where they are.
            Drill("node_power_cut", lambda: self.kill(other_node()), self.power_on),
            # systemd's Restart= brings nginx back; keepalived's check may move the VIP first.
            Drill("nginx_crash", nginx_crash, lambda: None),
            # The LB, keepalived and one Harbor node at once (the dev shape's nodes are the LB pair).
            Drill("vip_holder_power_cut", lambda: self.kill(self.holder()), self.power_on),
            # Harbor's Redis (sessions, core's cache, jobservice's queue): SIGKILL, the way an OOM kill ends it.
            Drill("redis_kill", redis_kill, service_back("redis-server")),
            # One node after the other, each an orderly reboot (Docker stops Harbor's containers), the next only
            # once the cluster is whole again: what an operator's patching round does.
            Drill("rolling_restart", rolling_restart, lambda: None),
        ]

    def restarts(self) -> dict[str, int]:
        """Harbor container -> its Docker restart count, on every node that answers (`node/container`)."""
        counts: dict[str, int] = {}
        for node in DEV.roles["harborNodes"]:
            out = ssh(MACHINES[node], "docker ps -aq | xargs -r docker inspect -f '{{.Name}} {{.RestartCount}}'",
                      check=False, timeout=60).stdout
            for line in out.splitlines():
                name, _, count = line.strip().lstrip("/").partition(" ")
                if count.isdigit():
                    counts[f"{node}/{name}"] = int(count)
        return counts

    # ------------------------------------------------------------------------------------------------ drill
    def start_workload(self, name: str, *extra: str) -> subprocess.Popen:
        """The client on data1 through the VIP; Harbor's admin password goes over stdin, never a command line. `extra`:
        further `workload` options (a later --count replaces the default)."""
        stop = f"/tmp/hha-drill-{name}.stop"
        ssh(self.client, f"rm -f {stop}")
        return self.client_process(["workload", self.lab.vip, "--repo", f"library/drill-{name.replace('_', '-')}",
                                    "--count", "100000", "--duration", f"{MAX_LOAD_S:.0f}", "--stop-file", stop,
                                    *extra])

    def client_process(self, args: list[str]) -> subprocess.Popen:
        """scripts/drills/ha_client.py ARGS on data1, over TLS to HOSTNAME at the VIP, as Harbor's admin."""
        command = ("IFS= read -r HARBOR_PASSWORD; export HARBOR_PASSWORD HARBOR_USER=admin "
                   'HA_CA_PEM="$(cat /tmp/hha-drill-ca.pem)"; '
                   f"exec python3 /tmp/ha_client.py {shlex.join(https_args(args, 443, HOSTNAME))}")
        proc = subprocess.Popen(["ssh", "-F", str(host_lab.ROOT / "ssh_config"), self.client, command],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(self.lab.admin_password + "\n")
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() must not flush it again
        return proc

    def finish(self, name: str, proc: subprocess.Popen) -> dict:
        ssh(self.client, f"touch /tmp/hha-drill-{name}.stop")
        try:
            out, err = proc.communicate(timeout=VERIFY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            return {"error": f"the client's final verification did not end within {VERIFY_TIMEOUT_S:.0f} s"}
        try:
            return json.loads(out)
        except ValueError:
            return {"error": f"client exit {proc.returncode}: {err[-500:]}"}

    def run(self, drill: Drill) -> dict:
        ready = self.wait_whole(f"before {drill.name}", time.time())
        if ready is None:
            return {"ok": False, "error": "the cluster was not whole before the drill"}
        restarts_before = self.restarts()
        proc = self.start_workload(drill.name)
        time.sleep(LEAD_S)
        if proc.poll() is not None:
            _out, err = proc.communicate(timeout=60)
            return {"ok": False, "error": f"the client ended before the fault: {err[-500:]}"}
        t_fault, failure = time.time(), None
        try:
            t_fault = drill.strike()
            log(f"drills: {drill.name}: struck")
            drill.heal()
            healthy_s = self.wait_whole(drill.name, t_fault)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            # e.g. a power-cut host that does not boot again: the load still ends and its images are still checked
            failure, healthy_s = f"{type(e).__name__}: {e}"[-600:], None
            log(f"drills: {drill.name}: {failure}")
        time.sleep(TAIL_S)
        out = self.finish(drill.name, proc)
        if "error" in out:
            log(f"drills: {drill.name}: {out['error']}")
            return {"ok": False, "error": out["error"], "healthy_ms": healthy_s and round(healthy_s * 1000)}
        result = summary_figures(drill.name, out, t_fault, healthy_s)
        if failure:
            result.update(ok=False, error=failure)
        after = self.restarts()
        # Containers Docker restarted during the drill (what core and jobservice did when their Redis or database
        # went away); a rebooted node's counts start again from 0 and show nothing here.
        result["container_restarts"] = {c: n - restarts_before[c] for c, n in after.items()
                                        if n > restarts_before.get(c, n)}
        result.update({f"{unit}_restarted_by_systemd": back for unit, back in self.notes.items()})
        self.notes.clear()
        return result


COLUMNS = ("ok", "ops", "failed_ops", "retried_ok", "max_gap_ms", "recovered_ms", "healthy_ms", "images_pushed",
           "images_lost", "images_corrupted")


def print_table(report: dict) -> None:
    print(f"{'drill':<22}" + "".join(f"{c:>17}" for c in COLUMNS))
    for name, r in report.items():
        if isinstance(r, dict) and "ok" in r:
            print(f"{name:<22}" + "".join(f"{str(r.get(c)):>17}" for c in COLUMNS))


def run_drills(json_path: Path, *, keep: bool = False, only: Optional[list[str]] = None) -> dict:
    """Bring the dev shape up with real Harbor, run each drill (or those named in `only`), write the JSON."""
    t0 = time.monotonic()
    report: dict[str, Any] = {"lab": {"shape": "dev", "harbor": f"v{host_lab.REAL_VERSION} built from source",
                                      "client": f"scripts/drills/ha_client.py workload on {CLIENT_HOST}, "
                                                "through the VIP over TLS",
                                      "standins": ["NFS (bind mount)", "Harbor's portal (placeholder page)"]}}
    lab = HostLab(host_lab.ROOT / "lab", "real")
    hd = HarborDrills(lab)
    upgrade = not only or "upgrade" in only
    try:
        # With the upgrade the cluster starts on its from-version; the other drills then run on the upgraded one.
        report["lab"].update(hd.bring_up(upgrade_drill.prepare(lab) if upgrade else None))
        if report["lab"]["apply_ok"] and not report["lab"]["inactive"] and upgrade:
            report["upgrade"] = upgrade_drill.run(hd)
            json_path.write_text(json.dumps(report, indent=2) + "\n")
        if report["lab"]["apply_ok"] and not report["lab"]["inactive"]:
            for drill in hd.drills():
                if not only or drill.name in only:
                    report[drill.name] = hd.run(drill)
                    # each drill's figures on disk as soon as it ends: a run stopped later keeps them
                    json_path.write_text(json.dumps(report, indent=2) + "\n")
            if not only or "gc" in only:
                report["gc"] = gc_drill.run(hd)
            if upgrade and "upgrade" in report:
                # last: the cluster goes back to the upgrade's from-version
                report["upgrade_rollback"] = upgrade_drill.rollback(hd, report["upgrade"])
    finally:
        report["lab"]["seconds"] = round(time.monotonic() - t0, 1)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        if not keep:
            host_lab.down()
    print_table(report)
    return report


def passed(report: dict) -> bool:
    results = [r for k, r in report.items() if k != "lab"]
    return bool(results) and all(r.get("ok") for r in results)
