"""labs/bench/bench_provider.py runs and its measured figures meet the issue's targets.

Integration: runs the script as a subprocess; it starts the Harbor API emulator (HTTP server on 127.0.0.1) itself.
"""

import json
import subprocess
import sys

from tests.support import ROOT
TARGETS = {"create": 2, "read": 1, "update": 2, "delete": 1}
# Managing a project's storage quota needs Harbor's separate quota API: one more call per create/read/update.
QUOTA_TARGETS = {"create": 3, "read": 2, "update": 3, "delete": 1}


def test_bench_script_counts_meet_targets(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "labs/bench/bench_provider.py", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    for resource in ("Registry", "ReplicationPolicy", "Project", "RobotAccount", "ReplicationRun"):
        for op, limit in TARGETS.items():
            assert 0 <= figures[resource][op] <= limit, (resource, op, figures[resource])
        assert figures[resource]["read"] == 1
    for op, limit in QUOTA_TARGETS.items():
        assert figures["Project (storage quota managed)"][op] <= limit
    assert figures["list_500_policies"]["calls"] == 5
    assert figures["list_500_policies"]["seconds"] > 0
    assert "list 500 policies: 5 API calls" in done.stdout
