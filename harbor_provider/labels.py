"""Harbor labels (global, or of one project) as a Pulumi dynamic resource.

A label's scope and project are fixed at create (PUT /labels/{id} changes only name, description and colour:
handler/label.go UpdateLabel). Names are unique within the scope (pkg/label manager answers 409). Calls: create 2,
read 1, update 2, delete 1.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi

from .client import ClientSettings, HarborClient
from .models import LabelArgs
from .resources import Connection, _HarborProvider, _inputs, _opts

GLOBAL, PROJECT = "g", "p"  # common.LabelScopeGlobal, common.LabelScopeProject


class LabelProvider(_HarborProvider):
    args_type = LabelArgs
    path = "/labels"
    kind = "label"
    replace_fields = ("project_id",)

    def create_body(self, args: LabelArgs) -> dict:
        body: dict[str, Any] = {"name": args.name, "description": args.description, "color": args.color,
                                "scope": GLOBAL if args.project_id is None else PROJECT}
        if args.project_id is not None:
            body["project_id"] = args.project_id
        return body

    def update_body(self, args: LabelArgs, olds: dict) -> dict:
        return {"name": args.name, "description": args.description, "color": args.color}

    def find(self, client: HarborClient, args: LabelArgs) -> Optional[dict]:
        query = {"scope": GLOBAL} if args.project_id is None else {"scope": PROJECT, "project_id": args.project_id}
        for label in client.list_all(self.path, {**query, "name": args.name}):
            if label.get("name") == args.name:
                return label
        return None

    def state(self, obj: dict) -> dict:
        return {"name": obj.get("name"), "description": obj.get("description") or "",
                "color": obj.get("color") or "",
                "project_id": obj.get("project_id") if obj.get("scope") == PROJECT else None}

    def desired(self, args: LabelArgs) -> dict:
        return {"name": args.name, "description": args.description, "color": args.color,
                "project_id": args.project_id}


class Label(pulumi.dynamic.Resource, module="harbor", name="Label"):
    """A Harbor label. Outputs: `name`, `description`, `color`, `project_id` (None: global) as Harbor keeps them."""

    def __init__(self, resource_name: str, args: LabelArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(LabelProvider(settings), resource_name, _inputs(args, connection), _opts(opts))
