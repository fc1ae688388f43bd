"""components/host/lib.sh run for real (bash, install, cmp) against a temporary root: idempotent installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import ROOT

from components.host.files import FileSpec, manifest_text

LIB = ROOT / "components" / "host" / "lib.sh"
# lib.sh installs files owned by root (as the program does on a host): `install -o root` needs root.
pytestmark = pytest.mark.root


def run_lib(state: Path, call: str) -> str:
    """Source lib.sh in bash and run one of its functions; returns its stdout (the changed paths)."""
    result = subprocess.run(["bash", "-c", f'. "{LIB}"; {call}'], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "HARBOR_HA_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def applied(stage_dir: Path) -> str:
    """What main does for a role whose apply succeeds: install the files, then record them as applied."""
    return f'install_manifest "{stage_dir}"; manifest_commit'


def stage(tmp_path: Path, files: dict[str, str], mode: int = 0o640) -> tuple[Path, list[FileSpec]]:
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir(parents=True, exist_ok=True)
    specs = [FileSpec(path=str(tmp_path / "root" / rel), render=lambda _s, c=content: c, mode=mode,
                      owner="nobody", group="nogroup")
             for rel, content in files.items()]
    for spec in specs:
        (stage_dir / spec.stage_name).write_text(spec.render({}))
    (stage_dir / "MANIFEST").write_text(manifest_text(specs))
    return stage_dir, specs


def test_install_manifest_installs_with_mode_and_owner_then_changes_nothing_on_a_second_run(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n", "etc/other/b.conf": "b=1\n"})
    first = run_lib(tmp_path / "state", applied(stage_dir)).split()
    assert first == [s.path for s in specs]
    for spec in specs:
        st = os.stat(spec.path)
        assert oct(st.st_mode & 0o777) == "0o640"
        assert st.st_uid == int(subprocess.check_output(["id", "-u", "nobody"]))
        assert Path(spec.path).read_text() == spec.render({})
    assert run_lib(tmp_path / "state", applied(stage_dir)) == ""


def test_install_manifest_reinstalls_only_what_the_rendering_changed(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n", "etc/app/b.conf": "b=1\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    (stage_dir / specs[1].stage_name).write_text("b=2\n")
    assert run_lib(tmp_path / "state", applied(stage_dir)).split() == [specs[1].path]
    assert Path(specs[1].path).read_text() == "b=2\n"


def test_a_file_the_service_rewrote_is_left_alone_while_its_rendering_is_unchanged(tmp_path):
    # Sentinel rewrites sentinel.conf, a promoted replica loses its replicaof: re-applying must not revert that.
    stage_dir, specs = stage(tmp_path, {"etc/redis/sentinel.conf": "sentinel monitor m 198.18.0.1 6379 2\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    Path(specs[0].path).write_text("sentinel monitor m 198.18.0.2 6379 2\n# learned\n")
    assert run_lib(tmp_path / "state", applied(stage_dir)) == ""
    assert "198.18.0.2" in Path(specs[0].path).read_text()


def test_a_deleted_file_is_installed_again(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    os.unlink(specs[0].path)
    assert run_lib(tmp_path / "state", applied(stage_dir)).split() == [specs[0].path]


def test_remove_manifest_removes_the_installed_files_only(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    neighbour = Path(specs[0].path).parent / "keep.conf"
    neighbour.write_text("x")
    run_lib(tmp_path / "state", f'remove_manifest "{stage_dir}"')
    assert not Path(specs[0].path).exists() and neighbour.exists()


def test_rollback_puts_back_exactly_what_the_last_install_replaced(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n", "etc/app/b.conf": "b=1\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    (stage_dir / specs[0].stage_name).write_text("a=broken\n")
    assert run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"').split() == [specs[0].path]
    run_lib(tmp_path / "state", f'manifest_rollback "{stage_dir}"')
    assert Path(specs[0].path).read_text() == "a=1\n" and Path(specs[1].path).read_text() == "b=1\n"
    # Not recorded as applied: the next run installs the staged file again.
    assert run_lib(tmp_path / "state", applied(stage_dir)).split() == [specs[0].path]


def test_applied_state_keeps_digests_not_copies_of_the_files(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/secret.conf": "password=Sup3rSecretValue\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    for f in (tmp_path / "state").rglob("*"):
        assert not f.is_file() or "Sup3rSecretValue" not in f.read_text(errors="replace"), f


def test_delete_removes_the_role_files_and_the_staged_secrets(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    role = tmp_path / "role.sh"
    role.write_text(f'ROLE=test\n. "{LIB}"\nrole_apply() {{ install_manifest "$1" >/dev/null; }}\n'
                    'role_delete() { remove_manifest "$1"; }\nmain "$@"\n')
    for action in ("apply", "delete"):
        result = subprocess.run(["bash", str(role), action, str(stage_dir)], capture_output=True, text=True,
                                timeout=30, env={**os.environ, "HARBOR_HA_STATE": str(tmp_path / "state")})
        assert result.returncode == 0, result.stderr
    assert not Path(specs[0].path).exists() and not stage_dir.exists()


def test_main_sources_the_role_env_file_staged_for_this_run(tmp_path):
    stage_dir, _ = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    (stage_dir / "etc__harbor-ha__env__test.env").write_text("GREETING='hello world'\n")
    role = tmp_path / "role.sh"
    role.write_text(f'ROLE=test\n. "{LIB}"\nrole_apply() {{ echo "$GREETING"; }}\nrole_delete() {{ :; }}\n'
                    'main "$@"\n')
    result = subprocess.run(["bash", str(role), "apply", str(stage_dir)], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "HARBOR_HA_STATE": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_scripts_find_todays_master_through_a_real_sentinel_and_follow_it(tmp_path):
    """Starts redis-server and redis-sentinel on 127.0.0.1 (stopped by PID): current_master asks the sentinel,
    follow_master rewrites replicaof for a replica and removes it on the master itself."""
    import time
    port, sentinel_port = free_port(), free_port()
    (tmp_path / "sentinel.conf").write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel monitor m 127.0.0.1 {port} 1\n")
    procs = [subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                               "--save", ""], stdout=subprocess.DEVNULL),
             subprocess.Popen(["redis-sentinel", str(tmp_path / "sentinel.conf")], stdout=subprocess.DEVNULL)]
    try:
        env = f'SENTINELS="127.0.0.1:1 127.0.0.1:{sentinel_port}" MASTER_SET=m'  # the first one is dead
        deadline, master = time.monotonic() + 10, ""
        while time.monotonic() < deadline and not master:
            master = run_lib(tmp_path, f"{env}; current_master").strip()
            time.sleep(0.1)
        assert master == f"127.0.0.1 {port}"
        conf = tmp_path / "redis.conf"
        conf.write_text("port 6379\nreplicaof 198.18.0.1 6379\nappendonly yes\n")
        run_lib(tmp_path, f'CONF="{conf}" SELF=198.18.0.2; follow_master "{master}"')
        assert conf.read_text() == f"port 6379\nappendonly yes\nreplicaof 127.0.0.1 {port}\n"
        run_lib(tmp_path, f'CONF="{conf}" SELF=127.0.0.1; follow_master "{master}"')
        assert conf.read_text() == "port 6379\nappendonly yes\n"
        assert run_lib(tmp_path, 'SENTINELS="127.0.0.1:1" MASTER_SET=m; current_master') == ""
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def test_checked_apply_rolls_back_files_the_check_rejects_and_fails(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    run_lib(tmp_path / "state", applied(stage_dir))
    (stage_dir / specs[0].stage_name).write_text("a=broken\n")
    # The check reads the installed file, as nginx -t does; no systemd is reached when it fails.
    result = subprocess.run(
        ["bash", "-c", f'. "{LIB}"; ok() {{ ! grep -q broken "{specs[0].path}"; }}; '
                       f'checked_service_apply "{stage_dir}" app.service reload ok'],
        capture_output=True, text=True, timeout=30, env={**os.environ, "HARBOR_HA_STATE": str(tmp_path / "state")})
    assert result.returncode == 1
    assert "app.service rejected the new configuration; the previous files are back in place" in result.stderr
    assert Path(specs[0].path).read_text() == "a=1\n"


def test_sysctl_apply_writes_only_the_values_that_differ(tmp_path):
    """Runs lib.sh's sysctl_apply with a `sysctl` stub on PATH (current values from a file, writes logged): in a
    container /proc/sys is read-only and the runtime already set the values, so nothing may be written."""
    current = tmp_path / "current"
    current.write_text("net.ipv4.ip_nonlocal_bind 1\nnet.ipv4.ip_forward 0\n")
    writes = tmp_path / "writes"
    stub = tmp_path / "bin" / "sysctl"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nif [ "$1" = -n ]; then awk -v k="$2" \'$1 == k {{print $2}}\' "{current}"; '
                    f'else echo "$*" >> "{writes}"; fi\n')
    stub.chmod(0o755)
    conf = tmp_path / "60-test.conf"
    conf.write_text("# comment\nnet.ipv4.ip_nonlocal_bind = 1\n\nnet.ipv4.ip_forward = 1\n")
    result = subprocess.run(["bash", "-c", f'. "{LIB}"; sysctl_apply "{conf}"'], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert writes.read_text() == "-q -w net.ipv4.ip_forward=1\n"

def test_files_are_recorded_as_applied_only_after_the_role_apply_succeeded(tmp_path):
    # A run that dies between installing and restarting must install (and so restart) again next time.
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    role = tmp_path / "role.sh"
    role.write_text(f'ROLE=test\n. "{LIB}"\nrole_apply() {{ install_manifest "$1"; [ -z "${{FAIL:-}}" ]; }}\n'
                    'role_delete() { :; }\nmain "$@"\n')
    env = {**os.environ, "HARBOR_HA_STATE": str(tmp_path / "state")}
    failed = subprocess.run(["bash", str(role), "apply", str(stage_dir)], capture_output=True, text=True,
                            timeout=30, env={**env, "FAIL": "1"})
    assert failed.returncode != 0 and failed.stdout.split() == [specs[0].path]
    again = subprocess.run(["bash", str(role), "apply", str(stage_dir)], capture_output=True, text=True,
                           timeout=30, env=env)
    assert again.returncode == 0 and again.stdout.split() == [specs[0].path]
    third = subprocess.run(["bash", str(role), "apply", str(stage_dir)], capture_output=True, text=True,
                           timeout=30, env=env)
    assert third.returncode == 0 and third.stdout == ""


def test_a_failed_install_inside_a_command_substitution_fails_the_apply_and_is_not_recorded(tmp_path):
    # `changed=$(install_manifest ...)`: without inherit_errexit bash runs the body with errexit off.
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    (stage_dir / "MANIFEST").write_text((stage_dir / "MANIFEST").read_text().replace(" nobody ", " no-such-user "))
    result = subprocess.run(["bash", "-c", f'. "{LIB}"; changed=$(install_manifest "{stage_dir}"); manifest_commit; '
                             'echo "reached: $changed"'], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "HARBOR_HA_STATE": str(tmp_path / "state")})
    assert result.returncode != 0 and "reached" not in result.stdout
    assert not list((tmp_path / "state" / "applied").glob("*"))


def test_install_keeps_the_mode_of_an_existing_folder(tmp_path):
    # /etc/redis is 2770 from the package; `install -d -m 0755` made it 2755.
    stage_dir, specs = stage(tmp_path, {"etc/redis/redis.conf": "port 6379\n"})
    folder = Path(specs[0].path).parent
    folder.mkdir(parents=True)
    folder.chmod(0o2770)
    run_lib(tmp_path / "state", applied(stage_dir))
    assert oct(folder.stat().st_mode & 0o7777) == "0o2770"


def test_roles_of_one_host_keep_their_rollback_copies_apart(tmp_path):
    # Roles of one host run in parallel: one role's install must not wipe what another would roll back to.
    state = tmp_path / "state"
    stage_a, specs_a = stage(tmp_path / "a", {"etc/a.conf": "a=1\n"})
    stage_b, _ = stage(tmp_path / "b", {"etc/b.conf": "b=1\n"})
    run_lib(state, f"ROLE=a; . \"{LIB}\"; {applied(stage_a)}")
    (stage_a / specs_a[0].stage_name).write_text("a=broken\n")
    run_lib(state, f'ROLE=a; . "{LIB}"; install_manifest "{stage_a}"')
    run_lib(state, f"ROLE=b; . \"{LIB}\"; {applied(stage_b)}")
    run_lib(state, f'ROLE=a; . "{LIB}"; manifest_rollback "{stage_a}"')
    assert Path(specs_a[0].path).read_text() == "a=1\n"


def shared_stage(tmp_path: Path, content: str) -> tuple[Path, Path]:
    """A stage with one write-once file (a shared key on the data volume)."""
    spec = FileSpec(path=str(tmp_path / "data" / "secret" / "keys" / "secretkey"), render=lambda _s: content,
                    mode=0o600, owner="nobody", group="nogroup", write_once=True)
    stage_dir = tmp_path / f"stage-{content}"
    stage_dir.mkdir()
    (stage_dir / spec.stage_name).write_text(content)
    (stage_dir / "MANIFEST").write_text(manifest_text([spec]))
    return stage_dir, Path(spec.path)


def test_a_shared_key_is_written_once_and_never_replaced(tmp_path):
    # Node k+1 must not swap the inode core's bind mount on node k holds.
    stage_dir, key = shared_stage(tmp_path, "k1")
    assert run_lib(tmp_path / "node1", applied(stage_dir)).split() == [str(key)]
    inode = key.stat().st_ino
    assert run_lib(tmp_path / "node2", applied(stage_dir)) == ""
    assert key.stat().st_ino == inode and key.read_text() == "k1"
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_a_different_existing_shared_key_stops_the_apply_with_a_clear_error(tmp_path):
    first, key = shared_stage(tmp_path, "k1")
    run_lib(tmp_path / "node1", applied(first))
    other, _ = shared_stage(tmp_path, "k2")
    result = subprocess.run(["bash", "-c", f'. "{LIB}"; {applied(other)}'], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "HARBOR_HA_STATE": str(tmp_path / "node2")})
    assert result.returncode != 0
    assert f"{key} exists with a different content than the cluster's key" in result.stderr
    assert key.read_text() == "k1"


def test_remove_manifest_keeps_the_shared_keys(tmp_path):
    stage_dir, key = shared_stage(tmp_path, "k1")
    run_lib(tmp_path / "node1", applied(stage_dir))
    run_lib(tmp_path / "node1", f'remove_manifest "{stage_dir}"')
    assert key.read_text() == "k1"


def test_run_sql_hands_a_root_only_sql_file_to_psql_running_as_postgres(tmp_path):
    # Found on real hosts (postgres.sh, then patroni.sh): `psql -f FILE` as postgres cannot open the SQL file under
    # /etc/harbor-ha (0700 root). Stand-ins: runuser drops to nobody for real (setpriv), psql reads `-f` like psql.
    secret_dir = tmp_path / "etc-harbor-ha"
    secret_dir.mkdir(mode=0o700)
    sql = secret_dir / "role.sql"
    sql.write_text("ALTER ROLE harbor PASSWORD 'x';\n")
    sql.chmod(0o600)
    bin_dir = Path(tempfile.mkdtemp(prefix="run-sql-bin-"))
    try:
        bin_dir.chmod(0o755)
        (bin_dir / "runuser").write_text('#!/bin/sh\n# runuser -u USER -- CMD...\nshift 3\n'
                                         'exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"\n')
        (bin_dir / "psql").write_text('#!/bin/sh -e\nwhile [ $# -gt 0 ]; do [ "$1" = -f ] && f=$2; shift; done\n'
                                      'if [ "$f" = - ]; then cat; else cat "$f"; fi\necho "cwd $(pwd)"\n')
        for stub in ("runuser", "psql"):
            (bin_dir / stub).chmod(0o755)
        result = subprocess.run(["bash", "-c", f'. "{LIB}"; cd "{tmp_path}"; run_sql "{sql}" -h /run/postgresql'],
                                capture_output=True, text=True, timeout=30,
                                env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    finally:
        shutil.rmtree(bin_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ALTER ROLE harbor PASSWORD 'x';\ncwd /\n"


def run_role(tmp_path: Path, action: str, stage_dir: Path, apply_body: str = 'install_manifest "$1" >/dev/null'
             ) -> subprocess.CompletedProcess:
    """`role.sh ACTION STAGE` of a test role whose apply runs `apply_body`, as the program runs a role's script."""
    role = tmp_path / "role.sh"
    role.write_text(f'ROLE=test\n. "{LIB}"\nrole_apply() {{ {apply_body}; }}\nrole_delete() {{ :; }}\nmain "$@"\n')
    return subprocess.run(["bash", str(role), action, str(stage_dir)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "HARBOR_HA_STATE": str(tmp_path / "state")})


def test_check_names_a_file_edited_or_removed_on_the_host_and_repair_puts_it_back_through_the_apply(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n", "etc/app/b.conf": "b=1\n",
                                        "etc/app/c.conf": "c=1\n"})
    assert run_role(tmp_path, "apply", stage_dir).returncode == 0
    clean = run_role(tmp_path, "check", stage_dir)
    assert clean.returncode == 0 and clean.stdout == "", clean.stderr
    Path(specs[0].path).write_text("a=1\n# edited by hand\n")
    os.unlink(specs[2].path)
    found = run_role(tmp_path, "check", stage_dir)
    assert found.returncode == 1 and found.stdout.splitlines() == [
        f"drift: {specs[0].path} differs from what harbor-ha applied",
        f"drift: {specs[2].path} differs from what harbor-ha applied"]
    # A plain apply installs the missing file again but leaves the edit (the stage did not change, and a service may
    # rewrite its files): the repair is what puts it back, through the role's apply, which sees it as changed.
    assert run_role(tmp_path, "apply", stage_dir).returncode == 0
    assert "edited by hand" in Path(specs[0].path).read_text() and Path(specs[2].path).exists()
    repaired = run_role(tmp_path, "repair", stage_dir, 'echo "changed: $(install_manifest "$1" | xargs)"')
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout == f"changed: {specs[0].path}\n"
    assert [Path(s.path).read_text() for s in specs] == ["a=1\n", "b=1\n", "c=1\n"]
    assert run_role(tmp_path, "check", stage_dir).returncode == 0


def test_check_does_not_judge_files_their_service_rewrites_nor_shared_keys(tmp_path):
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    specs = [FileSpec(path=str(tmp_path / "root/etc/redis/sentinel.conf"), render=lambda _s: "sentinel a\n",
                      rewritten=True),
             FileSpec(path=str(tmp_path / "root/data/secret/key"), render=lambda _s: "k\n", write_once=True)]
    for spec in specs:
        (stage_dir / spec.stage_name).write_text(spec.render({}))
    (stage_dir / "MANIFEST").write_text(manifest_text(specs))
    assert run_role(tmp_path, "apply", stage_dir).returncode == 0
    for spec in specs:
        Path(spec.path).write_text("rewritten by its service\n")
    assert run_role(tmp_path, "check", stage_dir).returncode == 0
