"""The host lab's standin-tls (labs/hosts/standin_tls), built by the installer builder and started as PID 1 of its own
PID namespace (as in the stand-in proxy container), on loopback. Real processes: go build, unshare, nsenter."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from labs.hosts import standin_installer

pytestmark = pytest.mark.root


def _children_states(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "stat=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return out.split()


def test_standin_tls_as_pid_1_reaps_the_orphans_it_inherits(tmp_path: Path):
    binary = standin_installer.tls_forwarder(tmp_path / "cache")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=standin", "-days", "1"],
                   check=True, capture_output=True)
    # unshare --fork: the forked child is PID 1 of the new namespace and execs standin-tls (killed with unshare)
    launcher = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", str(binary), "127.0.0.1:0", str(cert),
                                 str(key), "127.0.0.1:9"], stderr=subprocess.DEVNULL)
    pid1 = 0
    try:
        deadline = time.monotonic() + 60
        children: list[str] = []
        while time.monotonic() < deadline and not children:  # waits for unshare's child (standin-tls) to exist
            children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                                      text=True).stdout.split()
            time.sleep(0.1)
        assert children, "standin-tls did not start under unshare within 60 s"
        pid1 = int(children[0])
        for _ in range(5):  # each shell leaves a sleep behind: the namespace's PID 1 inherits it
            subprocess.run(["nsenter", "-t", str(pid1), "-p", "sh", "-c", "sleep 0.2 & exit"], check=True)
        deadline = time.monotonic() + 30
        states = _children_states(pid1)
        while time.monotonic() < deadline and states:  # waits for the five sleeps to end and be reaped
            time.sleep(0.2)
            states = _children_states(pid1)
        assert states == [], f"children of standin-tls left after 30 s: {states} (Z: an unreaped zombie)"
    finally:
        if pid1:  # unshare ignores SIGTERM while it waits for its child: the child goes first
            os.kill(pid1, signal.SIGKILL)
        launcher.kill()
        launcher.wait(timeout=60)
