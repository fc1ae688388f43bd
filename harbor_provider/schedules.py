"""Harbor's system-wide schedules as Pulumi dynamic resources: garbage collection, audit log purge, scan all.

Each exists once per Harbor and has no id of its own: the resource id is the kind. One PUT sets it (Harbor's
handlers replace the schedule: gc.go/purge.go `kick` -> updateSchedule deletes then creates; scan_all.go
UpdateScanAllSchedule creates one when there is none), one GET reads it back, and a PUT of type `None` removes it
(delete). Declaring a schedule takes over the one set in the UI: it is a setting, not a named object, so there is
nothing to adopt. Calls: create 2 (PUT, GET), read 1, update 2, delete 1.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, ClassVar, Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult

from .client import ClientSettings, HarborClient
from .models import AuditLogPurgeScheduleArgs, GcScheduleArgs, ScanAllScheduleArgs
from .resources import Connection, _HarborProvider, _inputs, _opts

# The type Harbor stores for a schedule given by cron (ScheduleObj.type; the UI's Hourly/Daily/Weekly are presets
# of the same cron).
CUSTOM = "Custom"


class _SystemScheduleProvider(_HarborProvider):
    """The flow of one system schedule; subclasses map their parameters."""

    kind_id: ClassVar[str]
    """The resource id: the schedule's kind (`gc`, `purgeaudit`, `scanAll`), as there is one per Harbor."""

    def parameters(self, args) -> dict:
        """The schedule's `parameters` object (Schedule.parameters in the swagger)."""
        return {}

    def parameter_state(self, parameters: dict) -> dict:
        """The args fields as Harbor keeps them in the schedule's parameters."""
        return {}

    parameters_as_text = False
    """GET answers an ExecHistory whose `job_parameters` is JSON text (GC, purge), not a Schedule (scan all)."""

    def stored_parameters(self, obj: dict) -> dict:
        if not self.parameters_as_text:
            return obj.get("parameters") or {}
        try:
            return json.loads(obj.get("job_parameters") or "{}") or {}
        except ValueError:
            return {}

    def _body(self, args) -> dict:
        return {"schedule": {"type": CUSTOM, "cron": args.cron}, "parameters": self.parameters(args)}

    def fetch_schedule(self, client: HarborClient) -> Optional[dict]:
        """The schedule as Harbor answers it, or None when none is set."""
        obj = client.request("GET", self.path, ok=(200,)).body
        schedule = (obj or {}).get("schedule") or {}
        # Harbor answers 200 without a body (or with type None) when no schedule is set.
        return obj if schedule.get("cron") and schedule.get("type") != "None" else None

    def fetch(self, client: HarborClient, id_: str, props: dict) -> dict:
        """The schedule after a write (the shared update flow): {} (no outputs from Harbor) when none is set."""
        return self.fetch_schedule(client) or {}

    def create(self, props: dict) -> CreateResult:
        args = self.parse_args(props)
        client = self.client(props)
        self.write_update(client, self.kind_id, args, {})
        obj = self.fetch(client, self.kind_id, props)
        return CreateResult(self.kind_id, self.outputs(props, obj, secrets.token_hex(16), {}))

    def read(self, id_: str, props: dict) -> ReadResult:
        obj = self.fetch_schedule(self.client(props))
        if obj is None:  # removed in the UI: gone, so the next update sets it again
            return ReadResult(None, {})
        return ReadResult(id_, {**self.carried(props), **self.state(obj)})

    def write_update(self, client: HarborClient, id_: str, args, olds: dict) -> dict:
        client.request("PUT", self.path, json_body=self._body(args), ok=(200,))
        return {}

    def delete(self, id_: str, props: dict) -> None:
        self.client(props).request("PUT", self.path, json_body={"schedule": {"type": "None"}}, ok=(200,))

    def state(self, obj: dict) -> dict:
        return {"cron": ((obj.get("schedule") or {}).get("cron")) or None,
                **self.parameter_state(self.stored_parameters(obj))}

    def desired(self, args) -> dict:
        return {"cron": args.cron, **{k: getattr(args, k) for k in self.parameter_state({})}}


class GcScheduleProvider(_SystemScheduleProvider):
    args_type = GcScheduleArgs
    path = "/system/gc/schedule"
    kind = "gc schedule"
    kind_id = "gc"
    parameters_as_text = True

    def parameters(self, args: GcScheduleArgs) -> dict:
        return {"delete_untagged": args.delete_untagged, "workers": args.workers, "dry_run": False}

    def parameter_state(self, parameters: dict) -> dict:
        return {"delete_untagged": bool(parameters.get("delete_untagged")),
                "workers": int(parameters.get("workers") or 1)}


class AuditLogPurgeScheduleProvider(_SystemScheduleProvider):
    args_type = AuditLogPurgeScheduleArgs
    path = "/system/purgeaudit/schedule"
    kind = "audit log purge schedule"
    kind_id = "purgeaudit"
    parameters_as_text = True

    def parameters(self, args: AuditLogPurgeScheduleArgs) -> dict:
        return {"audit_retention_hour": args.retention_hours, "include_event_types": ",".join(args.operations),
                "dry_run": False}

    def parameter_state(self, parameters: dict) -> dict:
        operations = parameters.get("include_event_types") or ""
        return {"retention_hours": int(parameters.get("audit_retention_hour") or 0),
                "operations": operations.split(",") if operations else []}


class ScanAllScheduleProvider(_SystemScheduleProvider):
    args_type = ScanAllScheduleArgs
    path = "/system/scanAll/schedule"
    kind = "scan-all schedule"
    kind_id = "scanAll"


class _ScheduleResource(pulumi.dynamic.Resource):
    provider_cls: type
    cron: pulumi.Output[str]

    def __init__(self, resource_name: str, args: Any, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(self.provider_cls(settings), resource_name, _inputs(args, connection), _opts(opts))


class GcSchedule(_ScheduleResource, module="harbor", name="GcSchedule"):
    """Harbor's garbage collection schedule. Outputs: `cron`, `delete_untagged`, `workers` as Harbor keeps them."""

    provider_cls = GcScheduleProvider


class AuditLogPurgeSchedule(_ScheduleResource, module="harbor", name="AuditLogPurgeSchedule"):
    """Harbor's audit log purge schedule. Outputs: `cron`, `retention_hours`, `operations` as Harbor keeps them."""

    provider_cls = AuditLogPurgeScheduleProvider


class ScanAllSchedule(_ScheduleResource, module="harbor", name="ScanAllSchedule"):
    """Harbor's scan-all schedule. Outputs: `cron`."""

    provider_cls = ScanAllScheduleProvider
