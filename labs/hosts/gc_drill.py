"""The garbage collection drill of `host_lab.py drills --harbor real` (drills.py): a GC schedule from the stack on a
cluster of two Harbor nodes, while pushes continue.

1. Lab-only: Harbor keeps blobs younger than its GC time window (2 h, src/common/const.go) whatever their references;
   its core reads GC_TIME_WINDOW_HOURS from the environment "for testing" (src/lib/config/systemconfig.go): set to 0
   on each node's core here, so that the blobs of images pushed and deleted a minute ago are collected. This also
   makes the drill harsher than production: a blob uploaded by a push in flight and not yet referenced by its
   manifest is eligible too.
2. VICTIMS images with a random layer each are pushed by the drills' client and their repository deleted through the
   API; their blob files on the shared volume (the lab's NFS stand-in folder) are recorded.
3. The drills' workload starts; the GC schedule is set as the stack sets it (harbor_provider GcScheduleProvider,
   driven as the engine drives it, through the VIP), cron every 2 minutes, and removed the same way a minute after
   the first run appears, before the next tick: every execution Harbor made for that one tick is counted (`runs`;
   one per node would say each node's jobservice fired the schedule).
4. The workload stops and pulls back every image it pushed (images lost: 0 is the bar); `freed_bytes` is the size of
   the victims' blob files that are gone from the volume; GC's own log figures beside it, read from each node's own
   API (job_loggers FILE on the shared volume: a job run by one node's jobservice is read on any node).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from harbor_provider.schedules import GcScheduleProvider
from labs.engine.pulumi_harness import wire
from labs.hosts import host_lab
from labs.hosts.host_lab import MACHINES, NODE_TLS_NAME, log, ssh
from components.harbor_node import CLUSTER_CA_PATH

if TYPE_CHECKING:
    from labs.hosts.drills import HarborDrills

VICTIMS = 3
VICTIM_LAYER = 4 * 2**20  #: bytes of random data in each victim's layer
CRON = "0 */2 * * * *"  #: Harbor's 6-field cron: every 2 minutes
RUN_TIMEOUT_S = 600.0  #: until the scheduled run appears and ends (a tick, then GC on a loaded machine)
AFTER_FIRST_S = 60.0  #: the schedule stays this long after the first run appears (the next tick is 2 min after it)
BLOBS = "registry/docker/registry/v2/blobs/sha256"  #: distribution's blob store under Harbor's data volume
TIME_WINDOW_ZERO = r"""set -e; set -a; . /etc/harbor-ha/env/harbor-node.env; set +a; cd "$INSTALL_DIR"
grep -q '^GC_TIME_WINDOW_HOURS=' common/config/core/env || echo GC_TIME_WINDOW_HOURS=0 >> common/config/core/env
docker-compose up -d --force-recreate --no-deps core >/dev/null 2>&1
# Harbor's nginx resolved core's address at its start: it must learn the recreated container's.
docker-compose restart proxy >/dev/null 2>&1"""


def blob_files() -> dict[str, int]:
    """digest -> size of its data file in the registry's storage on the shared volume (the NFS stand-in folder)."""
    root = host_lab.NFS_STANDIN / BLOBS
    return {d.name: (d / "data").stat().st_size for d in root.glob("*/*") if (d / "data").is_file()}


def freed(victims: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """(bytes of the victims' blobs gone, how many are left) (pure)."""
    return sum(size for d, size in victims.items() if d not in after), sum(1 for d in victims if d in after)


def gc_log_figures(text: str) -> dict[str, Optional[int]]:
    """What Harbor's GC job logs of its sweep (src/jobservice/job/impl/gc/garbage_collection.go) (pure)."""
    deleted = re.search(r"(\d+) blobs and (\d+) manifests are actually deleted", text)
    mb = re.search(r"frees up (\d+) MB", text)
    return {"blobs_deleted": int(deleted.group(1)) if deleted else None,
            "manifests_deleted": int(deleted.group(2)) if deleted else None,
            "log_freed_mb": int(mb.group(1)) if mb else None}


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def runs_since(history: list[dict], since: float) -> list[dict]:
    """GC executions Harbor created at or after `since` (epoch), oldest first (pure)."""
    return sorted((h for h in history if h.get("creation_time") and _epoch(h["creation_time"]) >= since),
                  key=lambda h: _epoch(h["creation_time"]))


def run(hd: HarborDrills) -> dict[str, Any]:
    from labs.hosts.drills import LEAD_S, TAIL_S, summary_figures

    lab = hd.lab
    conn = {"harbor_url": f"https://{lab.vip}", "harbor_username": "admin", "harbor_password": lab.admin_password,
            "harbor_ca_certificate": lab.ca}
    provider = GcScheduleProvider()
    client = provider.client(wire(conn))
    for node in hd.shape.roles["harborNodes"]:
        ssh(MACHINES[node], TIME_WINDOW_ZERO, timeout=600)
        if hd.wait_whole(f"core of {node} recreated", time.time()) is None:
            return {"ok": False, "error": f"the cluster was not whole after {node}'s core was recreated"}
    before = blob_files()
    victims_proc = hd.start_workload("gc_victim", "--count", str(VICTIMS), "--layer-size", str(VICTIM_LAYER),
                                     "--no-verify")
    out, err = victims_proc.communicate(timeout=900)
    pushed = json.loads(out).get("images_pushed") if out.strip().startswith("{") else None
    victims = {d: s for d, s in blob_files().items() if d not in before}
    client.request("DELETE", "/projects/library/repositories/drill-gc-victim", ok=(200,))
    log(f"gc: {pushed} victim images pushed ({len(victims)} blobs, {sum(victims.values())} bytes), repository deleted")

    proc = hd.start_workload("gc")
    time.sleep(LEAD_S)
    t_set = time.time()
    provider.create(wire({**conn, "cron": CRON, "delete_untagged": False, "workers": 1}))
    removed_at, deadline, runs = None, time.monotonic() + RUN_TIMEOUT_S, []
    while time.monotonic() < deadline:
        runs = runs_since(client.request("GET", "/system/gc?page_size=50", ok=(200,)).body or [], t_set - 5)
        if runs and removed_at is None and time.time() - _epoch(runs[0]["creation_time"]) >= AFTER_FIRST_S:
            provider.delete("gc", wire(conn))
            removed_at = time.time()
        if removed_at and all(r.get("job_status") in ("Success", "Error", "Stopped") for r in runs):
            break
        time.sleep(5)
    if removed_at is None:
        provider.delete("gc", wire(conn))
    healthy_s = hd.wait_whole("after GC", t_set)
    time.sleep(TAIL_S)
    out = hd.finish("gc", proc)
    if "error" in out:
        return {"ok": False, "error": out["error"], "runs": len(runs)}
    result = summary_figures("gc", out, t_set, healthy_s, jobs_measured=False)
    freed_bytes, left = freed(victims, blob_files())
    logs = {}
    if runs:
        for node in hd.shape.roles["harborNodes"]:
            code, text = lab.api(MACHINES[node], "GET",
                                 f"https://{NODE_TLS_NAME}:{lab.https_port}/api/v2.0/system/gc/{runs[0]['id']}/log",
                                 "admin", lab.admin_password, cacert=CLUSTER_CA_PATH,
                                 resolve=f"{NODE_TLS_NAME}:{lab.https_port}:127.0.0.1")
            logs[node] = text if code == 200 else ""
    figures = gc_log_figures(next(iter(logs.values()), ""))
    result.update({
        "runs": len(runs), "run_status": [r.get("job_status") for r in runs],
        "run_kinds": [r.get("job_kind") for r in runs], "schedule_removed": removed_at is not None,
        "victim_images": pushed, "victim_blobs": len(victims), "victim_bytes": sum(victims.values()),
        "freed_bytes": freed_bytes, "victim_blobs_left": left, **figures,
        "log_on_every_node": bool(logs) and all("actually deleted" in t for t in logs.values()),
    })
    result["ok"] = bool(result["ok"] and len(runs) == 1 and runs[0].get("job_status") == "Success"
                        and victims and left == 0 and freed_bytes > 0)
    log(f"gc: {result}")
    return result
