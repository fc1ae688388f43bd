"""A project's tag retention policy and its tag immutability rules as Pulumi dynamic resources (both select
artifacts with Harbor's `doublestar` repository and tag selectors).

Harbor keeps at most one retention policy per project and records its id in the project's metadata
(`retention_id`); a second create is answered 400 "project N already has retention policy M" (handler/retention.go
CreateRetention), which this provider treats as the conflict it is. Rules use the templates of GET
/retentions/metadatas with `doublestar` repository and tag selectors; the schedule is the policy's trigger.
Calls: create 2 (POST, GET), read 1, update 2 (PUT, GET), delete 1.

Immutable tag rules live below their project and have no GET of their own: read is one list of the project's rules.
Harbor stores a new rule enabled whatever `disabled` says (pkg/immutable/dao CreateImmutableRule), and a PUT whose
`disabled` differs from the stored rule only toggles it, ignoring the selectors (controller/immutable
UpdateImmutableRule): so a disabled rule takes one more PUT on create, and an update changing both the patterns
and `disabled` takes two PUTs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import pulumi

from .client import ClientSettings, HarborClient, HarborError
from .models import RETENTION_TEMPLATES, ImmutableTagRuleArgs, RetentionPolicyArgs, RetentionRuleArgs
from .resources import Connection, _HarborProvider, _inputs, _opts
from .typed import is_unknown


def _selectors(args: Any, extras: Optional[str] = None) -> dict:
    """Harbor's repository and tag selectors of a rule (RetentionRuleArgs or ImmutableTagRuleArgs)."""
    tag = {"kind": "doublestar", "decoration": "excludes" if args.exclude_tags else "matches", "pattern": args.tags}
    if extras is not None:
        tag["extras"] = extras
    return {"tag_selectors": [tag],
            "scope_selectors": {"repository": [{"kind": "doublestar", "pattern": args.repositories,
                                                "decoration": "repoExcludes" if args.exclude_repositories
                                                else "repoMatches"}]}}


def _selector_state(rule: dict) -> dict:
    """The selectors of a rule as Harbor returns it, in the shape of the args (plus `extras` of the tag one)."""
    tag = (rule.get("tag_selectors") or [{}])[0]
    repo = ((rule.get("scope_selectors") or {}).get("repository") or [{}])[0]
    return {"repositories": repo.get("pattern") or "", "exclude_repositories": repo.get("decoration") == "repoExcludes",
            "tags": tag.get("pattern") or "", "exclude_tags": tag.get("decoration") == "excludes",
            "extras": tag.get("extras")}


def _rule_body(rule: RetentionRuleArgs) -> dict:
    params = {} if RETENTION_TEMPLATES[rule.template] is None else {rule.template: rule.count}
    return {"disabled": rule.disabled, "action": "retain", "template": rule.template, "params": params,
            **_selectors(rule, json.dumps({"untagged": rule.untagged}))}


def _without_none(rule: dict) -> dict:
    """A rule without its unset keys: a None inside a list does not survive the trip through the engine."""
    return {k: v for k, v in rule.items() if v is not None}


def _rule_state(rule: dict) -> dict:
    """A rule as Harbor returns it, in the shape of RetentionRuleArgs."""
    template = rule.get("template")
    selectors = _selector_state(rule)
    try:
        extras = json.loads(selectors.pop("extras") or "{}")
    except ValueError:
        extras = {}
    count = (rule.get("params") or {}).get(template)
    return _without_none({"template": template, "count": None if count is None else int(count), **selectors,
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

    def explain_delete(self, client: HarborClient, id_: str, props: dict, err: HarborError) -> Optional[HarborError]:
        # DeleteRetention answers a policy that is gone with 400 (its not-found wrapped as a bad request).
        if err.status == 400 and client.request("GET", f"{self.path}/{id_}", ok=(200, 404)).status == 404:
            return None
        return err

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


_SELECTOR_FIELDS = ("repositories", "exclude_repositories", "tags", "exclude_tags")


class ImmutableTagRuleProvider(_HarborProvider):
    args_type = ImmutableTagRuleArgs
    path = "/projects"
    kind = "immutable tag rule"
    replace_fields = ("project_id",)
    carried_outputs = ("project_id",)

    def collection(self, props: dict) -> str:
        return f"/projects/{int(props['project_id'])}/immutabletagrules"

    def label(self, args: ImmutableTagRuleArgs) -> str:
        return f"{args.repositories!r}:{args.tags!r} of project {args.project_id}"

    def create_body(self, args: ImmutableTagRuleArgs) -> dict:
        return {"disabled": args.disabled, "action": "immutable", "template": "immutable_template",
                **_selectors(args)}

    def after_create(self, client: HarborClient, id_: str, args: ImmutableTagRuleArgs, body: Any) -> dict:
        if args.disabled:  # stored enabled by the create: toggle it
            client.request("PUT", f"{self.collection(vars(args))}/{id_}",
                           json_body=dict(self.create_body(args), id=int(id_)), ok=(200,))
        return {}

    def adopt(self, client: HarborClient, id_: str, args: ImmutableTagRuleArgs, existing: dict) -> dict:
        return self.write_update(client, id_, args, {**self.state(existing), "project_id": args.project_id})

    def write_update(self, client: HarborClient, id_: str, args: ImmutableTagRuleArgs, olds: dict) -> dict:
        url = f"{self.collection(olds)}/{id_}"
        body = dict(self.create_body(args), id=int(id_))
        desired = self.desired(args)
        if any(olds.get(k) != desired[k] for k in _SELECTOR_FIELDS):  # with the stored flag: not a toggle
            client.request("PUT", url, json_body=dict(body, disabled=bool(olds.get("disabled"))), ok=(200,))
        if bool(olds.get("disabled")) != args.disabled:
            client.request("PUT", url, json_body=body, ok=(200,))
        return {}

    def fetch(self, client: HarborClient, id_: str, props: dict) -> dict:
        for rule in client.list_all(self.collection(props)):
            if str(rule.get("id")) == str(id_):
                return rule
        raise HarborError(f"immutable tag rule {id_} of project {props.get('project_id')} not found", 404)

    def find(self, client: HarborClient, args: ImmutableTagRuleArgs) -> Optional[dict]:
        wanted = {k: v for k, v in self.desired(args).items() if k in _SELECTOR_FIELDS}
        for rule in client.list_all(self.collection(vars(args))):
            if {k: v for k, v in self.state(rule).items() if k in _SELECTOR_FIELDS} == wanted:
                return rule
        return None

    def outputs(self, props: dict, obj: dict, salt: str, extra: dict) -> dict:
        # Harbor's ImmutableRule has no project id: it is the one the rule was created under.
        return {**super().outputs(props, obj, salt, extra), "project_id": int(props["project_id"])}

    def state(self, obj: dict) -> dict:
        selectors = _selector_state(obj)
        selectors.pop("extras")
        return {**selectors, "disabled": bool(obj.get("disabled"))}

    def desired(self, args: ImmutableTagRuleArgs) -> dict:
        return {"project_id": args.project_id, **{k: getattr(args, k) for k in _SELECTOR_FIELDS},
                "disabled": args.disabled}


class ImmutableTagRule(pulumi.dynamic.Resource, module="harbor", name="ImmutableTagRule"):
    """A project's tag immutability rule. Outputs: `project_id`, the patterns and `disabled` as Harbor keeps them."""

    project_id: pulumi.Output[int]

    def __init__(self, resource_name: str, args: ImmutableTagRuleArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(ImmutableTagRuleProvider(settings), resource_name, _inputs(args, connection), _opts(opts))
