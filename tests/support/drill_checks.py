"""What every drill with real Harbor must show, whatever its fault (tests/hosts/test_real_harbor*_drill*.py)."""

from __future__ import annotations


def assert_no_image_lost(result: dict) -> None:
    """Every image the client reported pushed was pulled back with its digest, and the cluster was whole again."""
    assert result.get("images_pushed"), result
    assert (result["images_lost"], result["images_corrupted"]) == (0, 0), result
    assert result["healthy_ms"] is not None and result["recovered_ms"] is not None, result


def assert_no_job_lost(result: dict) -> None:
    """The replication started before the fault completed or was retried by its trigger, none left stuck."""
    jobs = result.get("replication") or {}
    assert jobs.get("images") and jobs.get("jobs_lost") == 0 and not jobs.get("execution_stuck"), jobs
