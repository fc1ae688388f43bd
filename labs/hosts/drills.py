"""`host_lab.py drills --harbor real`: real Harbor on the dev shape under faults, measured by what a CI system sees.

    sudo venv/bin/python labs/hosts/host_lab.py drills --harbor real --json FILE [--keep] [--only NAME]

The dev shape of `verify --harbor real` with Redis in sentinel mode (data1: NFS stand-in, PostgreSQL; node1/node2:
Harbor v2.15.2 built from source, nginx and keepalived; a Redis server and a sentinel on each of the three, the master
first on data1). For each drill, data1 runs the drills' client (scripts/drills/ha_client.py
`workload`: pushes of fresh images with a distinct random layer each, a pull of an earlier one after each push, every
operation retried as docker does, 5 tries, 5 s x attempt) through the VIP over TLS as Harbor's admin, then the lab
strikes, heals (a power-cut host is booted again after DOWN_S), waits until the cluster is whole (every role's units
active, Harbor healthy on every node, the VIP on one host), lets the load run TAIL_S more and stops it; the client
then pulls every image it was told was pushed and compares digests.

The NFS server restart (`nfs_restart`): the hosts reach the data volume through the lab's FUSE front (nfs_front.py,
mounted at boot when the drill is among those to run), the stand-in for the NFS server; the strike SIGSTOPs it for
NFS_DOWN_S, each node's health is sampled meanwhile (`outage`), then SIGCONT.

Figures per drill: ops and failed ops (after their retries), retried ops, the longest time without a completed push,
`recovered_ms` (fault to the first successful push or pull that started after the fault and after every failed one:
what the client sees), `healthy_ms` (fault to the whole cluster healthy again: the operator's view), images lost and
corrupted (0 is the bar).

Jobs: Harbor replicates the drill's repository into its own project `replica` through the VIP (a registry endpoint of
type harbor: what a push replication to a second site does, on one cluster). The lab starts that replication (manual
trigger) just before the fault, waits after the drill until the execution has ended, and, where it did not succeed,
starts it once more (what its trigger does next: a schedule's next run, the operator's re-run); `jobs_lost` counts
the images pushed before the start that the destination still lacks then, and an execution that never ends is a job
lost too (each of its tasks still in progress, `execution_stuck`: nothing in Harbor ends or retries them in time).
Such an execution is then handled as docs/ha.md tells the operator: its tasks and their logs' last lines recorded
(`stuck`), stopped through the API, re-run.


Beside the fault drills (each in a module of its own): `upgrade` first (the cluster comes up on Harbor 2.14.2 and the
program upgrades it to 2.15.2 under the workload, upgrade_drill.py), `gc` after the faults (a GC schedule from the
stack while pushes continue, gc_drill.py), `upgrade_rollback` last (the restore of the dump taken before the
migration, back to 2.14.2).
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from labs.hosts import gc_drill, host_lab, upgrade_drill
from labs.hosts.host_lab import DEV, HOSTNAME, MACHINES, HostLab, Shape, debhosts, log, ssh
from scripts import drills as drill_figures
from scripts.drills import https_args

CLIENT_HOST = "data1"  #: runs the workload: in the stack, but neither a Harbor node nor an LB
CLIENT_PY = Path(__file__).resolve().parents[2] / "scripts" / "drills" / "ha_client.py"
LEAD_S = 30.0  #: load before the fault (some images pushed, token fetched, both nodes serving)
DOWN_S = 20.0  #: how long a power-cut host stays off before it is booted again
NFS_DOWN_S = 45.0  #: how long the NFS stand-in's server (nfs_front.py) stays stopped
OUTAGE_SAMPLE_S = 5.0  #: how often the nodes' health is asked while the NFS server is stopped
TAIL_S = 30.0  #: load after the cluster is whole again (pushes through the healed cluster)
WHOLE_TIMEOUT_S = 900.0  #: real Harbor's containers after a boot on a loaded machine: minutes
MAX_LOAD_S = 1800.0  #: the client's own bound (`--duration`), in case the lab never touches its stop file
VERIFY_TIMEOUT_S = 1200.0  #: the client's final pull of every image (retries included) after the stop file
JOB_TIMEOUT_S = 900.0  #: a replication execution to end after the drill (and its re-run), on a loaded machine
STOP_TIMEOUT_S = 300.0  #: an execution that never ended to end `Stopped` once stopped through the API
STUCK_LOG_LINES = 15  #: the last lines of each unfinished task's log recorded for an execution that never ended
UNFINISHED_TASK = ("Pending", "InProgress")  #: unended tasks, as Harbor's API names them (handler/replication.go)
REPLICA_PROJECT = "replica"  #: the replication's destination project, in the same Harbor
REGISTRY_NAME = "self-via-vip"  #: the replication's registry endpoint: this Harbor through the VIP
#: what a replication step raises when Harbor refuses or does not answer: recorded, the drill goes on
JOB_ERRORS = (RuntimeError, ValueError, KeyError, StopIteration, subprocess.TimeoutExpired)

# The dev shape with Redis in sentinel mode on its three hosts (config.py's minimum: three sentinels), so a Redis master
# kill is a failover Harbor's core, jobservice and registry must follow, as in the prod shape, on three hosts.
SENTINEL = Shape("dev-sentinel", DEV.hosts, {**DEV.roles, "redis": DEV.hosts, "sentinels": DEV.hosts},
                 {**DEV.extra, "redis": {"mode": "sentinel"}})
#: `--shape`: the drills' default shape, and the patroni shape (three PostgreSQL members) for the leader power cut
SHAPES = {"sentinel": SENTINEL, "patroni": host_lab.PATRONI}


@dataclass
class Drill:
    name: str
    strike: Callable[[], float]  #: breaks it; returns the epoch of the fault
    heal: Callable[[], None]  #: what the operator (or nothing) does afterwards
    seen: Callable[[], dict] = dict  #: what the lab saw of Harbor during the fault, added to the drill's figures


def summary_figures(name: str, out: dict, t_fault: float, healthy_s: Optional[float],
                    jobs: Optional[dict] = None, *, jobs_measured: bool = True) -> dict:
    """The drill's figures from the client's `workload` output and the replication's (`jobs`: jobs_figures; a fault
    drill without them failed to measure them; the upgrade and GC drills run no replication: `jobs_measured`
    False) (pure: tested without hosts)."""
    ops = out.get("ops", [])
    requests = [{"start": o["start"], "ms": (o["end"] - o["start"]) * 1000, "ok": o["ok"]} for o in ops]
    lost, corrupted = out.get("images_lost"), out.get("images_corrupted")
    recovered = drill_figures.recovered_ms(requests, t_fault) if ops else None
    result = {
        "ok": bool(ops) and lost == 0 and corrupted == 0 and healthy_s is not None and recovered is not None
        and (not jobs_measured or (jobs is not None and jobs["jobs_lost"] == 0 and not jobs["execution_stuck"])),
        "ops": len(ops), "failed_ops": out.get("pushes_failed", 0) + out.get("pulls_failed", 0),
        "retried_ok": out.get("retried_ok"), "max_gap_ms": out.get("max_push_gap_ms"),
        "recovered_ms": recovered, "healthy_ms": None if healthy_s is None else round(healthy_s * 1000),
        "images_pushed": out.get("images_pushed"), "images_lost": lost, "images_corrupted": corrupted,
        "jobs_lost": jobs and jobs["jobs_lost"], "replication": jobs,
        "errors": sorted({e[:140] for o in ops for e in o.get("errors", [])})[:8]}
    log(f"drill {name}: {result}")
    return result


def drill_repo(name: str) -> str:
    """The repository a drill's workload pushes to (and its replication copies)."""
    return f"library/drill-{name.replace('_', '-')}"


def pushed_before(out: dict, t: float) -> dict[str, str]:
    """tag -> digest of the images whose push the client saw succeed before `t` (epoch)."""
    return {o["ref"]: o["digest"] for o in out.get("ops", []) if o["op"] == "push" and o["ok"] and o["end"] < t}


def jobs_figures(expected: dict[str, str], first: dict, rerun: Optional[dict], replicated: set[str],
                 stuck_report: Optional[dict] = None) -> dict:
    """The replication started before the fault: `expected` (tag -> digest, pushed before it started), its execution
    (`first`) and the re-run's (None when the first succeeded) as Harbor reports them at their end, or with
    `status` None when they never ended, and the digests in the destination afterwards; `stuck_report`: what the lab
    found in an execution that never ended and what stopping it did (Replication.stop_stuck) (pure)."""
    missing = sorted(tag for tag, digest in expected.items() if digest not in replicated)
    # Tasks of an execution that never ends are lost jobs even where the re-run copied their images: nothing in
    # Harbor ends or retries them in time (docs/ha.md, "A replication that never ends"; at least one: an execution
    # that never answered, or whose flow never created its tasks). The operator's stop does not make them less lost.
    stuck = max(1, first.get("in_progress") or 0) if first.get("status") is None else 0
    return {"images": len(expected), "jobs_lost": len(missing) + stuck, "missing": missing[:6],
            "execution_stuck": bool(stuck), "stuck": stuck_report if stuck else None,
            "first": {k: first.get(k) for k in ("status", "total", "succeed", "failed", "stopped", "in_progress",
                                                 "start_time", "end_time", "seconds", "error")},
            "rerun": rerun and {k: rerun.get(k) for k in ("status", "total", "succeed", "failed", "start_time",
                                                          "end_time", "seconds")}}


class Replication:
    """Harbor's replication of a drill's repository into REPLICA_PROJECT, driven through Harbor's API from the client
    host as Harbor's admin."""

    def __init__(self, lab: HostLab, client: str):
        self.lab, self.client = lab, client

    def call(self, method: str, path: str, body: Optional[dict] = None, ok: tuple[int, ...] = (200, 201),
             raw: bool = False) -> Any:
        """Harbor's answer as JSON (None when empty), or its text with `raw` (a task's log)."""
        code, text = self.lab.api(self.client, method, f"https://{HOSTNAME}/api/v2.0{path}", "admin",
                                  self.lab.admin_password, body=body, cacert="/tmp/hha-drill-ca.pem",
                                  resolve=f"{HOSTNAME}:443:{self.lab.vip}")
        if code not in ok:
            raise RuntimeError(f"Harbor API {method} {path}: HTTP {code}: {text[:300]}")
        if raw:
            return text
        return json.loads(text) if text.strip() else None

    def set_up(self) -> None:
        """The destination project and the registry endpoint (this Harbor through the VIP; insecure: the VIP's
        certificate is the lab CA's, which Harbor's core does not trust)."""
        self.call("POST", "/projects", {"project_name": REPLICA_PROJECT, "metadata": {"public": "false"}})
        self.call("POST", "/registries", {
            "name": REGISTRY_NAME, "type": "harbor", "url": f"https://{self.lab.vip}", "insecure": True,
            "credential": {"type": "basic", "access_key": "admin", "access_secret": self.lab.admin_password}})

    def policy(self, repo: str) -> int:
        """A push replication (manual trigger) of `repo` (project/name) into REPLICA_PROJECT; its id."""
        registry = next(r["id"] for r in self.call("GET", "/registries?page_size=100") if r["name"] == REGISTRY_NAME)
        name = repo.replace("/", "-")
        self.call("POST", "/replication/policies", {
            "name": name, "dest_registry": {"id": registry}, "dest_namespace": REPLICA_PROJECT,
            "dest_namespace_replace_count": 1, "filters": [{"type": "name", "value": repo}],
            "trigger": {"type": "manual"}, "enabled": True, "override": True, "deletion": False})
        return next(p["id"] for p in self.call("GET", "/replication/policies?page_size=100") if p["name"] == name)

    def start(self, policy: int) -> int:
        """A new execution of `policy`; its id."""
        self.call("POST", "/replication/executions", {"policy_id": policy})
        return max(e["id"] for e in self.call("GET", f"/replication/executions?policy_id={policy}&page_size=100"))

    def wait(self, execution: int, started: float, timeout: float = JOB_TIMEOUT_S) -> dict:
        """The execution once it has ended (`seconds` from `started`, epoch, until the lab saw it ended: it asks only
        after the drill; Harbor's `start_time` and `end_time` say when it ran), or with `status` None after
        `timeout` s; a Harbor that does not answer (a node or its Redis still down) is asked again."""
        deadline, last = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            try:
                last = self.call("GET", f"/replication/executions/{execution}")
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                last = {**last, "error": str(e)[:200]}
            if last.get("status") not in (None, "InProgress"):
                return {**last, "seconds": round(time.time() - started, 1)}
            time.sleep(5)
        log(f"drills: replication execution {execution} did not end within {timeout:.0f} s: {last}")
        return {**last, "status": None}

    def stop_stuck(self, execution: int) -> dict:
        """What the operator does with an execution that never ends (docs/ha.md): look at its tasks (which job, which
        status, since when; the last lines of each unfinished task's log), stop it (Harbor's API: PUT on the
        execution), and see that it ends `Stopped`. Harbor's answers are recorded as they come; a failing step is
        recorded, not raised."""
        report: dict[str, Any] = {}
        try:
            tasks = self.call("GET", f"/replication/executions/{execution}/tasks?page_size=100") or []
            report["tasks"] = [{k: t.get(k) for k in ("id", "job_id", "status", "start_time", "end_time")}
                               for t in tasks]
            report["log_tails"] = {t["id"]: self.call("GET", f"/replication/executions/{execution}/tasks/{t['id']}"
                                                             "/log", raw=True).splitlines()[-STUCK_LOG_LINES:]
                                   for t in tasks if t.get("status") in UNFINISHED_TASK}
        except JOB_ERRORS as e:
            report["tasks_error"] = f"{type(e).__name__}: {e}"[:300]
        t0 = time.time()
        try:
            self.call("PUT", f"/replication/executions/{execution}")
            ended = self.wait(execution, t0, STOP_TIMEOUT_S)
            report["stop"] = {"status": ended.get("status"), "seconds": ended.get("seconds")}
        except JOB_ERRORS as e:
            report["stop"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        log(f"drills: replication execution {execution} never ended: {report}")
        return report

    def replicated(self, repo: str) -> set[str]:
        """Digests of the artifacts in the destination repository (REPLICA_PROJECT/<name of repo>)."""
        name, page = repo.split("/", 1)[1], 1
        digests: set[str] = set()
        while True:
            batch = self.call("GET", f"/projects/{REPLICA_PROJECT}/repositories/{name}/artifacts"
                                     f"?page_size=100&page={page}", ok=(200, 404)) or []
            if isinstance(batch, dict):  # 404: nothing replicated at all
                return digests
            digests |= {a["digest"] for a in batch}
            if len(batch) < 100:
                return digests
            page += 1


class HarborDrills:
    def __init__(self, lab: HostLab, shape: Shape):
        self.lab, self.shape = lab, shape
        self.client = MACHINES[CLIENT_HOST]
        self.lbs = shape.roles["loadBalancers"]
        self.replication = Replication(lab, self.client)
        self.nfs_front = False  #: the hosts reach the data volume through the FUSE front (the nfs_restart drill)

    # ------------------------------------------------------------------------------------------------ lab
    def bring_up(self, version: Optional[str] = None) -> dict:
        """New hosts each run: a second run's lab makes new cluster keys, which the harbor-node role rightly refuses
        to write over the first run's on the shared volume (components/host/lib.sh write_once)."""
        t0 = time.monotonic()
        self.lab.boot(self.shape.boots, nfs_front=self.nfs_front)
        self.lab.replay.parallel = self.shape.parallel
        self.lab.prepare_standins(self.shape)
        first = self.lab.up(self.lab.values(self.shape, version=version))
        bad = self.lab.wait_active(WHOLE_TIMEOUT_S) if first.ok else {"apply": ["failed"]}
        ssh(self.client, "cat > /tmp/hha-drill-ca.pem", input=self.lab.ca)
        ssh(self.client, "cat > /tmp/ha_client.py", input=CLIENT_PY.read_text())
        setup_error = None
        if not bad:
            try:
                self.replication.set_up()
            except JOB_ERRORS as e:  # each drill's replication then fails and says so; the load still runs
                setup_error = f"{type(e).__name__}: {e}"[:400]
        log(f"drills: apply ok={first.ok} in {first.seconds:.1f} s; inactive: {bad or 'none'}; "
            f"replication set-up: {setup_error or 'ok'}")
        return {"apply_ok": first.ok, "apply_s": round(first.seconds, 1), "inactive": bad,
                "replication_setup_error": setup_error, "ready_s": round(time.monotonic() - t0, 1)}

    def wait_whole(self, what: str, since: float) -> Optional[float]:
        """Seconds from `since` (epoch) until every role is active, Harbor healthy on each node and the VIP on one
        host; None after WHOLE_TIMEOUT_S."""
        bad = self.lab.wait_active(WHOLE_TIMEOUT_S)
        if bad:
            log(f"drills: {what}: the cluster was not whole within {WHOLE_TIMEOUT_S:.0f} s: {bad}")
            return None
        return round(time.time() - since, 1)

    def power_on(self) -> None:
        time.sleep(DOWN_S)
        self.lab.power_on()

    def redis_master(self) -> str:
        """The lab host of the Redis master the sentinels name (asked on the client host, data1)."""
        cfg = self.shape.extra["redis"]
        out = ssh(self.client, f"redis-cli -p {cfg.get('sentinelPort', 26379)} --raw sentinel "
                  f"get-master-addr-by-name {cfg.get('masterSet', 'harbor')}").stdout.split()
        by_address = {host_lab.address(MACHINES[h]): h for h in self.shape.hosts}
        if not out or out[0] not in by_address:
            raise RuntimeError(f"the sentinels name no master of this lab: {out}")
        return by_address[out[0]]

    def kill(self, node: str) -> float:
        t = time.time()
        debhosts("kill", MACHINES[node])
        return t

    def drills(self) -> list[Drill]:
        def holder() -> str:
            return self.lab.sole_vip_holder(self.lbs)

        def other_node() -> str:
            return next(n for n in self.shape.roles["harborNodes"] if n != holder())

        killed: list[str] = []  #: the Redis master's host, between redis_master_kill's strike and its heal

        def redis_master_kill() -> float:
            killed[:] = [self.redis_master()]
            # Stopped after the kill: systemd's Restart= would otherwise bring it back before the sentinels'
            # down-after (5 s), and there would be no failover to follow.
            return float(ssh(MACHINES[killed[0]], "date +%s.%N; systemctl kill -s KILL redis-server; "
                             "systemctl stop redis-server").stdout.split()[0])

        def redis_back() -> None:
            # The operator's start: the old master rejoins as a replica of the one the sentinels promoted.
            time.sleep(DOWN_S)
            ssh(MACHINES[killed[0]], "systemctl start redis-server")

        dbs = self.shape.roles["postgres"]

        def postgres_leader() -> str:
            return next(m["Member"] for m in self.lab.members(dbs) if m["Role"] == "Leader")

        def postgres_back() -> None:
            self.power_on()
            self.lab.wait_cluster(dbs, WHOLE_TIMEOUT_S)

        outage: dict[str, Any] = {}  #: nfs_restart: the nodes' health while the NFS server is stopped

        def nfs_stop() -> float:
            t = time.time()
            if not host_lab.NFS_FRONT.signal(signal.SIGSTOP):
                raise RuntimeError("the NFS front does not run (the lab boots it when nfs_restart is among the drills)")
            outage.clear()
            outage["t"] = t
            return t

        def nfs_back() -> None:
            try:
                outage["health"] = self.health_while(outage["t"] + NFS_DOWN_S, outage["t"])
            finally:
                host_lab.NFS_FRONT.signal(signal.SIGCONT)
                log(f"drills: nfs_restart: the NFS front resumed after {time.time() - outage['t']:.1f} s")

        def rolling_restart() -> float:
            t = time.time()
            for node in self.shape.roles["harborNodes"]:
                self.lab.reboot([MACHINES[node]])
                if self.wait_whole(f"rolling restart after {node}", time.time()) is None:
                    break
            return t

        return [
            # The node without the VIP: its Harbor serves about half of the LB's upstream requests, so pushes are
            # mid-upload on it when it dies; the VIP and nginx stay where they are.
            Drill("node_power_cut", lambda: self.kill(other_node()), self.power_on),
            # systemd's Restart= brings nginx back; keepalived's check may move the VIP first.
            Drill("nginx_crash", lambda: self.lab.kill_nginx(holder()), lambda: None),
            # The LB, keepalived and one Harbor node at once (the dev shape's nodes are the LB pair).
            Drill("vip_holder_power_cut", lambda: self.kill(holder()), self.power_on),
            # Harbor's Redis master (sessions, core's cache, jobservice's queue): SIGKILL, the way an OOM kill ends
            # it, and down for DOWN_S: the sentinels promote a replica, Harbor's clients must follow.
            *([Drill("redis_master_kill", redis_master_kill, redis_back)]
              if self.shape.extra.get("redis", {}).get("mode") == "sentinel" else []),
            # Patroni's leader host (PostgreSQL, its etcd member, the database VIP): a replica is promoted, the VIP
            # moves, Harbor's cores and jobservices reconnect.
            *([Drill("postgres_leader_power_cut", lambda: self.kill(postgres_leader()), postgres_back)]
              if self.shape.extra.get("postgres", {}).get("mode") == "patroni" else []),
            # The NFS server stopped for NFS_DOWN_S (SIGSTOP of the FUSE front, SIGCONT): the nodes' file operations on
            # the data volume wait as on a `hard` NFS mount (nfs_front.py), the nodes' health is asked meanwhile.
            *([Drill("nfs_restart", nfs_stop, nfs_back, lambda: {"outage": outage.get("health")})]
              if self.nfs_front else []),
            # One node after the other, each an orderly reboot (Docker stops Harbor's containers), the next only
            # once the cluster is whole again: what an operator's patching round does.
            Drill("rolling_restart", rolling_restart, lambda: None),
        ]

    def health_while(self, until: float, since: float) -> list[dict]:
        """Each node's /api/v2.0/health every OUTAGE_SAMPLE_S until `until` (epoch), and the VIP's holder:
        `{"s": seconds since `since`, node: "healthy" | the unhealthy components | "no answer ..."}`."""
        samples = []
        while time.time() < until:
            t = time.time()
            sample: dict[str, Any] = {"s": round(t - since, 1)}
            for node in self.shape.roles["harborNodes"]:
                try:
                    health = self.lab.node_health(node)
                except subprocess.TimeoutExpired:
                    health = {"status": "no answer", "error": "ssh timed out"}
                bad = [c["name"] for c in health.get("components") or [] if c.get("status") != "healthy"]
                sample[node] = (health.get("status", "?") + (f": {', '.join(bad)}" if bad else "")
                                + (f" ({health['error'][-120:]})" if "error" in health else ""))
            try:
                sample["vip"] = self.lab.vip_holder(self.lbs)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                sample["vip"] = f"unknown: {e}"[:160]
            samples.append(sample)
            time.sleep(max(0.0, min(OUTAGE_SAMPLE_S - (time.time() - t), until - time.time())))
        log(f"drills: health while the NFS server is stopped: {samples}")
        return samples

    def restarts(self) -> dict[str, int]:
        """Harbor container -> its Docker restart count, on every node that answers (`node/container`)."""
        counts: dict[str, int] = {}
        for node in self.shape.roles["harborNodes"]:
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
        return self.client_process(["workload", self.lab.vip, "--repo", drill_repo(name),
                                    "--count", "100000", "--duration", f"{MAX_LOAD_S:.0f}", "--stop-file", stop,
                                    *extra])

    def client_process(self, args: list[str], until: Optional[str] = None) -> subprocess.Popen:
        """scripts/drills/ha_client.py ARGS on data1, over TLS to HOSTNAME at the VIP, as Harbor's admin; with
        `until`, run again and again (one JSON line each; a run that fails prints {"client_failed": 1}) until that file
        exists."""
        client = f"python3 /tmp/ha_client.py {shlex.join(https_args(args, 443, HOSTNAME))}"
        command = ("IFS= read -r HARBOR_PASSWORD; export HARBOR_PASSWORD HARBOR_USER=admin "
                   'HA_CA_PEM="$(cat /tmp/hha-drill-ca.pem)"; '
                   + (f"while [ ! -e {shlex.quote(until)} ]; do {client} || echo '{{\"client_failed\": 1}}'; done"
                      if until else f"exec {client}"))
        proc = subprocess.Popen(["ssh", "-F", str(host_lab.ROOT / "ssh_config"), self.client, command],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(self.lab.admin_password + "\n")
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() must not flush it again
        return proc

    def client_result(self, args: list[str], timeout: float) -> dict:
        """client_process(ARGS) to its end: its JSON, or RuntimeError naming its exit status and stderr."""
        proc = self.client_process(args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            raise RuntimeError(f"ha_client.py {args[0]}: no end within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"ha_client.py {args[0]}: exit {proc.returncode}: {err[-500:]}")
        return json.loads(out)

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
        repo = drill_repo(drill.name)
        job_error, execution, jobs = None, None, None
        try:
            policy = self.replication.policy(repo)
        except JOB_ERRORS as e:
            policy, job_error = None, f"replication policy: {type(e).__name__}: {e}"
        proc = self.start_workload(drill.name)
        time.sleep(LEAD_S)
        if proc.poll() is not None:
            _out, err = proc.communicate(timeout=60)
            return {"ok": False, "error": f"the client ended before the fault: {err[-500:]}"}
        # Started just before the fault, so the fault meets it queued or running.
        t_job = time.time()
        try:
            execution = None if policy is None else self.replication.start(policy)
        except JOB_ERRORS as e:
            job_error = f"replication start: {type(e).__name__}: {e}"
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
        try:
            if policy is not None and execution is not None:
                jobs = self.jobs(policy, execution, t_job, repo, out)
        except JOB_ERRORS as e:
            job_error = f"replication: {type(e).__name__}: {e}"
        result = summary_figures(drill.name, out, t_fault, healthy_s, jobs)
        if job_error:
            log(f"drills: {drill.name}: {job_error}")
            result["replication"] = {"error": job_error[:600]}
        if failure:
            result.update(ok=False, error=failure)
        result.update(drill.seen())
        after = self.restarts()
        # Containers Docker restarted during the drill (what core and jobservice did when their Redis or database
        # went away); a rebooted node's counts start again from 0 and show nothing here.
        result["container_restarts"] = {c: n - restarts_before[c] for c, n in after.items()
                                        if n > restarts_before.get(c, n)}
        return result

    def jobs(self, policy: int, execution: int, t_job: float, repo: str, out: dict) -> dict:
        """The replication started before the fault: waited for, re-run once where it did not succeed."""
        first = self.replication.wait(execution, t_job)
        # Never ended: what it was doing, then the operator's stop before the re-run (docs/ha.md).
        stuck = self.replication.stop_stuck(execution) if first.get("status") is None else None
        rerun = None
        if first.get("status") != "Succeed":
            t_rerun = time.time()
            rerun = self.replication.wait(self.replication.start(policy), t_rerun)
        return jobs_figures(pushed_before(out, t_job), first, rerun, self.replication.replicated(repo), stuck)


COLUMNS = ("ok", "ops", "failed_ops", "retried_ok", "max_gap_ms", "recovered_ms", "healthy_ms", "images_pushed",
           "images_lost", "images_corrupted")


def print_table(report: dict) -> None:
    print(f"{'drill':<22}" + "".join(f"{c:>17}" for c in COLUMNS))
    for name, r in report.items():
        if isinstance(r, dict) and "ok" in r:
            print(f"{name:<22}" + "".join(f"{str(r.get(c)):>17}" for c in COLUMNS))


def run_drills(json_path: Path, *, keep: bool = False, only: Optional[list[str]] = None,
               shape: str = "sentinel") -> dict:
    """Bring the shape up with real Harbor, run each drill that applies to it (or those named in `only`), write the
    JSON."""
    t0 = time.monotonic()
    report: dict[str, Any] = {"lab": {
        "shape": SHAPES[shape].name, "harbor": f"v{host_lab.REAL_VERSION} built from source",
        "client": f"scripts/drills/ha_client.py workload on {CLIENT_HOST}, through the VIP over TLS",
        "standins": ["NFS (bind mount)", "Harbor's portal (placeholder page)"]}}
    lab = HostLab(host_lab.ROOT / "lab", "real")
    hd = HarborDrills(lab, SHAPES[shape])
    # The FUSE front only where its drill runs (`--only` without nfs_restart: the plain bind mount; a run of every
    # drill has the front under all of them).
    hd.nfs_front = "nfs" in SHAPES[shape].roles and (not only or "nfs_restart" in only)
    if hd.nfs_front:
        report["lab"]["standins"][0] = "NFS (bind mount of a FUSE passthrough, bindfs: the nfs_restart drill's server)"
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
