"""The S3 backup step of components/patroni/patroni.sh and of components/postgres/postgres.sh (the single server) run
in bash with `curl`, `runuser` and `systemctl` stubs on PATH that record their arguments (curl answers /primary as a
leader or a replica)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "components" / "patroni" / "patroni.sh"
LIB_ENV = {"HARBOR_HA_LIB": str(ROOT / "components" / "host" / "lib.sh")}


PGBACKREST = "runuser -u postgres -- pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=harbor"
TIMERS = "systemctl enable --now pgbackrest-full.timer pgbackrest-diff.timer"


def s3_backups_ready(script, tmp_path, curl_rc: int = 0) -> list[str]:
    """`s3_backups_ready` of `script` with the stubs; the commands it ran."""
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    for tool, rc in (("curl", curl_rc), ("runuser", 0), ("systemctl", 0)):
        (bindir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit {rc}\n')
        (bindir / tool).chmod(0o755)
    r = subprocess.run(["bash", "-c", f'set -euo pipefail; . "{script}"; s3_backups_ready'], capture_output=True,
                       text=True, timeout=30,
                       env={**os.environ, **LIB_ENV, "PATH": f"{bindir}:{os.environ['PATH']}",
                            "API": "http://10.20.0.11:8008", "PGBACKREST_CONF": "/etc/pgbackrest/pgbackrest.conf",
                            "STANZA": "harbor"})
    assert r.returncode == 0, r.stderr
    return calls.read_text().splitlines()


@pytest.mark.parametrize("leader", [True, False])
def test_s3_mode_creates_the_stanza_on_the_leader_only_and_enables_the_timers_everywhere(tmp_path, leader):
    expected = ["curl -sf -o /dev/null http://10.20.0.11:8008/primary",
                *([f"{PGBACKREST} stanza-create", f"{PGBACKREST} check"] if leader else []), TIMERS]
    assert s3_backups_ready(SCRIPT, tmp_path, 0 if leader else 22) == expected


def test_s3_mode_on_the_single_server_creates_the_stanza_checks_the_archive_and_enables_the_timers(tmp_path):
    single = ROOT / "components" / "postgres" / "postgres.sh"
    assert s3_backups_ready(single, tmp_path) == [f"{PGBACKREST} stanza-create", f"{PGBACKREST} check", TIMERS]
