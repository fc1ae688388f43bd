"""CI's tier selection (.ci/select_tiers.py): a slow tier runs when the change touches one of its paths, and every
tier runs when the base commit is unknown."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("select_tiers", ROOT / ".ci" / "select_tiers.py")
assert spec and spec.loader
select_tiers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(select_tiers)

TIERS = {"engine": ["components/", "__main__.py"], "real_harbor": ["labs/harbor/", "components/harbor_node/"]}


def test_a_tier_whose_paths_changed_runs_and_the_others_are_deselected():
    expr, why = select_tiers.expression(TIERS, ["components/harbor_node/harbor-node.sh", "README.md"])
    assert expr == ""
    assert why["engine"].startswith("runs: components/harbor_node/harbor-node.sh")
    expr, why = select_tiers.expression(TIERS, ["__main__.py"])
    assert expr == "not real_harbor"
    assert why["real_harbor"].startswith("skipped")


def test_no_change_deselects_every_slow_tier():
    assert select_tiers.expression(TIERS, [])[0] == "not engine and not real_harbor"


def test_an_unknown_base_runs_every_tier():
    expr, why = select_tiers.expression(TIERS, None)
    assert expr == "" and all(reason.startswith("runs") for reason in why.values())


def test_the_committed_tiers_name_declared_markers_and_existing_paths():
    declared = (ROOT / "pyproject.toml").read_text()
    for marker, paths in select_tiers.read_tiers().items():
        assert f'"{marker}:' in declared, f".ci/tiers: marker {marker} is not declared in pyproject.toml"
        for path in paths:
            assert (ROOT / path).exists() or any(ROOT.glob(path + "*")), f".ci/tiers: {marker}: no path {path}"


def test_a_tier_line_without_paths_is_refused(tmp_path):
    bad = tmp_path / "tiers"
    bad.write_text("engine\n")
    with pytest.raises(SystemExit, match="tiers:1: a tier needs a marker"):
        select_tiers.read_tiers(bad)
