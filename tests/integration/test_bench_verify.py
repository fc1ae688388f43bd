"""Smoke test of labs/bench/bench_verify.py with a few tags: it starts two Debian docker-registry processes on
127.0.0.1 and, for the 1 ms row, two delay-proxy Python processes; the script stops all of them by PID.
The benchmark's figures are printed by the command itself; nothing here asserts a timing."""
from __future__ import annotations

import re
import subprocess
import sys


from tests.support import ROOT



def test_bench_script_runs_both_ways_at_each_round_trip_and_prints_the_figures():
    result = subprocess.run([sys.executable, str(ROOT / "labs" / "bench" / "bench_verify.py"),
                             "--tags", "20", "--repos", "2",
                             "--small-tags", "10", "--rtt-ms", "0", "1", "--concurrency", "4"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "built 20 tags in 2 repositories (10 tags each)" in out
    number = r"\s+(\d+\.\d+)"
    for label in ("loopback, direct", r"1 ms \(delay proxy\)"):
        row = re.search(label + number + number + r"\s+(\d+\.\d+)x", out)
        assert row, out
        tool, loop, ratio = map(float, row.groups())
        # The ratio is printed to one decimal and the times to the millisecond: allow for that rounding.
        assert tool > 0 and loop > 0 and abs(ratio - loop / tool) <= 0.05 + ratio * 0.0005 * (1 / tool + 1 / loop), out
    assert re.search(r"peak traced memory of verify\(\): 10 tags: .* 20 tags: .* ratio \d+\.\d+", out), out


def test_bench_script_rejects_tag_counts_that_do_not_split_over_the_repositories():
    result = subprocess.run([sys.executable, str(ROOT / "labs" / "bench" / "bench_verify.py"),
                             "--tags", "25", "--repos", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--tags must split evenly" in result.stderr
