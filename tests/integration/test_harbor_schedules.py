"""The system schedules (GC, audit log purge, scan all) through the SDK's dynamic provider host.

Integration: each test starts the Harbor API emulator (an HTTP server thread on 127.0.0.1).
"""

import pytest
from pulumi.runtime import proto

from harbor_provider.schedules import AuditLogPurgeScheduleProvider, GcScheduleProvider, ScanAllScheduleProvider
from tests.support.harbor_api import FAST
from tests.support.sdk_provider import UNKNOWN, SdkHost

KINDS = [
    (GcScheduleProvider, "gc", {"cron": "0 0 3 * * 6", "delete_untagged": True, "workers": 3}, {"workers": 5}),
    (AuditLogPurgeScheduleProvider, "purgeaudit",
     {"cron": "0 0 4 * * *", "retention_hours": 168, "operations": ["pull_artifact", "other"]},
     {"retention_hours": 720}),
    (ScanAllScheduleProvider, "scanAll", {"cron": "0 0 1 * * 0"}, {"cron": "0 30 1 * * 0"}),
]
IDS = [k[1] for k in KINDS]


@pytest.mark.parametrize("provider_cls,vendor,args,change", KINDS, ids=IDS)
def test_schedule_lifecycle_reads_back_as_declared_within_call_budget(provider_cls, vendor, args, change,
                                                                       emulator, conn):
    host = SdkHost(provider_cls(FAST))
    props = {**conn, **args}
    id_, outs = host.create(props)
    assert emulator.count() == 2 and emulator.schedules[vendor]["cron"] == args["cron"]
    assert {k: outs[k] for k in args} == args
    emulator.reset_calls()
    _, read = host.read(id_, outs)
    assert emulator.count() == 1 and {k: read[k] for k in args} == args
    assert host.diff(id_, read, props).changes == proto.DiffResponse.DIFF_NONE
    news = {**props, **change}
    assert host.diff(id_, read, news).changes == proto.DiffResponse.DIFF_SOME
    emulator.reset_calls()
    outs = host.update(id_, read, news)
    assert emulator.count() == 2 and {k: outs[k] for k in change} == change
    emulator.reset_calls()
    host.delete(id_, outs)
    assert emulator.count() == 1 and vendor not in emulator.schedules


def test_schedule_edited_in_the_ui_shows_as_drift_and_removed_one_as_gone(emulator, conn):
    host = SdkHost(GcScheduleProvider(FAST))
    props = {**conn, "cron": "0 0 3 * * 6", "workers": 2}
    id_, outs = host.create(props)
    emulator.schedules["gc"]["parameters"]["workers"] = 7
    _, read = host.read(id_, outs)
    assert read["workers"] == 7
    assert host.diff(id_, read, props).changes == proto.DiffResponse.DIFF_SOME
    del emulator.schedules["gc"]
    assert host.read(id_, outs) == ("", {})


BAD = [
    (GcScheduleProvider, {"cron": "0 0 3 * * 6", "workers": 11}, "workers", "1..10"),
    (GcScheduleProvider, {"cron": "0 3 * * 6"}, "cron", "has 5 fields"),
    (GcScheduleProvider, {"cron": ""}, "cron", "must not be empty"),
    (AuditLogPurgeScheduleProvider, {"cron": "0 0 4 * * *", "retention_hours": 240001}, "retention_hours",
     "0..240000"),
    (AuditLogPurgeScheduleProvider, {"cron": "0 0 4 * * *", "operations": ["push"]}, "operations[0]",
     "no audit event type"),
    (ScanAllScheduleProvider, {"cron": "30 0 1 * * 0"}, "cron", "seconds field must be 0"),
    (ScanAllScheduleProvider, {"cron": "0 0 1 * * 8"}, "cron", "day-of-week"),
    (ScanAllScheduleProvider, {"cron": "0 0 1 * * 0", "days": 3}, "days", "unknown input"),
]


@pytest.mark.parametrize("provider_cls,args,field,reason", BAD, ids=[f"{b[0].kind_id}:{b[2]}" for b in BAD])
def test_bad_schedule_input_is_refused_by_check_naming_the_key(provider_cls, args, field, reason, emulator, conn):
    _, failures = SdkHost(provider_cls(FAST)).check({}, {**conn, **args})
    assert [f for f, _ in failures] == [field] and reason in failures[0][1]
    assert emulator.count() == 0


def test_every_minute_is_accepted_for_a_schedule_and_unknown_cron_at_preview(emulator, conn):
    host = SdkHost(ScanAllScheduleProvider(FAST))
    assert host.check({}, {**conn, "cron": "0 * * * * *"})[1] == []
    assert host.check({}, {**conn, "cron": UNKNOWN})[1] == []


def test_schedule_put_answered_503_is_retried(emulator, conn):
    emulator.inject("PUT", "/system/gc/schedule$", "status", status=503)
    id_, outs = SdkHost(GcScheduleProvider(FAST)).create({**conn, "cron": "0 0 3 * * 6"})
    assert emulator.schedules["gc"]["cron"] == "0 0 3 * * 6" and outs["workers"] == 1
