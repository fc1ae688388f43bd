"""CI's tier selection (.ci/select_tiers.py): a slow tier runs when the change touches one of its paths and its
minutes fit the budget, in the order of .ci/tiers; an unknown base counts as touching every path."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("select_tiers", ROOT / ".ci" / "select_tiers.py")
assert spec and spec.loader
select_tiers = importlib.util.module_from_spec(spec)
sys.modules["select_tiers"] = select_tiers  # its dataclass looks its module up there
spec.loader.exec_module(select_tiers)
Tier = select_tiers.Tier

TIERS = [Tier("realharbor", 20, ("labs/harbor/", "components/harbor_node/")),
         Tier("engine", 15, ("components/", "__main__.py")),
         Tier("garage", 10, ("components/object_store/",))]


def test_a_tier_whose_paths_changed_runs_and_the_others_are_deselected():
    expr, why = select_tiers.expression(TIERS, ["__main__.py", "README.md"])
    assert expr == "not realharbor and not garage"
    assert why["engine"].startswith("runs: __main__.py changed")
    assert why["garage"].startswith("skipped: none")


def test_no_change_deselects_every_slow_tier():
    assert select_tiers.expression(TIERS, [])[0] == "not realharbor and not engine and not garage"


def test_tiers_run_in_file_order_while_their_minutes_fit_the_budget():
    changed = ["components/harbor_node/harbor-node.sh", "components/object_store/garage.sh"]
    expr, why = select_tiers.expression(TIERS, changed, budget=30)
    # realharbor (20) and engine (15) both touched: engine would pass 30; garage (10) still fits after realharbor
    assert expr == "not engine"
    assert "exceed what is left of the 30 min budget (10)" in why["engine"]
    assert why["garage"].startswith("runs")


def test_an_unknown_base_touches_every_path_within_the_budget():
    expr, why = select_tiers.expression(TIERS, None, budget=100)
    assert expr == "" and all(reason.startswith("runs") for reason in why.values())


def test_the_committed_tiers_name_declared_markers_and_existing_paths():
    declared = (ROOT / "pyproject.toml").read_text()
    for tier in select_tiers.read_tiers():
        assert f'"{tier.marker}:' in declared, f".ci/tiers: marker {tier.marker} is not declared in pyproject.toml"
        for path in tier.paths:
            assert (ROOT / path).exists(), f".ci/tiers: {tier.marker}: no path {path}"


def test_a_tier_line_without_minutes_is_refused(tmp_path):
    bad = tmp_path / "tiers"
    bad.write_text("engine components/\n")
    with pytest.raises(SystemExit, match="tiers:1: a tier is `marker minutes path...`"):
        select_tiers.read_tiers(bad)


def test_the_full_suite_deals_every_tier_into_lanes_of_about_equal_minutes():
    tiers = [*TIERS, Tier("monitoring", 30, ("components/monitoring/",)), Tier("drills", 5, ("labs/",))]
    dealt = select_tiers.lanes(tiers, 2)
    assert sorted(t.marker for lane in dealt for t in lane) == sorted(t.marker for t in tiers)
    assert [sum(t.minutes for t in lane) for lane in dealt] == [40, 40]
    # within a lane, the file's order
    assert [t.marker for t in dealt[1]] == ["realharbor", "engine", "drills"]


def test_more_lanes_than_tiers_leaves_no_empty_lane():
    assert len(select_tiers.lanes(TIERS, 8)) == 3
