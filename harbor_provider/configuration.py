"""Harbor's system configuration (/configurations) as a Pulumi dynamic resource.

One per Harbor, and partial by design: only the keys the args name are written (PUT /configurations changes only
the keys it is given) and read back; every other key stays as set in the UI or by another tool. Harbor never
returns the password-type keys (controller/config ConvertForGet drops them), so those are compared through salted
hashes and cannot show drift. Removing the resource leaves the values in Harbor (there is no earlier value to go
back to). Calls: create 2 (PUT, GET), read 1, update 2, delete none.
"""

from __future__ import annotations

import secrets
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from .client import ClientSettings, HarborClient
from .models import ConfigurationArgs, normalize_setting
from .resources import SALT_KEY, Connection, _HarborProvider, _inputs, _opts, salted_hash
from .typed import is_unknown


class ConfigurationProvider(_HarborProvider):
    args_type = ConfigurationArgs
    path = "/configurations"
    kind = "configuration"
    kind_id = "configurations"
    carried_outputs = ("secrets_hash",)

    def _hash_secrets(self, args: ConfigurationArgs, salt: str) -> dict:
        return {k: salted_hash(salt, v) for k, v in sorted(args.secrets.items())}

    def _write(self, client: HarborClient, args: ConfigurationArgs, olds: dict) -> None:
        """PUT the managed keys whose value (or secret) changed."""
        desired = self.desired(args)["settings"]
        body = {k: v for k, v in desired.items() if (olds.get("settings") or {}).get(k, object()) != v}
        hashes = self._hash_secrets(args, olds.get(SALT_KEY) or "")
        body.update({k: args.secrets[k] for k, h in hashes.items() if (olds.get("secrets_hash") or {}).get(k) != h})
        if body:
            client.request("PUT", self.path, json_body=body, ok=(200,))

    def _read(self, client: HarborClient, keys: list[str]) -> dict:
        current = client.request("GET", self.path, ok=(200,)).body or {}
        return {"settings": {k: (current.get(k) or {}).get("value") for k in sorted(keys)}}

    def create(self, props: dict) -> CreateResult:
        args = self.parse_args(props)
        client = self.client(props)
        self._write(client, args, {})
        salt = secrets.token_hex(16)
        return CreateResult(self.kind_id, self._outputs(props, client, args, salt))

    def _outputs(self, props: dict, client: HarborClient, args: ConfigurationArgs, salt: str) -> dict:
        outs = self.outputs(props, {}, salt, {"secrets_hash": self._hash_secrets(args, salt)})
        outs.update(self._read(client, list(args.settings)))
        return outs

    def read(self, id_: str, props: dict) -> ReadResult:
        keys = list(props.get("settings") or {})
        return ReadResult(id_, {**self.carried(props), **self._read(self.client(props), keys)})

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        args = self.parse_args(news)
        client = self.client(news)
        self._write(client, args, olds)
        salt = olds.get(SALT_KEY) or secrets.token_hex(16)
        return UpdateResult(self._outputs(news, client, args, salt))

    def delete(self, id_: str, props: dict) -> None:
        """The values stay in Harbor: no call."""

    def changed_fields(self, olds: dict, news: dict) -> list[str]:
        args = self.parse_args(news)
        if is_unknown(args.settings) or is_unknown(args.secrets):
            return ["settings", "secrets"]
        desired = self.desired(args)["settings"]
        old = olds.get("settings") or {}
        changed = [f"settings.{k}" for k, v in desired.items() if old.get(k, object()) != v or is_unknown(v)]
        hashes = self._hash_secrets(args, olds.get(SALT_KEY) or "")
        old_hashes = olds.get("secrets_hash") or {}
        changed += [f"secrets.{k}" for k in sorted(set(hashes) | set(old_hashes))
                    if hashes.get(k) != old_hashes.get(k) or is_unknown(args.secrets.get(k))]
        # A key no longer declared is left in Harbor: only the outputs change.
        return changed + [f"settings.{k}" for k in old if k not in desired]

    def state(self, obj: dict) -> dict:
        return obj

    def desired(self, args: ConfigurationArgs) -> dict:
        return {"settings": {k: normalize_setting(k, v) for k, v in args.settings.items()}}


class Configuration(pulumi.dynamic.Resource, module="harbor", name="Configuration"):
    """Harbor's configuration keys the args name. Outputs: `settings` as Harbor returns them, `secrets_hash`
    (salted hashes of the secret keys, a secret output)."""

    settings: pulumi.Output[dict]

    def __init__(self, resource_name: str, args: ConfigurationArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props = _inputs(args, connection)
        props["secrets"] = pulumi.Output.secret(args.secrets)
        opts = pulumi.ResourceOptions.merge(_opts(opts), pulumi.ResourceOptions(
            additional_secret_outputs=["secrets", "secrets_hash"]))
        super().__init__(ConfigurationProvider(settings), resource_name, props, opts)
