"""A project's tag retention policy as a Pulumi dynamic resource.

Harbor keeps at most one retention policy per project and records its id in the project's metadata
(`retention_id`); a second create is answered 400 "project N already has retention policy M" (handler/retention.go
CreateRetention), which this provider treats as the conflict it is. Rules use the templates of GET
/retentions/metadatas with `doublestar` repository and tag selectors; the schedule is the policy's trigger.
Calls: create 2 (POST, GET), read 1, update 2 (PUT, GET), delete 1.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import pulumi

from .client import ClientSettings, HarborClient, HarborError
from .models import RETENTION_TEMPLATES, RetentionPolicyArgs, RetentionRuleArgs
from .resources import Connection, _HarborProvider, _inputs, _opts
from .typed import is_unknown


def _rule_body(rule: RetentionRuleArgs) -> dict:
    params = {} if RETENTION_TEMPLATES[rule.template] is None else {rule.template: rule.count}
    return {"disabled": rule.disabled, "action": "retain", "template": rule.template, "params": params,
            "tag_selectors": [{"kind": "doublestar", "decoration": "excludes" if rule.exclude_tags else "matches",
                               "pattern": rule.tags, "extras": json.dumps({"untagged": rule.untagged})}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "pattern": rule.repositories,
                                                "decoration": "repoExcludes" if rule.exclude_repositories
                                                else "repoMatches"}]}}


def _without_none(rule: dict) -> dict:
    """A rule without its unset keys: a None inside a list does not survive the trip through the engine."""
    return {k: v for k, v in rule.items() if v is not None}


def _rule_state(rule: dict) -> dict:
    """A rule as Harbor returns it, in the shape of RetentionRuleArgs."""
    template = rule.get("template")
    tag = (rule.get("tag_selectors") or [{}])[0]
    repo = ((rule.get("scope_selectors") or {}).get("repository") or [{}])[0]
    try:
        extras = json.loads(tag.get("extras") or "{}")
    except ValueError:
        extras = {}
    count = (rule.get("params") or {}).get(template)
    return _without_none({"template": template, "count": None if count is None else int(count),
            "repositories": repo.get("pattern") or "", "exclude_repositories": repo.get("decoration") == "repoExcludes",
            "tags": tag.get("pattern") or "", "exclude_tags": tag.get("decoration") == "excludes",
            "untagged": bool(extras.get("untagged")), "disabled": bool(rule.get("disabled"))})


class RetentionPolicyProvider(_HarborProvider):
    args_type = RetentionPolicyArgs
    path = "/retentions"
    kind = "retention policy"
    replace_fields = ("project_id",)

    def create_body(self, args: RetentionPolicyArgs) -> dict:
        return {"algorithm": "or", "rules": [_rule_body(r) for r in args.rules],
                "trigger": {"kind": "Schedule", "settings": {"cron": args.cron or ""}, "references": {}},
                "scope": {"level": "project", "ref": args.project_id}}

    def conflict(self, err: HarborError) -> bool:
        return err.status == 400 and any("already has retention policy" in m for m in err.harbor_messages)

    def label(self, args: RetentionPolicyArgs) -> str:
        return f"of project {args.project_id}"

    def find(self, client: HarborClient, args: RetentionPolicyArgs) -> Optional[dict]:
        project = client.request("GET", f"/projects/{args.project_id}", ok=(200,)).body
        retention_id = (project.get("metadata") or {}).get("retention_id")
        return {"id": int(retention_id)} if retention_id else None

    def adopt(self, client: HarborClient, id_: str, args, existing: dict) -> dict:
        return self.write_update(client, id_, args, {})

    def delete(self, id_: str, props: dict) -> None:
        client = self.client(props)
        try:
            client.request("DELETE", f"{self.path}/{id_}", ok=(200, 404))
        except HarborError as err:
            # DeleteRetention answers a policy that is gone with 400 (its not-found wrapped as a bad request).
            if err.status != 400 or client.request("GET", f"{self.path}/{id_}", ok=(200, 404)).status != 404:
                raise

    def state(self, obj: dict) -> dict:
        cron = ((obj.get("trigger") or {}).get("settings") or {}).get("cron")
        return {"project_id": (obj.get("scope") or {}).get("ref"), "cron": cron or None,
                "rules": [_rule_state(r) for r in obj.get("rules") or []]}

    def desired(self, args: RetentionPolicyArgs) -> dict:
        rules = args.rules if is_unknown(args.rules) else [_without_none(dataclasses.asdict(r)) for r in args.rules]
        return {"project_id": args.project_id, "cron": args.cron or None, "rules": rules}


class RetentionPolicy(pulumi.dynamic.Resource, module="harbor", name="RetentionPolicy"):
    """A project's tag retention policy. Outputs: `project_id`, `cron`, `rules` as Harbor keeps them."""

    project_id: pulumi.Output[int]

    def __init__(self, resource_name: str, args: RetentionPolicyArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props: dict[str, Any] = _inputs(args, connection)
        props["rules"] = [dataclasses.asdict(r) for r in args.rules]
        super().__init__(RetentionPolicyProvider(settings), resource_name, props, _opts(opts))
