"""labs/engine/build_toolchain.sh's refusals, run for real (bash and the go command; nothing is built): it takes the
Go module proxy from the machine's configuration (`go env GOPROXY`) and stops, naming the fix, when there is none."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "labs" / "engine" / "build_toolchain.sh"


def setup_module():
    # The machine provides Go (the toolchain tier needs it): missing, the check below would prove nothing.
    if shutil.which("go") is None:
        pytest.fail("the go command is not installed (labs/engine/build_toolchain.sh needs it)")


@pytest.mark.parametrize("goproxy", ["off", "direct", "direct|off"])
def test_no_module_proxy_configured_stops_before_building_and_says_how_to_set_one(tmp_path, goproxy):
    env = {**os.environ, "GOPROXY": goproxy, "TOOLCHAIN_DIR": str(tmp_path / "out"),
           "HHA_TOOLCHAIN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no Go module proxy configured" in done.stderr and "go env -w GOPROXY" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()

