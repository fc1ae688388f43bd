#!/usr/bin/env python3
"""Count the Harbor API calls the provider makes per operation, against the Harbor API emulator.

Prints, per resource kind, the calls of create / read / update / delete as counted by the emulator against its
budget (<= 2, 1, 2, 1; `BUDGET_EXCEPTIONS` says where Harbor's API needs more, and why), and the wall time and call
count of listing 500 replication policies (pagination: 5 calls). Exits 1 when a kind is over its budget.

    python3 labs/bench/bench_provider.py [--json FILE]

Needs the emulator from tests/ and the swagger in ../shared/harbor (a development tool, not part of the program).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file: import from the repository root

from harbor_provider.client import ClientSettings, Credentials, HarborClient  # noqa: E402
from labs.fakes.harbor_emulator.server import HarborEmulator  # noqa: E402

SETTINGS = ClientSettings(read_timeout=10.0)
POLICIES_TO_LIST = 500
BUDGET = {"create": 2, "read": 1, "update": 2, "delete": 1}
BUDGET_EXCEPTIONS = {
    # Harbor's separate quota API: one more call per create/read/update.
    "Project (storage quota managed)": {"create": 3, "read": 2, "update": 3},
    # Harbor ignores a secret on POST /robots: it is set by the secret refresh and proven by a robot login
    # (two more calls on create, and on an update that rotates it).
    "RobotAccount (declared secret)": {"create": 4, "update": 4},
}


def measure(emu: HarborEmulator, provider, props: dict, change: dict) -> dict:
    """Calls per operation, each counted by the emulator."""
    counts = {}
    emu.reset_calls()
    created = provider.create(props)
    counts["create"] = emu.count()
    emu.reset_calls()
    read = provider.read(created.id, created.outs)
    counts["read"] = emu.count()
    news = {**props, **change}
    emu.reset_calls()
    updated = provider.update(created.id, read.outs, news)
    counts["update"] = emu.count()
    emu.reset_calls()
    provider.delete(created.id, updated.outs)
    counts["delete"] = emu.count()
    return counts


def run() -> dict:
    # Imported here, not at the top: they import pulumi, and `--help` should answer at once.
    from harbor_provider.access import LocalUserProvider, ProjectMemberProvider, UserGroupProvider
    from harbor_provider.configuration import ConfigurationProvider
    from harbor_provider.labels import LabelProvider
    from harbor_provider.resources import (
        ProjectProvider,
        RegistryProvider,
        ReplicationPolicyProvider,
        ReplicationRunProvider,
        RobotAccountProvider,
    )
    from harbor_provider.retention import ImmutableTagRuleProvider, RetentionPolicyProvider
    from harbor_provider.schedules import AuditLogPurgeScheduleProvider, GcScheduleProvider, ScanAllScheduleProvider
    from harbor_provider.webhooks import WebhookProvider

    results: dict = {}
    with HarborEmulator() as emu:
        conn = {"harbor_url": emu.url, "harbor_username": emu.username, "harbor_password": emu.password}
        registry = {**conn, "name": "bench", "type": "docker-registry", "url": "http://old:5000",
                    "access_key": "u", "access_secret": "Passw0rd"}
        results["Registry"] = measure(emu, RegistryProvider(SETTINGS), registry, {"description": "changed"})
        registry_id = int(RegistryProvider(SETTINGS).create(registry).id)
        policy = {**conn, "name": "bench", "registry_id": registry_id, "trigger": "scheduled",
                  "cron": "0 0 2 * * *", "filters": [{"type": "name", "value": "team/**"},
                                                     {"type": "tag", "value": "v*"}]}
        results["ReplicationPolicy"] = measure(emu, ReplicationPolicyProvider(SETTINGS), policy, {"speed": 1024})
        results["Project"] = measure(emu, ProjectProvider(SETTINGS), {**conn, "name": "bench"}, {"public": True})
        results["Project (storage quota managed)"] = measure(
            emu, ProjectProvider(SETTINGS), {**conn, "name": "quota", "storage_limit": 2**30},
            {"storage_limit": 2**31})
        results["RobotAccount"] = measure(emu, RobotAccountProvider(SETTINGS), {**conn, "name": "bench"},
                                          {"description": "changed"})
        results["RobotAccount (declared secret)"] = measure(
            emu, RobotAccountProvider(SETTINGS), {**conn, "name": "bench", "secret": "Bench5ecret"},
            {"secret": "Rotated5ecret"})
        policy_id = int(ReplicationPolicyProvider(SETTINGS).create(policy).id)
        # The emulator ends executions at once: create = start + one status poll.
        results["ReplicationRun"] = measure(emu, ReplicationRunProvider(SETTINGS),
                                            {**conn, "policy_id": policy_id, "poll_seconds": 0.1},
                                            {"timeout_seconds": 60})
        project_id = int(ProjectProvider(SETTINGS).create({**conn, "name": "retained"}).id)
        rules = [{"template": "latestPushedK", "count": 10}, {"template": "nDaysSinceLastPull", "count": 30}]
        results["RetentionPolicy"] = measure(emu, RetentionPolicyProvider(SETTINGS),
                                             {**conn, "project_id": project_id, "rules": rules,
                                              "cron": "0 0 0 * * 0"}, {"rules": rules[:1]})
        results["ImmutableTagRule"] = measure(emu, ImmutableTagRuleProvider(SETTINGS),
                                              {**conn, "project_id": project_id, "tags": "v*"}, {"tags": "release-*"})
        results["UserGroup"] = measure(emu, UserGroupProvider(SETTINGS), {**conn, "name": "bench"},
                                       {"name": "bench-renamed"})
        results["LocalUser"] = measure(emu, LocalUserProvider(SETTINGS),
                                       {**conn, "username": "bench-user", "email": "bench@example.com",
                                        "password": "Bench-Passw0rd"}, {"password": "Rotated-Passw0rd"})
        emu.add_user("bench-user")
        results["ProjectMember"] = measure(emu, ProjectMemberProvider(SETTINGS),
                                           {**conn, "project_id": project_id, "role": "guest",
                                            "username": "bench-user"}, {"role": "developer"})
        results["Label"] = measure(emu, LabelProvider(SETTINGS), {**conn, "name": "bench", "project_id": project_id},
                                   {"color": "#FF0000"})
        results["Webhook"] = measure(emu, WebhookProvider(SETTINGS),
                                     {**conn, "project_id": project_id, "name": "bench", "address": "https://ci/x",
                                      "auth_header": "Bearer Bench"}, {"auth_header": "Bearer Rotated"})
        results["Configuration"] = measure(emu, ConfigurationProvider(SETTINGS),
                                           {**conn, "settings": {"project_creation_restriction": "adminonly"},
                                            "secrets": {"oidc_client_secret": "Bench-Secret1"}},
                                           {"settings": {"project_creation_restriction": "everyone"}})
        results["GcSchedule"] = measure(emu, GcScheduleProvider(SETTINGS), {**conn, "cron": "0 0 3 * * 6"},
                                        {"workers": 4})
        results["AuditLogPurgeSchedule"] = measure(emu, AuditLogPurgeScheduleProvider(SETTINGS),
                                                   {**conn, "cron": "0 0 4 * * *"}, {"retention_hours": 24})
        results["ScanAllSchedule"] = measure(emu, ScanAllScheduleProvider(SETTINGS), {**conn, "cron": "0 0 1 * * 0"},
                                             {"cron": "0 0 2 * * 0"})
        for name, counts in results.items():
            counts["budget"] = {**BUDGET, **BUDGET_EXCEPTIONS.get(name, {})}
            counts["within_budget"] = all(counts[op] <= limit for op, limit in counts["budget"].items())

        with emu.lock:  # 500 policies put straight into the emulator: only the listing is measured
            for i in range(POLICIES_TO_LIST - len(emu.policies)):
                pid = emu.new_id()
                emu.policies[pid] = {"id": pid, "name": f"listed-{i}", "src_registry_id": 0,
                                     "dest_registry_id": registry_id, "replicate_deletion": False}
        client = HarborClient(Credentials.resolve(conn, {}), SETTINGS)
        emu.reset_calls()
        start = time.perf_counter()
        listed = list(client.list_all("/replication/policies"))
        seconds = time.perf_counter() - start
        if len(listed) != POLICIES_TO_LIST:
            raise SystemExit(f"listed {len(listed)} policies, expected {POLICIES_TO_LIST}")
        results["list_500_policies"] = {"calls": emu.count(), "seconds": round(seconds, 4)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()
    results = run()
    print(f"{'resource':34} {'create':>6} {'read':>5} {'update':>6} {'delete':>6}   budget (c r u d)")
    kinds = {name: counts for name, counts in results.items() if name != "list_500_policies"}
    for name, counts in kinds.items():
        budget = " ".join(str(counts["budget"][op]) for op in BUDGET)
        verdict = "ok" if counts["within_budget"] else "OVER BUDGET"
        print(f"{name:34} {counts['create']:>6} {counts['read']:>5} {counts['update']:>6} {counts['delete']:>6}   "
              f"{budget}  {verdict}")
    listing = results["list_500_policies"]
    print(f"list 500 policies: {listing['calls']} API calls in {listing['seconds']:.3f} s (target: 5 calls)")
    if options.json:
        text = json.dumps(results, indent=2) + "\n"
        sys.stdout.write(text) if str(options.json) == "-" else options.json.write_text(text)
    return 0 if all(counts["within_budget"] for counts in kinds.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
