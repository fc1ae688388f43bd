"""scripts/hostkeys.py with a stand-in `ssh-keyscan` first on PATH (it prints what the real one prints for a host
that answers, nothing for one that does not): the keys land in the hosts list and the exit status says who failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from components.config import parse_cluster_config
from tests.support import ROOT

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeK5bxgHh0mmJMi8ONAz5vSMfCwDgAxeMuUIgPzbc0E"


def run(tmp_path, answering: set[str], *args: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin" / "ssh-keyscan"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\nfor a; do last=$a; done\n"
                    f"case \" {' '.join(sorted(answering))} \" in *\" $last \"*) echo \"$last {KEY}\";; esac\n")
    fake.chmod(0o755)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "hostkeys.py"), "--stack", "dev", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"})


def test_every_host_answering_gives_a_hosts_list_the_config_accepts(tmp_path):
    stack = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    done = run(tmp_path, {h["address"] for h in stack["harbor-ha:hosts"]})
    assert done.returncode == 0, done.stderr
    hosts = yaml.safe_load(done.stdout)["harbor-ha:hosts"]
    assert [h["hostKey"] for h in hosts] == [KEY] * len(stack["harbor-ha:hosts"])
    cfg = parse_cluster_config({**{k.split(":", 1)[1]: v for k, v in stack.items()}, "hosts": hosts})
    assert all(h.host_key == KEY for h in cfg.hosts)


def test_a_silent_host_is_named_and_the_exit_status_is_1(tmp_path):
    done = run(tmp_path, {"192.168.56.10"}, "--json", "-")
    assert done.returncode == 1 and "harbor1 did not answer" in done.stderr
    assert json.loads(done.stdout) == {"data1": KEY, "harbor1": None, "harbor2": None}
