#!/usr/bin/env python3
"""Print the pytest -m expression for CI: the slow tiers of .ci/tiers whose paths the change touches run, the other
slow tiers are deselected. The change: `git diff --name-only BASE HEAD`, BASE read from .ci/base.

A base that git does not know (a shallow clone, a rewritten history) selects every tier: running too much is the
safe error. Prints the tiers chosen and why on stderr, the expression on stdout ("" = no filter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CI = Path(__file__).resolve().parent


def read_tiers(path: Path = CI / "tiers") -> dict[str, list[str]]:
    tiers: dict[str, list[str]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) < 2:
            raise SystemExit(f"{path}:{number}: a tier needs a marker and at least one path")
        tiers[line[0]] = line[1:]
    return tiers


def changed_files(base: str) -> list[str] | None:
    done = subprocess.run(["git", "diff", "--name-only", base, "HEAD"], cwd=CI.parent, capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else None


def expression(tiers: dict[str, list[str]], changed: list[str] | None) -> tuple[str, dict[str, str]]:
    why: dict[str, str] = {}
    skipped = []
    for marker, prefixes in tiers.items():
        if changed is None:
            why[marker] = "runs: the base commit is unknown here"
            continue
        hit = next((f for f in changed if any(f.startswith(p) for p in prefixes)), None)
        if hit:
            why[marker] = f"runs: {hit} changed"
        else:
            why[marker] = "skipped: none of its paths changed"
            skipped.append(marker)
    return " and ".join(f"not {m}" for m in skipped), why


def main() -> int:
    base = (CI / "base").read_text().strip()
    expr, why = expression(read_tiers(), changed_files(base))
    for marker, reason in why.items():
        print(f"ci tier {marker}: {reason} (base {base[:12]})", file=sys.stderr)
    print(expr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
