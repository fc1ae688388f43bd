"""`host_lab.py verify --shape s3 --harbor real`: real Harbor (v2.15.2 built from source) moved from NFS onto Garage.

    sudo venv/bin/python labs/hosts/host_lab.py verify --shape s3 --harbor real --json FILE [--keep]

The s3 shape (PostgreSQL, Redis and the NFS stand-in on data1, Harbor and the LBs on node1/node2, Garage on
s3a..s3c, the Garage binary served by dist1, s3d to replace s3c) with the installer built from source instead of the
registry binary the garage tier runs on the hosts. It is first applied in the move's first stage (storage.mode nfs with
roles.objectStore: docs/object-storage.md), then `move` carries out the move as the operator does it (`nfs_to_s3`)
and host_lab goes on with the stack on S3: the harbor-node role's harbor.yml `storage_service.s3`, rendered by the
program, is what Harbor's own prepare turns into its registry container's config.yml. After host_lab's first
checks of real Harbor (push through the VIP, pull through the other node, digests equal; a token of one node used on
the other; a robot pulls):
- `registry_config`: the config.yml prepare wrote on each node, as its registry container reads it: the S3 driver
  on the node's S3 proxy, path style, redirects off, and one http secret on every node;
- `node_power_cut`, then `node_frozen`: the drills' client (scripts/drills/ha_client.py `workload`, docker's
  retries) pushes and pulls through the VIP over TLS while one object-store host loses its power, then while another
  is frozen (SIGSTOP of every process), each for host_lab.STORE_FAULT_S as in the garage tier (HostLab.store_outage);
  every image the client was told was pushed is pulled back and compared at the end of each;
- `node_replaced`: the same load while the third object-store host dies for good and s3d replaces it through the
  program (HostLab.replace_dead_store, as in the garage tier): the new layout in force, Garage healthy, no image lost;
- `bucket`: every manifest pushed on S3, and every layer Harbor linked to the probe repository, is an object in the
  Garage bucket (listed with the S3 API through a node's S3 proxy, Harbor's key on stdin); `on_data_volume`: none of
  those manifests is on a node's data volume.

    sudo venv/bin/python labs/hosts/host_lab.py verify --shape s3-own --harbor real --json FILE [--keep]

An S3 of one's own (`storage.s3.endpoint`, no roles.objectStore): dev's hosts without NFS (PostgreSQL and Redis on
data1, Harbor and the LBs on node1/node2) and s3own, in no stack, where the lab sets up a one-node Garage behind
stunnel with a CA of its own by hand (start_own_s3), as a site's S3 would be; the stack names its endpoint, bucket,
region and CA, and Harbor's key as secret config. Then host_lab's first checks of real Harbor, `registry_config`,
`bucket` and `on_data_volume` as above (own_checks), and `s3_host_untouched`: no role of the program ran there.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import yaml

from components.config import ClusterConfig, parse_cluster_config
from components.harbor_node import CLUSTER_CA_PATH, TRUSTED_CAS_PATH, extra_trusted_cas
from labs import certs as lab_certs
from components.object_store import S3_COPY_ENV_PATH, S3_TLS_NAME, s3_endpoint
from labs.hosts.host_lab import (MACHINES, REPLACING_STORE, STORE_FAULT_S, STORE_FAULTS, HostLab, Shape, address,
                                 log, ssh, store_fault_plan)

PROBE_REPO = "library/hostlab-probe"  #: what HostLab.harbor_checks pushes
MOVE_REPO, MOVE_IMAGES = "library/before-move", 8  #: what the cluster holds on NFS before the move
MOVE_STOP = "/tmp/hostlab-move-pulls.stop"  #: ends the pull loop of the move
# Lists every key of the bucket under the registry's root (boto3, path style, the cluster CA); the key pair on stdin.
LIST_PY = r"""
import json, sys
import boto3
from botocore.config import Config
access, secret = sys.stdin.readline().strip(), sys.stdin.readline().strip()
endpoint, bucket, region, prefix = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access,
                  aws_secret_access_key=secret, verify=sys.argv[5], config=Config(s3={"addressing_style": "path"}))
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    keys += [o["Key"] for o in page.get("Contents", [])]
print(json.dumps(keys))
"""


def registry_config(cfg: ClusterConfig, nodes: list[str]) -> dict:
    """What Harbor's prepare made of harbor.yml's storage_service on each node: the registry container's config.yml
    and environment (the http secret compared across the nodes, never recorded)."""
    seen: dict[str, Any] = {}
    secrets: set[str] = set()
    for node in nodes:
        m = MACHINES[node]
        config = yaml.safe_load(ssh(m, "docker exec registry cat /etc/registry/config.yml").stdout)
        env = json.loads(ssh(m, "docker inspect -f '{{json .Config.Env}}' registry").stdout)
        env_secret = [e.split("=", 1)[1] for e in env if e.startswith("REGISTRY_HTTP_SECRET=")]
        secrets.add(env_secret[0] if env_secret else str(config["http"]["secret"]))
        storage = config["storage"]
        s3 = storage.get("s3") or {}
        seen[node] = {"drivers": sorted(k for k in storage if k not in ("cache", "maintenance", "delete", "redirect")),
                      "regionendpoint": s3.get("regionendpoint"), "forcepathstyle": s3.get("forcepathstyle"),
                      "bucket": s3.get("bucket"), "secure": s3.get("secure"),
                      "redirect_disabled": (storage.get("redirect") or {}).get("disable") is True,
                      "http_secret_from_env": bool(env_secret)}
    endpoint = s3_endpoint(cfg)
    ok = len(secrets) == 1 and all(n["drivers"] == ["s3"] and n["redirect_disabled"] and n["forcepathstyle"] is True
                                   and n["regionendpoint"] == endpoint for n in seen.values())
    return {"nodes": seen, "endpoint": endpoint, "http_secret_equal": len(secrets) == 1, "ok": ok}


def bucket_keys(cfg: ClusterConfig, node: str) -> list[str]:
    """Every key of the registry's storage in the bucket, listed on `node` at its registry's endpoint (the node's S3
    proxy, or an S3 of one's own) with the S3 settings of its harbor.yml (the endpoint's name resolved as
    harbor-node.sh does for the registry container)."""
    m = MACHINES[node]
    s3 = yaml.safe_load(ssh(m, f"cat {cfg.harbor.install_dir}/harbor.yml").stdout)["storage_service"]["s3"]
    ssh(m, "dpkg -s python3-boto3 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
           "apt-get install -y -qq python3-boto3 >/dev/null; }; cat > /tmp/hostlab-s3-list.py; "
           f"printf '127.0.0.1 localhost\\n%s {S3_TLS_NAME}\\n' {address(m)} > /etc/hostlab-s3.hosts",
        input=LIST_PY, timeout=900)
    prefix = f"{s3['rootdirectory'].strip('/')}/" if s3.get("rootdirectory") else ""
    # The CAs Harbor's containers trust (harbor.yml's ca_bundle): the cluster CA, and storage.s3.caCertificate.
    bundle = TRUSTED_CAS_PATH if extra_trusted_cas(cfg) else CLUSTER_CA_PATH
    out = ssh(m, "exec unshare -m sh -c 'mount --bind /etc/hostlab-s3.hosts /etc/hosts && exec python3 "
                 f"/tmp/hostlab-s3-list.py {s3['regionendpoint']} {s3['bucket']} {s3['region']} \"{prefix}\" "
                 f"{bundle}'", input=f"{s3['accesskey']}\n{s3['secretkey']}\n", timeout=600)
    return [k[len(prefix):] for k in json.loads(out.stdout)]


def blob_key(digest: str) -> str:
    """The registry's object for a blob (distribution's path layout, under its root directory)."""
    algorithm, hex_ = digest.split(":", 1)
    return f"docker/registry/v2/blobs/{algorithm}/{hex_[:2]}/{hex_}/data"


def bucket_figures(keys: list[str], manifests: dict[str, str], probe_repo: str = PROBE_REPO) -> dict:
    """Which of the pushed images' manifests (`manifests`: tag -> digest) and of the layers linked to `probe_repo`
    have their blob in the bucket (pure)."""
    present = set(keys)
    links = f"docker/registry/v2/repositories/{probe_repo}/_layers/"
    layers = sorted({k[len(links):].rsplit("/", 1)[0].replace("/", ":") for k in keys
                     if k.startswith(links) and k.endswith("/link")})
    missing = sorted({d for d in manifests.values() if blob_key(d) not in present}
                     | {d for d in layers if blob_key(d) not in present})
    return {"objects": len(keys), "blobs": sum(1 for k in keys if k.endswith("/data") and "/blobs/" in k),
            "manifests": len(set(manifests.values())), "probe_layers": len(layers), "missing": missing[:6],
            "ok": bool(manifests) and bool(layers) and not missing}


def on_data_volume(cfg: ClusterConfig, nodes: list[str], manifests: dict[str, str]) -> dict[str, int]:
    """How many of the manifests pushed on S3 have a blob in a node's data_volume/registry (the filesystem
    driver's folder; after the move it still holds the NFS data): none."""
    paths = " ".join(f"{cfg.harbor.data_volume}/registry/{blob_key(d)}" for d in sorted(set(manifests.values())))
    return {n: int(ssh(MACHINES[n], f"n=0; for f in {paths}; do [ ! -e \"$f\" ] || n=$((n+1)); done; echo $n"
                       ).stdout) for n in nodes}


def under_load(lab: HostLab, shape: Shape, key: str, strike: Callable[[], dict]) -> dict:
    """The drills' workload through the VIP; LEAD_S in, `strike()` (it returns the fault's epoch `t_fault`, the
    seconds to Garage healthy again `healthy_s`, and figures of its own); the load runs TAIL_S more; then every image
    is pulled back and compared. Returns drills.summary_figures' and the strike's figures, and `pushed` (tag ->
    digest of every push the client saw succeed)."""
    from labs.hosts import drills  # drills imports host_lab, which imports this module lazily
    harbor = drills.HarborDrills(lab, shape)
    ssh(harbor.client, "cat > /tmp/hha-drill-ca.pem", input=lab.ca)
    ssh(harbor.client, "cat > /tmp/ha_client.py", input=drills.CLIENT_PY.read_text())
    name = f"s3_{key}"
    proc = harbor.start_workload(name)
    time.sleep(drills.LEAD_S)
    seen = strike()
    time.sleep(drills.TAIL_S)
    out = harbor.finish(name, proc)
    figures = drills.summary_figures(name, out, seen.pop("t_fault"), seen.pop("healthy_s"), jobs_measured=False)
    figures.update(seen, pushed={o["ref"]: o["digest"] for o in out.get("ops", []) if o["op"] == "push" and o["ok"]})
    return figures


def store_fault(lab: HostLab, shape: Shape, kind: str, host: str, witness: str) -> dict:
    """`host` cut off or frozen (HostLab.store_outage: kind "cut" or "freeze") under the drills' workload; the load
    runs TAIL_S more once Garage reports itself healthy on it."""
    figures = under_load(lab, shape, STORE_FAULTS[kind], lambda: lab.store_outage(kind, host, witness))
    figures.update(host=host, fault_s=STORE_FAULT_S)
    return figures


def replace_store(lab: HostLab, shape: Shape, values: dict[str, Any], dead: str, new: str) -> dict:
    """A dead object-store host replaced through the program (HostLab.replace_dead_store, as in the garage tier)
    under the drills' workload; the dead machine boots again afterwards, outside the stack. `ok`: no image lost, the
    apply ok, the new layout in force and Garage healthy."""
    figures = under_load(lab, shape, "node_replaced", lambda: lab.replace_dead_store(shape, values, dead, new))
    lab.power_on()
    cluster_ok = figures.pop("cluster_ok")
    figures["ok"] = bool(figures["ok"] and cluster_ok)
    return figures


def storage_to_s3_command(cfg: ClusterConfig) -> str:
    """scripts/storage_to_s3.py on a node as docs/object-storage.md tells the operator to run it: the settings and
    Harbor's key from the node's storage-to-s3.env, the registry's folder on the NFS mount."""
    return (f"set -a; . {S3_COPY_ENV_PATH}; set +a; exec python3 /tmp/storage_to_s3.py "
            f"--source {cfg.harbor.data_volume}/registry --endpoint \"$S3_ENDPOINT\" --resolve \"$S3_RESOLVE\" "
            "--bucket \"$S3_BUCKET\" --region \"$S3_REGION\" --root-directory \"$S3_ROOT_DIRECTORY\" "
            f"--ca-file {CLUSTER_CA_PATH}")


def checked_migration(lab: HostLab, args: list[str], env: dict[str, str]) -> dict:
    """verify_migration.py's report; exit 2 (the record not taken whole, Harbor unreadable) as a report with its
    error, so that the move goes on to leave Harbor writable and its figures say what failed."""
    try:
        return lab.run_verify_migration(args, env)
    except RuntimeError as error:
        return {"ok": False, "error": str(error)[-800:]}


def move(lab: HostLab, shape: Shape, values: dict[str, Any]) -> tuple[dict, dict[str, Any]]:
    """The move from NFS to S3 as docs/object-storage.md gives it, on real Harbor: the stack deployed in its first
    stage (storage.mode nfs with roles.objectStore: Garage and the bucket beside the NFS server) holds MOVE_IMAGES
    images pushed through the VIP; Harbor is set read-only (its API) and a pull loop of every image through the VIP
    starts; scripts/storage_to_s3.py copies the NFS folder into the bucket from node1 (twice: the second copies
    nothing); the stack is applied with storage.mode s3 (the switch); scripts/verify_migration.py checks every tag
    Harbor serves against its record taken before the copy, and every image pushed before is pulled; the loop stops,
    Harbor leaves read-only. Returns the figures and the switched stack's values."""
    from labs.hosts import drills  # drills imports host_lab, which imports this module lazily
    t0 = time.monotonic()
    cfg = parse_cluster_config(values)
    harbor = drills.HarborDrills(lab, shape)
    api = drills.Replication(lab, harbor.client)  # Harbor's API through the VIP as admin
    node = MACHINES[shape.roles["harborNodes"][0]]
    ssh(harbor.client, "cat > /tmp/hha-drill-ca.pem", input=lab.ca)
    ssh(harbor.client, "cat > /tmp/ha_client.py", input=drills.CLIENT_PY.read_text())
    filled = harbor.client_result(["workload", lab.vip, "--repo", MOVE_REPO, "--count", str(MOVE_IMAGES),
                                   "--duration", "600"], timeout=1200)
    images = filled.get("pushed", {})
    api.call("PUT", "/configurations", {"read_only": True})
    # Every tag Harbor serves, recorded through the VIP by scripts/verify_migration.py now that nothing changes, and
    # verified against the record after the switch (docs/object-storage.md, step 2 and 5).
    record = lab.work / "tags-before-move.json"
    record.unlink(missing_ok=True)  # written once by the script: a rerun of the lab starts a new one
    admin = {"SOURCE_USERNAME": "admin", "SOURCE_PASSWORD": lab.admin_password,
             "TARGET_USERNAME": "admin", "TARGET_PASSWORD": lab.admin_password}
    recorded = checked_migration(lab, ["--source", f"https://{lab.vip}", "--source-ca-file", lab.vip_ca_file(),
                                       "--record", str(record)], admin)
    try:
        harbor.client_result(["push", lab.vip, "--repo", MOVE_REPO, "--tag", "late"], timeout=300)
        refused, late_push = False, "pushed"
    except RuntimeError as e:
        refused, late_push = True, str(e)[-300:]
    ssh(harbor.client, f"rm -f {MOVE_STOP}; cat > /tmp/hostlab-move-images.json", input=json.dumps(images))
    pulls = harbor.client_process(["verify", lab.vip, "--repo", MOVE_REPO, "--pushed", "/tmp/hostlab-move-images.json"],
                                  until=MOVE_STOP)
    ssh(node, "dpkg -s python3-boto3 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
              "apt-get install -y -qq python3-boto3 >/dev/null; }; cat > /tmp/storage_to_s3.py",
        input=(Path(__file__).resolve().parents[2] / "scripts" / "storage_to_s3.py").read_text(), timeout=900)
    copies = [ssh(node, storage_to_s3_command(cfg), check=False, timeout=1800) for _ in range(2)]
    first, second = (json.loads(c.stdout) if c.stdout.strip().startswith("{") else {"ok": False,
                     "failure": c.stderr[-500:]} for c in copies)
    switched = {**values, "storage": {**values["storage"], "mode": "s3"}}
    switch = lab.up(switched) if first.get("ok") else None
    # Every tag after the switch: Harbor (still read-only) against the record taken before it, and each image pushed
    # before the move pulled through the VIP with its digests checked. The record itself must hold those images as
    # the pushes gave them.
    in_record = json.loads(record.read_text())["repositories"].get(MOVE_REPO, {}) if recorded.get("ok") else {}
    verified: dict = {}
    pulled: dict = {}
    if switch is not None and switch.ok:
        verified = checked_migration(lab, ["--source-record", str(record), "--target", f"https://{lab.vip}",
                                           "--target-ca-file", lab.vip_ca_file()], admin)
        pulled = harbor.client_result(["verify", lab.vip, "--repo", MOVE_REPO, "--pushed",
                                       "/tmp/hostlab-move-images.json"], timeout=1200)
    ssh(harbor.client, f"touch {MOVE_STOP}")
    out, _err = pulls.communicate(timeout=1200)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rounds = [r for r in lines if "client_failed" not in r]
    crashed = len(lines) - len(rounds)
    api.call("PUT", "/configurations", {"read_only": False})
    totals = verified.get("totals", {})
    result = {"tags": recorded.get("tags", 0),
              "verified_equal": totals.get("matching", 0) if verified.get("ok") else 0,
              "recorded_as_pushed": bool(images) and all(in_record.get(t) == d for t, d in images.items()),
              "images_pulled_equal": pulled.get("images_ok", 0), "verification": totals,
              "verify_errors": [e for e in (recorded.get("error"), verified.get("error")) if e],
              "images": len(images), "push_refused_read_only": refused, "late_push": late_push,
              # Images a round could not pull or found different, after the client's docker-like retries; a round
              # whose client failed (no token, say) counts every image.
              "failed_pulls": sum(r["pulls"] - r["images_ok"] for r in rounds) + len(images) * crashed,
              "client_failures": crashed,
              "pulls_during_move": sum(r["pulls"] for r in rounds), "pull_rounds": len(rounds),
              "copy": {k: first.get(k) for k in ("ok", "files", "blobs", "copied", "present", "conflict",
                                                 "corrupt_source", "unequal", "error", "bytes_copied", "seconds",
                                                 "failure")},
              "second_copy": {k: second.get(k) for k in ("ok", "copied", "present", "verified_equal")},
              "switch": switch and {"ok": switch.ok, "seconds": round(switch.seconds, 1),
                                    "teardowns": switch.teardowns, "ran": sorted(r.name for r in switch.ran)},
              "seconds": round(time.monotonic() - t0, 1)}
    result["ok"] = bool(images and len(images) == MOVE_IMAGES and refused and first.get("ok") and second.get("ok")
                        and second.get("copied") == 0 and switch is not None and switch.ok and not switch.teardowns
                        and result["tags"] >= len(images) and result["verified_equal"] == result["tags"]
                        and result["recorded_as_pushed"] and result["images_pulled_equal"] == len(images)
                        and rounds and result["failed_pulls"] == 0)
    log(f"s3 real Harbor: move from NFS {result}")
    return result, switched


def checks(lab: HostLab, shape: Shape, values: dict[str, Any], harbor: dict, moved: Optional[dict]) -> dict:
    """The storage figures of the s3 shape with real Harbor (`harbor`: HostLab.harbor_checks' result; `moved`:
    move's, when the shape began on NFS)."""
    cfg = parse_cluster_config(values)
    nodes, stores = shape.roles["harborNodes"], shape.roles["objectStore"]
    garage = cfg.storage.garage
    via_vip, per_node = harbor["push_pull_via_vip"], harbor["push_pull_per_node"]
    result: dict[str, Any] = {
        "backend": "garage", "nodes": len(stores), "replication": garage.replication_factor if garage else None,
        "registry": f"Harbor v{values['harbor']['version']}'s registry container (built from source)",
        "health": lab.garage_health(MACHINES[stores[1]]).get("status"),
        "push_pull": {"ok": bool(via_vip["ok"] and per_node["ok"]),
                      "digest_equal": bool(via_vip["digest_equal"] and per_node["digest_equal"])},
        "registry_config": registry_config(cfg, nodes)}
    log(f"s3 real Harbor: registry config {result['registry_config']}")
    pushed: dict[str, str] = {}
    for kind, host, witness in store_fault_plan(stores):
        fault = store_fault(lab, shape, kind, host, witness)
        pushed.update(fault.pop("pushed"))
        result[STORE_FAULTS[kind]] = fault
    replaced = replace_store(lab, shape, values, stores[2], REPLACING_STORE)
    pushed.update(replaced.pop("pushed"))
    result["node_replaced"], result["node_replacement"] = replaced["ok"], replaced
    manifests = {**pushed, **({"vip": via_vip["digest"]} if via_vip.get("digest") else {})}
    result["bucket"] = bucket_figures(bucket_keys(cfg, nodes[0]), manifests)
    result["on_data_volume"] = on_data_volume(cfg, nodes, manifests)
    if moved is not None:
        result["nfs_to_s3"] = moved
    log(f"s3 real Harbor: bucket {result['bucket']}, on the data volumes {result['on_data_volume']}")
    return result


# ------------------------------------------------------------------------------------ an S3 of one's own (s3-own)
OWN_S3 = "s3own"  #: host_lab.MACHINES' host of the S3 of one's own, in no stack
OWN_S3_PORT = 9443  #: its TLS port (stunnel)
OWN_S3_BUCKET, OWN_S3_REGION = "harbor-own", "us-east-1"
OWN_S3_DIR = "/etc/lab-own-s3"
# The S3 an operator already has, set up by hand as a site's would be (none of the program's roles runs there): one
# Garage node (the binary built here, replication 1) on loopback, stunnel4 terminating TLS with the site's own CA on
# the host's address, the bucket and Harbor's key made through Garage's CLI and admin API (the key's secret in a file,
# never on a command line). ADDR, PORT, BUCKET and REGION come from the environment; the secrets are in OWN_S3_DIR.
OWN_S3_SETUP = r"""
set -euo pipefail
shopt -s inherit_errexit
export DEBIAN_FRONTEND=noninteractive
dpkg -s stunnel4 curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq stunnel4 curl >/dev/null; }
install -m 0755 /srv/nfs-standin/dist/garage /usr/local/bin/garage
install -d -m 0700 /var/lib/lab-own-s3/meta /var/lib/lab-own-s3/data
printf '%s\n' 'metadata_dir = "/var/lib/lab-own-s3/meta"' 'data_dir = "/var/lib/lab-own-s3/data"' \
  'db_engine = "lmdb"' 'replication_factor = 1' 'rpc_bind_addr = "127.0.0.1:3911"' \
  'rpc_secret_file = "/etc/lab-own-s3/rpc_secret"' '[s3_api]' 'api_bind_addr = "127.0.0.1:3910"' \
  "s3_region = \"$REGION\"" '[admin]' 'api_bind_addr = "127.0.0.1:3913"' \
  'admin_token_file = "/etc/lab-own-s3/admin_token"' > /etc/lab-own-s3/garage.toml
printf '%s\n' 'foreground = yes' '[s3]' "accept = $ADDR:$PORT" 'connect = 127.0.0.1:3910' \
  'cert = /etc/lab-own-s3/server.crt' 'key = /etc/lab-own-s3/server.key' > /etc/lab-own-s3/stunnel.conf
systemctl is-active --quiet lab-own-s3 || systemd-run --quiet --unit lab-own-s3 -p Restart=always \
  /usr/local/bin/garage -c /etc/lab-own-s3/garage.toml server
systemctl is-active --quiet lab-own-s3-tls || systemd-run --quiet --unit lab-own-s3-tls -p Restart=always \
  "$(command -v stunnel4 || command -v stunnel)" /etc/lab-own-s3/stunnel.conf
garage() { /usr/local/bin/garage -c /etc/lab-own-s3/garage.toml "$@"; }
admin() { curl -fsS --max-time 10 -H @/etc/lab-own-s3/admin_auth "http://127.0.0.1:3913/v2/$1" "${@:2}"; }
up=0
for _ in $(seq 1 120); do
  if garage status >/dev/null 2>&1; then up=1; break; fi
  sleep 1
done
[ "$up" = 1 ] || { echo "Garage did not answer within 120 s" >&2; exit 1; }
if ! garage layout show | grep -Eqi 'layout version: *[1-9]'; then
  id=$(garage node id -q | cut -d@ -f1)
  garage layout assign -z lab -c 10G "$id" >/dev/null
  garage layout apply --version 1 >/dev/null
fi
garage bucket info "$BUCKET" >/dev/null 2>&1 || garage bucket create "$BUCKET" >/dev/null
if ! admin "GetKeyInfo?search=harbor" >/dev/null 2>&1; then
  admin ImportKey --data @/etc/lab-own-s3/key.json >/dev/null
fi
garage bucket allow --read --write --owner "$BUCKET" --key harbor >/dev/null
for _ in $(seq 1 120); do
  if admin GetClusterHealth | grep -q '"status": *"healthy"'; then exit 0; fi
  sleep 1
done
echo "Garage not healthy within 120 s: $(admin GetClusterHealth)" >&2
exit 1
"""


def start_own_s3(lab: HostLab) -> dict[str, Any]:
    """The S3 of one's own on OWN_S3 (OWN_S3_SETUP); Harbor's key goes into the lab's secret config
    (storageS3AccessKey, storageS3SecretKey, as `pulumi config set --secret`). Returns the stack's storage section:
    storage.mode s3 with storage.s3 pointing at it (its endpoint, bucket, region and CA), no roles.objectStore."""
    t0 = time.monotonic()
    m = MACHINES[OWN_S3]
    server = address(m)
    lab.built_garage()
    ca, cert, key = lab_certs.ca_and_server("own S3 (lab)", [server], days=2)
    access, secret = "GK" + secrets.token_hex(12), secrets.token_hex(32)
    lab.secrets = {**lab.secrets, "storageS3AccessKey": access, "storageS3SecretKey": secret}
    admin_token = secrets.token_hex(32)
    for name, content in (("server.crt", cert.decode()), ("server.key", key.decode()),
                          ("rpc_secret", secrets.token_hex(32)), ("admin_token", admin_token),
                          ("admin_auth", f"Authorization: Bearer {admin_token}"),
                          ("key.json", json.dumps({"accessKeyId": access, "secretAccessKey": secret,
                                                   "name": "harbor"}))):
        ssh(m, f"install -d -m 0700 {OWN_S3_DIR} && umask 077 && cat > {OWN_S3_DIR}/{name}", input=content + "\n")
    ssh(m, f"ADDR={server} PORT={OWN_S3_PORT} BUCKET={OWN_S3_BUCKET} REGION={OWN_S3_REGION} bash -s",
        input=OWN_S3_SETUP, timeout=900)
    log(f"an S3 of one's own on {OWN_S3} ({server}:{OWN_S3_PORT}) in {time.monotonic() - t0:.1f} s")
    return {"mode": "s3", "s3": {"endpoint": f"https://{server}:{OWN_S3_PORT}", "bucket": OWN_S3_BUCKET,
                                 "region": OWN_S3_REGION, "caCertificate": ca.decode()}}


def own_checks(lab: HostLab, shape: Shape, values: dict[str, Any], harbor: dict) -> dict:
    """Real Harbor on an S3 of one's own (`harbor`: HostLab.harbor_checks' result): each registry container's
    config.yml on that endpoint, the pushed images' blobs in its bucket and none on a node's data volume, the S3's
    host untouched by the program."""
    cfg = parse_cluster_config(values, secrets_present=list(lab.secrets))
    nodes = shape.roles["harborNodes"]
    via_vip, per_node = harbor["push_pull_via_vip"], harbor["push_pull_per_node"]
    manifests = {"vip": via_vip["digest"]} if via_vip.get("digest") else {}
    result: dict[str, Any] = {
        "backend": "own", "endpoint": cfg.storage.s3.endpoint if cfg.storage.s3 else None,
        "server": "Garage 2.5.0, one node, behind stunnel4, set up by hand (labs/hosts/s3_harbor.py OWN_S3_SETUP)",
        "registry": f"Harbor v{values['harbor']['version']}'s registry container (built from source)",
        "push_pull": {"ok": bool(via_vip["ok"] and per_node["ok"]),
                      "digest_equal": bool(via_vip["digest_equal"] and per_node["digest_equal"])},
        "registry_config": registry_config(cfg, nodes),
        "bucket": bucket_figures(bucket_keys(cfg, nodes[0]), manifests),
        "on_data_volume": on_data_volume(cfg, nodes, manifests),
        "s3_host_untouched": ssh(MACHINES[OWN_S3], "! nft list table inet harbor_ha >/dev/null 2>&1 && "
                                                   "! test -e /etc/harbor-ha", check=False).returncode == 0}
    log(f"s3 of one's own, real Harbor: {result}")
    return result


def storage_ok(result: dict) -> bool:
    """The real-Harbor s3 checks passed: pushes and pulls with equal digests, the registry configured as the issue
    says, the images' blobs in the bucket and none on the data volumes; on the Garage role also no image lost to the
    power cut or the freeze and Garage healthy again after each, a dead host replaced with no image lost (their
    failed operations and longest gaps are figures); on an S3 of one's own, its host untouched."""
    common = bool(result["push_pull"]["ok"] and result["push_pull"]["digest_equal"]
                  and result["registry_config"]["ok"] and result["bucket"]["ok"]
                  and not any(result["on_data_volume"].values()))
    if result.get("backend") == "own":
        return common and result["s3_host_untouched"] is True
    return bool(common and result.get("nfs_to_s3", {}).get("ok", True)
                and result["node_replaced"] is True
                and all(result[key]["images_pushed"] and result[key]["images_lost"] == 0
                        and result[key]["images_corrupted"] == 0 and result[key]["healthy_ms"] is not None
                        for key in STORE_FAULTS.values()))
