"""The NFS stand-in's server, for the drill of its restart: a FUSE passthrough (bindfs) between the lab's hosts and
the machine's stand-in folder.

This kernel has no NFS client or server, so the lab's data volume is the machine's folder HHA_ROOT/nfs-standin
bind-mounted into every host (host_lab.py's docstring). With the front, bindfs shows that folder at
HHA_ROOT/nfs-front on the machine (a local FUSE mount: no network, no daemon listening) and the hosts bind-mount the
front instead. Every file operation of the hosts then passes through one process of the machine, as every operation of
an NFS client passes through its server: SIGSTOP of bindfs is the server gone (the hosts' operations wait, as on an
NFS `hard` mount, the kind Harbor's nodes mount: components/nfs), SIGCONT the server back (they continue). What
differs from the kernel NFS client: docs/ha.md ("NFS server restart").

The bindfs process runs in the foreground in a session of its own, its PID in HHA_ROOT/nfs-front.pid, so that any
later lab command (`host_lab.py down`) stops it by that PID; a process that is not bindfs any more is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

MOUNT_TIMEOUT_S = 30.0  #: bindfs to show its mount in the mount table, on a loaded machine
STOP_TIMEOUT_S = 30.0  #: bindfs to exit after SIGTERM before SIGKILL (it unmounts on SIGTERM)


class FuseFront:
    """bindfs showing `source` at `mountpoint` (the machine's side of the lab's data volume)."""

    def __init__(self, source: Path, mountpoint: Path):
        self.source, self.mountpoint = source, mountpoint
        self.pidfile = mountpoint.with_name(mountpoint.name + ".pid")

    def mounted(self) -> bool:
        """A FUSE mount at `mountpoint` in this mount namespace (a dead one too: its process gone, ENOTCONN)."""
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                fstype = fields[fields.index("-") + 1]
                if fields[4] == str(self.mountpoint) and fstype.startswith("fuse"):
                    return True
        return False

    def pid(self) -> int | None:
        """The PID of the front's bindfs, if that process still runs (not a PID reused by another program)."""
        try:
            pid = int(self.pidfile.read_text())
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            return None
        name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
        return pid if name == "bindfs" and state != "Z" else None

    def mount(self) -> None:
        """Start bindfs (multithreaded: the hosts' operations in parallel, as an NFS server serves them); returns once
        the mount is in the table. Raises with bindfs's output when it does not come up."""
        if self.mounted():
            raise RuntimeError(f"{self.mountpoint}: already a FUSE mount (an earlier lab's front: `host_lab.py down`)")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        log = self.mountpoint.with_name(self.mountpoint.name + ".log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bindfs", "-f", "--multithreaded", str(self.source), str(self.mountpoint)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not self.mounted():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                raise RuntimeError(f"bindfs did not mount {self.mountpoint} within {MOUNT_TIMEOUT_S:.0f} s: "
                                   f"{log.read_text()[-500:]}")
            time.sleep(0.2)

    def signal(self, sig: signal.Signals) -> bool:
        """`sig` to the front's bindfs; False when it does not run."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def unmount(self) -> None:
        """bindfs resumed and stopped by its PID (SIGTERM, SIGKILL after STOP_TIMEOUT_S), then the mount detached if it
        is still there (a killed bindfs leaves it dead). Safe to call when there is no front."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # a frozen process would not act on SIGTERM
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)
        if self.mounted():
            # lazy: a host may still hold the mount (a bind of it); it goes with the last user
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=True, timeout=60)
        self.pidfile.unlink(missing_ok=True)
