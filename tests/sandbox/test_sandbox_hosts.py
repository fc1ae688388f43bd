"""The sandbox's host containers on a real Docker engine: created from what the program registers, systemd and
sshd answering with the program's keys, and the roles that can run here applied into them.

Starts (as root): dockerd 20.10 by hand (tests/support/sandbox.py, settings of docker-hosts.md), the host image
imported from the prepared base rootfs, the Docker network 198.19.211.0/24 and volumes, three systemd containers,
then `ssh` to each and the postgres, redis, loadbalancer and keepalived role scripts inside. What needs the internet
(Harbor's images, the Pulumi CLI) is not here: .github/workflows/sandbox.yml runs that.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from components.config import parse_cluster_config
from components.host.files import manifest_text
from components.host.remote import LIB_SH
from components.plan import role_files
from tests.support.secret_values import make_secret_values
from tests.support import ROOT
from tests.support import sandbox as sb
from labs.engine.pulumi_harness import registered_resources, stack_config

CONTAINER = "docker:index/container:Container"
# The roles that run without the internet; harbor-node needs Harbor's installer (the workflow runs it).
OFFLINE_ROLES = ("postgres", "redis", "loadbalancer", "keepalived")


@pytest.fixture(scope="module")
def engine():
    engine = sb.start_engine()
    try:
        yield engine
    finally:
        sb.stop_engine(engine)


@pytest.fixture(scope="module")
def stack(engine):
    """The sandbox stack file with the imported image, and what the program registers for it."""
    values, _secrets = stack_config("sandbox")
    values = {**values, "sandbox": {**values["sandbox"], "image": sb.host_image()}}
    program, regs = registered_resources(values)
    return values, program, regs


@pytest.fixture(scope="module")
def hosts(stack, tmp_path_factory):
    """Network, volumes and containers as registered; yields {host name: (address, container name)}."""
    values, program, regs = stack
    (network,) = [r.inputs for r in regs if r.typ == "docker:index/network:Network"]
    volumes = [r.inputs["name"] for r in regs if r.typ == "docker:index/volume:Volume"]
    containers = [r.inputs for r in regs if r.typ == CONTAINER]
    names = [c["name"] for c in containers]
    sb.remove("container", names)
    sb.remove("volume", volumes)
    sb.remove("network", [network["name"]])
    try:
        (ipam,) = network["ipamConfigs"]
        sb.docker("network", "create", "--driver", network["driver"], "--subnet", ipam["subnet"],
                  "--gateway", ipam["gateway"], network["name"])
        for v in volumes:
            sb.docker("volume", "create", v)
        for c in containers:
            started = time.monotonic()
            sb.create_container(c)
            created = time.monotonic() - started
            (boot,) = sb.wait_running([c["name"]]).values()
            print(f"\n{c['name']}: created in {created:.1f} s ({sb.STORAGE_DRIVER}), systemd running "
                  f"{boot:.1f} s after the start", end="")
        yield {c["hostname"]: (c["networksAdvanced"][0]["ipv4Address"], c["name"]) for c in containers}
    finally:
        print(sb.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", check=False))
        print(sb.docker("system", "df", check=False))
        # HHA_SANDBOX_KEEP: left running to look into (removed by the next run or by hand).
        if not os.environ.get("HHA_SANDBOX_KEEP"):
            sb.remove("container", names)
            sb.remove("volume", volumes)
            sb.remove("network", [network["name"]])


@pytest.fixture(scope="module")
def ssh(stack, hosts, tmp_path_factory):
    """`ssh(host, command, input=None)` with the program's generated key and its pinned host keys only."""
    _values, program, regs = stack
    tmp = tmp_path_factory.mktemp("ssh")
    key = tmp / "id_ed25519"
    key.write_text(program.monitor.mocks.generated["sandbox-ssh-key"])
    key.chmod(0o600)
    known = tmp / "known_hosts"
    pinned = {r.inputs["connection"]["host"]: r.inputs["connection"]["hostKey"]
              for r in regs if r.typ == "command:remote:Command"}
    known.write_text("".join(f"{address} {host_key}\n" for address, host_key in pinned.items()))

    def run(host: str, command: str, input: bytes | None = None, known_hosts: Path = known,
            check: bool = True) -> subprocess.CompletedProcess:
        address, _container = hosts[host]
        done = subprocess.run(
            ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", f"root@{address}", command],
            input=input, capture_output=True, timeout=600)
        if check and done.returncode != 0:
            raise AssertionError(f"{host}: {command}: rc {done.returncode}\n{done.stderr.decode(errors='replace')}")
        return done

    run.pinned = pinned
    run.tmp = tmp
    return run


def test_containers_boot_systemd_with_only_the_injected_host_key(hosts):
    for host, (_address, container) in hosts.items():
        assert sb.system_state(container) == "running", host
        keys = sb.docker("exec", container, "sh", "-c", "ls /etc/ssh/ssh_host_*")
        assert keys.split() == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"], keys


def test_sshd_accepts_the_generated_key_and_shows_the_pinned_host_key(ssh, hosts):
    for host in hosts:
        assert ssh(host, "hostname").stdout.decode().strip() == host
    # A known_hosts with another key for the same address: the client refuses, so the pin is what is checked.
    other = ssh.tmp / "other_known_hosts"
    first = next(iter(hosts))
    wrong = next(k for a, k in ssh.pinned.items() if a != hosts[first][0])
    other.write_text(f"{hosts[first][0]} {wrong}\n")
    refused = ssh(first, "true", known_hosts=other, check=False)
    assert refused.returncode != 0 and b"Host key verification failed" in refused.stderr, refused.stderr


def stage_bundle(role: str, specs, values: dict[str, str]) -> bytes:
    """What the program ships for one role: lib.sh, the role script, MANIFEST and every rendered file, as a tar."""
    script = next((ROOT / "components").glob(f"*/{role}.sh"))
    files = {"lib.sh": LIB_SH.read_text(), script.name: script.read_text(), "MANIFEST": manifest_text(list(specs))}
    files.update({spec.stage_name: spec.render({n: values[n] for n in spec.needs}) for spec in specs})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_roles_apply_into_the_containers_and_the_vip_moves(stack, ssh, hosts):
    values, _program, _regs = stack
    cfg = parse_cluster_config(values)
    secrets = make_secret_values(cfg)
    plan = role_files(cfg)
    for role in OFFLINE_ROLES:
        for host, roles in plan.items():
            if role in roles:
                stage = f"/var/lib/harbor-ha/stage/{role}"
                started = time.monotonic()
                ssh(host, f"rm -rf {stage} && install -d -m 0700 {stage} && tar -x -C {stage} "
                          f"&& bash {stage}/{role}.sh apply {stage}",
                    input=stage_bundle(role, roles[role], secrets))
                print(f"{role} on {host}: applied in {time.monotonic() - started:.1f} s")
    assert ssh("data1", "systemctl is-active postgresql@15-main redis-server").stdout.split() == [b"active"] * 2
    for lb in ("harbor1", "harbor2"):
        assert ssh(lb, "systemctl is-active nginx keepalived").stdout.split() == [b"active"] * 2, lb

    def vip_holder() -> str | None:
        for lb in ("harbor1", "harbor2"):
            if f" {cfg.vip}/".encode() in ssh(lb, "ip -o -4 addr show dev eth0").stdout:
                return lb
        return None

    def wait_for_holder(expected: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 30 and vip_holder() != expected:
            time.sleep(0.2)
        assert vip_holder() == expected
        return time.monotonic() - started

    print(f"VIP on harbor1 after {wait_for_holder('harbor1'):.1f} s")
    # The VIP answers from this machine (its end of the Docker bridge): nginx on the VIP, no Harbor behind it.
    status = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                             f"https://{cfg.vip}/"], capture_output=True, text=True, timeout=20).stdout
    assert status in ("502", "503", "504"), status
    ssh("harbor1", "systemctl stop keepalived")
    print(f"VIP moved to harbor2 in {wait_for_holder('harbor2'):.1f} s after keepalived stopped on harbor1")


def test_harbor_node_runs_a_nested_docker_engine_on_its_volume(ssh, hosts):
    """The engine Harbor runs on inside a node container: overlay2 on the node's /var/lib/docker volume. Its
    containers need a writable cgroup tree: cgroup v2 (the container's own, remounted rw by harbor-ha-init) on
    users' Docker 23+; on a cgroup v1 machine like this project's the hierarchies are the machine's and stay
    read-only, so runc must refuse exactly that (the workflow runs Harbor on cgroup v2)."""
    ssh("harbor1", "systemctl start docker")
    assert ssh("harbor1", "docker info --format '{{.Driver}}'").stdout.strip() == b"overlay2"
    busybox = Path("/bin/busybox").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(busybox), 0o755
        tar.addfile(info, io.BytesIO(busybox))
    ssh("harbor1", "docker import - sandbox-busybox:1", input=buf.getvalue())
    ran = ssh("harbor1", "docker run --rm sandbox-busybox:1 /bin/busybox echo nested", check=False)
    cgroup_v2 = ssh("harbor1", "stat -fc %T /sys/fs/cgroup").stdout.strip() == b"cgroup2fs"
    if cgroup_v2:
        assert ran.returncode == 0 and ran.stdout.strip() == b"nested", ran.stderr
    else:
        assert ran.returncode != 0 and b"read-only file system" in ran.stderr, ran.stderr
