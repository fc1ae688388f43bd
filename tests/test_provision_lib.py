"""scripts/provision/lib.sh run for real (bash, install, cmp) against a temporary root: idempotent installs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from components.files import FileSpec, manifest_text

LIB = Path(__file__).resolve().parent.parent / "scripts" / "provision" / "lib.sh"


def run_lib(state: Path, call: str) -> str:
    """Source lib.sh in bash and run one of its functions; returns its stdout (the changed paths)."""
    result = subprocess.run(["bash", "-c", f'. "{LIB}"; {call}'], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "HARBOR_HA_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def stage(tmp_path: Path, files: dict[str, str], mode: int = 0o640) -> tuple[Path, list[FileSpec]]:
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir(exist_ok=True)
    specs = [FileSpec(path=str(tmp_path / "root" / rel), render=lambda _s, c=content: c, mode=mode,
                      owner="nobody", group="nogroup")
             for rel, content in files.items()]
    for spec in specs:
        (stage_dir / spec.stage_name).write_text(spec.render({}))
    (stage_dir / "MANIFEST").write_text(manifest_text(specs))
    return stage_dir, specs


def test_install_manifest_installs_with_mode_and_owner_then_changes_nothing_on_a_second_run(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n", "etc/other/b.conf": "b=1\n"})
    first = run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"').split()
    assert first == [s.path for s in specs]
    for spec in specs:
        st = os.stat(spec.path)
        assert oct(st.st_mode & 0o777) == "0o640"
        assert st.st_uid == int(subprocess.check_output(["id", "-u", "nobody"]))
        assert Path(spec.path).read_text() == spec.render({})
    assert run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"') == ""


def test_install_manifest_reinstalls_only_what_the_rendering_changed(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n", "etc/app/b.conf": "b=1\n"})
    run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"')
    (stage_dir / specs[1].stage_name).write_text("b=2\n")
    assert run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"').split() == [specs[1].path]
    assert Path(specs[1].path).read_text() == "b=2\n"


def test_a_file_the_service_rewrote_is_left_alone_while_its_rendering_is_unchanged(tmp_path):
    # Sentinel rewrites sentinel.conf, a promoted replica loses its replicaof: re-applying must not revert that.
    stage_dir, specs = stage(tmp_path, {"etc/redis/sentinel.conf": "sentinel monitor m 198.18.0.1 6379 2\n"})
    run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"')
    Path(specs[0].path).write_text("sentinel monitor m 198.18.0.2 6379 2\n# learned\n")
    assert run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"') == ""
    assert "198.18.0.2" in Path(specs[0].path).read_text()


def test_a_deleted_file_is_installed_again(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"')
    os.unlink(specs[0].path)
    assert run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"').split() == [specs[0].path]


def test_remove_manifest_removes_the_installed_files_only(tmp_path):
    stage_dir, specs = stage(tmp_path, {"etc/app/a.conf": "a=1\n"})
    run_lib(tmp_path / "state", f'install_manifest "{stage_dir}"')
    neighbour = Path(specs[0].path).parent / "keep.conf"
    neighbour.write_text("x")
    run_lib(tmp_path / "state", f'remove_manifest "{stage_dir}"')
    assert not Path(specs[0].path).exists() and neighbour.exists()
