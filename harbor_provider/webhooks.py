"""Project webhooks as a Pulumi dynamic resource (one target each, as Harbor's UI makes them).

Harbor keeps a target's address as scheme://host/path (handler/webhook.go validateTargets, against SSRF) and an
http target's empty payload format as `Default`; `auth_header` is a secret input kept as a salted hash. Calls:
create 2, read 1, update 2, delete 1.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from .client import ClientSettings, HarborClient
from .models import WebhookArgs
from .resources import Connection, _HarborProvider, _inputs, _opts, normalize_url
from .typed import is_unknown


def _payload_format(type_: str, payload_format: Optional[str]) -> Optional[str]:
    return payload_format or ("Default" if type_ == "http" else None)


class WebhookProvider(_HarborProvider):
    args_type = WebhookArgs
    path = "/projects"
    kind = "webhook"
    replace_fields = ("project_id",)
    secret_fields = ("auth_header",)

    def collection(self, props: dict) -> str:
        return f"/projects/{int(props['project_id'])}/webhook/policies"

    def label(self, args: WebhookArgs) -> str:
        return f"{args.name!r} of project {args.project_id}"

    def create_body(self, args: WebhookArgs) -> dict:
        target = {"type": args.type, "address": args.address, "skip_cert_verify": args.skip_cert_verify,
                  "auth_header": args.auth_header or ""}
        if args.payload_format:
            target["payload_format"] = args.payload_format
        return {"name": args.name, "description": args.description, "targets": [target],
                "event_types": args.event_types, "enabled": args.enabled}

    def fetch(self, client: HarborClient, id_: str, props: dict) -> dict:
        return client.request("GET", f"{self.collection(props)}/{id_}", ok=(200,)).body

    def find(self, client: HarborClient, args: WebhookArgs) -> Optional[dict]:
        for policy in client.list_all(self.collection(vars(args))):
            if policy.get("name") == args.name:
                return policy
        return None

    def adopt(self, client: HarborClient, id_: str, args: WebhookArgs, existing: dict) -> dict:
        return self.write_update(client, id_, args, self.state(existing))

    def state(self, obj: dict) -> dict:
        target = (obj.get("targets") or [{}])[0]
        return {"project_id": obj.get("project_id"), "name": obj.get("name"),
                "address": target.get("address"), "type": target.get("type"),
                "payload_format": target.get("payload_format") or None,
                "skip_cert_verify": bool(target.get("skip_cert_verify")),
                "event_types": sorted(obj.get("event_types") or []), "enabled": bool(obj.get("enabled")),
                "description": obj.get("description") or ""}

    def desired(self, args: WebhookArgs) -> dict:
        known = not is_unknown([args.address, args.type, args.payload_format, args.event_types])
        return {"project_id": args.project_id, "name": args.name,
                "address": normalize_url(args.address) if known else args.address, "type": args.type,
                "payload_format": _payload_format(args.type, args.payload_format) if known else args.payload_format,
                "skip_cert_verify": args.skip_cert_verify,
                "event_types": sorted(args.event_types) if known else args.event_types,
                "enabled": args.enabled, "description": args.description}


class Webhook(pulumi.dynamic.Resource, module="harbor", name="Webhook"):
    """A project webhook. Outputs: the args as Harbor keeps them, `auth_header_hash` (salted, a secret output)."""

    def __init__(self, resource_name: str, args: WebhookArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props = _inputs(args, connection)
        if args.auth_header is not None:
            props["auth_header"] = pulumi.Output.secret(args.auth_header)
        opts = pulumi.ResourceOptions.merge(_opts(opts), pulumi.ResourceOptions(
            additional_secret_outputs=["auth_header", "auth_header_hash"]))
        super().__init__(WebhookProvider(settings), resource_name, props, opts)
