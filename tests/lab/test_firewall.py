"""The host firewall for real: every rendered ruleset loads in the real `nft` (Debian's nftables), inside a fresh
network namespace (`unshare -n`), so the machine's own ruleset is never touched; the connection matrix and the
traffic capture of labs/firewall/matrix.py on both topologies."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from components.config import parse_cluster_config
from components.plan import render_all
from components.firewall import RULESET_PATH, render_unit
from tests.support import ROOT
from tests.support.pulumi_harness import stack_config


def stacks():
    for name in ("dev", "prod"):
        yield name, parse_cluster_config(stack_config(name)[0])
    v3 = copy.deepcopy(stack_config("prod")[0])
    v3["nfs"] = {"version": "3"}
    v3["firewall"] = {"adminSources": ["198.51.100.0/24"], "metricsSources": ["198.51.100.9"]}
    yield "prod-nfs3-sources", parse_cluster_config(v3)


RULESETS = [(f"{stack}/{host}", files[RULESET_PATH])
            for stack, cfg in stacks() for host, files in render_all(cfg).items()]


@pytest.mark.parametrize("name, ruleset", RULESETS, ids=[n for n, _ in RULESETS])
def test_rendered_ruleset_loads_in_nft(tmp_path, name, ruleset):
    """Runs `nft -f` (a real load, twice: the table replaces itself) in a throwaway network namespace."""
    path = tmp_path / "harbor-ha.nft"
    path.write_text(ruleset)
    script = f"nft -c -f {path} && nft -f {path} && nft -f {path} && nft list table inet harbor_ha"
    result = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{name}: {result.stderr}"
    assert "policy drop" in result.stdout


def test_rendered_firewall_unit_passes_systemd_analyze(tmp_path):
    """Runs `systemd-analyze verify` on the rendered harbor-ha-firewall.service."""
    unit = tmp_path / "harbor-ha-firewall.service"
    unit.write_text(render_unit())
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "harbor-ha-firewall" not in result.stderr, result.stderr


def test_connection_matrix_and_capture_on_both_topologies(tmp_path):
    """Runs labs/firewall/matrix.py: namespaces per host for the dev and prod topologies with the rendered rulesets
    loaded by `nft -f` and a listener on every port everywhere, a probe of every port of every host and the VIP from
    every host and an outside client; then tcpdump on the bridge while a client logs in through the real nginx
    (rendered LB config, TLS to stand-in nodes with the node certificate) and a node queries the real PostgreSQL
    15 (rendered TLS config, verify-full); the UI path from outside loadBalancer.adminSources gets nginx's 403."""
    out = tmp_path / "matrix.json"
    result = subprocess.run([sys.executable, str(ROOT / "labs" / "firewall" / "matrix.py"), "--json", str(out)],
                            capture_output=True, text=True, timeout=240)
    assert out.exists(), result.stderr
    report = json.loads(out.read_text())
    for topology in ("dev", "prod"):
        counts = report[topology]
        assert counts["allowed_broken"] == 0 and counts["forbidden_open"] == 0, counts["wrong"]
        assert counts["allowed_ok"] > 0 and counts["forbidden_refused"] > 0, counts
    capture = report["capture"]
    assert capture["api_status_through_lb"] == "200" and capture["db_query_ok"], capture
    # loadBalancer.adminSources: nginx answers 403 to a source outside it, and proxies for one inside.
    assert (capture["ui_status_outside_admin_sources"], capture["ui_status_inside_admin_sources"]) == ("403", "200")
    assert capture["control_plain_http_shows_password"], "the capture cannot see a password sent in clear"
    for hop, seen in capture["hops"].items():
        assert seen["packets"] > 0 and not seen["password"] and not seen["marker"], (hop, seen)
    assert result.returncode == 0, result.stderr
