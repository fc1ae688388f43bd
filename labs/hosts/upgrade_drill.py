"""The rolling upgrade drill of `host_lab.py drills --harbor real` (drills.py): Harbor 2.14.2 -> 2.15.2 by the program.

The dev shape comes up on UPGRADE_FROM (its installer built from source like the other, labs/harbor/build_installer.py);
the drills' client pushes and pulls through the VIP; the lab then applies the same stack with `harbor.version`
bumped, as `pulumi up` would (labs/hosts/replay.py, the engine's plan order): node1 backs up Harbor's database and
its new core migrates the schema while node2's old one still serves, then node2 is drained and upgraded
(components/harbor_node/harbor-node.sh before_migration, drain). Afterwards the client pulls every image it was told
was pushed, the ones pushed before the upgrade included.

Figures: the drill's usual ones (failed operations after retries, longest push gap, images lost), the version each
node's core runs before and after, the schema version before and after, and `backup_before`: a dump is on the first
node and the schema version inside it is the one before the migration (a dump taken after it would hold the new one).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any, Optional

from labs.harbor import build_installer
from labs.hosts import host_lab
from labs.hosts.host_lab import MACHINES, HostLab, log, ssh

if TYPE_CHECKING:
    from labs.hosts.drills import HarborDrills

UPGRADE_FROM = "2.14.2"
UPGRADE_TO = host_lab.REAL_VERSION
NODE_ENV = "/etc/harbor-ha/env/harbor-node.env"  #: the role's parameters, libpq's variables among them
BACKUP_DIR = "/var/backups/harbor-ha"  #: components/harbor_node UPGRADE_BACKUP_DIR


def prepare(lab: HostLab) -> str:
    """Adds the from-version's installer to the lab (cached by digest); the version the cluster starts on."""
    lab.installers[UPGRADE_FROM] = build_installer.build(UPGRADE_FROM)
    return UPGRADE_FROM


def core_versions(nodes: list[str]) -> dict[str, str]:
    """node -> the tag of the image its harbor-core container runs."""
    versions = {}
    for node in nodes:
        out = ssh(MACHINES[node], "docker inspect -f '{{.Config.Image}}' harbor-core", check=False, timeout=60)
        versions[node] = out.stdout.strip().rpartition(":")[2] or f"none ({out.stderr.strip()[-100:]})"
    return versions


def schema_version(node: str) -> Optional[int]:
    """Harbor's schema version, read on `node` with the role's own libpq settings (pgpass, CA, sslmode)."""
    out = ssh(MACHINES[node], f"set -a; . {NODE_ENV}; psql -XAtq -c 'SELECT version FROM schema_migrations'",
              check=False, timeout=60)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else None


def dump_times(node: str, name: str) -> tuple[float, float]:
    """(start, end) epoch of the dump BACKUP_DIR/name: the UTC stamp in its name (taken as pg_dump started), its
    mtime (written when it ended)."""
    start = datetime.strptime(name.rsplit("-", 1)[1].removesuffix(".dump"), "%Y%m%dT%H%M%SZ")
    end = ssh(MACHINES[node], f"stat -c %Y {BACKUP_DIR}/{name}", timeout=60).stdout.strip()
    return start.replace(tzinfo=UTC).timestamp(), float(end)


def split_by_backup(out: dict, start: float, end: float) -> tuple[dict[str, str], dict[str, str]]:
    """The images the workload pushed ({tag: digest}) whose push ended before the dump started, and those whose push
    started after it ended (pure); pushes that overlapped it are in neither."""
    ends = {o["ref"]: (o["start"], o["end"]) for o in out.get("ops", []) if o["op"] == "push" and o["ok"]}
    pushed = out.get("pushed", {})
    return ({t: d for t, d in pushed.items() if t in ends and ends[t][1] < start},
            {t: d for t, d in pushed.items() if t in ends and ends[t][0] > end})


def dump_schema_versions(node: str) -> dict[str, Optional[int]]:
    """Each dump in BACKUP_DIR on `node` -> the schema version recorded inside it (its schema_migrations row)."""
    names = ssh(MACHINES[node], f"ls {BACKUP_DIR} 2>/dev/null | grep '\\.dump$' || true", timeout=60).stdout.split()
    found: dict[str, Optional[int]] = {}
    for name in names:
        out = ssh(MACHINES[node], f"pg_restore -f - -a -t schema_migrations {BACKUP_DIR}/{name}", check=False,
                  timeout=120).stdout
        match = re.search(r"^COPY [^\n]*schema_migrations[^\n]*\n(\d+)\t", out, re.M)
        found[name] = int(match.group(1)) if match else None
    return found


def backup_taken_before(schema_before: Optional[int], schema_after: Optional[int],
                        dumps: dict[str, Optional[int]]) -> bool:
    """A dump holds the schema as it was before the migration, and the migration did happen (pure)."""
    return (schema_before is not None and schema_after is not None and schema_after > schema_before
            and schema_before in dumps.values())


def run(hd: HarborDrills) -> dict[str, Any]:
    from labs.hosts.drills import LEAD_S, TAIL_S, summary_figures

    lab, first = hd.lab, hd.shape.roles["harborNodes"][0]
    if hd.wait_whole("before the upgrade", time.time()) is None:
        return {"ok": False, "error": "the cluster was not whole before the upgrade"}
    versions_before, schema_before = core_versions(hd.shape.roles["harborNodes"]), schema_version(first)
    proc = hd.start_workload("upgrade")
    time.sleep(LEAD_S)
    if proc.poll() is not None:
        _out, err = proc.communicate(timeout=60)
        return {"ok": False, "error": f"the client ended before the upgrade: {err[-500:]}"}
    t_start = time.time()
    applied = lab.up(lab.values(hd.shape, version=UPGRADE_TO))
    apply_s = time.time() - t_start
    log(f"upgrade: apply ok={applied.ok} in {apply_s:.0f} s")
    healthy_s = hd.wait_whole("after the upgrade", t_start) if applied.ok else None
    time.sleep(TAIL_S)
    out = hd.finish("upgrade", proc)
    versions_after, schema_after = core_versions(hd.shape.roles["harborNodes"]), schema_version(first)
    dumps = dump_schema_versions(first)
    before, after = sorted(set(versions_before.values())), sorted(set(versions_after.values()))
    # One version on every node, or the list of those seen.
    one: dict[str, Any] = {"from": before[0] if len(before) == 1 else before,
                           "to": after[0] if len(after) == 1 else after}
    facts = {**one, "apply_ok": applied.ok, "apply_s": round(apply_s, 1), "schema_before": schema_before,
             "schema_after": schema_after, "backups": dumps,
             "backup_before": backup_taken_before(schema_before, schema_after, dumps)}
    if "error" in out:
        return {"ok": False, "error": out["error"], **facts}
    result = summary_figures("upgrade", out, t_start, healthy_s, jobs_measured=False)
    result.update(facts)
    if facts["backup_before"]:
        name = next(n for n, v in dumps.items() if v == schema_before)
        kept, lost = split_by_backup(out, *dump_times(first, name))
        # what a roll back by restore keeps and loses (rollback() below)
        result["images"] = {"backup": name, "before_backup": kept, "after_backup": lost}
    result["ok"] = bool(result["ok"] and applied.ok and one == {"from": f"v{UPGRADE_FROM}", "to": f"v{UPGRADE_TO}"}
                        and facts["backup_before"])
    log(f"upgrade: { {k: v for k, v in result.items() if k != 'images'} }")
    return result


def verify_images(hd: HarborDrills, pushed: dict[str, str], attempts: int = 3) -> dict:
    """The drills' client on data1 pulls back `pushed` ({tag: digest}) from the upgrade's workload repository."""
    from labs.hosts.drills import drill_repo  # drills imports this module

    ssh(hd.client, "cat > /tmp/hha-drill-verify.json", input=json.dumps(pushed))
    proc = hd.client_process(["verify", hd.lab.vip, "--repo", drill_repo("upgrade"),
                              "--pushed", "/tmp/hha-drill-verify.json", "--attempts", str(attempts),
                              "--retry-delay", "2"])
    out, err = proc.communicate(timeout=1200)
    try:
        return json.loads(out)
    except ValueError:
        return {"error": f"client exit {proc.returncode}: {err[-300:]}"}


STOP_HARBOR = 'set -e; set -a; . /etc/harbor-ha/env/harbor-node.env; cd "$INSTALL_DIR"; docker-compose down'
RESTORE = ("set -e; set -a; . /etc/harbor-ha/env/harbor-node.env; set +a; "
           "pg_restore --clean --if-exists --no-owner --single-transaction -d \"$PGDATABASE\" {dump}")


def rollback(hd: HarborDrills, upgrade: dict) -> dict[str, Any]:
    """A failed upgrade's way back, as docs/operations/upgrade.md tells the operator: Harbor stopped on every node,
    the dump taken before the migration restored, `harbor.version` set back and applied. The images pushed before
    the dump must be readable again; those pushed after it are what a restore loses (counted)."""
    images = upgrade.get("images")
    if not images:
        return {"ok": False, "error": "the upgrade left no dump of before its migration"}
    lab, first = hd.lab, hd.shape.roles["harborNodes"][0]
    t0 = time.time()
    for node in hd.shape.roles["harborNodes"]:
        ssh(MACHINES[node], STOP_HARBOR, timeout=600)
    ssh(MACHINES[first], RESTORE.format(dump=f"{BACKUP_DIR}/{images['backup']}"), timeout=600)
    schema_restored = schema_version(first)
    applied = lab.up(lab.values(hd.shape, version=UPGRADE_FROM))
    healthy_s = hd.wait_whole("after the roll back", t0) if applied.ok else None
    versions = core_versions(hd.shape.roles["harborNodes"])
    # Those pushed after the dump are expected gone: one try each (3 tries x 320 images took over half an hour).
    before, after = verify_images(hd, images["before_backup"]), verify_images(hd, images["after_backup"], 1)
    result = {"apply_ok": applied.ok, "schema_restored": schema_restored, "versions": versions,
              "down_to_healthy_s": healthy_s, "before_backup": len(images["before_backup"]),
              "before_backup_readable": before.get("images_ok"),
              "before_backup_corrupted": before.get("images_corrupted"),
              "after_backup": len(images["after_backup"]), "after_backup_readable": after.get("images_ok")}
    result["ok"] = bool(applied.ok and healthy_s is not None and set(versions.values()) == {f"v{UPGRADE_FROM}"}
                        and before.get("images_ok") == len(images["before_backup"]) > 0
                        and before.get("images_corrupted") == 0)
    log(f"upgrade rollback: {result}")
    return result
