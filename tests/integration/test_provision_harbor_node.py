"""Functions of components/harbor_node/harbor-node.sh run for real in bash against temporary files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import ROOT

SCRIPT = ROOT / "components" / "harbor_node" / "harbor-node.sh"
# On a host lib.sh lies beside the role script; here it is taken from components/host/.
LIB_ENV = {"HARBOR_HA_LIB": str(ROOT / "components" / "host" / "lib.sh")}


def run_node(tmp_path: Path, call: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Source harbor-node.sh (its main does not run when sourced) and call one of its functions."""
    result = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; {call}'], capture_output=True, text=True, timeout=30,
                            env={**os.environ, **LIB_ENV, "HARBOR_HA_STATE": str(tmp_path / "state"), **env})
    assert result.returncode == 0 or not check, result.stderr
    return result


def test_shared_csrf_key_replaces_the_one_prepare_generated_and_keeps_the_rest(tmp_path):
    env_dir = tmp_path / "harbor" / "common" / "config" / "core"
    env_dir.mkdir(parents=True)
    env_file = env_dir / "env"
    env_file.write_text("CONFIG_PATH=/etc/core/app.conf\nCSRF_KEY=generatedByPrepare0123456789abcd\nEXT=1")
    env_file.chmod(0o640)
    key_file = tmp_path / "csrf_key"
    key_file.write_text("SharedClusterKey0123456789abcdef\n")
    result = run_node(tmp_path, "set_shared_csrf_key", INSTALL_DIR=str(tmp_path / "harbor"),
                      CSRF_KEY_FILE=str(key_file))
    assert env_file.read_text() == ("CONFIG_PATH=/etc/core/app.conf\nCSRF_KEY=SharedClusterKey0123456789abcdef\n"
                                    "EXT=1\n")
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    assert "SharedClusterKey" not in result.stdout + result.stderr


def test_shared_csrf_key_is_added_when_prepare_wrote_none(tmp_path):
    env_dir = tmp_path / "harbor" / "common" / "config" / "core"
    env_dir.mkdir(parents=True)
    (env_dir / "env").write_text("A=1\n")
    (tmp_path / "csrf_key").write_text("K" * 32 + "\n")
    run_node(tmp_path, "set_shared_csrf_key", INSTALL_DIR=str(tmp_path / "harbor"),
             CSRF_KEY_FILE=str(tmp_path / "csrf_key"))
    assert (env_dir / "env").read_text() == "A=1\nCSRF_KEY=" + "K" * 32 + "\n"


def test_fstab_put_replaces_the_entry_of_the_mount_point_once_and_drop_removes_it(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n#198.18.0.9:/old /data nfs defaults 0 0\n"
                     "198.18.0.9:/srv/harbor /data nfs vers=4.1,hard 0 0\n")
    line = "198.18.0.10:/srv/harbor /data nfs vers=4.2,hard,noatime,_netdev 0 0"
    run_node(tmp_path, f'fstab_put "{line}"', FSTAB=str(fstab))
    assert fstab.read_text() == ("UUID=abc / ext4 defaults 0 1\n#198.18.0.9:/old /data nfs defaults 0 0\n"
                                 f"{line}\n")
    again = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; fstab_put "{line}"'], capture_output=True, text=True,
                           timeout=30, env={**os.environ, **LIB_ENV, "FSTAB": str(fstab)})
    assert again.returncode == 1  # already there: nothing to remount
    run_node(tmp_path, "fstab_drop /data", FSTAB=str(fstab))
    assert fstab.read_text() == "UUID=abc / ext4 defaults 0 1\n#198.18.0.9:/old /data nfs defaults 0 0\n"


def test_shared_data_volume_is_checked_never_mounted_nor_put_in_fstab(tmp_path):
    """The sandbox (DATA_MOUNT=shared): the runtime mounted the volume; the node only checks it is a mount."""
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n")
    env = {"DATA_MOUNT": "shared", "FSTAB": str(fstab)}
    run_node(tmp_path, "ensure_mount unused-stage && remove_mount", DATA_VOLUME="/", **env)
    assert fstab.read_text() == "UUID=abc / ext4 defaults 0 1\n"
    (tmp_path / "data").mkdir()
    missing = run_node(tmp_path, "ensure_mount unused-stage", check=False, DATA_VOLUME=str(tmp_path / "data"), **env)
    assert missing.returncode != 0 and "the shared data volume is missing" in missing.stderr, missing.stderr
