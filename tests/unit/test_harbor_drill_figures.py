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
    # the upgrade and GC drills run no replication: judged on the workload alone
    assert drills.summary_figures("t", client_out(ops), 101.5, 10.0, None, jobs_measured=False)["ok"]
    assert not drills.summary_figures("t", client_out(ops, lost=1), 101.5, 10.0, None, jobs_measured=False)["ok"]
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


def test_a_stuck_execution_stopped_by_the_lab_as_the_operator_would_still_counts_its_tasks_as_lost():
    stopped = {"tasks": [{"id": 7, "status": "InProgress"}], "stop": {"status": "Stopped", "seconds": 3.0}}
    jobs = drills.jobs_figures({"a": "sha256:a"}, {"status": None, "in_progress": 1}, {"status": "Succeed"},
                               {"sha256:a"}, stopped)
    assert jobs["jobs_lost"] == 1 and jobs["execution_stuck"] and jobs["stuck"] == stopped
    # an execution whose flow never created a task (in_progress 0) is one lost job, not none
    assert drills.jobs_figures({}, {"status": None, "in_progress": 0}, {"status": "Succeed"}, set(),
                               {"tasks": []})["jobs_lost"] == 1
    assert drills.jobs_figures({"a": "sha256:a"}, {"status": "Succeed"}, None, {"sha256:a"})["stuck"] is None


def test_passed_needs_at_least_one_drill_and_every_drill_ok():
    assert not drills.passed({"lab": {"apply_ok": False}})
    assert drills.passed({"lab": {}, "a": {"ok": True}})
    assert not drills.passed({"lab": {}, "a": {"ok": True}, "b": {"ok": False}})


def test_the_upgrade_backup_counts_as_before_only_if_it_holds_the_schema_of_before_and_the_schema_moved():
    from labs.hosts.upgrade_drill import backup_taken_before
    assert backup_taken_before(171, 180, {"registry-schema171-before-v2.15.2-x.dump": 171})
    # a dump taken after the migration holds the new schema
    assert not backup_taken_before(171, 180, {"registry-schema180-before-v2.15.2-x.dump": 180})
    assert not backup_taken_before(171, 171, {"a.dump": 171})  # nothing migrated
    assert not backup_taken_before(171, 180, {}) and not backup_taken_before(None, 180, {"a.dump": None})


def test_gc_figures_count_only_the_victims_blobs_that_are_gone_and_runs_since_the_schedule_was_set():
    from labs.hosts.gc_drill import freed, gc_log_figures, runs_since
    assert freed({"a": 10, "b": 5, "c": 1}, {"c": 1, "z": 99}) == (15, 1)
    log = ("2026-12-05T15:40:03Z [INFO] 7 blobs and 3 manifests are actually deleted\n"
           "2026-12-05T15:40:03Z [INFO] The GC job actual frees up 12 MB space.\n")
    assert gc_log_figures(log) == {"blobs_deleted": 7, "manifests_deleted": 3, "log_freed_mb": 12}
    assert gc_log_figures("") == {"blobs_deleted": None, "manifests_deleted": None, "log_freed_mb": None}
    history = [{"id": 3, "creation_time": "2026-12-05T15:40:00.5Z"}, {"id": 1, "creation_time": "2026-12-05T15:30:00Z"},
               {"id": 2, "creation_time": "2026-12-05T15:38:00Z"}]
    at_1527, at_1538 = 1796484420.0, 1796485080.0  # 2026-12-05 15:27 and 15:38 UTC
    assert [h["id"] for h in runs_since(history, at_1527)] == [1, 2, 3]
    assert [h["id"] for h in runs_since(history, at_1538)] == [2, 3]


def test_a_roll_back_expects_back_only_the_images_whose_push_ended_before_the_dump_started():
    from labs.hosts.upgrade_drill import split_by_backup
    out = {"pushed": {"a": "sha256:a", "b": "sha256:b", "c": "sha256:c", "d": "sha256:d"},
           "ops": [op("push", 10, 20) | {"ref": "a"}, op("push", 25, 35) | {"ref": "b"},
                   op("push", 45, 50) | {"ref": "c"}, op("pull", 51, 52) | {"ref": "a"},
                   op("push", 60, 61, ok=False) | {"ref": "e"}, op("push", 70, 71) | {"ref": "d"}]}
    # the dump ran from 30 to 40: b overlapped it
    assert split_by_backup(out, 30.0, 40.0) == ({"a": "sha256:a"}, {"c": "sha256:c", "d": "sha256:d"})
