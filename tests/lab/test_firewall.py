"""The host firewall for real: every rendered ruleset loads in the real `nft` (Debian's nftables), inside a fresh
network namespace (`unshare -n`), so the machine's own ruleset is never touched."""

from __future__ import annotations

import copy
import subprocess

import pytest

from components.config import parse_cluster_config
from components.plan import render_all
from components.firewall import RULESET_PATH
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
