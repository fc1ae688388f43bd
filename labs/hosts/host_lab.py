"""The roles applied to real Debian 12 hosts over SSH, then day-2 changes under a client's requests through the VIP.

    sudo venv/bin/python labs/hosts/host_lab.py verify --json FILE [--shape dev|prod|both|patroni|external|all|s3]
        [--apply engine|replay] [--keep]
    sudo venv/bin/python labs/hosts/host_lab.py verify --harbor real --json FILE [--shape s3|s3-own]  (s3_harbor.py)
    sudo venv/bin/python labs/hosts/host_lab.py observe --json FILE [--quiet-minutes 10] [--keep] [--no-acme]
        (observe.py; the acme figures from acme_hosts.py)
    sudo venv/bin/python labs/hosts/host_lab.py drills --harbor real --json FILE [--keep]  (drills.py)
    sudo venv/bin/python labs/hosts/host_lab.py acme --json FILE [--keep] [--no-alert]  (acme_hosts.py)
    sudo venv/bin/python labs/hosts/host_lab.py down

Hosts: labs/hosts/debhosts.sh (systemd-nspawn machines: systemd as PID 1, sshd with pinned host keys, apt through a
caching proxy, Docker inside), environment HHA_ROOT, HHA_BRIDGE, HHA_NET as that script takes them.
What runs for real: apt installs, the role scripts, systemd units, the nftables host firewall, PostgreSQL (TLS only),
Redis and Sentinel, nginx (verifying the nodes' TLS against the cluster CA), keepalived (VRRP between two hosts),
Docker and docker-compose with Harbor's compose layout, reboots. Keys and certificates are real (the engine's
pulumi-tls plugin, or replay.RealTlsMocks).
The patroni shape (postgres.mode patroni): etcd, Patroni with PostgreSQL 15 in strict synchronous mode, vip-manager
holding the database VIP, pgBackRest's TLS servers and the repository host, a power cut of the leader's host.
With `--harbor real` the nodes install Harbor's offline installer built here from Harbor's source
(labs/harbor/build_installer.py: Harbor's own images, prepare and compose file; the portal a placeholder page), on
the dev shape without the day-2 scenarios, then a client pushes and pulls through the VIP and through each node alone
(docker over TLS), a token of one node is used on the other, a robot account pulls, and the Harbor API provider
creates one object of each kind it manages through the VIP and finds nothing to write on the next run, the
admin password is rotated through the AdminPassword resource, and Harbor's Trivy adapter (built here with Trivy) is
checked healthy, Harbor's default scanner, and asked to scan, without a database and with an empty stand-in one
(the `harbor` figures, `trivy`).
The external shape (postgres, redis and nfs `mode: external`): a PostgreSQL 15 and a Redis over TLS the lab starts
by hand on the data host, which is not in the stack, and the NFS stand-in folder as an existing export; the stack
has only the two nodes with the load balancers.
What is a stand-in, and why:
- Harbor (the default, fast tier): the stand-in offline installer of labs/hosts/standin_installer.py, busybox
  services in Harbor's installer layout.
- With --harbor real: `docker run --privileged` (Harbor's prepare wrapper runs its image so) fails in these hosts:
  Docker 20.10 asks for every capability and this machine's bounding set lacks CAP_SYS_RESOURCE (moby/moby#42933,
  fixed in Docker 23). The docker CLI is diverted on the nodes to a script that drops --privileged (prepare needs
  root in its container, nothing more).
- With --harbor real, Trivy's vulnerability database: none can be downloaded here; the stack sets trivySkipUpdate
  and trivyOfflineScan, and after a scan without one the lab writes labs/harbor/trivy_db_standin.py's empty database
  on the nodes (no advisories: the scan runs through Trivy and finds nothing).
- NFS: this kernel has no NFS server or client. The machine's folder HHA_ROOT/nfs-standin is bind-mounted at
  /srv/nfs-standin in every host (HHA_BIND of the lab's debhosts.sh); on Harbor nodes /sbin/mount.nfs is diverted
  (dpkg-divert) to a script that bind-mounts that folder, so the role's own fstab line, `mount /data` and the boot
  mount unit run unchanged; on the NFS host nfs-server.service is a oneshot stand-in unit (`exportfs -ra` is real).
  For the drills' NFS server restart the hosts bind-mount the folder through a FUSE passthrough (nfs_front.py).
- `pulumi up`: with the stand-in Harbor the shapes of ENGINE_SHAPES are applied by the real engine (`--apply
  engine`, the default: labs/engine/engine_lab.py's EngineHostLab, a stack per shape); the other shapes, real Harbor
  and `--apply replay` by labs/hosts/replay.py, which
  replays the program's registered remote commands in the engine's plan order, sequentially instead of in parallel
  (the patroni shape runs independent steps at once: the members of a new etcd cluster each wait for the others).
  The forced re-run of every role's apply is the lab's own on every shape (the engine never re-runs an unchanged
  command): replay.py's runner runs the stored commands again over SSH (the engine's state under the engine).
  docs/real-hosts.md ("What is a stand-in") says why each shape stays on the replay.
- The s3 shape (storage.mode s3, Garage on three object-store hosts): Harbor's registry is the binary of Harbor's
  registry container (goharbor/distribution release-2.8, built here from source), run on each node as a host service
  (not in Harbor's container: the stand-in installer has none) on the S3 settings of the node's rendered harbor.yml,
  its endpoint name resolved as harbor-node.sh writes it for Harbor's registry containers (the node's S3 proxy);
  Garage is the real one, built here from crates.io and served by a lab host (dist1). With --harbor real, Harbor's
  registry container itself, after the move from NFS (labs/hosts/s3_harbor.py).
- Reboot: `systemctl reboot` in the host ends its systemd-nspawn (no systemd on this machine restarts it, as
  systemd-nspawn@.service would); the lab starts it again on the same root filesystem.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import yaml
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from components.config import ClusterConfig, parse_cluster_config  # noqa: E402
from components.firewall import host_openings  # noqa: E402
from components.harbor_node import (CLUSTER_CA_PATH, NODE_TLS_NAME, REDIS_CA_PATH, TRIVY_LOCAL_DIR,  # noqa: E402
                                    TRUSTED_CAS_PATH)
from components.patroni import PatroniPaths  # noqa: E402
from components.pgbackrest import STANZA  # noqa: E402
from labs import certs as lab_certs  # noqa: E402
from labs import netns as netns_lab  # noqa: E402
from labs.engine import pulumi_harness  # noqa: E402
from labs.harbor import build_installer, trivy_db_standin  # noqa: E402
from labs.hosts import harbor_api_check, standin_installer  # noqa: E402
from labs.hosts.nfs_front import FuseFront  # noqa: E402
from labs.hosts.replay import COMMAND, Replay, SshRunner, UpResult  # noqa: E402
from harbor_provider.client import HarborError  # noqa: E402
from labs.fakes.registries import layer, push_image, push_multi_arch  # noqa: E402
from scripts import drills  # noqa: E402
from scripts.registry_tools.client import RegistryClient, RegistryError, repository_scope  # noqa: E402

HERE = Path(__file__).resolve().parent
DEBHOSTS = HERE / "debhosts.sh"
ROOT = Path(os.environ.get("HHA_ROOT", "/var/lib/harbor-ha-host-lab"))
BRIDGE = os.environ.get("HHA_BRIDGE", "hha-hl0")
NET = os.environ.get("HHA_NET", "198.19.220")
NFS_STANDIN = ROOT / "nfs-standin"
# The drills' NFS server stand-in (nfs_front.py): when mounted, the hosts bind-mount it instead of NFS_STANDIN.
NFS_FRONT = FuseFront(NFS_STANDIN, ROOT / "nfs-front")
# The lab's own blackhole route for the test range while its hosts run: a metric of its own, so that `down` removes
# exactly it and leaves the other labs' routes (labs on other HHA_NETs run side by side: the metric follows it).
BLACKHOLE = netns_lab.blackhole(int(NET.rsplit(".", 1)[1]))
HOSTNAME = "harbor.hostlab.internal"
VERSIONS = ("2.15.2", "2.15.3")  #: the stand-in installer's version, and the one of the upgrade scenario
REAL_VERSION = "2.15.2"  #: the version built from source for --harbor real
# Which debhosts machine plays which host; prod-like reuses the data host and the nodes of dev.
MACHINES = {"data1": "h1", "node1": "h2", "node2": "h3", "node3": "h4",
            "redis1": "h5", "redis2": "h6", "redis3": "h7", "lb1": "h8", "lb2": "h9",
            "db1": "h10", "db2": "h11", "db3": "h12",
            # The s3 shape's object-store hosts reuse h4..h6 (node3 and two redis hosts of the other shapes) and its
            # Garage download server h7, and s3d (h8) that replaces s3c: that shape boots 8 hosts only.
            "s3a": "h4", "s3b": "h5", "s3c": "h6", "dist1": "h7", "s3d": "h8",
            # The S3 of one's own of the s3-own shape (labs/hosts/s3_harbor.py), in no stack.
            "s3own": "h4"}
# systemd units of each role: every one must be active after an apply and after a reboot.
UNITS = {"firewall": ["harbor-ha-firewall"],
         "nfs-server": ["nfs-server"], "postgres": ["postgresql@15-main"], "redis": ["redis-server"],
         "sentinel": ["redis-sentinel"], "harbor-node": ["docker"], "loadbalancer": ["nginx"],
         "keepalived": ["keepalived"], "etcd": ["etcd"], "patroni": ["patroni", "vip-manager", "pgbackrest"],
         "object-store": ["garage", "harbor-ha-s3-tls"], "object-store-cluster": [],
         "pgbackrest-repo": ["pgbackrest", "pgbackrest-full.timer", "pgbackrest-diff.timer"]}
PATRONI_ROLES = ("etcd", "patroni", "pgbackrest-repo")  #: the roles only the patroni shape has
S3_ROLES = ("object-store", "object-store-cluster")  #: the roles only the s3 shape has
# What a role's delete must have done, where it does not stop its unit: the NFS server may export other folders
# (only Harbor's export goes), PostgreSQL may hold other databases (only Harbor's access goes); the firewall's
# table must be gone, not only its unit stopped.
UNDONE = {"firewall": "! nft list table inet harbor_ha >/dev/null 2>&1 && ! systemctl -q is-active harbor-ha-firewall",
          "nfs-server": "! test -e /etc/exports.d/harbor-ha.exports",
          "postgres": "! grep -q '^host' /etc/postgresql/15/main/pg_hba.conf",
          "harbor-node": "! mountpoint -q /data && [ -z \"$(docker ps -q)\" ]"}
# Where each role keeps the data its delete must leave behind.
DATA = {"postgres": "/var/lib/postgresql/15/main/PG_VERSION", "redis": "/var/lib/redis",
        "harbor-node": "/srv/nfs-standin/secret/keys/secretkey", "nfs-server": "/srv/nfs-standin",
        "etcd": "/var/lib/etcd/harbor-ha/member", "patroni": f"{PatroniPaths().data_dir}/PG_VERSION",
        "pgbackrest-repo": f"/var/lib/pgbackrest/backup/{STANZA}", "object-store": "/var/lib/garage/meta/node_key"}
PATRONICTL = f"runuser -u postgres -- patronictl -c {PatroniPaths().config}"
PGBACKREST = f"runuser -u postgres -- pgbackrest --config={PatroniPaths().pgbackrest_conf} --stanza={STANZA}"
# Probes every (address, port) of argv[1] (JSON) with a TCP connect: open, refused (the firewall let it through,
# nothing listens) or timeout (dropped: the firewall's policy is drop, not reject).
PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    try:
        socket.create_connection(tuple(target), timeout=2).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(32) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""
# From a Harbor node: every 0.2 s a query through the database VIP as Harbor's user until a server that is not
# in recovery and does not listen on $1 (the old leader's address) answers; prints the time of that answer.
VIP_WAIT = r"""
old=$1 dsn=$2
for _ in $(seq 1 900); do
  out=$(psql "$dsn" -XAtc "select pg_is_in_recovery()::text || ' ' || current_setting('listen_addresses')" \
        2>/dev/null || true)
  case "$out" in "false "*) case ",${out#false }," in *",$old,"*) ;; *) date +%s.%N; echo "$out"; exit 0 ;; esac ;; esac
  sleep 0.2
done
exit 1
"""
MOUNT_NFS_STANDIN = """#!/bin/sh
# Stand-in for mount.nfs (harbor-ha host lab): this kernel has no NFS client. Bind-mounts the folder every lab host
# shares instead of SERVER:EXPORT; the real helper is diverted to /sbin/mount.nfs.distrib.
exec mount --bind /srv/nfs-standin "$2"
"""
DOCKER_PRIVILEGED_STANDIN = """#!/bin/sh
# Stand-in (harbor-ha host lab, --harbor real): Docker 20.10 asks for every capability with --privileged and this
# machine's bounding set lacks CAP_SYS_RESOURCE (moby/moby#42933, fixed in Docker 23), so `docker run --privileged`
# fails in the lab's hosts. Harbor's prepare wrapper runs its image so; it needs root in the container only. The
# real CLI is diverted to /usr/bin/docker.distrib.
for arg; do shift; [ "$arg" = --privileged ] || set -- "$@" "$arg"; done
exec /usr/bin/docker.distrib "$@"
"""
NFS_SERVER_STANDIN = """[Unit]
Description=Stand-in for the NFS server (harbor-ha host lab: this kernel has no nfsd)
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
[Install]
WantedBy=multi-user.target
"""
CLIENT = r"""
import json, os, ssl, sys, time, urllib.request
url, stop, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
ctx = ssl.create_default_context(cafile=sys.argv[4])
total, failed, failures, t0, requests = 0, 0, [], time.monotonic(), []
while not os.path.exists(stop) and time.monotonic() - t0 < 900:
    t, start = time.monotonic(), time.time()
    why = "unhealthy answer"
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            ok = r.status == 200 and b"healthy" in r.read()
    except Exception as e:
        ok, why = False, repr(e)[:120]
    total += 1
    requests.append({"start": start, "ms": round((time.monotonic() - t) * 1000, 1), "ok": ok})
    if not ok:
        failed += 1
        failures.append([round(t - t0, 2), why])
    time.sleep(max(0.0, interval - (time.monotonic() - t)))
print(json.dumps({"total": total, "failed": failed, "failures": failures[:20], "requests": requests}))
"""


def log(message: str) -> None:
    print(f"[host-lab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def down() -> None:
    """The hosts, their bridge and proxy (debhosts.sh down), the NFS front if there is one, then the lab's blackhole
    route."""
    NFS_FRONT.signal(signal.SIGCONT)  # a frozen front would hold the hosts' shutdown
    try:
        debhosts("down")
    finally:
        NFS_FRONT.unmount()
        netns_lab.ip("route", "del", *BLACKHOLE, check=False)


def close_lab(json_path: Path, report: dict, t0: float, *, keep: bool) -> None:
    """A lab command's `finally`: its duration and figures written to `json_path`, its hosts down unless kept."""
    report["seconds"] = round(time.monotonic() - t0, 1)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    if not keep:
        down()


def debhosts(*args: str, timeout: float = 600) -> str:
    source = NFS_FRONT.mountpoint if NFS_FRONT.mounted() else NFS_STANDIN
    env = {**os.environ, "HHA_ROOT": str(ROOT), "HHA_BRIDGE": BRIDGE, "HHA_NET": NET,
           "HHA_BIND": f"{source}:/srv/nfs-standin"}
    done = subprocess.run(["bash", str(DEBHOSTS), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"debhosts.sh {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


def address(machine: str) -> str:
    return f"{NET}.{10 + int(machine[1:])}"


def ssh(machine: str, command: str, *, input: Optional[str] = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ssh", "-F", str(ROOT / "ssh_config"), machine, command], input=input,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{machine}: {command[:80]}: exit {done.returncode}: {done.stderr[-1500:]}")
    return done


def serve_docker_registry(machine: str, config: dict) -> None:
    """Debian's docker-registry (installed) on `machine` restarted on `config` and opened (open_registry)."""
    conf = "/etc/docker/registry/config.yml"
    ssh(machine, f"umask 027; cat > {conf} && chgrp docker-registry {conf} && systemctl restart docker-registry",
        input=yaml.safe_dump(config))
    open_registry(machine, "docker-registry", REGISTRY_PORT)


def open_registry(machine: str, unit: str, port: int) -> None:
    """The registry of systemd `unit` on `machine` opened to the lab net by the host firewall on `port`; returns
    once it answers /v2/ (60 s at most: a loaded machine)."""
    ssh(machine, f"nft insert rule inet harbor_ha input ip saddr {NET}.0/24 tcp dport {port} accept")
    ssh(machine, f"for i in $(seq 1 60); do curl -fsS -o /dev/null http://127.0.0.1:{port}/v2/ && exit 0; "
                 f"sleep 1; done; echo '{unit}: no answer on /v2/ after 60 s' >&2; "
                 f"journalctl -u {unit} -n 20 --no-pager >&2; exit 1")


def host_keys() -> dict[str, str]:
    """machine -> its ed25519 public key (`type base64`), from the known_hosts debhosts.sh wrote."""
    keys = {}
    for line in (ROOT / "known_hosts").read_text().splitlines():
        names, kind, key = line.split()[:3]
        keys[names.split(",")[0]] = f"{kind} {key}"
    return keys


@dataclass
class Shape:
    """One topology: which lab hosts carry which roles."""

    name: str
    hosts: list[str]  #: lab host names (keys of MACHINES)
    roles: dict[str, Any]  #: the stack's `roles` section
    extra: dict[str, Any] = field(default_factory=dict)  #: further stack sections
    parallel: bool = False  #: independent steps of an apply run at once (replay.Replay's parallel)
    outside: tuple[str, ...] = ()  #: lab hosts the lab uses beside the stack's (not in `hosts`)

    @property
    def machines(self) -> list[str]:
        return [MACHINES[h] for h in self.hosts]

    @property
    def boots(self) -> int:
        """How many lab hosts `debhosts.sh up` starts for this shape (h1..hN: its highest machine number)."""
        return max(int(MACHINES[h][1:]) for h in [*self.hosts, *self.outside])


DEV = Shape("dev", ["data1", "node1", "node2"], {
    "nfs": "data1", "postgres": "data1", "redis": ["data1"], "harborNodes": ["node1", "node2"],
    "loadBalancers": ["node1", "node2"]})
PROD = Shape("prod", ["data1", "node1", "node2", "redis1", "redis2", "redis3", "lb1", "lb2"], {
    "nfs": "data1", "postgres": "data1", "redis": ["redis1", "redis2", "redis3"],
    "sentinels": ["redis1", "redis2", "redis3"], "harborNodes": ["node1", "node2"], "loadBalancers": ["lb1", "lb2"]},
    # vrrp_track_process needs the kernel's process events, which only the machine's first network namespace gets.
    {"redis": {"mode": "sentinel"}, "keepalived": {"trackProcess": False}})
# As small as the program allows in patroni mode: three members (a leader and two replicas, config.py's minimum; etcd
# on the same hosts), the repository on a host that is no member (the data host), dev's two nodes and LBs.
PATRONI = Shape("patroni", ["data1", "node1", "node2", "db1", "db2", "db3"], {
    "nfs": "data1", "postgres": ["db1", "db2", "db3"], "redis": ["data1"], "backup": "data1",
    "harborNodes": ["node1", "node2"], "loadBalancers": ["node1", "node2"]},
    {"postgres": {"mode": "patroni", "vip": {"address": f"{NET}.101", "interface": "host0"}, "synchronous": "strict"},
     "backup": {"repository": "host"}}, parallel=True)

REPLACING_STORE = "s3d"  #: the host that replaces the dead s3c (outside the s3 shapes until then)
# Harbor's images in S3: Garage on three object-store hosts (one zone each, replication 3), no NFS; dev's data host
# (PostgreSQL, Redis) and its two nodes that are the LBs. The Garage binary (labs/objstore/build_garage.sh) is served
# to the object-store hosts by dist1, a lab host outside the stack (no firewall role), as a site's mirror would be.
S3 = Shape("s3", ["data1", "node1", "node2", "s3a", "s3b", "s3c"], {
    "postgres": "data1", "redis": ["data1"], "harborNodes": ["node1", "node2"], "loadBalancers": ["node1", "node2"],
    "objectStore": ["s3a", "s3b", "s3c"]}, {"storage": {"mode": "s3"}}, parallel=True,
    outside=("dist1", REPLACING_STORE))
# The s3 shape with real Harbor (labs/hosts/s3_harbor.py), deployed first as the move from NFS begins: storage.mode
# nfs with roles.objectStore (Garage beside the NFS stand-in on data1); s3_harbor.move switches it to s3.
S3_HARBOR = Shape(S3.name, S3.hosts, {**S3.roles, "nfs": "data1"}, {"storage": {"mode": "nfs"}}, parallel=True,
                  outside=S3.outside)
# Real Harbor on an S3 of one's own (storage.s3.endpoint, no roles.objectStore: labs/hosts/s3_harbor.py): dev's
# hosts without NFS, the bucket on s3own, which s3_harbor.start_own_s3 sets up by hand as a site's S3 would be.
S3_OWN = Shape("s3-own", ["data1", "node1", "node2"], {
    "postgres": "data1", "redis": ["data1"], "harborNodes": ["node1", "node2"], "loadBalancers": ["node1", "node2"]},
    {"storage": {"mode": "s3"}}, outside=("s3own",))
DIST_PORT = 8873  #: dist1's HTTP port for the Garage binary
# An object-store host's fault in both storage tiers (HostLab.store_outage): its kind -> the storage figures' key.
STORE_FAULTS = {"cut": "node_power_cut", "freeze": "node_frozen"}
# How long the host stays cut off or frozen: less than the ~75 s Garage takes to mark a silent peer down, so the
# whole fault is spent in that wait (the worst of it for the clients).
STORE_FAULT_S = 60.0
STORE_HEALTHY_TIMEOUT_S = 300.0  #: Garage healthy again on the host after its boot or thaw, on a loaded machine


def store_fault_plan(stores: list[str]) -> list[tuple[str, str, str]]:
    """(kind, host, witness) of both storage tiers' faults: each node's S3 proxy spreads its sessions over the
    object-store hosts; the first one is cut, then another is frozen once the cut one is back (the witness: a third
    host, whose Garage health is read at the end of the fault)."""
    return [("cut", stores[0], stores[1]), ("freeze", stores[1], stores[2])]


# Harbor's registry on each node of the s3 shape: the binary of Harbor's registry container (goharbor/distribution
# release-2.8, built here by labs/harbor/build_installer.py), run as a host service on the S3 settings of the node's
# own rendered harbor.yml (Harbor's registry container is not, see the module docstring).
REGISTRY_PORT = 5000
REGISTRY_BIN = "/usr/local/bin/harbor-registry"
REGISTRY_UNIT = "hostlab-registry"
# The move from NFS to S3 (HostLab.nfs_to_s3): the old registry, on filesystem storage in the NFS stand-in folder.
NFS_REGISTRY_UNIT, NFS_REGISTRY_PORT = "hostlab-registry-nfs", REGISTRY_PORT + 1
NFS_REGISTRY_STORAGE = "/srv/nfs-standin/registry-nfs"


def storage_mode(shape: Shape) -> str:
    """The shape's storage.mode."""
    return shape.extra.get("storage", {}).get("mode", "nfs")


def registry_unit(unit: str, storage: str) -> str:
    """Harbor's registry binary as systemd unit `unit`, on /etc/hostlab-registry/<unit>.yml."""
    return (f"[Unit]\nDescription=Harbor's registry binary on {storage} storage (host lab)\n[Service]\n"
            f"ExecStart={REGISTRY_BIN} serve /etc/hostlab-registry/{unit}.yml\n"
            "BindReadOnlyPaths=/etc/hostlab-registry/hosts:/etc/hosts\n"
            # distribution exports traces to localhost:4318 unless told not to (object-storage notes).
            "Environment=OTEL_TRACES_EXPORTER=none\nRestart=always\nRestartSec=2\n")


def serve_registry(machine: str, unit: str, storage: str, config: dict, port: int = REGISTRY_PORT) -> None:
    """Harbor's registry binary (installed by HostLab.start_registry) restarted as `unit` on `config`, opened."""
    ssh(machine, f"(umask 077; cat > /etc/hostlab-registry/{unit}.yml) && cat > /etc/systemd/system/{unit}.service "
                 f"<<'EOF'\n{registry_unit(unit, storage)}EOF\nsystemctl daemon-reload && systemctl restart {unit}",
        input=yaml.safe_dump(config))
    open_registry(machine, unit, port)
BUILD_GARAGE = Path(__file__).resolve().parents[1] / "objstore" / "build_garage.sh"


# Bring your own services: no nfs, postgres or redis role; HostLab.external_sections points the stack at the
# services HostLab.start_external_services starts by hand on EXTERNAL_HOST.
EXTERNAL = Shape("external", ["node1", "node2"], {"harborNodes": ["node1", "node2"],
                                                  "loadBalancers": ["node1", "node2"]}, outside=("data1",))
EXTERNAL_HOST = MACHINES["data1"]  #: h1: booted by the lab, in no stack of the external shape
# The PostgreSQL and Redis an operator would have: TLS with their own CA, a password, Harbor's database and user.
# Not the program's roles: apt, a config snippet each, the user and database made with psql.
EXTERNAL_SERVICES = r"""
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql-15 redis-server >/dev/null
cd /etc/lab-external
# The server's certificate and key, and its CA, were written by the lab beside this script.
chmod 0644 ca.crt
install -m 0644 -o postgres -g postgres server.crt pg.crt
install -m 0600 -o postgres -g postgres server.key pg.key
install -m 0644 -o redis -g redis server.crt redis.crt
install -m 0600 -o redis -g redis server.key redis.key
chown redis:redis redis-pass.conf
printf '%s\n' "listen_addresses = '*'" "ssl = on" "ssl_cert_file = '/etc/lab-external/pg.crt'" \
  "ssl_key_file = '/etc/lab-external/pg.key'" "max_connections = 200" "password_encryption = scram-sha-256" \
  > /etc/postgresql/15/main/conf.d/lab-external.conf
grep -q '^hostssl registry harbor' /etc/postgresql/15/main/pg_hba.conf ||
  echo "hostssl registry harbor $NET.0/24 scram-sha-256" >> /etc/postgresql/15/main/pg_hba.conf
systemctl restart postgresql@15-main
printf '%s\n' "bind 0.0.0.0" "port 0" "tls-port 6379" "tls-cert-file /etc/lab-external/redis.crt" \
  "tls-key-file /etc/lab-external/redis.key" "tls-ca-cert-file /etc/lab-external/ca.crt" "tls-auth-clients no" \
  "include /etc/lab-external/redis-pass.conf" > /etc/redis/lab-external.conf
grep -qx 'include /etc/redis/lab-external.conf' /etc/redis/redis.conf ||
  echo 'include /etc/redis/lab-external.conf' >> /etc/redis/redis.conf
systemctl restart redis-server
"""


class HostLab:
    applied_by = "replay"  #: what carries out `pulumi up` (labs/engine/engine_lab.py's EngineHostLab: "engine")

    def __init__(self, work: Path, harbor: str = "standin"):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.replay = Replay(SshRunner(ROOT / "id_ed25519"))
        self.harbor = harbor  #: standin: the busybox stand-in installer; real: Harbor built from source
        if harbor == "real":
            t0 = time.monotonic()
            self.installers = {REAL_VERSION: build_installer.build(REAL_VERSION)}
            self.installer_build_s = round(time.monotonic() - t0, 1)
        else:
            self.installers = {v: standin_installer.build(v, work / "installers") for v in VERSIONS}
        ca, cert, key = lab_certs.ca_and_server(HOSTNAME, [HOSTNAME, self.vip], days=2)
        self.ca, self.tls = ca.decode(), {"tlsCertificate": cert.decode(), "tlsPrivateKey": key.decode()}
        self.secrets: dict[str, str] = {}  #: further secret config (the external services' passwords)
        self.external_ca = ""  #: PEM of the CA of the external services' certificate

    vip = f"{NET}.100"

    # ------------------------------------------------------------------------------------------------ hosts
    booted = 0  #: hosts h1..h<booted> are up

    def boot(self, count: int, *, nfs_front: bool = False) -> None:
        """Boot hosts h1..h<count> on a new data volume; with `nfs_front` the hosts reach it through the FUSE front
        (nfs_front.py: the NFS server restart drill's server)."""
        self.booted = count
        netns_lab.ip("route", "replace", *BLACKHOLE)
        # A new cluster, a new data volume: the shared keys of an earlier run (other generated keys) would stop the
        # apply, as they would on a real share (components/host/lib.sh write_once).
        NFS_FRONT.unmount()
        shutil.rmtree(NFS_STANDIN, ignore_errors=True)
        NFS_STANDIN.mkdir(parents=True, exist_ok=True)
        if nfs_front:
            NFS_FRONT.mount()
        t0 = time.monotonic()
        self.power_on()
        log(f"{count} hosts up in {time.monotonic() - t0:.1f} s")

    def power_on(self) -> None:
        """Start every lab host that is not running (after a power cut or a reboot); the others are left as they
        are. Always all `booted` hosts: `debhosts.sh up N` writes the SSH configuration of h1..hN only."""
        debhosts("up", str(self.booted))

    def prepare_standins(self, shape: Shape) -> None:
        """The lab's NFS stand-ins, put in place before the first apply (see the module docstring); for the s3
        shape, the Garage binary's download server on dist1; with real Harbor, the nodes' docker wrapper."""
        if "objectStore" in shape.roles:
            self.serve_garage()
        if "nfs" in shape.roles:
            ssh(MACHINES[shape.roles["nfs"]], "test -f /etc/systemd/system/nfs-server.service || { cat > "
                "/etc/systemd/system/nfs-server.service && systemctl daemon-reload; }", input=NFS_SERVER_STANDIN)
        if shape is EXTERNAL:
            self.start_external_services()
        if shape is S3_OWN:
            from labs.hosts import s3_harbor  # it builds on this module
            self.own_storage = s3_harbor.start_own_s3(self)
        # With storage.mode s3 no node mounts NFS.
        mounting = [] if storage_mode(shape) == "s3" else [*shape.roles["harborNodes"],
                                                           *(["node3"] if self.booted >= 4 else [])]
        for node in mounting:
            ssh(MACHINES[node], "set -e; if [ ! -f /sbin/mount.nfs.distrib ]; then "
                "dpkg-divert --quiet --local --rename --divert /sbin/mount.nfs.distrib --add /sbin/mount.nfs; fi; "
                "cat > /sbin/mount.nfs && chmod 0755 /sbin/mount.nfs", input=MOUNT_NFS_STANDIN)
        if self.harbor == "real":
            for node in shape.roles["harborNodes"]:
                ssh(MACHINES[node], "set -e; if [ ! -f /usr/bin/docker.distrib ]; then "
                    "dpkg-divert --quiet --local --rename --divert /usr/bin/docker.distrib --add /usr/bin/docker; fi; "
                    "cat > /usr/bin/docker && chmod 0755 /usr/bin/docker", input=DOCKER_PRIVILEGED_STANDIN)
        if "postgres" in shape.extra:
            # The lab's client of the database VIP on the first node (Harbor's containers are stand-ins).
            ssh(MACHINES[shape.roles["harborNodes"][0]], "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y -qq postgresql-client-15 >/dev/null")

    def values(self, shape: Shape, *, version: Optional[str] = None, extra_nodes: tuple[str, ...] = (),
               retiring: tuple[str, ...] = (), lb: Optional[dict] = None) -> dict[str, Any]:
        keys = host_keys()
        version = version or next(iter(self.installers))
        names = [*shape.hosts, *[n for n in [*extra_nodes, *retiring] if n not in shape.hosts]]
        roles = {**shape.roles, "harborNodes": [*shape.roles["harborNodes"], *extra_nodes]}
        if retiring:
            roles["retiringNodes"] = list(retiring)
        values = {
            "hosts": [{"name": n, "address": address(MACHINES[n]), "user": "root", "hostKey": keys[MACHINES[n]]}
                      for n in names],
            "roles": roles,
            "vip": {"address": self.vip, "interface": "host0", "virtualRouterId": 208},
            # Real Harbor's first start migrates the database schema: minutes on a loaded machine.
            "harbor": {"hostname": HOSTNAME, "version": version, "healthTimeout": 900 if self.harbor == "real" else 120,
                       "installer": {"path": str(self.installers[version])},
                       # Real Harbor's Trivy only where the lab checks it (verify, self.trivy): no vulnerability
                       # database can be downloaded here, so Trivy never tries (docs/real-hosts.md).
                       **({"trivy": self.trivy, "trivySkipUpdate": self.trivy, "trivyOfflineScan": self.trivy}
                          if self.harbor == "real" else {})},
            **shape.extra,
        }
        if lb:
            values["loadBalancer"] = lb
        if "objectStore" in shape.roles:
            values["storage"] = {"mode": storage_mode(shape), "garage": {
                "url": f"http://{address(MACHINES['dist1'])}:{DIST_PORT}/garage", "sha256": self.garage_sha256}}
        if shape is EXTERNAL:
            values.update(self.external_sections())
        if shape is S3_OWN:
            values["storage"] = self.own_storage
        self.shape_hosts = names
        # components/config.py's default: Harbor's https port moves off 443 where the LB shares the node
        self.https_port = 8443 if set(roles["harborNodes"]) & set(roles["loadBalancers"]) else 443
        return values

    https_port = 443
    trivy = False  #: real Harbor with its Trivy adapter (verify --harbor real; the other real labs leave it out)
    shape_hosts: list[str] = []  #: the lab hosts of the stack last rendered (values())
    garage_sha256 = ""  #: sha256 of the Garage binary dist1 serves (the s3 shape)
    own_storage: dict[str, Any] = {}  #: the storage section of the s3-own shape (s3_harbor.start_own_s3)

    def up(self, values: dict[str, Any], *, rotated: frozenset[str] = frozenset(),
           force_apply: bool = False) -> UpResult:
        regs = self.replay.program(values, {**self.tls, **self.secrets}, rotated)
        # The stack's adminPassword output, as `pulumi stack output adminPassword --show-secrets` gives it.
        self.admin_password = pulumi_harness.resolve(pulumi_harness.stack_output("adminPassword"))
        result = self.replay.up(regs, force_apply=force_apply)
        for r in result.ran:
            if r.rc != 0:
                log(f"FAILED {r.name} ({r.op}) on {r.host}: " + " | ".join(r.lines[-8:]))
        return result

    def unchanged(self, values: dict[str, Any]) -> dict[str, Any]:
        """A second `up` of the same values: what the engine would run (the replay's plan: nothing)."""
        second = self.up(values)
        return {"second_up_ok": second.ok, "second_up_changes": len(second.ran)}

    def delete_roles(self) -> bool:
        """`pulumi destroy` of the roles: every delete command, dependents first."""
        return self.replay.up([]).ok

    # -------------------------------------------------------------------------------------- external services
    def start_external_services(self) -> None:
        """PostgreSQL 15 (TLS, scram-sha-256, Harbor's database and user) and Redis (TLS only, a password) on
        EXTERNAL_HOST, set up by hand as a site's own would be: none of the program's roles runs there."""
        t0 = time.monotonic()
        server = address(EXTERNAL_HOST)
        ca, cert, key = lab_certs.ca_and_server("external services (lab)", [server], days=2)
        self.external_ca = ca.decode()
        self.secrets = {"postgresPassword": "Pg" + secrets.token_hex(12), "redisPassword": secrets.token_hex(16)}
        for name, content in (("ca.crt", ca.decode()), ("server.crt", cert.decode()), ("server.key", key.decode()),
                              ("redis-pass.conf", f"requirepass {self.secrets['redisPassword']}\n")):
            ssh(EXTERNAL_HOST, f"install -d -m 0755 /etc/lab-external && umask 077 && cat > /etc/lab-external/{name}",
                input=content)
        ssh(EXTERNAL_HOST, f"NET={NET} bash -s", input=EXTERNAL_SERVICES, timeout=600)
        # The user's password on stdin, as an operator would type it (never on a command line). A new cluster, a
        # new database: one of an earlier run (--keep) is dropped first.
        ssh(EXTERNAL_HOST, "cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -Xq", input=(
            "DROP DATABASE IF EXISTS registry;\nDROP ROLE IF EXISTS harbor;\n"
            f"CREATE ROLE harbor LOGIN PASSWORD '{self.secrets['postgresPassword']}';\n"
            "CREATE DATABASE registry OWNER harbor;\n"))
        # The lab's clients on the first node (the stand-in Harbor has no PostgreSQL or Redis client).
        ssh(MACHINES[EXTERNAL.roles["harborNodes"][0]], "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
            "apt-get install -y -qq postgresql-client-15 redis-tools >/dev/null", timeout=600)
        log(f"external services on {EXTERNAL_HOST} ({server}) in {time.monotonic() - t0:.1f} s")

    def external_sections(self) -> dict[str, Any]:
        server = address(EXTERNAL_HOST)
        return {"postgres": {"mode": "external", "host": server, "maxConnections": 200,
                             "caCertificate": self.external_ca},
                "redis": {"mode": "external", "address": f"{server}:6379", "tls": True,
                          "caCertificate": self.external_ca},
                # The stand-in mount.nfs bind-mounts the lab's shared folder whatever the server (module docstring).
                "nfs": {"mode": "external", "server": server, "exportPath": "/srv/nfs-standin"}}

    def external_checks(self, values: dict[str, Any]) -> dict:
        """From the nodes, with what the program rendered: Harbor's database login (verify-full against the bundle
        it ships; refused with the cluster CA alone), Redis over TLS with the password on Harbor's registry db, the
        data volume mounted from the existing export on both nodes; the services' host untouched by the program."""
        cfg = parse_cluster_config(values, secrets_present=list(self.secrets))
        node, other = (MACHINES[n] for n in EXTERNAL.roles["harborNodes"])
        harbor = yaml.safe_load(ssh(node, f"cat {cfg.harbor.install_dir}/harbor.yml").stdout)
        db, redis = harbor["external_database"]["harbor"], harbor["external_redis"]
        ssh(node, "umask 077; cat > /root/.pgpass",
            input=f"{db['host']}:{db['port']}:{db['db_name']}:{db['username']}:{db['password']}\n")
        ssh(node, "umask 077; cat > /root/.redis-auth", input=redis["password"])
        dsn = (f"host={db['host']} port={db['port']} dbname={db['db_name']} user={db['username']} "
               f"sslmode={db['ssl_mode']} connect_timeout=3 sslrootcert=")
        sql = ("select current_user || ' ' || current_database() || ' ' || ssl::text from pg_stat_ssl "
               "where pid = pg_backend_pid()")
        login = ssh(node, f"psql {shlex.quote(dsn + TRUSTED_CAS_PATH)} -XAtc {shlex.quote(sql)}", check=False)
        wrong_ca = ssh(node, f"psql {shlex.quote(dsn + CLUSTER_CA_PATH)} -XAtc 'select 1'", check=False)
        host, port = redis["host"].rsplit(":", 1)
        cli = (f"REDISCLI_AUTH=$(cat /root/.redis-auth) redis-cli --no-auth-warning --tls -h {host} -p {port} "
               f"-n {redis['registry_db_index']} --cacert")
        redis_set = ssh(node, f"{cli} {REDIS_CA_PATH} set harbor-ha-lab external", check=False)
        redis_get = ssh(node, f"{cli} {REDIS_CA_PATH} get harbor-ha-lab", check=False)
        redis_wrong_ca = ssh(node, f"{cli} {CLUSTER_CA_PATH} ping", check=False)
        fstab = f"{cfg.nfs_export} {cfg.harbor.data_volume} nfs "
        mounts = {m: ssh(m, f"mountpoint -q {cfg.harbor.data_volume} && grep -c '^{fstab}' /etc/fstab && "
                         f"sha256sum {cfg.harbor.data_volume}/secret/keys/secretkey | cut -c1-64",
                         check=False).stdout.split() for m in (node, other)}
        untouched = ssh(EXTERNAL_HOST, "! nft list table inet harbor_ha >/dev/null 2>&1 && ! test -e /etc/harbor-ha",
                        check=False).returncode == 0
        result = {
            "harbor_yml_database": f"{db['host']}:{db['port']}/{db['db_name']} as {db['username']}, "
                                   f"sslmode {db['ssl_mode']}",
            "database_login": login.stdout.strip() or login.stderr.strip()[-300:],
            "database_ok": login.returncode == 0 and login.stdout.split() == ["harbor", "registry", "true"],
            "database_refused_without_its_ca": wrong_ca.returncode != 0,
            "redis_host": redis["host"], "redis_tls": bool(redis.get("tlsOptions", {}).get("enable")),
            "redis_ok": redis_set.stdout.strip() == "OK" and redis_get.stdout.strip() == "external",
            "redis_answer": (redis_set.stdout + redis_get.stdout + redis_set.stderr).strip()[-300:],
            "redis_refused_without_its_ca": redis_wrong_ca.stdout.strip() != "PONG",
            "mounts": mounts,
            "mount_ok": all(len(v) == 2 and v[0] == "1" for v in mounts.values())
            and len({v[-1] for v in mounts.values()}) == 1,
            "services_host_untouched": untouched,
        }
        log(f"external checks: {result}")
        return result

    # ----------------------------------------------------------------------------------------------- checks
    def placements(self) -> list[tuple[str, str]]:
        """(role, lab host) of every apply command in the current state."""
        out = []
        by_address = {address(MACHINES[h]): h for h in self.shape_hosts}
        for r in self.replay.state:
            match = re.search(r"/stage/([a-z-]+) ", str(r.inputs.get("create", "")))
            if r.typ == COMMAND and r.name.endswith("-apply") and match:
                out.append((match.group(1), by_address[str(r.inputs["connection"]["host"])]))
        return out

    def unit_state(self, machine: str, units: list[str]) -> dict[str, tuple[str, str]]:
        """unit -> (ActiveState, InvocationID)."""
        out = ssh(machine, "for u in " + " ".join(units) + "; do systemctl show -p ActiveState -p InvocationID "
                  "--value $u | paste -sd' '; done").stdout.splitlines()
        return {u: tuple(line.split(" ", 1)) if " " in line else (line, "") for u, line in zip(units, out, strict=True)}

    def containers(self, machine: str) -> dict[str, str]:
        """container name -> start time (running ones), on a Harbor node."""
        out = ssh(machine, "docker ps -q | xargs -r docker inspect -f '{{.Name}} {{.State.StartedAt}}'").stdout
        return dict(line.lstrip("/").split(" ", 1) for line in out.splitlines() if line)

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {}
        for role, host in self.placements():
            snap[f"{role}@{host}"] = self.unit_state(MACHINES[host], UNITS[role])
            if role == "harbor-node":
                snap[f"containers@{host}"] = self.containers(MACHINES[host])
        return snap

    def inactive(self) -> dict[str, list[str]]:
        """role -> the `unit@host` (or container, or the VIP) that is not running."""
        bad: dict[str, list[str]] = {}
        lbs = sorted({host for role, host in self.placements() if role == "keepalived"})
        if lbs and len(self.vip_holder(lbs)) != 1:
            # keepalived can be active in FAULT state (e.g. a tracked process it cannot watch): no VIP anywhere.
            bad["keepalived"] = [f"the VIP is on {self.vip_holder(lbs) or 'no host'}"]
        for role, host in self.placements():
            for unit, (state, _inv) in self.unit_state(MACHINES[host], UNITS[role]).items():
                if state != "active":
                    bad.setdefault(role, []).append(f"{unit}@{host}: {state}")
            if role == "harbor-node":
                # Over the TLS port the LB proxies to, verified against the cluster CA (as the role's health gate).
                health = ssh(MACHINES[host], f"curl -fsS --max-time 5 --cacert {CLUSTER_CA_PATH} --resolve "
                             f"{NODE_TLS_NAME}:{self.https_port}:127.0.0.1 "
                             f"https://{NODE_TLS_NAME}:{self.https_port}/api/v2.0/health", check=False)
                if '"status":"healthy"' not in health.stdout:
                    bad.setdefault(role, []).append(f"harbor health@{host}: {health.stdout or health.stderr}"[:200])
        return bad

    def docker_after_mount(self, host: str) -> bool:
        """On a node after boot: data.mount was active before docker.service started."""
        out = ssh(MACHINES[host], "systemctl show -p ActiveEnterTimestampMonotonic --value data.mount; "
                  "systemctl show -p ExecMainStartTimestampMonotonic --value docker").stdout.split()
        return len(out) == 2 and 0 < int(out[0]) <= int(out[1])

    @staticmethod
    def pid1_start(machine: str) -> str:
        """When the host's systemd started (clock ticks since the machine's boot): changes with each reboot."""
        return ssh(machine, "awk '{print $22}' /proc/1/stat", check=False, timeout=30).stdout.strip()

    def reboot(self, machines: Sequence[str], wait: float = 120) -> float:
        """Reboot these hosts at once (`systemctl reboot`); seconds until all are back (systemd running/degraded).
        Hosts that did not go down within `wait` s are listed in `not_rebooted`."""
        before = {m: self.pid1_start(m) for m in machines}
        t0 = time.monotonic()
        for m in machines:
            # A session that timed out may have gone down with the host, or never run the command (a machine under a
            # load of 30 took over 60 s to open one): asked again, at most three times; a second request of a
            # reboot in progress changes nothing.
            for attempt in range(3):
                try:  # --no-block: the session ends before the shutdown takes the host's network away
                    ssh(m, "systemctl reboot --no-block", check=False, timeout=120)
                    break
                except subprocess.TimeoutExpired:  # judged below like the others
                    log(f"{m}: no answer to systemctl reboot within 120 s (request {attempt + 1} of 3)")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status = debhosts("status")
            if not any(re.search(rf"^{m}\s+\S+\s+\d+", status, re.M) for m in machines):
                break
            time.sleep(0.5)
        self.power_on()
        self.not_rebooted = [m for m in machines if self.pid1_start(m) == before[m]]
        if self.not_rebooted:
            log(f"not rebooted within {wait:.0f} s: {self.not_rebooted}")
        return time.monotonic() - t0

    not_rebooted: list[str] = []

    def wait_active(self, timeout: float) -> dict[str, list[str]]:
        """What is still not running (inactive()) once everything is, or after `timeout` s; a host that refuses SSH
        (still booting after a power cut or a reboot) counts as not running yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                bad = self.inactive()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                bad = {"ssh": [str(e)[:120]]}
            if not bad or time.monotonic() > deadline:
                return bad
            time.sleep(2)

    # ---------------------------------------------------------------------------------------------- patroni
    def members(self, dbs: list[str]) -> list[dict]:
        """`patronictl list` as JSON, asked on the first of `dbs` that answers; each replica with its `Replication`
        as the leader's pg_stat_replication shows it (`streaming sync`; Patroni 3.0.2 says only `running`)."""
        for host in dbs:
            out = ssh(MACHINES[host], f"{PATRONICTL} list -f json", check=False, timeout=30)
            if out.returncode == 0:
                members = json.loads(out.stdout)
                break
        else:
            return []
        leaders = [m["Member"] for m in members if m["Role"] == "Leader"]
        if len(leaders) == 1:
            query = "SELECT application_name, state, sync_state FROM pg_stat_replication"
            rows = ssh(MACHINES[leaders[0]], f"cd / && runuser -u postgres -- psql -h {PatroniPaths().socket_dir} "
                       f"-XAtc {shlex.quote(query)}", check=False).stdout
            streams = {name: f"{state} {sync}" for name, state, sync in
                       (line.split("|") for line in rows.splitlines() if line.count("|") == 2)}
            for m in members:
                if m["Role"] != "Leader":
                    m["Replication"] = streams.get(m["Member"], "not streaming")
        return members

    @staticmethod
    def describe(members: list[dict]) -> list[str]:
        return [f"{m['Member']} {m['Role']} {m['State']} {m.get('Replication', '')}".strip() for m in members]

    @staticmethod
    def cluster_ok(members: list[dict], size: int) -> bool:
        """One running leader, every other member running and streaming from it, one of them synchronously."""
        roles = sorted(m["Role"] for m in members)
        return (len(members) == size and roles.count("Leader") == 1 and all(m["State"] == "running" for m in members)
                and all(m.get("Replication", "").startswith("streaming") for m in members if m["Role"] != "Leader")
                and "Sync Standby" in roles and any(m.get("Replication") == "streaming sync" for m in members))

    def wait_cluster(self, dbs: list[str], timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            members = self.members(dbs)
            if self.cluster_ok(members, len(dbs)) or time.monotonic() > deadline:
                return members
            time.sleep(2)

    def harbor_dsn(self, cfg: ClusterConfig, node: str) -> str:
        """The libpq connection string of Harbor's external_database, read from the node's harbor.yml; its
        password goes to the node's ~/.pgpass (never on a command line)."""
        db = yaml.safe_load(ssh(MACHINES[node], f"cat {cfg.harbor.install_dir}/harbor.yml").stdout)[
            "external_database"]["harbor"]
        ssh(MACHINES[node], "umask 077; cat > /root/.pgpass",
            input=f"{db['host']}:{db['port']}:{db['db_name']}:{db['username']}:{db['password']}\n")
        # The cluster CA the node ships for Harbor's containers (storage_service.ca_bundle), as pgx checks it.
        return (f"host={db['host']} port={db['port']} dbname={db['db_name']} user={db['username']} "
                f"sslmode={db['ssl_mode']} sslrootcert={CLUSTER_CA_PATH} connect_timeout=2")

    def vip_query(self, node: str, dsn: str, sql: str) -> subprocess.CompletedProcess:
        return ssh(MACHINES[node], f"psql {shlex.quote(dsn)} -XAtc {shlex.quote(sql)}", check=False, timeout=30)

    def flows(self, cfg: ClusterConfig, shape: Shape) -> dict:
        """Every host to every other one (and to the database VIP) on the ports of patroni mode, probed for real and
        compared with components/firewall's host_openings: admitted (open or refused) exactly where it opens."""
        assert cfg.patroni and cfg.backup
        p = cfg.patroni
        ports = {"etcd-client": p.etcd_client_port, "etcd-peer": p.etcd_peer_port, "patroni-api": p.rest_api_port,
                 "postgres": cfg.postgres.port, "pgbackrest": cfg.backup.tls_port}
        hosts = {h.name: h for h in cfg.hosts}
        mismatches, counts = [], {"open": 0, "refused": 0, "timeout": 0}
        for src in shape.hosts:
            targets = [(dst, service, port) for dst in shape.hosts if dst != src for service, port in ports.items()]
            targets.append(("db-vip", "postgres", cfg.postgres.port))
            addresses = [[p.vip if dst == "db-vip" else hosts[dst].address, port] for dst, _s, port in targets]
            got = json.loads(ssh(MACHINES[src], f"python3 -c {shlex.quote(PROBE)} "
                                 f"{shlex.quote(json.dumps(addresses))}", timeout=60).stdout)
            for (dst, service, port), result in zip(targets, got, strict=True):
                counts[result] += 1
                # The VIP: as any member other than the source opens it (a member reaches its own over loopback).
                openings = host_openings(cfg, hosts[dst]) if dst != "db-vip" else [
                    o for m in cfg.postgres_hosts if m.name != src for o in host_openings(cfg, m)
                    if o.service == "postgres"][:1]
                expected = any(o.port == port and o.proto == "tcp" and
                               (o.sources is None or f"{hosts[src].address}/32" in o.sources) for o in openings)
                # Admitted flows must also reach their service: every port of this list has a listener.
                if (result == "open") != expected:
                    mismatches.append(f"{src}->{dst}:{port} ({service}): {result}, expected "
                                      f"{'open' if expected else 'dropped'}")
        return {"probes": sum(counts.values()), **counts, "mismatches": mismatches}

    def failover(self, shape: Shape, dsn: str) -> dict:
        """Power cut of the leader's host (its whole cgroup killed): seconds until a new leader, until the database
        VIP answers on it (as Harbor's user, from a node), and until the old host rejoins as a streaming replica
        once it is booted again. Printed, not asserted."""
        dbs, node = shape.roles["postgres"], shape.roles["harborNodes"][0]
        members = self.members(dbs)
        old = next(m for m in members if m["Role"] == "Leader")
        old_host = old["Member"]
        survivors = [d for d in dbs if d != old_host]
        ssh(MACHINES[node], "cat > /tmp/hostlab-vip-wait.sh", input=VIP_WAIT)
        t_kill = time.time()
        debhosts("kill", MACHINES[old_host])
        waiter = subprocess.Popen(["ssh", "-F", str(ROOT / "ssh_config"), MACHINES[node], "bash",
                                   # The host's own address: patronictl's Host column is the VIP for every
                                   # member (postgresql.connect_address, components/patroni).
                                   "/tmp/hostlab-vip-wait.sh", address(MACHINES[old_host]), shlex.quote(dsn)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        new_leader, t_leader = None, None
        deadline = time.monotonic() + 180
        while new_leader is None and time.monotonic() < deadline:
            leaders = [m["Member"] for m in self.members(survivors)
                       if m["Role"] == "Leader" and m["State"] == "running"]
            if leaders and leaders[0] != old_host:
                new_leader, t_leader = leaders[0], time.time()
            else:
                time.sleep(0.5)
        out, _err = waiter.communicate(timeout=240)
        vip_at = float(out.split()[0]) if waiter.returncode == 0 and out.strip() else None
        t_boot = time.time()
        self.power_on()
        rejoined = self.wait_cluster(dbs, 300)
        back = next((m for m in rejoined if m["Member"] == old_host), {})
        result = {"old_leader": old_host, "new_leader": new_leader,
                  "new_leader_s": round(t_leader - t_kill, 1) if t_leader else None,
                  "vip_answers_s": round(vip_at - t_kill, 1) if vip_at else None,
                  "vip_answered_by": out.split(None, 1)[1].strip() if vip_at else None,
                  "rejoined_s": round(time.time() - t_boot, 1) if self.cluster_ok(rejoined, len(dbs)) else None,
                  "old_leader_now": self.describe([back])[0] if back else None,
                  "members_after": self.describe(rejoined)}
        log(f"failover (power cut of {old_host}): {result}")
        return result

    def patroni_checks(self, shape: Shape, values: dict[str, Any]) -> dict:
        """The database cluster on real hosts: members, the VIP as Harbor's user, pgBackRest, the firewall."""
        cfg = parse_cluster_config(values)
        dbs, node = shape.roles["postgres"], shape.roles["harborNodes"][0]
        members = self.wait_cluster(dbs, 120)
        strict = yaml.safe_load(ssh(MACHINES[dbs[0]], f"{PATRONICTL} show-config").stdout) or {}
        dsn = self.harbor_dsn(cfg, node)
        answer = self.vip_query(node, dsn, "select current_user || ' ' || current_database() || ' ' || "
                                "pg_is_in_recovery()::text")
        repo = MACHINES[shape.roles["backup"]]
        t0 = time.monotonic()
        check = ssh(repo, f"{PGBACKREST} check", check=False, timeout=300)
        t1 = time.monotonic()
        backup = ssh(repo, f"{PGBACKREST} --type=full backup", check=False, timeout=900)
        t2 = time.monotonic()
        info = ssh(repo, f"{PGBACKREST} info --output=json", check=False).stdout
        backups = json.loads(info)[0].get("backup", []) if info.strip().startswith("[") else []
        result = {
            "members": self.describe(members),
            "cluster_ok": self.cluster_ok(members, len(dbs)),
            "synchronous_mode_strict": bool(strict.get("synchronous_mode") and strict.get("synchronous_mode_strict")),
            "vip_answer": answer.stdout.strip() or answer.stderr.strip()[-300:],
            "vip_ok": answer.returncode == 0 and answer.stdout.split() == [cfg.postgres.user, cfg.postgres.database,
                                                                           "false"],
            "pgbackrest_check_ok": check.returncode == 0, "pgbackrest_check_s": round(t1 - t0, 1),
            "full_backup_ok": backup.returncode == 0 and any(b.get("type") == "full" for b in backups),
            "full_backup_s": round(t2 - t1, 1),
            "pgbackrest_errors": (check.stderr + backup.stderr)[-600:],
            "flows": self.flows(cfg, shape),
        }
        log(f"patroni checks: {result}")
        return {**result, "dsn": dsn}

    # ------------------------------------------------------------------------------------------ real Harbor
    def node_health(self, node: str) -> dict:
        """A node's /api/v2.0/health over the TLS port the LB proxies to, checked against the cluster CA."""
        out = ssh(MACHINES[node], f"curl -fsS --max-time 10 --cacert {CLUSTER_CA_PATH} --resolve "
                  f"{NODE_TLS_NAME}:{self.https_port}:127.0.0.1 "
                  f"https://{NODE_TLS_NAME}:{self.https_port}/api/v2.0/health", check=False)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {"status": "no answer", "error": (out.stderr or out.stdout)[-300:]}

    @staticmethod
    def all_healthy(health: dict) -> bool:
        components = health.get("components") or []
        return health.get("status") == "healthy" and bool(components) and all(
            c.get("status") == "healthy" for c in components)

    def docker_client(self, machine: str, node_address: str) -> None:
        """A Docker client on `machine` trusting the VIP's certificate (HOSTNAME) and the nodes' (the cluster CA, for
        NODE_TLS_NAME, the one name the node certificate carries), NODE_TLS_NAME resolving to `node_address`."""
        hosts = f"{self.vip} {HOSTNAME}\n{node_address} {NODE_TLS_NAME}\n"
        ssh(machine, f"grep -v -e ' {HOSTNAME}$' -e ' {NODE_TLS_NAME}$' /etc/hosts > /etc/hosts.lab; "
            "cat >> /etc/hosts.lab && cat /etc/hosts.lab > /etc/hosts && rm /etc/hosts.lab", input=hosts)
        ssh(machine, f"mkdir -p /etc/docker/certs.d/{HOSTNAME} && cat > /etc/docker/certs.d/{HOSTNAME}/ca.crt",
            input=self.ca)
        node = f"{NODE_TLS_NAME}:{self.https_port}"
        ssh(machine, f"mkdir -p /etc/docker/certs.d/{node} && cp {CLUSTER_CA_PATH} /etc/docker/certs.d/{node}/ca.crt")

    def login(self, machine: str, registry: str, user: str, password: str) -> None:
        ssh(machine, f"docker login -u {shlex.quote(user)} --password-stdin {registry}", input=password)

    def push(self, machine: str, ref: str) -> str:
        """An image made here (one file, new content each run) pushed as `ref`; the digest the registry gave."""
        ssh(machine, "set -e; d=$(mktemp -d); date +%s.%N > $d/made-by-host-lab; "
            f"tar -C $d -c . | docker import - {ref} >/dev/null; rm -rf $d")
        out = ssh(machine, f"docker push {ref}", timeout=600).stdout
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
        if not match:
            raise RuntimeError(f"docker push {ref}: no digest in {out[-300:]}")
        return match.group(1)

    def pulled_digest(self, machine: str, ref: str) -> str:
        # Docker 20.10 hung for minutes on pulls here (the registry had served every blob; twice in a row once, on a
        # loaded machine): each attempt is bounded, and there are three.
        ssh(machine, f"docker rmi -f {ref} >/dev/null 2>&1 || true; for i in 1 2 3; do "
            f"timeout 120 docker pull -q {ref} && exit 0; done; exit 1", timeout=420)
        repo_digest = ssh(machine, f"docker image inspect -f '{{{{index .RepoDigests 0}}}}' {ref}").stdout.strip()
        return repo_digest.rsplit("@", 1)[-1]

    def api(self, machine: str, method: str, url: str, user: str, password: str, *, body: Optional[dict] = None,
            cacert: Optional[str] = None, resolve: Optional[str] = None) -> tuple[int, str]:
        """One request to Harbor's API from `machine`; the credentials and the body (which may carry a secret, e.g. a
        registry endpoint's) go through curl's config on stdin, never its command line."""
        config = f'user = "{user}:{password}"\n'
        if body is not None:
            # json.dumps of the JSON text: a double-quoted string with the escapes curl's config reads (\" and \\)
            config += f'header = "Content-Type: application/json"\ndata-binary = {json.dumps(json.dumps(body))}\n'
        out = ssh(machine, f"curl -sS --max-time 30 -K - -X {method} --cacert {cacert or '/tmp/hostlab-ca.pem'}"
                  + (f" --resolve {resolve}" if resolve else "") +
                  f" -o /tmp/hostlab-api.out -w '%{{http_code}}' {shlex.quote(url)}; echo; "
                  "cat /tmp/hostlab-api.out", input=config, check=False)
        code, _, text = out.stdout.partition("\n")
        return int(code or 0), text

    def harbor_checks(self, shape: Shape, *, extended: bool = True) -> dict:
        """What a user does first with real Harbor: every node healthy; docker login, push through the VIP over TLS
        and pull from another host; push through one node alone, pull through the other (shared storage and keys);
        a registry token issued by one node accepted by the other; a robot account pulls. `extended`: then the API
        provider's objects and contract, the stack's migration section and the admin password's rotation."""
        nodes = shape.roles["harborNodes"]
        first, second = MACHINES[nodes[0]], MACHINES[nodes[1]]
        # Each client reaches "its" node by the name of the node certificate: node1 from the first, node2 from the
        # second (docker_client).
        direct = f"{NODE_TLS_NAME}:{self.https_port}"
        health = {n: self.node_health(n) for n in nodes}
        result: dict[str, Any] = {
            "version": f"v{REAL_VERSION}", "built_from_source": True, "portal": "placeholder",
            "installer_build_s": self.installer_build_s,
            "nodes_healthy": sum(1 for h in health.values() if self.all_healthy(h)),
            "health": {n: {c["name"]: c["status"] for c in h.get("components", [])} or h for n, h in health.items()}}
        password = self.admin_password
        for machine in (first, second):
            self.docker_client(machine, address(machine))
            ssh(machine, "cat > /tmp/hostlab-ca.pem", input=self.ca)
        try:
            t0 = time.monotonic()
            for machine in (first, second):
                self.login(machine, HOSTNAME, "admin", password)
            pushed = self.push(first, f"{HOSTNAME}/library/hostlab-probe:vip")
            pulled = self.pulled_digest(second, f"{HOSTNAME}/library/hostlab-probe:vip")
            result["push_pull_via_vip"] = {"ok": True, "digest_equal": pushed == pulled, "digest": pushed,
                                           "seconds": round(time.monotonic() - t0, 1)}
        except RuntimeError as e:
            result["push_pull_via_vip"] = {"ok": False, "digest_equal": False, "error": str(e)[-500:]}
        try:
            self.login(first, direct, "admin", password)
            self.login(second, direct, "admin", password)
            pushed = self.push(first, f"{direct}/library/hostlab-probe:node")
            pulled = self.pulled_digest(second, f"{direct}/library/hostlab-probe:node")
            result["push_pull_per_node"] = {"ok": True, "digest_equal": pushed == pulled}
        except RuntimeError as e:
            result["push_pull_per_node"] = {"ok": False, "digest_equal": False, "error": str(e)[-500:]}
        result["cross_node_token"] = self.cross_node_token(first, address(first), address(second), password)
        result["robot_pull"] = self.robot_pull(second, password)
        result["extended"] = extended
        if not extended:
            log(f"real Harbor: {result}")
            return result
        # The provider runs where `pulumi up` runs (this machine) and reaches Harbor through the VIP over TLS.
        conn = {"harbor_url": f"https://{self.vip}", "harbor_username": "admin", "harbor_password": password,
                "harbor_ca_certificate": self.ca}
        result["api_objects"] = harbor_api_check.roundtrip(conn)
        result["contract"] = harbor_api_check.contract(conn)
        result["migration"] = self.migration_check(conn, MACHINES[shape.roles["postgres"]])
        if self.trivy:
            result["trivy"] = self.trivy_check(first, password, result["health"], nodes)
        result["admin_rotation"] = self.admin_rotation(first, second)
        log(f"real Harbor: {result}")
        return result

    def admin_rotation(self, first: str, second: str) -> dict:
        """harborAdminPassword set on the running cluster (harbor_api_check.rotate_admin through the VIP, from this
        machine as `pulumi up` would), then what uses the admin or its objects: docker login with the new password
        and not the old one, the robot made before pulling again, the provider's objects made with the new one."""
        new = f"Rotated{int(time.time())}Pw"
        url = f"https://{self.vip}"
        result = harbor_api_check.rotate_admin(url, self.ca, self.admin_password, new)
        old, self.rotated_admin_password = self.admin_password, new
        for name, password in (("docker_login_new", new), ("docker_login_old", old)):
            try:
                self.login(first, HOSTNAME, "admin", password)
                result[name] = "logged in"
            except RuntimeError as e:
                result[name] = str(e)[-200:]
        result["robot_pull_after"] = bool(self.robot) and self.pull_as(second, *self.robot)
        result["api_objects_after"] = harbor_api_check.roundtrip({
            "harbor_url": url, "harbor_username": "admin", "harbor_password": new, "harbor_ca_certificate": self.ca})
        log(f"admin rotation: {result}")
        return result

    def trivy_check(self, machine: str, password: str, health: dict[str, dict], nodes: list[str]) -> dict:
        """Harbor's Trivy adapter: healthy in every node's /api/v2.0/health, registered by core as the default
        scanner, its metadata answered through Harbor (the adapter runs `trivy version`), and a scan of the probe
        image accepted and followed to its end, twice: with no vulnerability database (none can be downloaded here;
        Trivy, told to skip the update, refuses: its message is in the figures), then with the empty stand-in
        database (labs/harbor/trivy_db_standin.py) on every node, with which Trivy pulls and analyses the image and
        finds nothing, there being no advisory to find."""
        api = f"https://{HOSTNAME}/api/v2.0"
        result: dict[str, Any] = {"healthy_nodes": sum(1 for h in health.values() if h.get("trivy") == "healthy")}
        code, text = self.api(machine, "GET", f"{api}/scanners", "admin", password)
        scanners = json.loads(text) if code == 200 else []
        trivy = next((s for s in scanners if s.get("name") == "Trivy"), None)
        result.update(registered=trivy is not None, default=bool(trivy and trivy.get("is_default")),
                      url=trivy and trivy.get("url"))
        if trivy:
            code, text = self.api(machine, "GET", f"{api}/scanners/{trivy['uuid']}/metadata", "admin", password)
            meta = json.loads(text) if code == 200 else {}
            result.update(metadata_ok=code == 200 and meta.get("scanner", {}).get("name") == "Trivy",
                          scanner=meta.get("scanner"))
        result["without_db"] = self.scan(machine, password)
        db_dir = f"{TRIVY_LOCAL_DIR}/trivy/db"
        for node in nodes:
            for name, content in (("trivy.db", trivy_db_standin.empty_db()),
                                  ("metadata.json", trivy_db_standin.metadata(datetime.now(UTC)).encode())):
                # base64: ssh() sends text; the database is binary.
                ssh(MACHINES[node], f"install -d -o 10000 -g 10000 {db_dir} && base64 -d > {db_dir}/{name}.new && "
                    f"chown 10000:10000 {db_dir}/{name}.new && mv {db_dir}/{name}.new {db_dir}/{name}",
                    input=base64.b64encode(content).decode())
        result["standin_db"] = self.scan(machine, password)
        log(f"trivy: {result}")
        return result

    def scan(self, machine: str, password: str) -> dict:
        """POST .../scan of the probe image, then its scan overview until the scan ends: the request's status code,
        the scan's, its vulnerability count and the last lines of the scan job's log."""
        artifact = f"https://{HOSTNAME}/api/v2.0/projects/library/repositories/hostlab-probe/artifacts/vip"
        code, text = self.api(machine, "POST", f"{artifact}/scan", "admin", password)
        if code != 202:
            return {"request": code, "error": text[:300]}
        t0, overview = time.monotonic(), {}
        # The scan job waits its turn in the jobservice's queue, then the adapter's; Trivy reads the image: minutes
        # on a loaded machine.
        while time.monotonic() - t0 < 600:
            code, text = self.api(machine, "GET", f"{artifact}?with_scan_overview=true", "admin", password)
            overview = next(iter((json.loads(text).get("scan_overview") or {}).values()), {}) if code == 200 else {}
            if overview.get("scan_status") in ("Success", "Error", "Stopped"):
                break
            time.sleep(5)
        result = {"request": 202, "status": overview.get("scan_status", "no overview after 600 s"),
                  "seconds": round(time.monotonic() - t0, 1),
                  "vulnerabilities": (overview.get("summary") or {}).get("total")}
        if overview.get("report_id"):
            code, text = self.api(machine, "GET", f"{artifact}/scan/{overview['report_id']}/log", "admin", password)
            result["log_tail"] = text.strip().splitlines()[-3:] if code == 200 else [f"{code} {text[:200]}"]
            # What Trivy says without a database, wherever the job log has it (error lines are long).
            result["log_says_first_run"] = "cannot be specified on the first run" in text
        return result

    robot: Optional[tuple[str, str]] = None  #: the robot robot_pull made (name, secret)
    rotated_admin_password = ""  #: the admin's password after admin_rotation (the stacks' adminPassword before)

    def cross_node_token(self, machine: str, issuer: str, other: str, password: str) -> bool:
        """A pull token from the token service of the node at `issuer` opens a manifest on the node at `other`."""
        scope = "repository:library/hostlab-probe:pull"
        node = f"{NODE_TLS_NAME}:{self.https_port}"
        code, text = self.api(machine, "GET", f"https://{node}/service/token?service=harbor-registry&scope={scope}",
                              "admin", password, cacert=CLUSTER_CA_PATH,
                              resolve=f"{node}:{issuer}")
        if code != 200:
            log(f"token from {issuer}: {code} {text[:200]}")
            return False
        token = json.loads(text)["token"]
        out = ssh(machine, f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {CLUSTER_CA_PATH} -K - "
                  f"--resolve {node}:{other} -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "
                  f"https://{node}/v2/library/hostlab-probe/manifests/vip",
                  input=f'header = "Authorization: Bearer {token}"\n', check=False)
        log(f"token of {issuer} on {other}: {out.stdout}")
        return out.stdout.strip() == "200"

    def robot_pull(self, machine: str, password: str) -> bool:
        """A system robot with pull on `library` (created through the VIP's API) logs in and pulls."""
        body = {"name": f"hostlab-{int(time.time())}", "duration": -1, "level": "system", "permissions": [
            {"kind": "project", "namespace": "library", "access": [{"resource": "repository", "action": "pull"}]}]}
        code, text = self.api(machine, "POST", f"https://{HOSTNAME}/api/v2.0/robots", "admin", password, body=body)
        if code != 201:
            log(f"robot creation: {code} {text[:300]}")
            return False
        robot = json.loads(text)
        self.robot = (robot["name"], robot["secret"])
        return self.pull_as(machine, *self.robot)

    def pull_as(self, machine: str, user: str, password: str) -> bool:
        """docker login as `user` on `machine` and a pull of the probe image through the VIP."""
        try:
            ssh(machine, f"docker logout {HOSTNAME} >/dev/null")
            self.login(machine, HOSTNAME, user, password)
            self.pulled_digest(machine, f"{HOSTNAME}/library/hostlab-probe:vip")
            return True
        except RuntimeError as e:
            log(f"pull as {user}: {e}")
            return False
    def old_registry(self, machine: str) -> str:
        """An old registry to migrate from: Debian's docker-registry (CNCF distribution 2.8) on `machine`, on its
        own filesystem storage with deletes enabled (a deleted tag is part of the scenario), its port opened to the
        lab net. Returns its URL."""
        config = {"version": 0.1, "log": {"level": "info"},
                  "storage": {"filesystem": {"rootdirectory": "/var/lib/docker-registry"}, "delete": {"enabled": True}},
                  "http": {"addr": f":{REGISTRY_PORT}"}}
        ssh(machine, "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq docker-registry >/dev/null || "
                     "{ apt-get update -qq && apt-get install -y -qq docker-registry >/dev/null; }", timeout=600)
        serve_docker_registry(machine, config)
        return f"http://{address(machine)}:{REGISTRY_PORT}"

    @staticmethod
    def fill_old_registry(url: str) -> dict[str, str]:
        """Several repositories and tags, each image with layers of its own, a multi-arch index, a second tag on one
        image, and a tag deleted before the migration. Returns the deleted tag's reference and digest."""
        with RegistryClient(url) as client:
            for repository, tag in (("team/app", "v1"), ("team/app", "v2"), ("tools/cli", "1.0")):
                push_image(client, repository, tag, [layer("etc/os-release", f"{repository}:{tag} base".encode()),
                                                     layer(f"app/{tag}", f"{repository}:{tag} app".encode())])
            # The same content again: a second tag of the same manifest.
            push_image(client, "tools/cli", "latest", [layer("etc/os-release", b"tools/cli:1.0 base"),
                                                       layer("app/1.0", b"tools/cli:1.0 app")])
            push_multi_arch(client, "team/multi", "v1", b"multi-arch base ")
            gone = push_image(client, "team/app", "v0", [layer("app/v0", b"team/app:v0, deleted before migrating")])
            client.request("DELETE", f"/v2/team/app/manifests/{gone.digest}", repository_scope("team/app", "*"),
                           ok=(202,))
        return {"team/app:v0": gone.digest}

    def verify_migration(self, source: str, project: str, password: str) -> dict:
        """scripts/verify_migration.py from where an operator runs it (this machine), source against Harbor
        through the VIP; its JSON report (exit 0: all equal, 1: differences)."""
        return self.run_verify_migration(["--source", source, "--target", f"https://{self.vip}", "--target-ca-file",
                                          self.vip_ca_file(), "--target-project", project],
                                         {"TARGET_USERNAME": "admin", "TARGET_PASSWORD": password})

    def vip_ca_file(self) -> str:
        """The lab's CA (Harbor's certificate through the VIP) as a file here, for the registry scripts."""
        ca = self.work / "vip-ca.pem"
        ca.write_text(self.ca)
        return str(ca)

    def run_verify_migration(self, args: list[str], env: dict[str, str]) -> dict:
        """scripts/verify_migration.py run here on `args`; its JSON report (exit 0: all equal, 1: differences)."""
        out = self.work / "verify-migration.json"
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" / "verify_migration.py"), *args,
             "--json", str(out)], env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"verify_migration.py: exit {done.returncode}: {done.stderr[-800:]}")
        return json.loads(out.read_text())

    def migration_check(self, conn: dict[str, Any], machine: str) -> dict:
        """The stack's `migration` section against real Harbor: an old registry on `machine` pulled into a project
        by Harbor's jobservice (the provider starts the execution and waits for it, as `pulumi up` does), then
        verify_migration.py compares every tag's digest; then a tag changed on the source must show as a
        difference."""
        t0 = time.monotonic()
        try:
            source = self.old_registry(machine)
            deleted = self.fill_old_registry(source)
            execution = harbor_api_check.migrate(conn, {
                "sourceUrl": source, "targetProject": "legacy", "runNow": True, "runKey": "host-lab",
                "timeoutSeconds": 900})
            first = self.verify_migration(source, "legacy", conn["harbor_password"])
            with RegistryClient(source) as client:
                push_image(client, "team/app", "v1", [layer("app/v1", b"team/app:v1 changed after the migration")])
            second = self.verify_migration(source, "legacy", conn["harbor_password"])
        except (RuntimeError, HarborError, RegistryError, OSError) as e:
            return {"ok": False, "error": str(e)[-800:], "seconds": round(time.monotonic() - t0, 1)}
        totals, after = first["totals"], second["totals"]
        return {"ok": first["ok"], "tags": totals["source_tags"], "verified_equal": totals["matching"],
                "differences_found": after["mismatched"] + after["missing"],
                "differences_before_change": totals["mismatched"] + totals["missing"],
                # The tag deleted on the source before the migration must not be in Harbor.
                "deleted_tag_absent": totals["extra"] == 0, "deleted": deleted, "execution": execution,
                "mismatched_after_change": [m["tag"] for r in second["repositories"] for m in r["mismatched"]],
                "seconds": round(time.monotonic() - t0, 1)}

    # ------------------------------------------------------------------------------------------------- s3
    @staticmethod
    def built_garage() -> str:
        """The Garage binary labs/objstore/build_garage.sh built (cached by version), copied into the folder every lab
        host shares (/srv/nfs-standin/dist/garage in each); returns its sha256."""
        built = subprocess.run(["bash", str(BUILD_GARAGE)], capture_output=True, text=True, timeout=7200)
        if built.returncode != 0:
            raise RuntimeError(f"build_garage.sh: {built.stderr[-1500:]}")
        binary, sha256 = built.stdout.split()
        dist = NFS_STANDIN / "dist"
        dist.mkdir(parents=True, exist_ok=True)
        shutil.copy(binary, dist / "garage")
        return sha256

    def serve_garage(self) -> None:
        """The Garage binary built here, served over HTTP by dist1 from the folder every lab host shares: the
        storage.garage.url of the s3 shape."""
        self.garage_sha256 = self.built_garage()
        m = MACHINES["dist1"]
        ssh(m, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal "
               ">/dev/null", timeout=600)
        ssh(m, "systemctl is-active --quiet hostlab-dist || systemd-run --quiet --unit hostlab-dist "
               f"--property=WorkingDirectory=/srv/nfs-standin/dist python3 -m http.server {DIST_PORT} "
               f"--bind {address(m)}")
        probe = (f"import urllib.request; urllib.request.urlopen('http://{address(m)}:{DIST_PORT}/garage', "
                 "timeout=5).read(1)")
        ssh(m, f"for i in $(seq 1 30); do python3 -c {shlex.quote(probe)} 2>/dev/null && exit 0; sleep 1; done; "
               "exit 1")
        log(f"garage binary served by dist1 (sha256 {self.garage_sha256[:12]}...)")
        # Harbor's registry binary, for start_registry, in the folder every lab host shares.
        shutil.copy(build_installer.registry_binary(), NFS_STANDIN / "dist" / "registry")

    def start_registry(self, cfg: ClusterConfig, node: str) -> list[str]:
        """The registry stand-in on a node, on the S3 settings of the node's own harbor.yml, its endpoint name
        resolved as harbor-node.sh wrote it for Harbor's registry containers (compose extra_hosts), the cluster CA
        trusted; its port opened to the lab hosts. Returns the addresses the name resolves to, in order."""
        m = MACHINES[node]
        harbor_yml = yaml.safe_load(ssh(m, f"cat {cfg.harbor.install_dir}/harbor.yml").stdout)
        storage = harbor_yml["storage_service"]
        compose = ssh(m, f"grep ' # harbor-ha s3$' {cfg.harbor.install_dir}/docker-compose.yml", check=False).stdout
        entries = list(dict.fromkeys(re.findall(r'"([^":]+):([0-9.]+)"', compose)))
        config = {"version": 0.1, "log": {"level": "info", "fields": {"service": "registry"}},
                  "storage": {"s3": storage["s3"], "redirect": storage["redirect"], "delete": {"enabled": True},
                              "cache": {"blobdescriptor": "inmemory"},
                              "maintenance": {"uploadpurging": {"enabled": False}}},
                  # One secret for every registry behind one LB, as Harbor's template writes one.
                  "http": {"addr": f":{REGISTRY_PORT}", "secret": "hostlab-registry-secret"}}
        # The registry's own hosts file, as compose's extra_hosts gives Harbor's registry container one: the host's
        # /etc/hosts is rewritten by debhosts.sh whenever a lab host boots (the power cut's return).
        ssh(m, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null; "
               "install -d -m 0755 /etc/hostlab-registry && cat > /etc/hostlab-registry/hosts",
            input="127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in entries), timeout=600)
        ssh(m, f"install -m 0644 {CLUSTER_CA_PATH} /usr/local/share/ca-certificates/harbor-ha-cluster-ca.crt && "
               "update-ca-certificates >/dev/null 2>&1")
        ssh(m, f"install -m 0755 /srv/nfs-standin/dist/registry {REGISTRY_BIN}")
        serve_registry(m, REGISTRY_UNIT, "S3", config)
        return [a for _n, a in entries]

    def garage_health(self, machine: str) -> dict:
        """GetClusterHealth of Garage's admin API on an object-store host."""
        return self.garage_admin(machine, "GetClusterHealth")

    def garage_admin(self, machine: str, endpoint: str) -> dict:
        """GET /v2/ENDPOINT of Garage's admin API on an object-store host (its token read there from its file)."""
        out = ssh(machine, "curl -fsS --max-time 5 -H @<(printf 'Authorization: Bearer %s\\n' "
                           f"\"$(cat /etc/garage/admin_token)\") http://127.0.0.1:3903/v2/{endpoint}",
                  check=False)
        return json.loads(out.stdout) if out.returncode == 0 else {"status": f"no answer: {out.stderr[-200:]}"}

    # The workload of the s3 checks: scripts/drills/ha_client.py (the drills' client) on the client host, over HTTP to
    # each node's registry (their own port), round i pushing through one node and pulling through the next; every
    # operation tried once: a failure is counted, not retried away.
    registries: list[str] = []  #: the nodes' registry addresses (s3_checks)
    STOP = "/tmp/hostlab-registry.stop"

    def registry_loop(self, machine: str, seconds: float) -> subprocess.Popen:
        ssh(machine, f"rm -f {self.STOP}")
        first, *others = self.registries
        args = ["workload", first, *[f"--also={h}" for h in others], "--plain-http", f"--port={REGISTRY_PORT}",
                "--repo=drill/app", "--count=100000", f"--duration={seconds}", f"--layer-size={4 << 20}",
                "--attempts=1", "--retry-delay=0", "--no-verify", f"--stop-file={self.STOP}"]
        return subprocess.Popen(["ssh", "-F", str(ROOT / "ssh_config"), machine, "python3", "/tmp/ha_client.py",
                                 *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    @staticmethod
    def loop_result(proc: subprocess.Popen, timeout: float) -> dict:
        """The workload's JSON, with its failed operations counted and the failures' first lines."""
        out, err = proc.communicate(timeout=timeout)
        if not out.strip():
            return {"ops": [], "pushed": {}, "failed_ops": -1, "max_push_gap_ms": None, "error": err[-300:]}
        loop = json.loads(out)
        loop["failed_ops"] = loop["pushes_failed"] + loop["pulls_failed"]
        loop["failures"] = [{"op": o["op"], "host": o.get("host"), "start": o["start"], "errors": o["errors"]}
                            for o in loop["ops"] if not o["ok"]][:5]
        return loop

    def registry_check(self, machine: str, images: dict[str, str], repo: str = "drill/app") -> dict:
        """Every image pulled through every node's registry with its digests compared (two tries each, 1 s apart:
        one slow answer on a loaded machine is not a lost image); lost or corrupted through any is counted."""
        ssh(machine, "cat > /tmp/hostlab-images.json", input=json.dumps(images))
        return json.loads(ssh(machine, f"python3 /tmp/ha_client.py verify {shlex.join(self.registries)} --plain-http "
                                       f"--port={REGISTRY_PORT} --repo={repo} --pushed=/tmp/hostlab-images.json "
                                       "--attempts=2 --retry-delay=1", timeout=900).stdout)

    def nfs_to_s3(self, cfg: ClusterConfig, node: str, client: str) -> dict:
        """The move from NFS to S3 (docs/object-storage.md): Harbor's registry binary on `node` on filesystem storage
        in the NFS stand-in folder (what the NFS export holds as data_volume/registry) takes pushes, then goes
        read-only (the registry's maintenance.readonly, as Harbor's read-only mode) and serves a pull loop from
        `client` while scripts/storage_to_s3.py, run twice on `node` as an operator would, copies its storage into
        the bucket through the node's S3 proxy with the S3 settings of the node's harbor.yml. Then
        scripts/verify_migration.py compares every tag of the old registry with each node's S3 registry, and every
        image is pulled through every S3 registry with its digests checked. The old storage is kept."""
        m, t0 = MACHINES[node], time.monotonic()
        old = {"version": 0.1, "log": {"level": "info"}, "http": {"addr": f":{NFS_REGISTRY_PORT}"},
               "storage": {"filesystem": {"rootdirectory": NFS_REGISTRY_STORAGE}, "delete": {"enabled": True}}}
        ssh(m, f"rm -rf {NFS_REGISTRY_STORAGE} && mkdir -p {NFS_REGISTRY_STORAGE}")
        serve_registry(m, NFS_REGISTRY_UNIT, "filesystem", old, NFS_REGISTRY_PORT)
        port = f"--plain-http --port={NFS_REGISTRY_PORT}"
        filled = json.loads(ssh(client, f"python3 /tmp/ha_client.py workload {address(m)} {port} --repo=drill/nfs "
                                        "--count=8 --duration=300 --layer-size=1048576 --attempts=3 --retry-delay=2",
                                timeout=900).stdout)
        images = filled["pushed"]
        old["storage"]["maintenance"] = {"readonly": {"enabled": True}}
        serve_registry(m, NFS_REGISTRY_UNIT, "filesystem", old, NFS_REGISTRY_PORT)
        refused = ssh(client, f"python3 /tmp/ha_client.py push {address(m)} {port} --repo=drill/nfs --tag=late",
                      check=False, timeout=300).returncode != 0

        # Pulls go on from the read-only registry while the copy runs (each verify pulls every image once).
        stop = "/tmp/hostlab-nfs-pulls.stop"
        ssh(client, f"rm -f {stop}; cat > /tmp/hostlab-nfs-images.json", input=json.dumps(images))
        pulls = subprocess.Popen(["ssh", "-F", str(ROOT / "ssh_config"), client,
                                  f"while [ ! -e {stop} ]; do python3 /tmp/ha_client.py verify {address(m)} {port} "
                                  "--repo=drill/nfs --pushed=/tmp/hostlab-nfs-images.json --attempts=1; done"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        s3 = yaml.safe_load(ssh(m, f"cat {cfg.harbor.install_dir}/harbor.yml").stdout)["storage_service"]["s3"]
        ssh(m, "dpkg -s python3-boto3 >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
               "python3-boto3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install "
               "-y -qq python3-boto3 >/dev/null; }; cat > /tmp/storage_to_s3.py",
            input=(Path(__file__).resolve().parents[2] / "scripts" / "storage_to_s3.py").read_text(), timeout=900)
        # The S3 name resolves as for Harbor's registry (the node's registry hosts file); the key comes on stdin.
        copy_cmd = ("read -r AWS_ACCESS_KEY_ID; read -r AWS_SECRET_ACCESS_KEY; export AWS_ACCESS_KEY_ID "
                    "AWS_SECRET_ACCESS_KEY; exec unshare -m sh -c 'mount --bind /etc/hostlab-registry/hosts /etc/hosts "
                    f"&& exec python3 /tmp/storage_to_s3.py --source {NFS_REGISTRY_STORAGE} "
                    f"--endpoint {s3['regionendpoint']} --bucket {s3['bucket']} --region {s3['region']} "
                    f"--root-directory \"{s3.get('rootdirectory', '')}\" --ca-file {CLUSTER_CA_PATH}'")
        keys = f"{s3['accesskey']}\n{s3['secretkey']}\n"
        copies = [ssh(m, copy_cmd, input=keys, check=False, timeout=1800) for _ in range(2)]
        ssh(client, f"touch {stop}")
        out, _err = pulls.communicate(timeout=600)
        rounds = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        first, second = (json.loads(c.stdout) if c.stdout.strip().startswith("{") else {"ok": False,
                         "failure": c.stderr[-500:]} for c in copies)
        verified = [self.run_verify_migration(["--source", f"http://{address(m)}:{NFS_REGISTRY_PORT}",
                                               "--target", f"http://{r}:{REGISTRY_PORT}"], {})
                    for r in self.registries] if first.get("ok") else []
        ssh(m, f"systemctl stop {NFS_REGISTRY_UNIT}")  # the old storage stays, as the NFS data does until removed
        pulled = self.registry_check(client, images, "drill/nfs")
        tags = min((v["totals"]["source_tags"] for v in verified), default=0)
        equal = min((v["totals"]["matching"] for v in verified), default=0)
        result = {"tags": tags, "verified_equal": equal, "images": len(images),
                  # Pulls from the read-only registry during the copy that failed (one registry per round: each
                  # image pulled once), then images unreadable or corrupted through any S3 registry.
                  "failed_pulls": sum(r["pulls"] - r["images_ok"] for r in rounds)
                  + pulled["images_lost"] + pulled["images_corrupted"],
                  "pulls_during_copy": sum(r["pulls"] for r in rounds), "push_refused_read_only": refused,
                  "copy": {k: first.get(k) for k in ("ok", "files", "blobs", "copied", "present", "conflict",
                                                     "corrupt_source", "unequal", "error", "bytes_copied", "seconds",
                                                     "failure")} | {"problems": first.get("problems", [])[:5]},
                  "second_copy": {k: second.get(k) for k in ("ok", "copied", "present", "verified_equal")},
                  "pulled_through_every_s3_registry": pulled, "seconds": round(time.monotonic() - t0, 1)}
        result["ok"] = bool(images and first.get("ok") and second.get("ok") and second.get("copied") == 0
                            and refused and tags == len(images) and equal == tags and result["failed_pulls"] == 0
                            and rounds)
        log(f"s3 move from NFS: {result}")
        return result

    def store_outage(self, kind: str, host: str, witness: str) -> dict:
        """`host` loses its power (kind "cut": every process killed at once) or freezes (kind "freeze": every process
        SIGSTOPped, its kernel still accepting connections) for STORE_FAULT_S; then it boots or thaws, and Garage's
        health on it is awaited (STORE_HEALTHY_TIMEOUT_S). Returns the fault's epoch (`t_fault`), Garage's health on
        `witness` at the end of the fault, and the seconds from the fault (`healthy_s`) and from the boot or thaw
        (`healthy_again_s`) to Garage healthy on `host` (None when it was not within the wait). Both storage tiers'
        faults (store_fault here, s3_harbor.store_fault under real Harbor)."""
        if kind not in STORE_FAULTS:
            raise ValueError(f"object-store fault {kind!r}: one of {sorted(STORE_FAULTS)}")
        m = MACHINES[host]
        t_fault = time.time()
        debhosts("kill" if kind == "cut" else "freeze", m)
        time.sleep(STORE_FAULT_S)
        during = self.garage_health(MACHINES[witness])
        t_back = time.time()
        if kind == "cut":
            self.power_on()
        else:
            debhosts("thaw", m)
        back = self.garage_health(m)
        deadline = time.monotonic() + STORE_HEALTHY_TIMEOUT_S
        while back.get("status") != "healthy" and time.monotonic() < deadline:
            time.sleep(2)
            back = self.garage_health(m)
        healthy, now = back.get("status") == "healthy", time.time()
        if not healthy:
            log(f"s3 {kind} of {host}: Garage not healthy on it {STORE_HEALTHY_TIMEOUT_S:.0f} s after its return: "
                f"{back}")
        return {"t_fault": t_fault, "health_during": during.get("status"),
                "healthy_s": round(now - t_fault, 1) if healthy else None,
                "healthy_again_s": round(now - t_back, 1) if healthy else None}

    def store_fault(self, kind: str, host: str, witness: str, client: str, images: dict[str, str]) -> dict:
        """A push/pull loop through the nodes' registries; 20 s in, `host` is cut off or frozen (store_outage). Every
        image pushed so far (`images`, extended with the loop's) is read back through every registry once Garage is
        healthy again: images_lost counts those unreadable then, with no grace period. Failed operations and the
        longest gap between two successful ones are counted."""
        proc = self.registry_loop(client, 420)  # ended by the stop file
        time.sleep(20)
        outage = self.store_outage(kind, host, witness)
        # The loop runs on through the return: what a host coming back costs is counted too.
        time.sleep(15)
        ssh(client, f"touch {self.STOP}")
        loop = self.loop_result(proc, 300)
        after = [o for o in loop["ops"] if o["start"] >= outage["t_fault"]]
        images.update(loop["pushed"])
        checked = self.registry_check(client, images)
        result = {"host": host, "failed_ops": loop["failed_ops"], "ops": len(loop["ops"]),
                  "ops_after_fault": len(after), "failed_after_fault": sum(not o["ok"] for o in after),
                  "max_gap_ms": loop["max_push_gap_ms"], "images_lost": checked["images_lost"],
                  "images_corrupted": checked["images_corrupted"], "images": checked["images"],
                  "unreadable": checked["failed"][:6],
                  "failures": loop.get("failures", []), "health_during": outage["health_during"],
                  "healthy_again_s": outage["healthy_again_s"]}
        log(f"s3 {kind} of {host}: {result}")
        return result

    def replace_dead_store(self, shape: Shape, values: dict[str, Any], dead: str, new: str) -> dict:
        """A dead object-store host replaced through the program: `dead` loses its power for good; its resources leave
        the stack's state as `pulumi state delete` takes them out (their delete commands cannot reach a dead host:
        docs/object-storage.md); a `pulumi up` of the stack (`values`: its storage section as it is) with `new` in
        its place in roles.objectStore starts Garage there, and the cluster step takes the dead node out of the layout
        and puts the new one in (Garage copies the partitions to it). The dead machine stays off (power_on boots it
        again, outside the stack). Both storage tiers' replacement (replace_store here, s3_harbor's under real
        Harbor); `t_fault` and `healthy_s` as store_outage's (Garage's health read once, after the apply)."""
        t_fault = time.time()
        debhosts("kill", MACHINES[dead])
        gone = [r.name for r in self.replay.state if r.name.endswith(f"-{dead}") or f"-{dead}-" in r.name]
        self.replay.state = [r for r in self.replay.state if r.name not in gone]
        stores = [new if h == dead else h for h in shape.roles["objectStore"]]
        after = Shape(shape.name, [new if h == dead else h for h in shape.hosts],
                      {**shape.roles, "objectStore": stores}, shape.extra, shape.parallel)
        result = self.up({**self.values(after), "storage": values["storage"]})
        health = self.garage_health(MACHINES[stores[0]]).get("status")
        healthy_s = round(time.time() - t_fault, 1) if health == "healthy" else None
        layout = self.garage_admin(MACHINES[stores[0]], "GetClusterLayout")
        zones = sorted(r["zone"] for r in layout.get("roles", []))
        return {"cluster_ok": result.ok and health == "healthy" and zones == sorted(stores), "dead": dead, "new": new,
                "apply_ok": result.ok, "apply_s": round(result.seconds, 1), "state_deleted": gone,
                "layout_zones": zones, "health": health,
                # What the cluster step said: the layout applied, what it waited for, the dead node skipped.
                "cluster_step": [line for r in result.ran for line in r.lines if "object-store-cluster]" in line],
                "t_fault": t_fault, "healthy_s": healthy_s}

    def replace_store(self, shape: Shape, values: dict[str, Any], dead: str, new: str, client: str,
                      images: dict[str, str]) -> dict:
        """replace_dead_store while a push/pull loop runs; then every image is read back through every registry and
        the dead machine boots again, outside the stack (the lab's reboot and delete checks use it)."""
        proc = self.registry_loop(client, 1800)  # ended by the stop file
        time.sleep(10)
        step = self.replace_dead_store(shape, values, dead, new)
        ssh(client, f"touch {self.STOP}")
        loop = self.loop_result(proc, 600)
        images.update(loop["pushed"])
        checked = self.registry_check(client, images)
        self.power_on()
        ok = (step["cluster_ok"] and checked["images_lost"] == 0 and checked["images_corrupted"] == 0
              and checked["images"] > 0)
        replaced = {"ok": ok, **{k: v for k, v in step.items() if k not in ("cluster_ok", "t_fault", "healthy_s")},
                    "failed_ops": loop["failed_ops"], "ops": len(loop["ops"]), "max_gap_ms": loop["max_push_gap_ms"],
                    "images_lost": checked["images_lost"], "images_corrupted": checked["images_corrupted"],
                    "images": checked["images"], "unreadable": checked["failed"][:6],
                    "failures": loop.get("failures", [])}
        log(f"s3 replacement of {dead} by {new}: {replaced}")
        return replaced

    def s3_checks(self, shape: Shape, values: dict[str, Any]) -> dict:
        """Harbor's images on Garage: pushes and pulls across the nodes' registries with digest checks, then an
        object-store host's power cut and another's freeze, each during a push/pull loop."""
        cfg = parse_cluster_config(values)
        nodes, stores = shape.roles["harborNodes"], shape.roles["objectStore"]
        resolved = {n: self.start_registry(cfg, n) for n in nodes}
        self.registries = [address(MACHINES[n]) for n in nodes]
        client = MACHINES["data1"]
        # python3, not python3-minimal: the client needs tarfile and gzip from the full standard library.
        ssh(client, "dpkg -s python3 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                    "apt-get install -y -qq python3 >/dev/null; }; cat > /tmp/ha_client.py",
            input=drills.CLIENT_PY.read_text(), timeout=600)
        health = self.garage_health(MACHINES[stores[1]])
        steady = self.loop_result(self.registry_loop(client, 20), 300)
        images = dict(steady["pushed"])
        checked = self.registry_check(client, images)
        equal = checked["images_lost"] == 0 and checked["images_corrupted"] == 0 and bool(images)
        push_pull = {"ok": steady["failed_ops"] == 0 and equal, "digest_equal": equal, "images": len(images),
                     "ops": len(steady["ops"]), "failed_ops": steady["failed_ops"],
                     "failures": steady.get("failures", [])}
        log(f"s3 push/pull: {push_pull}")
        moved = self.nfs_to_s3(cfg, nodes[0], client)

        faults = {STORE_FAULTS[kind]: self.store_fault(kind, host, witness, client, images)
                  for kind, host, witness in store_fault_plan(stores)}
        replaced = self.replace_store(shape, values, stores[2], REPLACING_STORE, client, images)
        return {"backend": "garage", "nodes": len(stores), "replication": cfg.storage.garage.replication_factor
                if cfg.storage.garage else None, "health": health.get("status"), "push_pull": push_pull,
                **faults, "node_replaced": replaced["ok"],
                "node_replacement": replaced, "nfs_to_s3": moved, "endpoint_resolves_to": resolved,
                "registry": "Harbor's registry binary (goharbor/distribution release-2.8, built from source) "
                            "on each node, a stand-in for Harbor's registry container"}

    # ----------------------------------------------------------------------------------------------- client
    def start_client(self, machine: str, interval: float = 0.1, *, url: Optional[str] = None,
                     ca: Optional[str] = None, hosts: Optional[str] = None) -> subprocess.Popen:
        """The client on a lab host: GET `url` (https://VIP/api/v2.0/health) every `interval` s until stopped,
        trusting `ca` (the lab's CA); `hosts`: the client's own /etc/hosts, bind-mounted in a mount namespace of its
        own (debhosts.sh rewrites the host's file whenever a lab host boots)."""
        ssh(machine, "rm -f /tmp/hostlab-client.stop; cat > /tmp/hostlab-ca.pem", input=ca or self.ca)
        ssh(machine, "cat > /tmp/hostlab-client.py", input=CLIENT)
        command = ["python3", "/tmp/hostlab-client.py", url or f"https://{self.vip}/api/v2.0/health",
                   "/tmp/hostlab-client.stop", str(interval), "/tmp/hostlab-ca.pem"]
        if hosts is not None:
            ssh(machine, "cat > /tmp/hostlab-client.hosts", input=hosts)
            command = ["unshare", "-m", "sh", "-c", shlex.quote(
                f"mount --bind /tmp/hostlab-client.hosts /etc/hosts && exec {shlex.join(command)}")]
        return subprocess.Popen(["ssh", "-F", str(ROOT / "ssh_config"), machine, *command],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def vip_holder(self, lbs: list[str]) -> list[str]:
        return [h for h in lbs if f" {self.vip}/" in ssh(MACHINES[h], "ip -o -4 addr show").stdout]

    def sole_vip_holder(self, lbs: list[str]) -> str:
        """The one LB holding the VIP; RuntimeError when none or both do (a drill has nothing to strike)."""
        held = self.vip_holder(lbs)
        if len(held) != 1:
            raise RuntimeError(f"the VIP is on {held or 'no host'}")
        return held[0]

    @staticmethod
    def kill_nginx(lb: str) -> float:
        """SIGKILL of every nginx process on the LB host `lb` (the host's clock: epoch of the kill). systemd's
        Restart= (components/loadbalancer drop-in) brings the LB's back; on a host that is a Harbor node too, Docker
        restarts the nginx of Harbor's proxy and portal containers, which die with it."""
        return float(ssh(MACHINES[lb], "date +%s.%N; pkill -KILL -x nginx").stdout.split()[0])

    def nginx_death(self, shape: Shape, client_host: str) -> dict:
        """SIGKILL of every nginx process on the VIP holder while the client requests every 50 ms: systemd's
        Restart= (components/loadbalancer drop-in) brings it back; keepalived's 1 s check may move the VIP first."""
        lbs = shape.roles["loadBalancers"]
        try:
            holder = self.sole_vip_holder(lbs)
        except RuntimeError as e:
            return {"failed": None, "total": 0, "recovered_ms": None, "error": str(e)}
        proc = self.start_client(client_host, interval=0.05)
        time.sleep(2)
        t_fault = self.kill_nginx(holder)
        time.sleep(8)
        stats = self.finish_client(client_host, proc)
        after = self.vip_holder(lbs)
        window = [r for r in stats["requests"] if r["start"] >= t_fault - 2][:200]
        result = {"failed": sum(1 for r in window if not r["ok"]), "total": len(window),
                  "recovered_ms": drills.recovered_ms(window, t_fault), "vip_moved": after != [holder],
                  "nginx_after": self.unit_state(MACHINES[holder], ["nginx"])["nginx"][0]}
        log(f"nginx death on {holder}: {result}; failures {stats.get('failures')}")
        return result

    def day2(self, name: str, client_host: str, values: dict, *, limit: Optional[int], settle: float = 3.0,
             steps: Optional[list[dict]] = None, rotated: frozenset[str] = frozenset()) -> dict:
        """Run one day-2 change (one or more `pulumi up`s) while the client requests through the VIP."""
        proc = self.start_client(client_host)
        time.sleep(settle)
        teardowns, deleted, ok, seconds = 0, [], True, 0.0
        for v in (steps or [values]):
            result = self.up(v, rotated=rotated)
            teardowns += len(result.teardowns)
            deleted += result.deleted
            ok = ok and result.ok
            seconds += result.seconds
        time.sleep(settle)
        stats = self.finish_client(client_host, proc)
        bad = self.wait_active(30)
        passed = ok and teardowns == 0 and not bad and (limit is None or stats["failed"] <= limit)
        log(f"day-2 {name}: ok={passed} teardowns={teardowns} failed {stats['failed']}/{stats['total']} "
            f"in {seconds:.1f} s" + (f"; inactive: {bad}" if bad else "") +
            (f"; failures {stats.get('failures')}" if stats["failed"] else ""))
        return {"ok": passed, "teardowns": teardowns, "failed_requests": stats["failed"],
                "total_requests": stats["total"], "apply_seconds": round(seconds, 1), "deleted_roles": deleted}

    def finish_client(self, machine: str, proc: subprocess.Popen) -> dict:
        """The client of start_client stopped: its figures."""
        ssh(machine, "touch /tmp/hostlab-client.stop")
        out, err = proc.communicate(timeout=60)
        return json.loads(out) if out.strip() else {"total": 0, "failed": 1, "error": err[-300:]}


def verify_shape(lab: HostLab, shape: Shape, report: dict, *, day2: bool) -> None:
    t0 = time.monotonic()
    lab.replay.parallel = shape.parallel
    lab.prepare_standins(shape)
    values = lab.values(shape)
    first = lab.up(values)
    log(f"{shape.name}: first apply ok={first.ok} in {first.seconds:.1f} s ({len(first.ran)} steps)")
    if not first.ok:
        report["roles"][f"first apply ({shape.name})"] = {"applied": False, "second_apply_changed": -1,
                                                          "active_after_reboot": False}
        return
    applied: dict[str, bool] = {}
    for role, _host in lab.placements():
        applied[role] = first.ok
    bad = lab.wait_active(60) if first.ok else {"all": ["first apply failed"]}
    log(f"{shape.name}: inactive after apply: {bad or 'none'}")
    moved: Optional[dict] = None
    if "objectStore" in shape.roles and storage_mode(shape) == "nfs":
        # The move's first stage: the move to S3 itself, then everything below on S3.
        from labs.hosts import s3_harbor  # it builds on this module
        moved, values = s3_harbor.move(lab, shape, values)

    before = lab.snapshot()
    # What the engine runs: nothing changed, so nothing runs (under the engine, `pulumi preview
    # --expect-no-changes` first).
    second = report.setdefault("second_up", {})[shape.name] = lab.unchanged(values)
    forced = lab.up(values, force_apply=True)  # every role's apply command again
    after = lab.snapshot()
    changed: dict[str, int] = {}
    for line in forced.changed_files():
        role = line.split("]")[0].split()[-1]
        changed[role] = changed.get(role, 0) + 1
    for key, state in before.items():
        role = key.split("@")[0]
        if after.get(key) != state:
            log(f"{shape.name}: restarted by the second apply: {key}: {state} -> {after.get(key)}")
            changed["harbor-node" if role == "containers" else role] = changed.get(role, 0) + 1
    # "Changed nothing" proves something only if every role's apply ran again.
    reapplied = sum(1 for r in forced.ran if r.name.endswith("-apply") and r.rc == 0)
    if reapplied < len(lab.placements()):
        log(f"{shape.name}: the forced re-apply ran {reapplied} of {len(lab.placements())} role applies")
        changed = {role: -1 for role, _host in lab.placements()}
    log(f"{shape.name}: second apply ({lab.applied_by}): {second}; forced re-apply of "
        f"{len(forced.ran)} roles changed {changed or 'nothing'} in {forced.seconds:.1f} s")

    patroni = shape is PATRONI
    if patroni:
        report["patroni"] = lab.patroni_checks(shape, values)
    if lab.harbor == "real":
        report["harbor"] = lab.harbor_checks(shape, extended=shape.name not in (S3.name, S3_OWN.name))
    if shape.name == S3.name and lab.harbor == "real":
        from labs.hosts import s3_harbor  # it builds on this module
        report["storage"] = s3_harbor.checks(lab, shape, values, report["harbor"], moved)
    elif shape is S3_OWN:
        from labs.hosts import s3_harbor  # it builds on this module
        report["storage"] = s3_harbor.own_checks(lab, shape, values, report["harbor"])
    elif shape is S3:
        report["storage"] = lab.s3_checks(shape, values)
    if shape is EXTERNAL:
        report["external"] = lab.external_checks(values)
    day2_results: dict[str, dict] = {}
    client = shape.machines[0]
    if day2 and shape.name == "dev" and lab.harbor == "standin":
        day2_results["lb_setting"] = lab.day2("lb_setting", client, lab.values(shape, lb={"readTimeout": 901}),
                                              limit=0)
        day2_results["harbor_version_bump"] = lab.day2(
            "harbor_version_bump", client, lab.values(shape, version=VERSIONS[1], lb={"readTimeout": 901}), limit=1)
        current = dict(version=VERSIONS[1], lb={"readTimeout": 901})
        day2_results["added_node"] = lab.day2("added_node", client, lab.values(shape, extra_nodes=("node3",),
                                                                                **current), limit=0)
        day2_results["removed_node"] = lab.day2(
            "removed_node", client, {}, limit=1,
            steps=[lab.values(shape, retiring=("node3",), **current), lab.values(shape, **current)])
        day2_results["db_password_rotation"] = lab.day2(
            "db_password_rotation", client, lab.values(shape, **current), limit=1,
            rotated=frozenset({"harbor-secrets-db-password"}))
        values = lab.values(shape, **current)
    if not patroni:
        report.setdefault("ha", {})[f"nginx_death ({shape.name})"] = lab.nginx_death(shape, client)

    # Real Harbor's nodes stop a dozen containers on the way down; its containers start again after the boot and
    # core needs its database and Redis first.
    # 300 s with the stand-in: on a machine loaded by other labs a host took longer than 120 s to go down.
    # Every host of the stack as it is now: a dead object-store host's successor (s3d) in place of it.
    stack = [MACHINES[h] for h in lab.shape_hosts]
    reboot_s = lab.reboot(stack, wait=600 if lab.harbor == "real" else 300)
    bad_after_reboot = lab.wait_active(600 if lab.harbor == "real" else 120)
    for role, host in lab.placements():
        if MACHINES[host] in lab.not_rebooted:
            bad_after_reboot.setdefault(role, []).append(f"{host} did not reboot")
    nodes = shape.roles["harborNodes"]
    # With storage.mode s3 the data volume is the node's own disk: no mount for Docker to wait for.
    docker_order = {n: shape.name == S3.name or storage_mode(shape) == "s3" or lab.docker_after_mount(n)
                    for n in nodes}
    log(f"{shape.name}: reboot of {len(stack)} hosts: back in {reboot_s:.1f} s; inactive "
        f"{bad_after_reboot or 'none'}; docker after the data mount: {docker_order}")
    if "harbor" in report and "admin_rotation" in report["harbor"]:
        # core starts again with harbor.yml's initial password in its environment: the rotated one must stay.
        rotation = report["harbor"]["admin_rotation"]
        url = f"https://{lab.vip}"
        rotation["after_reboot"] = {
            "new_status": harbor_api_check.logs_in(url, lab.ca, lab.rotated_admin_password),
            "initial_status": harbor_api_check.logs_in(url, lab.ca, lab.admin_password)}
        log(f"{shape.name}: admin password after the reboot: {rotation['after_reboot']}")
    if patroni:
        dbs, dsn = shape.roles["postgres"], report["patroni"]["dsn"]
        members = lab.wait_cluster(dbs, 180)
        answer = lab.vip_query(shape.roles["harborNodes"][0], dsn, "select pg_is_in_recovery()::text")
        report["patroni"]["after_reboot"] = {"members": lab.describe(members),
                                             "cluster_ok": lab.cluster_ok(members, len(dbs)),
                                             "vip_ok": answer.stdout.strip() == "false"}
        log(f"{shape.name}: after the reboot: {report['patroni']['after_reboot']}")
        report["patroni"]["failover"] = lab.failover(shape, dsn)

    # Harbor's keys: on the node's own data volume when the shape starts on S3; on the NFS export (DATA's path) when
    # it was moved from NFS (the node kept the mount until its delete, which unmounts it).
    deleted = delete_all(lab, shape, {"harbor-node": f"{values['harbor'].get('dataVolume', '/data')}/secret/keys/"
                                                      "secretkey"} if storage_mode(shape) == "s3" else {})
    for role in applied:
        report["roles"][f"{role}" if shape.name == "dev" else f"{role} ({shape.name})"] = {
            "applied": applied[role], "second_apply_changed": changed.get(role, 0),
            "active_after_reboot": (role not in bad_after_reboot
                                    and (role != "harbor-node" or all(docker_order.values()))),
            "delete_stops_keeps_data": deleted.get(role, False)}
    for name, result in day2_results.items():
        report["day2"][name] = result
    report.setdefault("timings_s", {})[shape.name] = {"total": round(time.monotonic() - t0, 1),
                                                      "first_apply": round(first.seconds, 1),
                                                      "reboot": round(reboot_s, 1)}


def delete_all(lab: HostLab, shape: Shape, data: Optional[dict[str, str]] = None) -> dict[str, bool]:
    """`pulumi destroy` of the roles (every delete command, dependents first); role -> units stopped, data kept
    (at DATA's path, or `data`'s for the shape)."""
    placements = lab.placements()
    return deleted_roles(lab, shape, placements, lab.delete_roles(), data)


def deleted_roles(lab: HostLab, shape: Shape, placements: list[tuple[str, str]], ran_ok: bool,
                  data: Optional[dict[str, str]] = None) -> dict[str, bool]:
    """After a delete of every role: role -> its units stopped (or its UNDONE check true) and its data kept (at
    DATA's path, or `data`'s for the shape)."""
    ok: dict[str, bool] = {}
    for role, host in placements:
        states = lab.unit_state(MACHINES[host], UNITS[role])
        if role in UNDONE:
            stopped = ssh(MACHINES[host], UNDONE[role], check=False).returncode == 0
        else:
            stopped = all(s != "active" for s, _ in states.values())
        kept_at = (data or {}).get(role, DATA.get(role))
        kept = kept_at is None or ssh(MACHINES[host], f"test -e {shlex.quote(kept_at)}", check=False).returncode == 0
        ok[role] = ok.get(role, True) and ran_ok and stopped and kept
        if not (stopped and kept):
            log(f"{shape.name}: delete of {role}@{host}: stopped={stopped} data kept={kept} {states}")
    return ok


def unchanged_ok(result: dict) -> bool:
    """A shape's `second_up` figures: the second `up` ran and changed nothing (under the engine, `pulumi preview
    --expect-no-changes` passed first)."""
    return bool(result["second_up_ok"] and result["second_up_changes"] == 0 and result.get("preview_no_changes", True))


def patroni_ok(result: Optional[dict]) -> bool:
    """The patroni shape's checks passed (True without that shape); the failover's figures are not judged."""
    if result is None:
        return True
    failover = result.get("failover", {})
    return bool(result["cluster_ok"] and result["synchronous_mode_strict"] and result["vip_ok"]
                and result["pgbackrest_check_ok"] and result["full_backup_ok"] and not result["flows"]["mismatches"]
                and result.get("after_reboot", {}).get("cluster_ok") and result["after_reboot"]["vip_ok"]
                and failover.get("new_leader") and failover.get("vip_answers_s") is not None
                and failover.get("rejoined_s") is not None)


def harbor_ok(result: Optional[dict]) -> bool:
    """Real Harbor's checks passed (True with the stand-in)."""
    if result is None:
        return True
    first = bool(result["nodes_healthy"] == len(result["health"]) and result["push_pull_via_vip"]["digest_equal"]
                 and result["push_pull_per_node"]["digest_equal"] and result["cross_node_token"]
                 and result["robot_pull"])
    if not result.get("extended", True):
        return first
    return bool(first and result["api_objects"]["kinds"] == harbor_api_check.KINDS
                and result["api_objects"]["second_run_writes"] == 0
                and result["api_objects"]["details"]["unreachable registry"].get("create_refused") is True
                and result["migration"].get("tags", 0) > 0
                and result["migration"]["verified_equal"] == result["migration"]["tags"]
                and result["migration"]["differences_found"] == 1
                and not any(result["contract"].values())
                and (result["admin_rotation"].get("new_status"),
                     result["admin_rotation"].get("old_status")) == (200, 401)
                and trivy_ok(result.get("trivy"), len(result["health"])))


def trivy_ok(result: Optional[dict], nodes: int) -> bool:
    """Harbor's Trivy adapter healthy on every node, its default scanner, answering; a scan refused by Trivy without
    a database and one ending in success with the empty stand-in (True when the lab left Trivy out)."""
    if result is None:
        return True
    return bool(result["healthy_nodes"] == nodes and result["registered"] and result["default"]
                and result.get("metadata_ok") and result["without_db"]["request"] == 202
                and result["without_db"].get("status") == "Error" and result["standin_db"].get("status") == "Success")


def storage_ok(result: Optional[dict]) -> bool:
    """The s3 shape's storage checks passed (True without that shape): pushes and pulls with equal digests, no image
    lost to the power cut or the freeze, the host healthy again after each, a dead host replaced, the move from NFS
    moved every tag with no failed pull. Failed operations
    and the longest gap are figures."""
    if result is None:
        return True
    if "bucket" in result:  # real Harbor's (labs/hosts/s3_harbor.py)
        from labs.hosts import s3_harbor
        return s3_harbor.storage_ok(result)
    return bool(result["push_pull"]["ok"] and result["node_replaced"] and result["nfs_to_s3"]["ok"] and all(
        fault["images_lost"] == 0 and fault["images"] > 0 and fault["healthy_again_s"] is not None
        for fault in (result[key] for key in STORE_FAULTS.values())))


def print_table(report: dict) -> None:
    print(f"{'role':<24} {'applied':>8} {'2nd apply changed':>18} {'active after reboot':>20} {'delete ok':>10}")
    for role, r in report["roles"].items():
        print(f"{role:<24} {str(r['applied']):>8} {r['second_apply_changed']:>18} "
              f"{str(r['active_after_reboot']):>20} {str(r.get('delete_stops_keeps_data')):>10}")
    print(f"\n{'day-2 scenario':<24} {'ok':>6} {'teardowns':>10} {'failed':>8} {'total':>7} {'apply s':>8}")
    for name, r in report["day2"].items():
        print(f"{name:<24} {str(r['ok']):>6} {r['teardowns']:>10} {r['failed_requests']:>8} "
              f"{r['total_requests']:>7} {r['apply_seconds']:>8}")


#: The shapes the real engine applies (`verify --apply engine`, the default) with the stand-in Harbor, Harbor's
#: objects (harborApi) on the Harbor emulator as in labs/engine/engine_lab.py. The others stay on the replay
#: (docs/real-hosts.md, "What is a stand-in", says why).
ENGINE_SHAPES = ("dev", "prod", "patroni", "external")


def verify_by_engine(booted: HostLab, shape: Shape, report: dict, *, day2: bool) -> None:
    """verify_shape with `pulumi up` (and the delete: `pulumi destroy`) by the real engine, on a new stack in a file
    backend under a temporary folder, the hosts `booted` started."""
    from labs.engine import engine_lab  # builds on this module

    with tempfile.TemporaryDirectory(prefix="host-lab-engine-") as tmp:
        lab = engine_lab.engine_host_lab(Path(tmp), ROOT / "engine-lab", stack=f"hosts-{shape.name}")
        lab.booted = booted.booted
        try:
            lab.start()
            verify_shape(lab, shape, report, day2=day2)
        finally:
            lab.close()
    # The engine's generated keys stay on the shared volume after the delete (kept data, checked above); the next
    # shape's apply generates others and must not find them (components/host/lib.sh write_once). The folder itself
    # stays: the hosts bind-mount it.
    for entry in NFS_STANDIN.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def verify(json_path: Path, shapes: list[Shape], *, day2: bool = True, keep: bool = False,
           harbor: str = "standin", apply: str = "engine") -> dict:
    """Every shape of `shapes` on one set of hosts; with `apply` engine the shapes of ENGINE_SHAPES are applied by
    the real engine when Harbor is the stand-in, the others (and all with `apply` replay) by the replay."""
    t0 = time.monotonic()
    lab = HostLab(ROOT / "lab", harbor)
    lab.trivy = harbor == "real"
    standins = (["Harbor's portal (placeholder page)", "docker run --privileged (lab's docker wrapper)",
                 "Trivy's vulnerability database (none: not obtainable here)"]
                if harbor == "real" else ["Harbor installer"])
    by_engine = [s for s in shapes if apply == "engine" and harbor == "standin" and s.name in ENGINE_SHAPES]
    report: dict = {"roles": {}, "day2": {}, "apply": {s.name: "engine" if s in by_engine else "replay"
                                                       for s in shapes},
                    "standins": [*standins, "NFS (bind mount)"]}
    try:
        # node3 (h4) is the added node of the day-2 scenarios; prod-like needs h1..h9.
        # The day-2 scenarios of the stand-in add node3 (h4).
        lab.boot(max(4 if day2 and harbor == "standin" else 0, *(s.boots for s in shapes)))
        for shape in shapes:
            if shape in by_engine:
                verify_by_engine(lab, shape, report, day2=day2)
            else:
                verify_shape(lab, shape, report, day2=day2)
    finally:
        report.setdefault("timings_s", {})["total"] = round(time.monotonic() - t0, 1)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        if not keep:
            down()
    print_table(report)
    return report


SHAPES = {"dev": [DEV], "prod": [PROD], "both": [DEV, PROD], "patroni": [PATRONI], "external": [EXTERNAL],
          "all": [DEV, PROD, PATRONI, EXTERNAL], "s3": [S3]}
#: `--harbor real`'s shapes (dev's without --shape): s3 moved from NFS onto Garage, and an S3 of one's own
REAL_SHAPES = {"s3": [S3_HARBOR], "s3-own": [S3_OWN]}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="boot hosts, apply every role, check, day-2 scenarios, reboot, delete")
    v.add_argument("--json", type=Path, required=True)
    v.add_argument("--shape", choices=(*SHAPES, "s3-own"), default="both")
    v.add_argument("--no-day2", action="store_true", help="skip the day-2 scenarios")
    v.add_argument("--keep", action="store_true", help="leave the hosts running")
    v.add_argument("--harbor", choices=("standin", "real"), default="standin",
                   help="real: Harbor built from source (labs/harbor/build_installer.py) on the dev shape (the s3 "
                        "shape with --shape s3, an S3 of one's own with --shape s3-own: labs/hosts/s3_harbor.py), "
                        "without the day-2 scenarios; standin: the busybox stand-in installer (fast)")
    v.add_argument("--apply", choices=("engine", "replay"), default="engine",
                   help=f"engine: the {', '.join(ENGINE_SHAPES)} shapes (stand-in Harbor) applied by the real "
                        "Pulumi engine, built by labs/engine/build_toolchain.sh; the other shapes and real Harbor by "
                        "the replay; replay: every shape by labs/hosts/replay.py")
    o = sub.add_parser("observe", help="the monitoring role on the dev shape: quiet cluster, drills, their alerts")
    o.add_argument("--json", type=Path, required=True)
    o.add_argument("--shape", choices=("dev", "patroni"), default="dev",
                   help="patroni: the same hosts with PostgreSQL in patroni and Redis in sentinel mode, and their "
                        "drills (leader power cut, synchronous standby lost, sentinel quorum lost, Redis master kill)")
    o.add_argument("--quiet-minutes", type=float, default=10.0, help="minutes a healthy cluster must stay quiet")
    o.add_argument("--keep", action="store_true", help="leave the hosts running")
    o.add_argument("--no-acme", action="store_true",
                   help="leave out the acme figures (the acme lab without its alert, on its own hosts first: ~14 min)")
    d = sub.add_parser("drills", help="real Harbor on the dev shape under faults, with the drills' client (drills.py)")
    d.add_argument("--json", type=Path, required=True)
    d.add_argument("--harbor", choices=("real",), required=True, help="the drills run on real Harbor only")
    d.add_argument("--only", action="append", help="run only this drill (repeatable)")
    d.add_argument("--shape", choices=("sentinel", "patroni"), default="sentinel",
                   help="sentinel: dev's hosts with Redis in sentinel mode (every drill but the PostgreSQL leader's); "
                        "patroni: three PostgreSQL members (adds postgres_leader_power_cut)")
    d.add_argument("--keep", action="store_true", help="leave the hosts running")
    a = sub.add_parser("acme", help="tls.mode acme against pebble on the observe lab's shape, the expiry alert")
    a.add_argument("--json", type=Path, required=True)
    a.add_argument("--keep", action="store_true", help="leave the hosts running")
    a.add_argument("--no-alert", action="store_true", help="leave out the expiry alert (~12 min): renew at once")
    sub.add_parser("down", help="stop and remove the lab's hosts")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("must run as root (systemd-nspawn hosts, bridge, routes)")
    if args.cmd == "down":
        down()
        return 0
    if args.cmd == "observe":
        # Imported here: labs/hosts/observe.py builds on this module.
        from labs.hosts import observe
        result = observe.observe(args.json, quiet_minutes=args.quiet_minutes, keep=args.keep, shape=args.shape,
                                 with_acme=not args.no_acme)
        return 0 if observe.passed(result) else 1
    if args.cmd == "acme":
        # Imported here: labs/hosts/acme_hosts.py builds on this module.
        from labs.hosts import acme_hosts
        result = acme_hosts.run_acme(args.json, keep=args.keep, alert=not args.no_alert)
        return 0 if acme_hosts.passed(result, alert=not args.no_alert) else 1
    if args.cmd == "drills":
        # Imported here: labs/hosts/drills.py builds on this module.
        from labs.hosts import drills as harbor_drills
        result = harbor_drills.run_drills(args.json, keep=args.keep, only=args.only, shape=args.shape)
        return 0 if harbor_drills.passed(result) else 1
    if args.shape not in SHAPES and args.harbor != "real":
        parser.error(f"--shape {args.shape} needs --harbor real")
    shapes = REAL_SHAPES.get(args.shape, [DEV]) if args.harbor == "real" else SHAPES[args.shape]
    report = verify(args.json, shapes, day2=not args.no_day2, keep=args.keep, harbor=args.harbor,
                    apply=args.apply)
    good = (harbor_ok(report.get("harbor"))
            and all(r["applied"] and r["second_apply_changed"] == 0 and r["active_after_reboot"]
                and r.get("delete_stops_keeps_data") for r in report["roles"].values())
            and all(d["ok"] for d in report["day2"].values()) and patroni_ok(report.get("patroni"))
            and all(unchanged_ok(r) for r in report.get("second_up", {}).values())
            and storage_ok(report.get("storage")))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
