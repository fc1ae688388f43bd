"""components/loadbalancer/loadbalancer.sh's config check run in bash with `nginx` and `sysctl` stubs on PATH
(the rendered sysctl file given by SYSCTL_FILE)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "components" / "loadbalancer" / "loadbalancer.sh"
LIB_ENV = {"HARBOR_HA_LIB": str(ROOT / "components" / "host" / "lib.sh")}


def check_with(tmp_path: Path, nginx_output: str, nginx_rc: int) -> subprocess.CompletedProcess:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sysctl").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "nginx").write_text(f"#!/bin/sh\nprintf '%s' '{nginx_output}' >&2\nexit {nginx_rc}\n")
    for tool in ("sysctl", "nginx"):
        (bindir / tool).chmod(0o755)
    sysctl_file = tmp_path / "60-harbor-ha-lb.conf"
    sysctl_file.write_text("net.ipv4.ip_nonlocal_bind = 1\n")
    return subprocess.run(["bash", "-c", f'. "{SCRIPT}"; nginx_config_ok'], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **LIB_ENV, "PATH": f"{bindir}:{os.environ['PATH']}",
                                           "SYSCTL_FILE": str(sysctl_file)})


@pytest.mark.parametrize("output, rc, ok", [
    ("", 0, True),
    ("nginx: [warn] 4096 worker_connections exceed open file resource limit: 1024", 0, False),
    ("nginx: [emerg] unknown directive", 1, False),
])
def test_nginx_check_refuses_warnings_as_well_as_errors(tmp_path, output, rc, ok):
    result = check_with(tmp_path, output, rc)
    assert (result.returncode == 0) == ok, result.stderr
    if output:
        assert output in result.stderr
