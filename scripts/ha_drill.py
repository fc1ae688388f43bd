#!/usr/bin/env python3
"""Run the HA lab's drills against a real cluster over SSH (destructive: it kills services; use a test window).

    scripts/ha_drill.py --stack prod --client ops@10.0.0.50 lb_crash [--json out.json]
    scripts/ha_drill.py --stack prod --client ops@10.0.0.50 --dry-run data_path

Host addresses, SSH users/ports, the VIP and the service settings come from the stack file (load_stack_file +
parse_cluster_config). The client host (any machine that reaches the VIP, with python3) runs
scripts/drills/ha_client.py, piped over SSH; the LB hosts run `ip monitor` so the VIP move is timed by the LB hosts'
clocks (keep them in NTP sync). Faults, as in the lab: lb_crash (SIGKILL keepalived + nginx on the VRRP master, its
VIP removed), nginx_death, keepalived_stop (systemctl stop), node_death (Harbor's proxy container `nginx` killed on
the first Harbor node), redis_master_death (the master named by the sentinels), data_path (push, kill a node,
pull). Every fault is undone afterwards (systemctl start / docker start). --dry-run prints every command and runs none.
Secrets (HARBOR_USER / HARBOR_PASSWORD from the environment here, the Redis password read from the Redis host)
travel on SSH standard input, never on a command line.

Credentials: give the drill a robot account limited to the drill project rather than Harbor's admin: create a
project robot on --project (e.g. `ha-drill`) with push and pull on repositories, then
`HARBOR_USER='robot$library+ha-drill' HARBOR_PASSWORD=<its secret>`. Without HARBOR_USER the user is `admin`.
TLS: the client verifies the LB's certificate for Harbor's hostname (`harbor-ha:harbor.hostname`) on the VIP's
HTTPS port (`harbor-ha:loadBalancer.httpsPort`), against its system CAs or the PEM of --ca-file (sent on SSH
standard input with the secrets); --insecure turns verification off, for a lab only.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional
from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: import the program, scripts and labs from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from components.config import ClusterConfig, ConfigError, Host, describe_problems  # noqa: E402
from components.config import load_stack_file, parse_cluster_config  # noqa: E402
from scripts import drills as ha_drills  # noqa: E402
from scripts.convention import (  # noqa: E402
    COULD_NOT_RUN, MET, NOT_MET, add_json_argument, add_stack_argument, stack_file, write_json)

# Harbor's docker-compose names its front proxy container "nginx"; killing it is a node that stops answering.
HARBOR_PROXY_CONTAINER = "nginx"
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
EXIT_STATUS = "exit status: 0 every target met (or --dry-run), 1 a target not met, 2 could not run"


class SshSite:
    """ha_drills.Site over SSH; with dry_run it prints each command instead of running it."""

    def __init__(self, cfg: ClusterConfig, client: str, dry_run: bool, ca_pem: Optional[str] = None,
                 insecure: bool = False):
        self.cfg = cfg
        self.vip = cfg.vip
        self.lb_hosts = (cfg.lb_hosts[0].name, cfg.lb_hosts[1].name)
        self.client_dest = client
        self.dry_run = dry_run
        self.ca_pem = ca_pem
        self.insecure = insecure

    def ssh_argv(self, host: Host | str, command: str, *, root: bool = True) -> list[str]:
        if isinstance(host, str):
            return ["ssh", *SSH_OPTIONS, host, command]
        if root and host.user != "root":
            command = f"sudo -n sh -c {shlex.quote(command)}"
        return ["ssh", *SSH_OPTIONS, "-p", str(host.port), f"{host.user}@{host.address}", command]

    def show(self, argv: Sequence[str], note: str = "") -> None:
        print(("# " + note + "\n" if note else "") + shlex.join(argv), flush=True)

    def run(self, host: Host, command: str, note: str = "", check: bool = True) -> str:
        argv = self.ssh_argv(host, command)
        if self.dry_run:
            self.show(argv, note)
            return ""
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and r.returncode:
            raise RuntimeError(f"{host.name}: {command}: exit {r.returncode}: {r.stderr.strip()[-1000:]}")
        return r.stdout

    def client_argv(self, args: Sequence[str]) -> list[str]:
        # The certificate is checked for Harbor's hostname (always in it) while connecting to the VIP.
        args = ha_drills.https_args(args, self.cfg.lb.https_port, self.cfg.harbor.hostname, self.insecure)
        return self.ssh_argv(self.client_dest, "python3 - " + shlex.join(args))

    def watch_argv(self, lb: str) -> list[str]:
        return self.ssh_argv(self.cfg.host(lb), "TZ=UTC exec ip -ts -o monitor address")

    # --- Site ----------------------------------------------------------------------------------------------
    def client(self, args: Sequence[str], env: Optional[dict] = None) -> subprocess.Popen:
        # The program arrives on stdin; a first line puts the secrets (and the CA to trust) into its environment.
        env = {**(env or {}), **({"HA_CA_PEM": self.ca_pem} if self.ca_pem else {})}
        prelude = f"import json as _j, os as _o; _o.environ.update(_j.loads({json.dumps(json.dumps(env))}))\n"
        argv = self.client_argv(args)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        proc.stdin.write(prelude + ha_drills.CLIENT_PY.read_text())
        proc.stdin.close()
        proc.stdin = None  # all sent: communicate() must not flush the closed pipe
        return proc

    def watch_addresses(self, lb: str) -> subprocess.Popen:
        return subprocess.Popen(self.watch_argv(lb), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    def vip_holders(self) -> list[str]:
        return [lb for lb in self.lb_hosts
                if f" {self.vip}/" in self.run(self.cfg.host(lb), "ip -o -4 addr show")]


def fault_command(cfg: ClusterConfig, scenario: str) -> str:
    """The shell command that strikes, printing the host's epoch first (the VIP move is timed from it)."""
    vip = f"{cfg.vip}/{cfg.prefix_length} dev {cfg.vrrp.interface}"
    return "date +%s.%N && " + {
        # Frozen first, as in the lab: killed one by one, keepalived's VRRP child outlives its parent by a moment
        # and shuts down gracefully (priority-0 advert), which a crashed host never does.
        "lb_crash": "systemctl kill --signal=SIGSTOP keepalived.service nginx.service && "
                    f"systemctl kill --signal=SIGKILL keepalived.service nginx.service && ip addr del {vip}",
        "nginx_death": "systemctl kill --signal=SIGKILL nginx.service",
        "keepalived_stop": "systemctl stop keepalived.service",
        "node_death": f"docker kill {HARBOR_PROXY_CONTAINER} >/dev/null",
        "redis_master_death": "systemctl kill --signal=SIGKILL redis-server.service",
    }[scenario]


def heal_command(scenario: str) -> str:
    return {
        "lb_crash": "systemctl start nginx.service keepalived.service",
        "nginx_death": "systemctl start nginx.service",
        "keepalived_stop": "systemctl start keepalived.service",
        "node_death": f"docker start {HARBOR_PROXY_CONTAINER} >/dev/null",
        "redis_master_death": "systemctl start redis-server.service",
    }[scenario]


def drill(site: SshSite, scenario: str, project: str) -> dict:
    cfg = site.cfg
    probe_repo, image_repo = f"{project}/ha-drill-probe", f"{project}/ha-drill-busybox"
    harbor_env = {"HARBOR_USER": os.environ.get("HARBOR_USER") or "admin",
                  "HARBOR_PASSWORD": os.environ.get("HARBOR_PASSWORD", "")}
    dry = site.dry_run

    def strike(host: Host) -> float:
        out = site.run(host, fault_command(cfg, scenario), f"fault on {host.name}")
        return time.time() if dry else float(out.split()[0])

    if scenario in ha_drills.LB_SCENARIOS:
        target = cfg.harbor_nodes[0] if scenario == "node_death" else cfg.lb_hosts[0]
        if dry:
            site.show(site.client_argv(["blob", cfg.vip, "--repo", probe_repo]),
                      "client (scripts/drills/ha_client.py on stdin): push the probe blob")
            site.show(site.watch_argv(site.lb_hosts[1]), "watch the VIP arrive on the backup")
            site.show(site.client_argv(["stream", cfg.vip, "--count", str(ha_drills.STREAM_COUNT), "--period",
                                        str(ha_drills.STREAM_PERIOD), "--timeout", str(ha_drills.STREAM_TIMEOUT),
                                        "--repo", probe_repo, "--blob", "<digest of the probe>"]),
                      f"client: the request stream; {ha_drills.FAULT_AFTER} s in:")
            strike(target)
            site.run(target, heal_command(scenario), "undo the fault")
            return {}
        probe = ha_drills.run_client(site, ["blob", cfg.vip, "--repo", probe_repo], harbor_env)
        try:
            r = ha_drills.stream_drill(site, lambda: strike(target), probe["digest"],
                                       expect_move=scenario != "node_death", repo=probe_repo, env=harbor_env)
        finally:
            site.run(target, heal_command(scenario), "undo the fault")
        return {"scenario": scenario, **r.summary(), "max_ms": r.max_ms, "failures": r.failures}

    if scenario == "redis_master_death":
        from components.redis import RedisPaths  # imports pulumi: only when this drill runs

        sentinel = cfg.sentinel_hosts[0]
        answer = site.run(sentinel, f"redis-cli -p {cfg.redis.sentinel_port} --raw SENTINEL "
                                    f"get-master-addr-by-name {cfg.redis.master_set}", "who is the master")
        addr = answer.split()[0] if answer else cfg.redis_hosts[0].address
        master = next((h for h in cfg.redis_hosts if h.address == addr), cfg.redis_hosts[0])
        password = site.run(master, f"sed -n 's/^requirepass //p' {RedisPaths().conf}", "read the Redis password")
        sentinels = [f"{h.address}:{cfg.redis.sentinel_port}" for h in cfg.sentinel_hosts]
        duration = cfg.redis.down_after_ms / 1000 + 30
        if dry:
            site.show(site.client_argv(["redis", *sentinels, "--master-set", cfg.redis.master_set, "--duration",
                                        str(duration)]), "client: follow the sentinels (REDIS_PASSWORD on stdin)")
            strike(master)
            site.run(master, heal_command(scenario), "undo the fault")
            return {}
        try:
            return {"scenario": scenario, **ha_drills.redis_drill(
                site, sentinels, cfg.redis.master_set, f"{master.address}:{cfg.redis.port}", password.strip(),
                lambda: strike(master), duration=duration)}
        finally:
            site.run(master, heal_command(scenario), "undo the fault")

    if scenario == "data_path":
        def kill(node: str) -> None:
            site.run(cfg.host(node), fault_command(cfg, "node_death"), f"kill Harbor on {node}")

        def heal(node: str) -> None:
            site.run(cfg.host(node), heal_command("node_death"), f"bring {node} back")
            if not dry:
                time.sleep(5)  # Harbor's proxy reconnects to its upstream containers

        if dry:
            site.show(site.client_argv(["push", cfg.vip, "--repo", image_repo, "--tag", ha_drills.IMAGE_TAG]),
                      "client: push through the VIP")
            for node in cfg.harbor_nodes:
                kill(node.name)
                site.show(site.client_argv(["pull", cfg.vip, "--repo", image_repo, "--tag", ha_drills.IMAGE_TAG]),
                          "client: pull through the VIP")
                heal(node.name)
            return {}
        return {"scenario": scenario, **ha_drills.data_path_drill(
            site, [h.name for h in cfg.harbor_nodes], kill, heal, harbor_env, repo=image_repo)}
    raise SystemExit(f"unknown scenario {scenario!r}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EXIT_STATUS)
    add_stack_argument(p)
    p.add_argument("--client", required=True, help="[user@]host of the client machine (reaches the VIP, has python3)")
    p.add_argument("--project", default="library", help="Harbor project the drill pushes to (default: library)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--ca-file", type=Path,
                     help="PEM of the CA that signed the LB's certificate (a self-signed one: "
                          "`pulumi stack output caCertificate > ca.pem`); default: the client's system CAs")
    tls.add_argument("--insecure", action="store_true",
                     help="do not verify the LB's certificate (a lab only: the Harbor credentials then go to "
                          "whoever answers on the VIP)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    add_json_argument(p)
    p.add_argument("scenario", choices=ha_drills.SCENARIOS)
    a = p.parse_args(argv)
    path = stack_file(a.stack)
    try:
        values, secrets_present = load_stack_file(str(path))
        cfg = parse_cluster_config(values, secrets_present=secrets_present)
    except OSError as e:
        print(f"{path}: {e.strerror}", file=sys.stderr)
        return COULD_NOT_RUN
    except ConfigError as e:
        print("\n".join(describe_problems(str(path), e.problems)), file=sys.stderr)
        return COULD_NOT_RUN
    if a.scenario == "redis_master_death" and not cfg.sentinel_hosts:
        print(f"{path.name}: redis_master_death needs harbor-ha:redis.mode sentinel; this stack runs one standalone "
              "Redis, so there is no replica to fail over to", file=sys.stderr)
        return COULD_NOT_RUN
    if a.scenario != "redis_master_death" and not a.dry_run and not os.environ.get("HARBOR_PASSWORD"):
        p.error("set HARBOR_USER and HARBOR_PASSWORD in the environment (a robot account with push and pull on "
                "--project, or admin): the drill pushes and pulls")
    site = SshSite(cfg, a.client, a.dry_run, a.ca_file.read_text() if a.ca_file else None, a.insecure)
    try:
        result = drill(site, a.scenario, a.project)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        print(f"ha_drill {a.scenario}: could not run: {e}", file=sys.stderr)
        return COULD_NOT_RUN
    if a.dry_run:
        return MET
    unmet = ha_drills.unmet_targets(a.scenario, result, cfg.redis.down_after_ms)
    result = {**result, "targets_met": not unmet, "unmet_targets": unmet}
    if a.json == "-":
        write_json("-", result)
    else:
        print(json.dumps(result, indent=2))
        write_json(a.json, result)
    for line in unmet:
        print(f"target not met: {line}", file=sys.stderr)
    return NOT_MET if unmet else MET


if __name__ == "__main__":
    sys.exit(main())
