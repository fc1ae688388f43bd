"""The apply and delete commands every role runs on its host (components/host/remote.py), run for real by bash as
root in a private mount namespace (`unshare --mount`, tmpfs over /var/lib/harbor-ha and /var/log/harbor-ha): the
stdin bundle is unpacked into the stage, the role script runs, and only the scripts' own lines come out."""

from __future__ import annotations

import subprocess

from components.host import remote
from components.config import Host

ROOT_HOST = Host(name="h", address="198.18.0.1", user="root", port=22)
ROLE_SCRIPT = """ROLE=demo
set -euo pipefail
case "$1" in
  apply) cat "$2/etc__demo.conf"; echo "[harbor-ha demo] applied from $2"; [ ! -f "$2/fail" ] ;;
  delete) echo "[harbor-ha demo] deleted"; rm -rf "$2" ;;
esac
"""


def on_host(command: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`command` as the provider runs it over SSH, here in a mount namespace whose state folders are fresh tmpfs."""
    setup = ("mount -t tmpfs tmpfs /var/lib/harbor-ha 2>/dev/null || { mkdir -p /var/lib/harbor-ha && "
             "mount -t tmpfs tmpfs /var/lib/harbor-ha; }; mkdir -p /var/log/harbor-ha && "
             "mount -t tmpfs tmpfs /var/log/harbor-ha")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           f"{setup}; {command}; rc=$?; echo; ls -R /var/lib/harbor-ha/stage; exit $rc"],
                          input=stdin, capture_output=True, text=True, timeout=60)


def bundle(*extra: tuple[str, str]) -> str:
    return remote.bundle([("demo.sh", ROLE_SCRIPT), ("lib.sh", ""), ("MANIFEST", ""),
                          ("etc__demo.conf", "secret-line-SHOULD-NOT-LEAK\n"), *extra])


def test_apply_unpacks_the_bundle_runs_the_role_and_prints_only_its_own_lines():
    done = on_host(remote.sh_c(ROOT_HOST, remote.apply_command("demo")), bundle())
    assert done.returncode == 0, done.stderr
    assert "[harbor-ha demo] applied from /var/lib/harbor-ha/stage/demo" in done.stderr
    assert "SHOULD-NOT-LEAK" not in done.stdout + done.stderr
    assert "etc__demo.conf" in done.stdout and "demo.sh" in done.stdout  # staged where the delete finds them


def test_a_failing_role_fails_the_command_with_its_status_and_still_leaks_nothing():
    done = on_host(remote.sh_c(ROOT_HOST, remote.apply_command("demo")), bundle(("fail", "")))
    assert done.returncode == 1
    assert "[harbor-ha demo] applied" in done.stderr and "SHOULD-NOT-LEAK" not in done.stdout + done.stderr


def test_delete_runs_the_staged_role_script_and_a_host_without_a_stage_has_nothing_to_undo():
    apply_then_delete = (f"{remote.sh_c(ROOT_HOST, remote.apply_command('demo'))} >/dev/null 2>&1 && "
                         f"{remote.sh_c(ROOT_HOST, remote.delete_command('demo'))}")
    done = on_host(apply_then_delete, bundle())
    assert done.returncode == 0 and "[harbor-ha demo] deleted" in done.stderr, done.stderr
    nothing = on_host(remote.sh_c(ROOT_HOST, remote.delete_command("demo")))
    assert nothing.returncode == 0 and "nothing staged on this host" in nothing.stderr


def test_the_bundle_is_byte_identical_for_identical_files():
    # Anything else (times, order) would make every `pulumi up` an update of every role.
    assert bundle() == bundle() and remote.bundle([("b", "2"), ("a", "1")]) == remote.bundle([("a", "1"), ("b", "2")])
