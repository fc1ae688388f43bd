#!/usr/bin/env python3
"""Print the pytest -m expression for CI's part: the slow tiers of .ci/tiers whose paths the change touches run, in
the file's order, as long as their minutes fit the budget; every other slow tier is deselected. The change:
`git diff --name-only BASE HEAD`, BASE read from .ci/base. Budget: HHA_CI_SLOW_MINUTES (default 20).

A base that git does not know (a shallow clone, a rewritten history) counts as touching every path: running too much
is the safe error, within the budget. Prints the tiers chosen and why on stderr, the expression on stdout ("" = no
filter).

`--lanes N` (the full suite, `.ci/run --full`): every tier runs; the first line printed is the expression of the
tests outside the slow tiers, then one line per lane, the slow tiers dealt into N lanes of about equal minutes that
`.ci/run --full` runs side by side, each on its own lab network."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CI = Path(__file__).resolve().parent
DEFAULT_BUDGET = 20.0  # minutes: lint, unit, integration, lab and the stand-in host tier take ~35 more


@dataclass(frozen=True)
class Tier:
    marker: str
    minutes: float  #: warm duration on a CI machine, measured (the README of the tier says where)
    paths: tuple[str, ...]


def read_tiers(path: Path = CI / "tiers") -> list[Tier]:
    tiers = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        try:
            minutes = float(line[1]) if len(line) >= 3 else None
        except ValueError:
            minutes = None
        if minutes is None:
            raise SystemExit(f"{path}:{number}: a tier is `marker minutes path...`, got {raw.strip()!r}")
        tiers.append(Tier(line[0], minutes, tuple(line[2:])))
    return tiers


def changed_files(base: str) -> list[str] | None:
    done = subprocess.run(["git", "diff", "--name-only", base, "HEAD"], cwd=CI.parent, capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else None


def expression(tiers: list[Tier], changed: list[str] | None, budget: float = DEFAULT_BUDGET) -> tuple[str, dict]:
    why: dict[str, str] = {}
    skipped = []
    spent = 0.0
    for tier in tiers:
        if changed is None:
            hit: str | None = "(base unknown)"
        else:
            hit = next((f for f in changed if any(f.startswith(p) for p in tier.paths)), None)
        if hit is None:
            why[tier.marker] = "skipped: none of its paths changed"
        elif spent + tier.minutes > budget:
            why[tier.marker] = (f"skipped: {hit} changed, but its {tier.minutes:g} min exceed what is left of the "
                                f"{budget:g} min budget ({budget - spent:g}): run `.ci/run --full`")
        else:
            spent += tier.minutes
            why[tier.marker] = f"runs: {hit} changed ({tier.minutes:g} min)"
            continue
        skipped.append(tier.marker)
    return " and ".join(f"not {m}" for m in skipped), why


def lanes(tiers: list[Tier], count: int) -> list[list[Tier]]:
    """The tiers dealt into at most `count` lanes, the longest first onto the lane with the fewest minutes so far
    (each lane then runs its tiers in the file's order)."""
    dealt: list[list[Tier]] = [[] for _ in range(max(1, count))]
    for tier in sorted(tiers, key=lambda t: -t.minutes):
        min(dealt, key=lambda lane: sum(t.minutes for t in lane)).append(tier)
    order = {tier.marker: i for i, tier in enumerate(tiers)}
    return [sorted(lane, key=lambda t: order[t.marker]) for lane in dealt if lane]


def main() -> int:
    if sys.argv[1:2] == ["--lanes"]:
        tiers = read_tiers()
        print(" and ".join(f"not {t.marker}" for t in tiers))
        for lane in lanes(tiers, int(sys.argv[2])):
            print(" or ".join(t.marker for t in lane))
        return 0
    base = (CI / "base").read_text().strip()
    budget = float(os.environ.get("HHA_CI_SLOW_MINUTES", DEFAULT_BUDGET))
    expr, why = expression(read_tiers(), changed_files(base), budget)
    for marker, reason in why.items():
        print(f"ci tier {marker}: {reason} (base {base[:12]})", file=sys.stderr)
    print(expr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
