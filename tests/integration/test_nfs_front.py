"""The host lab's NFS front (labs/hosts/nfs_front.py): bindfs started on a folder of the test, stopped and resumed by
signal, killed, unmounted. Real processes: bindfs (FUSE; root), cat and sh reading and writing through the front."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from labs.hosts.nfs_front import FuseFront

pytestmark = pytest.mark.root


@pytest.fixture
def front(tmp_path: Path):
    source = tmp_path / "standin"
    source.mkdir()
    fr = FuseFront(source, tmp_path / "front")
    fr.mount()
    try:
        yield fr
    finally:
        fr.unmount()
    assert not fr.mounted() and fr.pid() is None and not fr.pidfile.exists()


def through(front: FuseFront, command: str, timeout: float) -> subprocess.CompletedProcess:
    """`command` in a shell of its own in the front's folder (never this process: a stopped front would hold it)."""
    return subprocess.run(["sh", "-c", command], cwd=front.source.parent, capture_output=True, text=True,
                          timeout=timeout)


def test_what_the_hosts_write_through_the_front_is_in_the_standin_folder(front: FuseFront):
    assert through(front, "echo blob > front/a && cat front/a", 30).stdout == "blob\n"
    assert (front.source / "a").read_text() == "blob\n"
    with pytest.raises(RuntimeError, match="already a FUSE mount"):
        FuseFront(front.source, front.mountpoint).mount()


def test_a_stopped_front_holds_every_operation_until_it_is_resumed_as_a_hard_nfs_mount_does(front: FuseFront):
    (front.source / "a").write_text("blob\n")
    assert front.signal(signal.SIGSTOP)
    try:
        reader = subprocess.Popen(["sh", "-c", "cat front/a; echo x > front/b"], cwd=front.source.parent,
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert reader.poll() is None, "a read through a stopped front returned"
    finally:
        front.signal(signal.SIGCONT)
    out, _ = reader.communicate(timeout=30)
    assert out == "blob\n" and (front.source / "b").read_text() == "x\n"


def test_a_killed_front_leaves_a_dead_mount_that_unmount_removes(front: FuseFront):
    pid = front.pid()
    assert pid is not None and front.signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while front.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    done = through(front, "cat front/anything", 30)
    # What the hosts would see after a killed server in this lab (unlike an NFS server's restart): ENOTCONN.
    assert done.returncode != 0 and "Transport endpoint is not connected" in done.stderr, done
    assert front.mounted()
    front.unmount()
    assert not front.mounted()
