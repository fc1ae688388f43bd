"""The sandbox's host containers for real, on a Docker engine started by hand (tests/sandbox/).

The image is made the way this machine can (no registry): a copy of the debootstrapped base rootfs, prepared in a
chroot by the same components/sandbox/prepare-rootfs.sh the Dockerfile runs, then `docker import`ed. Networks,
volumes and containers are created from what the program registered under mocks (pulumi_harness), translated
input by input into `docker` flags: an input this module cannot translate fails the test instead of being skipped.

The engine follows ../shared/notes/docker-hosts.md: never --privileged, never the machine's /sys/fs/cgroup, no
iptables/NAT/forwarding of its own, its own data-root and socket, stopped by PID.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.sandbox import IMAGE_CONTEXT

# Another lab's engine beside this one (labs/engine/engine_lab.py sandbox) sets its own three.
DOCKER_ROOT = Path(os.environ.get("HHA_DOCKER_ROOT", "/var/lib/hha-docker"))
EXEC_ROOT = Path(os.environ.get("HHA_DOCKER_EXEC_ROOT", "/run/hha-docker"))
SOCKET = os.environ.get("HHA_DOCKER_SOCKET", "/run/hha-docker.sock")
# overlay2 where the data-root is on ext4/xfs (containers are created in ~1 s); vfs copies the whole image per
# container (25-40 s here) but works on any filesystem (docker-hosts.md's recipe).
STORAGE_DRIVER = os.environ.get("HHA_DOCKER_STORAGE", "overlay2")
WORK = Path(os.environ.get("HHA_SANDBOX_WORK", "/var/lib/hha-sandbox"))
BASE_ROOTFS = Path(os.environ.get("HHA_BASE_ROOTFS", "/var/lib/harbor-ha-hosts/base"))
# The roles' packages, preinstalled: these containers have no route out (on a user's Docker, the roles install
# them through the network's NAT). Debian 12's versions, as components/*/*.sh name them.
ROLE_PACKAGES = ("postgresql-15", "redis-server", "redis-sentinel", "redis-tools", "nginx", "keepalived")
# What run_flags knows how to reproduce; anything else the program registers fails the translation.
TRANSLATED = {"name", "hostname", "image", "command", "capabilities", "cgroupnsMode", "tmpfs", "stopSignal",
              "sysctls", "securityOpts", "volumes", "restart", "networksAdvanced", "uploads", "ports"}


def docker(*args: str, input: bytes | None = None, check: bool = True, timeout: int = 300) -> str:
    env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}
    done = subprocess.run(["docker", *args], input=input, capture_output=True, env=env, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace").strip()


def engine_answers() -> bool:
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=20)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


@dataclass
class Engine:
    """A dockerd this module started (pid) or found running (pid None: left running)."""

    pid: int | None
    version: str


def start_engine() -> Engine:
    """The engine of docker-hosts.md; reuses one already answering on SOCKET."""
    if engine_answers():
        return Engine(pid=None, version=docker("version", "--format", "{{.Server.Version}}"))
    for d in (DOCKER_ROOT, EXEC_ROOT, WORK):
        d.mkdir(parents=True, exist_ok=True)
    log = open(WORK / "dockerd.log", "ab")  # noqa: SIM115 - dockerd writes to it until stopped
    proc = subprocess.Popen(
        ["dockerd", f"--storage-driver={STORAGE_DRIVER}", f"--data-root={DOCKER_ROOT}", f"--exec-root={EXEC_ROOT}",
         f"--pidfile={EXEC_ROOT}/dockerd.pid", "-H", f"unix://{SOCKET}",
         # No NAT, forwarding or docker0 on the machine: the sandbox network is reached from here only.
         "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(60):
        if engine_answers():
            return Engine(pid=proc.pid, version=docker("version", "--format", "{{.Server.Version}}"))
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"dockerd did not answer on {SOCKET} (log: {WORK / 'dockerd.log'})")


def stop_engine(engine: Engine) -> None:
    if engine.pid is None:
        return
    os.kill(engine.pid, signal.SIGTERM)
    for _ in range(60):
        try:
            os.kill(engine.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(engine.pid, signal.SIGKILL)


def recipe_digest(packages: tuple[str, ...] = ROLE_PACKAGES) -> str:
    """What the image is made of: the recipe script and the preinstalled packages."""
    script = (IMAGE_CONTEXT / "prepare-rootfs.sh").read_bytes()
    return hashlib.sha256(script + " ".join(packages).encode()).hexdigest()[:12]


def host_image(packages: tuple[str, ...] = ROLE_PACKAGES) -> str:
    """The host image with `packages` preinstalled, imported once per recipe: `harbor-ha-sandbox-host:<recipe
    digest>`."""
    tag = f"harbor-ha-sandbox-host:{recipe_digest(packages)}"
    if docker("images", "-q", tag):
        return tag
    if not (BASE_ROOTFS / "usr/sbin/sshd").exists():
        raise RuntimeError(f"no debootstrapped base at {BASE_ROOTFS}: build it with `debhosts.sh base` "
                           "(../shared/tools) or point HHA_BASE_ROOTFS at a Debian 12 tree with openssh-server")
    rootfs = WORK / "rootfs"
    subprocess.run(["rm", "-rf", str(rootfs)], check=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(BASE_ROOTFS), str(rootfs)], check=True)
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    # Package scripts must not start services in the chroot.
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy(IMAGE_CONTEXT / "prepare-rootfs.sh", rootfs / "tmp/prepare-rootfs.sh")
    subprocess.run(["chroot", str(rootfs), "bash", "/tmp/prepare-rootfs.sh", *packages], check=True,
                   capture_output=True, timeout=900)
    for leftover in (policy, rootfs / "tmp/prepare-rootfs.sh", rootfs / "etc/resolv.conf"):
        leftover.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}
    subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, env=env, capture_output=True,
                   timeout=900)
    if tar.wait() != 0:
        raise RuntimeError("tar of the prepared rootfs failed")
    subprocess.run(["rm", "-rf", str(rootfs)], check=True)
    return tag


def run_flags(inputs: dict[str, Any]) -> list[str]:
    """`docker create` arguments for a registered docker:index/container:Container (uploads excepted)."""
    unknown = set(inputs) - TRANSLATED
    if unknown:
        raise AssertionError(f"the program registers container inputs this test cannot reproduce: {sorted(unknown)}")
    flags = ["--name", inputs["name"]]
    if "hostname" in inputs:
        flags += ["--hostname", inputs["hostname"]]
    caps = inputs.get("capabilities", {})
    flags += [f"--cap-add={c}" for c in caps.get("adds", [])] + [f"--cap-drop={c}" for c in caps.get("drops", [])]
    if "cgroupnsMode" in inputs:
        flags.append(f"--cgroupns={inputs['cgroupnsMode']}")
    for path, options in inputs.get("tmpfs", {}).items():
        flags += ["--tmpfs", f"{path}:{options}" if options else path]
    if "stopSignal" in inputs:
        flags += ["--stop-signal", inputs["stopSignal"]]
    flags += [f"--sysctl={k}={v}" for k, v in inputs.get("sysctls", {}).items()]
    flags += [f"--security-opt={o}" for o in inputs.get("securityOpts", [])]
    for v in inputs.get("volumes", []):
        if set(v) != {"volumeName", "containerPath"}:
            raise AssertionError(f"only named volumes are reproduced here, got {v}")
        flags += ["-v", f"{v['volumeName']}:{v['containerPath']}"]
    if "restart" in inputs:
        flags.append(f"--restart={inputs['restart']}")
    for p in inputs.get("ports", []):
        flags += ["-p", f"{p.get('ip', '0.0.0.0')}:{int(p['external'])}:{int(p['internal'])}"]
    (net,) = inputs["networksAdvanced"]
    flags += ["--network", net["name"]] + (["--ip", net["ipv4Address"]] if net.get("ipv4Address") else [])
    return [*flags, inputs["image"], *inputs.get("command", [])]


def uploads_tar(uploads: list[dict[str, str]]) -> bytes:
    """The container's uploads as one tar for `docker cp - NAME:/` (root-owned, with their modes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for u in uploads:
            data = u["content"].encode()
            info = tarfile.TarInfo(u["file"].lstrip("/"))
            info.size, info.mode, info.mtime = len(data), int(u.get("permissions", "0644"), 8), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def create_container(inputs: dict[str, Any]) -> str:
    """Create, upload, start: the order the docker provider uses (the keys are there before systemd starts)."""
    docker("create", *run_flags(inputs))
    docker("cp", "-", f"{inputs['name']}:/", input=uploads_tar(inputs.get("uploads", [])))
    docker("start", inputs["name"])
    return inputs["name"]


def system_state(name: str) -> str:
    return docker("exec", name, "systemctl", "is-system-running", check=False)


def wait_running(names: list[str], timeout: float = 60) -> dict[str, float]:
    """Seconds from now until each container's systemd reports `running` (fails on `degraded`, naming units)."""
    start, boot, deadline = time.monotonic(), {}, time.monotonic() + timeout
    while len(boot) < len(names) and time.monotonic() < deadline:
        for name in names:
            if name not in boot and system_state(name) == "running":
                boot[name] = time.monotonic() - start
        time.sleep(0.2)
    for name in set(names) - set(boot):
        failed = docker("exec", name, "systemctl", "--failed", "--no-legend", check=False)
        raise AssertionError(f"{name}: systemd is {system_state(name)!r}, failed units: {failed}")
    return boot


def remove(kind: str, names: list[str]) -> None:
    """Remove containers (forced), volumes or networks by name; missing ones are fine."""
    for name in names:
        docker(kind, "rm", *(["-f"] if kind == "container" else []), name, check=False)
