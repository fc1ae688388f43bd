"""scripts/drills.unmet_targets: the sentence for each target a drill missed, none when all were met (ha_drill
exits 1 on any)."""

from __future__ import annotations

import pytest

from scripts.drills import LB_TARGETS, unmet_targets


def lb_result(move_ms, failed):
    return {"vip_move_ms": move_ms, "failed": failed, "total": 200}


@pytest.mark.parametrize("scenario, result, unmet", [
    ("lb_crash", lb_result(712.0, 1), []),
    ("lb_crash", lb_result(2994.0, 1), ["VIP on the backup after 2994.0 ms, target 1000 ms"]),
    ("lb_crash", lb_result(None, 0), ["VIP on the backup after never, target 1000 ms"]),
    ("nginx_death", lb_result(297.0, 5), ["5 of 200 requests failed, target at most 1"]),
    ("node_death", lb_result(None, 0), []),
    ("node_death", lb_result(400.0, 0), ["the VIP moved (400.0 ms after the fault); it must stay"]),
    ("data_path", {"same_digest": True}, []),
    ("data_path", {"same_digest": False}, ["the image pulled after the node died differs from the one pushed"]),
])
def test_lb_and_data_path_targets(scenario, result, unmet):
    assert unmet_targets(scenario, result, 5000) == unmet


def redis_result(resumed_ms, outcomes_after):
    events = [{"t": -500, "outcome": "ok"}] + [{"t": 100 * i, "outcome": o} for i, o in enumerate(outcomes_after)]
    return {"writes_again_ms": resumed_ms, "events": events}


def test_redis_writes_must_resume_within_down_after_plus_the_margin():
    assert unmet_targets("redis_master_death", redis_result(6200, ["refused", "ok"]), 5000) == []
    assert unmet_targets("redis_master_death", redis_result(11000, ["refused", "ok"]), 5000) == [
        "writes resumed after 11000 ms, target 10000 ms (downAfterMs + 5000)"]
    assert unmet_targets("redis_master_death", redis_result(None, ["refused"]), 5000) == [
        "writes did not resume after the master was killed"]
    assert unmet_targets("redis_master_death", redis_result(None, ["ok", "ok"]), 5000) == []


def test_every_lb_scenario_has_a_target():
    from scripts.drills import LB_SCENARIOS

    assert set(LB_TARGETS) == set(LB_SCENARIOS)
