"""tls.mode acme against the real pebble (root: network namespaces). Through `labs/ha_lab.py acme`, the HA lab on
its own namespace prefix (beside a running HA lab) with keepalived + nginx on the rendered acme-mode configs, pebble
and pebble-challtestsrv in the client namespace, components/loadbalancer/acme.sh running lego on the VIP holder:
issuance over HTTP-01 through the VIP (or DNS-01 through the stack's hook), a forced renewal served by both LBs, a
renewal interrupted by an LB crash and completed by the new holder. The command's `finally` runs `down`; the test
checks nothing is left."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import ROOT


@pytest.mark.parametrize("challenge", ["http-01", "dns-01"])
def test_acme_issues_renews_on_both_lbs_and_survives_a_failover_during_renewal(challenge):
    """dns-01: the stack's acmeDnsHook (labs/ha_lab.py DNS_HOOK) sets each order's TXT record in challtestsrv, the
    DNS pebble asks; lego's exec provider runs it on the VIP holder."""
    base = Path(tempfile.mkdtemp(prefix="harbor-ha-acme-lab-"))
    os.chmod(base, 0o755)  # PostgreSQL runs as postgres below it
    out = base / "acme.json"
    env = {**os.environ, "HA_LAB_NS_PREFIX": "ha-acme-", "HA_LAB_BLACKHOLE_METRIC": "1820"}
    try:
        r = subprocess.run([sys.executable, str(ROOT / "labs" / "ha_lab.py"), "--state-dir", str(base / "state"),
                            "acme", "--challenge", challenge, "--json", str(out)], capture_output=True, text=True,
                           timeout=900, env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["issued"] and result["renewed_on_both_lbs"] and result["renewal_during_failover"], result
        assert len({result["issued_serial"], result["renewed_serial"], result["final_serial"]}) == 3
        assert result["challenge"] == challenge
        # issuance, the forced renewal, the interrupted one and the new holder's: a TXT record each (none in http-01)
        assert (result["dns_hook_presents"] >= 3) if challenge == "dns-01" else result["dns_hook_presents"] == 0
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert "ha-acme-" not in listed
        assert "metric 1820" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
