"""The figures `host_lab.py drills --harbor real` (labs/hosts/drills.py) takes from the workload client's output."""

from __future__ import annotations

from labs.hosts import drills


def op(kind: str, start: float, end: float, ok: bool = True, errors: tuple[str, ...] = (), ref: str = "t",
       digest: str = "sha256:t") -> dict:
    return {"op": kind, "ref": ref, "start": start, "end": end, "ok": ok, "attempts": len(errors) + ok,
            "errors": list(errors), "digest": digest if ok else None}


JOBS_OK = drills.jobs_figures({"a": "sha256:a"}, {"status": "Succeed"}, None, {"sha256:a"})


def client_out(ops: list[dict], lost: int = 0, corrupted: int = 0) -> dict:
    return {"ops": ops, "pushes_failed": sum(1 for o in ops if o["op"] == "push" and not o["ok"]),
            "pulls_failed": sum(1 for o in ops if o["op"] == "pull" and not o["ok"]), "retried_ok": 1,
            "max_push_gap_ms": 4000.0, "images_pushed": 2, "images_lost": lost, "images_corrupted": corrupted}


def test_recovery_is_the_first_good_operation_after_the_fault_and_after_every_failed_one():
    ops = [op("push", 100, 101), op("push", 101, 130, ok=False, errors=("OSError: refused",) * 5),
           op("pull", 130, 131, ok=False, errors=("RuntimeError: HTTP 502",)), op("push", 131, 133)]
    result = drills.summary_figures("t", client_out(ops), t_fault=101.5, healthy_s=60.0, jobs=JOBS_OK)
    assert result["recovered_ms"] == 31500.0 and result["failed_ops"] == 2 and result["ops"] == 4
    assert result["healthy_ms"] == 60000 and result["ok"] and result["jobs_lost"] == 0, result
    assert result["errors"] == ["OSError: refused", "RuntimeError: HTTP 502"]


def test_a_lost_or_corrupted_image_a_lost_or_unmeasured_job_or_a_cluster_never_whole_again_fails_the_drill():
    ops = [op("push", 100, 101), op("push", 102, 103)]
    assert drills.summary_figures("t", client_out(ops), 101.5, 10.0, JOBS_OK)["ok"]
    assert not drills.summary_figures("t", client_out(ops, lost=1), 101.5, 10.0, JOBS_OK)["ok"]
    assert not drills.summary_figures("t", client_out(ops, corrupted=1), 101.5, 10.0, JOBS_OK)["ok"]
    assert not drills.summary_figures("t", client_out(ops), 101.5, None, JOBS_OK)["ok"]
    assert not drills.summary_figures("t", client_out([]), 101.5, 10.0, JOBS_OK)["ok"]
    assert not drills.summary_figures("t", client_out(ops), 101.5, 10.0, None)["ok"]
    lost = drills.jobs_figures({"a": "sha256:a"}, {"status": "Failed"}, {"status": "Failed"}, set())
    assert not drills.summary_figures("t", client_out(ops), 101.5, 10.0, lost)["ok"]


def test_the_replication_counts_only_images_pushed_before_it_started_and_missing_after_its_rerun():
    ops = [op("push", 100, 101, ref="a", digest="sha256:a"), op("pull", 101, 102, ref="a", digest="sha256:a"),
           op("push", 102, 103, ok=False, ref="b"), op("push", 103, 104, ref="c", digest="sha256:c"),
           op("push", 104, 106, ref="d", digest="sha256:d")]
    expected = drills.pushed_before({"ops": ops}, 105.0)
    assert expected == {"a": "sha256:a", "c": "sha256:c"}
    # the first execution failed, its re-run copied one of the two
    jobs = drills.jobs_figures(expected, {"status": "Failed", "failed": 1}, {"status": "Failed"}, {"sha256:a"})
    assert (jobs["jobs_lost"], jobs["missing"], jobs["execution_stuck"]) == (1, ["c"], False)
    assert jobs["first"]["status"] == "Failed" and jobs["rerun"]["status"] == "Failed"


def test_a_replication_that_never_ends_is_a_lost_job_even_when_its_rerun_copied_everything():
    jobs = drills.jobs_figures({"a": "sha256:a"}, {"status": None, "in_progress": 2}, {"status": "Succeed"},
                               {"sha256:a"})
    assert jobs["jobs_lost"] == 2 and jobs["execution_stuck"] and jobs["missing"] == []
    ops = [op("push", 100, 101)]
    assert not drills.summary_figures("t", client_out(ops), 101.5, 10.0, jobs)["ok"]


def test_passed_needs_at_least_one_drill_and_every_drill_ok():
    assert not drills.passed({"lab": {"apply_ok": False}})
    assert drills.passed({"lab": {}, "a": {"ok": True}})
    assert not drills.passed({"lab": {}, "a": {"ok": True}, "b": {"ok": False}})
