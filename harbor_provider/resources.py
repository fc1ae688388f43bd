"""Pulumi dynamic resources for Harbor: Registry, ReplicationPolicy, Project, RobotAccount, ReplicationRun.

Every provider follows one pattern (`_HarborProvider`):
- `check` parses the inputs into the typed args and runs their `validate()`: no API call.
- `create` POSTs, takes the id from `Location`, GETs the object back so the outputs are exactly what `read` returns.
  A 409 is adopted by name when the args say `adopt`, or when our own earlier try may have created the object
  (its request was sent but the answer lost or timed out, or it got a 5xx other than 503); otherwise the error says
  how to adopt.
- `read` GETs and normalizes like Harbor (`state()`), so refresh shows real drift and no diff when nothing changed.
- `diff` compares the normalized desired state (`desired()`) with the old outputs field by field; secrets Harbor
  masks as `*****` are compared through a salted SHA-256 kept in the outputs.

Credentials: the inputs `harbor_url` / `harbor_username` / `harbor_password` (secret) / `harbor_ca_certificate`
(the cluster's URL, generated admin password and CA; of these only a URL change makes a diff), else `harborUrl` /
`harborUsername` / `harborPassword` / `harborCaCertificate` of the stack config key `harbor-ha:harborApi` (provider
config), else HARBOR_URL / HARBOR_USERNAME / HARBOR_PASSWORD. The provider object Pulumi pickles into the state
holds only `ClientSettings`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import json
import secrets
import time
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlsplit

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from .client import ClientSettings, Credentials, HarborClient, HarborError
from .models import (
    ProjectArgs,
    RegistryArgs,
    ReplicationPolicyArgs,
    ReplicationRunArgs,
    RobotAccountArgs,
)
from .typed import UNKNOWN, ConfigError, is_unknown, parse, parse_into

CONNECTION_KEYS = ("harbor_url", "harbor_username", "harbor_password", "harbor_ca_certificate")
SALT_KEY = "secret_salt"
LOCAL_REGISTRY_ID = 0  # Harbor shows the local side of a policy as registry id 0 ("Local")


def normalize_url(url: str) -> str:
    """Harbor's normalization of an endpoint URL (lib.ValidateHTTPURL): trimmed, no trailing slash, `http://`
    when no scheme, and only scheme://host:port/path kept (no user info, query or fragment)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url if "://" in url else "http://" + url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def salted_hash(salt: str, secret: str) -> str:
    """What the state keeps instead of a secret Harbor will never show again."""
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


class FieldDiff(DiffResult):
    """A DiffResult that also lists the changed fields (Pulumi shows them; tests assert them)."""

    def __init__(self, changed: list[str], replaces: list[str]):
        super().__init__(changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces))
        self.changed = changed


class _HarborProvider(ResourceProvider):
    """The shared CRUD flow; subclasses say how their object maps to Harbor's API."""

    args_type: type
    path: str
    kind: str
    replace_fields: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()
    """Input fields Harbor masks on read; their salted hash is kept as `<field>_hash`."""
    carried_outputs: tuple[str, ...] = ()
    """Outputs only known at write time, kept as they are by `read`."""

    def __init__(self, settings: Optional[ClientSettings] = None):
        super().__init__()
        self.settings = settings
        self._provider_config: dict[str, Optional[str]] = {}

    def configure(self, req: ConfigureRequest) -> None:
        """Provider config: `harborUrl` / `harborUsername` / `harborPassword` / `harborCaCertificate` of the
        stack's `harborApi` section."""
        section = req.config.get("harborApi") or {}
        if isinstance(section, str):  # structured config arrives as JSON text
            try:
                section = json.loads(section)
            except ValueError:
                section = {}
        self._provider_config = {k: section.get(f"harbor{k[0].upper()}{k[1:]}")
                                 for k in ("url", "username", "password", "caCertificate")}

    def __getstate__(self) -> dict:
        # Pulumi pickles the provider into the state: never the configured credentials.
        return {k: v for k, v in vars(self).items() if k != "_provider_config"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state, _provider_config={})

    # -- what subclasses define -------------------------------------------------------------------------------
    def create_body(self, args) -> dict:
        raise NotImplementedError

    def update_body(self, args, olds: dict) -> dict:
        return self.create_body(args)

    def state(self, obj: dict) -> dict:
        """Harbor's object, normalized: the outputs (besides connection, hashes and secrets)."""
        raise NotImplementedError

    def desired(self, args) -> dict:
        """The args in the shape of `state()` (only the fields the args control)."""
        raise NotImplementedError

    def collection(self, props: dict) -> str:
        """Where the objects of this kind live (some are below their project: `props` has its id)."""
        return self.path

    def find(self, client: HarborClient, args) -> Optional[dict]:
        return client.find_by_name(self.path, args.name)

    def id_of(self, obj: dict) -> str:
        return str(obj["id"])

    def fetch(self, client: HarborClient, id_: str, props: dict) -> dict:
        return client.request("GET", f"{self.path}/{id_}", ok=(200,)).body

    def explain(self, err: HarborError, args, action: str) -> HarborError:
        return err

    def conflict(self, err: HarborError) -> bool:
        """Harbor's answer to a create of an object that exists already."""
        return err.status == 409

    def label(self, args) -> str:
        """The object in messages."""
        return repr(args.name)

    # -- the shared flow ---------------------------------------------------------------------------------------
    def _field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.args_type)]

    def parse_args(self, props: dict):
        names = set(self._field_names())
        return parse(self.args_type, {k: v for k, v in props.items() if k in names}, self.kind)

    def client(self, props: dict) -> HarborClient:
        return HarborClient(Credentials.resolve(props, self._provider_config),
                            self.settings or ClientSettings.from_env())

    def check(self, olds: dict, news: dict) -> CheckResult:
        allowed = set(self._field_names()) | set(CONNECTION_KEYS) | {"__provider"}
        # Keys outside the args with a None value are the output placeholders the Resource classes declare.
        failures = [CheckFailure(k, f"unknown input of {self.kind}") for k, v in news.items()
                    if k not in allowed and v is not None]
        problems: list[str] = []
        args = parse_into(self.args_type, {k: v for k, v in news.items() if k in allowed - set(CONNECTION_KEYS)
                                           and k != "__provider"}, "", False, problems)
        for problem in problems:
            key, _, reason = problem.partition(": ")
            failures.append(CheckFailure(key.lstrip("."), reason))
        if not problems:
            failures.extend(CheckFailure(key, reason) for key, reason in args.validate())
        return CheckResult(news, failures)

    def _hashes(self, args, salt: str) -> dict:
        return {f"{f}_hash": salted_hash(salt, getattr(args, f)) if getattr(args, f) else None
                for f in self.secret_fields}

    def outputs(self, props: dict, obj: dict, salt: str, extra: dict) -> dict:
        args = self.parse_args(props)
        outs = {k: props[k] for k in CONNECTION_KEYS if props.get(k) is not None}
        outs.update(self.state(obj))
        outs.update(self._hashes(args, salt))
        outs[SALT_KEY] = salt
        outs["adopt"] = getattr(args, "adopt", False)
        outs.update(extra)
        return outs

    def after_create(self, client: HarborClient, id_: str, args, body: Any) -> dict:
        """What a create needs besides the POST (the robot's secret); returns extra outputs."""
        return {}

    def adopt(self, client: HarborClient, id_: str, args, existing: dict) -> dict:
        """Set an existing object (found by name) to the args; returns extra outputs."""
        return self.write_update(client, id_, args, self.state(existing))

    def create(self, props: dict) -> CreateResult:
        args = self.parse_args(props)
        client = self.client(props)
        try:
            answer = client.request("POST", self.collection(props), json_body=self.create_body(args), ok=(201,))
            id_ = answer.location_id()
            extra = self.after_create(client, id_, args, answer.body)
        except HarborError as err:
            if not self.conflict(err):
                raise self.explain(err, args, "create") from None
            # A 409 after a try whose answer was lost (not after a 503: Harbor did not apply that one) is most
            # likely that try's object.
            ours = err.earlier_try_may_have_applied
            existing = self.find(client, args) if (args.adopt or ours) else None
            if existing is None:
                raise HarborError(
                    f"{self.kind} {self.label(args)} already exists in Harbor ({'; '.join(err.harbor_messages)}). "
                    f"To manage the existing one, set `adopt: true` on it in the stack config (adopt=True in "
                    f"the args): it is then updated to the declared values. Or choose another name.", 409,
                ) from None
            id_ = self.id_of(existing)
            extra = self.adopt(client, id_, args, existing)
        obj = self.fetch(client, id_, props)
        return CreateResult(id_, self.outputs(props, obj, secrets.token_hex(16), extra))

    def read(self, id_: str, props: dict) -> ReadResult:
        client = self.client(props)
        try:
            obj = self.fetch(client, id_, props)
        except HarborError as err:
            if err.status == 404:
                return ReadResult(None, {})
            raise
        outs = self.carried(props)
        outs.update(self.state(obj))
        return ReadResult(id_, outs)

    def carried(self, props: dict) -> dict:
        """What Harbor cannot tell (connection, hashes of masked secrets, the robot's secret), kept by `read`.
        Keys are set explicitly: a None value does not survive the trip through the engine."""
        outs = {k: props[k] for k in CONNECTION_KEYS if props.get(k) is not None}
        outs.update({f"{f}_hash": props.get(f"{f}_hash") for f in self.secret_fields})
        outs.update({k: props.get(k) for k in (SALT_KEY, "adopt") + self.carried_outputs})
        return outs

    def changed_fields(self, olds: dict, news: dict) -> list[str]:
        try:
            args = self.parse_args(news)
        except ConfigError:
            return ["<invalid inputs>"]
        changed = [k for k, v in self.desired(args).items() if olds.get(k) != v or is_unknown(v)]
        salt = olds.get(SALT_KEY) or ""
        changed += [f for f, h in self._hashes(args, salt).items() if h != olds.get(f) or is_unknown(getattr(
            args, f[: -len("_hash")]))]
        return [c.removesuffix("_hash") for c in changed]

    def diff(self, id_: str, olds: dict, news: dict) -> FieldDiff:
        changed = self.changed_fields(olds, news)
        replaces = [c for c in changed if c in self.replace_fields]
        old_url, new_url = olds.get("harbor_url"), news.get("harbor_url")
        if is_unknown(new_url):
            changed.append("harbor_url")  # known at apply, when the engine diffs again (and replaces if it moved)
        elif old_url and new_url and normalize_url(old_url) != normalize_url(new_url):
            changed.append("harbor_url")  # another Harbor: the object must be created there
            replaces.append("harbor_url")
        # A new credential for the same Harbor (e.g. a rotated admin password): an update that stores it, so that
        # refresh and delete use it.
        changed += [k for k in CONNECTION_KEYS[1:] if news.get(k) != olds.get(k)]
        return FieldDiff(changed, replaces)

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        args = self.parse_args(news)
        client = self.client(news)
        extra = {k: olds.get(k) for k in self.carried_outputs}
        if self.changed_fields(olds, news):  # else only the connection changed: nothing to write in Harbor
            try:
                extra = self.write_update(client, id_, args, olds)
            except HarborError as err:
                raise self.explain(err, args, "update") from None
        obj = self.fetch(client, id_, {**olds, **news})
        salt = olds.get(SALT_KEY) or secrets.token_hex(16)
        return UpdateResult(self.outputs(news, obj, salt, extra))

    def write_update(self, client: HarborClient, id_: str, args, olds: dict) -> dict:
        """Apply the args in place; returns extra outputs."""
        client.request("PUT", f"{self.collection(olds)}/{id_}", json_body=self.update_body(args, olds), ok=(200,))
        return {}

    def delete(self, id_: str, props: dict) -> None:
        client = self.client(props)
        try:
            client.request("DELETE", f"{self.collection(props)}/{id_}", ok=(200, 202, 204, 404))
        except HarborError as err:
            problem = self.explain_delete(client, id_, props, err)
            if problem is not None:
                raise problem from None

    def explain_delete(self, client: HarborClient, id_: str, props: dict, err: HarborError) -> Optional[HarborError]:
        """The error to raise for a failed delete (None: the object turned out to be gone)."""
        return err


# -- Registry ------------------------------------------------------------------------------------------------


class RegistryProvider(_HarborProvider):
    args_type = RegistryArgs
    path = "/registries"
    kind = "registry"
    replace_fields = ("type",)
    secret_fields = ("access_secret",)

    def create_body(self, args: RegistryArgs) -> dict:
        body = {"name": args.name, "type": args.type, "url": args.url, "insecure": args.insecure,
                "description": args.description}
        if args.access_key:
            body["credential"] = {"type": "basic", "access_key": args.access_key,
                                  "access_secret": args.access_secret}
        if args.ca_certificate:
            body["ca_certificate"] = args.ca_certificate
        return body

    def update_body(self, args: RegistryArgs, olds: dict) -> dict:
        # RegistryUpdate is flat; empty strings clear a credential that the args no longer have.
        return {"name": args.name, "description": args.description, "url": args.url,
                "credential_type": "basic", "access_key": args.access_key or "",
                "access_secret": args.access_secret or "", "insecure": args.insecure,
                "ca_certificate": args.ca_certificate or ""}

    def state(self, obj: dict) -> dict:
        cred = obj.get("credential") or {}
        return {"name": obj["name"], "type": obj["type"], "url": normalize_url(obj["url"]),
                "access_key": cred.get("access_key") or None,
                "access_secret_set": bool(cred.get("access_secret")),
                "insecure": bool(obj.get("insecure")), "ca_certificate": obj.get("ca_certificate") or None,
                "description": obj.get("description") or "", "status": obj.get("status")}

    def desired(self, args: RegistryArgs) -> dict:
        url = args.url if is_unknown(args.url) else normalize_url(args.url)
        return {"name": args.name, "type": args.type, "url": url, "access_key": args.access_key or None,
                "access_secret_set": bool(args.access_secret), "insecure": args.insecure,
                "ca_certificate": args.ca_certificate or None, "description": args.description}

    def explain(self, err: HarborError, args: RegistryArgs, action: str) -> HarborError:
        if err.status == 400 and any("unhealthy" in m for m in err.harbor_messages):
            # Harbor pings the endpoint before it stores it, from its core container (controller/registry).
            host = urlsplit(args.url if "://" in args.url else f"http://{args.url}").hostname or ""
            loopback = (f" {host} is the core container itself, not a Harbor host: use an address the "
                        f"containers can reach." if host in ("127.0.0.1", "localhost", "::1") else "")
            return HarborError(
                f"cannot {action} registry {args.name!r}: Harbor could not reach {args.url} ('registry is "
                f"unhealthy'; Harbor stores no endpoint it cannot ping).{loopback} Check the URL and port from "
                f"the Harbor hosts (DNS, firewall), the credential, and for TLS `insecure` or `ca_certificate`.",
                400, err.harbor_messages)
        return err

    def explain_delete(self, client: HarborClient, id_: str, props: dict, err: HarborError) -> HarborError:
        if err.status != 412:
            return err
        users = [p["name"] for p in client.list_all("/replication/policies")
                 if str((p.get("src_registry") or {}).get("id")) == id_
                 or str((p.get("dest_registry") or {}).get("id")) == id_]
        return HarborError(
            f"cannot delete registry {props.get('name')!r} (id {id_}): replication policies still use it: "
            f"{', '.join(users) or '(none visible to this user)'}. Delete those policies or point them at another "
            f"registry first (in Pulumi: make the policies depend on it, or remove them in the same update).",
            412, err.harbor_messages)


# -- ReplicationPolicy ---------------------------------------------------------------------------------------


def _filter_shape(type_: str, value: Any, decoration: Optional[str]) -> dict:
    """A filter in one canonical shape: tag and label filters always with a decoration (Harbor's default is
    `matches`), name and resource filters without one."""
    if type_ in ("tag", "label"):
        return {"type": type_, "value": value, "decoration": decoration or "matches"}
    return {"type": type_, "value": value}


class ReplicationPolicyProvider(_HarborProvider):
    args_type = ReplicationPolicyArgs
    path = "/replication/policies"
    kind = "replication policy"

    def create_body(self, args: ReplicationPolicyArgs) -> dict:
        filters = []
        for f in args.filters:
            shape = {"type": f.type, "value": f.value}
            if f.decoration:
                shape["decoration"] = f.decoration
            filters.append(shape)
        side = "src_registry" if args.direction == "pull" else "dest_registry"
        return {
            "name": args.name, "description": args.description, side: {"id": args.registry_id},
            "dest_namespace": args.dest_namespace,
            "dest_namespace_replace_count": args.dest_namespace_replace_count,
            "trigger": {"type": args.trigger, "trigger_settings": {"cron": args.cron or ""}},
            # Harbor's handler has read the deprecated `deletion` (not `replicate_deletion`) on create and update:
            # send both so either version stores what was asked.
            "filters": filters, "replicate_deletion": args.replicate_deletion, "deletion": args.replicate_deletion,
            "override": args.override,
            "enabled": args.enabled, "speed": args.speed, "copy_by_chunk": args.copy_by_chunk,
            "single_active_replication": args.single_active_replication,
        }

    def state(self, obj: dict) -> dict:
        src = obj.get("src_registry") or {}
        dest = obj.get("dest_registry") or {}
        pull = src.get("id") not in (None, LOCAL_REGISTRY_ID)
        trigger = obj.get("trigger") or {}
        kind = trigger.get("type") or "manual"
        count = obj.get("dest_namespace_replace_count")
        speed = obj.get("speed") or 0
        return {
            "name": obj["name"], "registry_id": (src if pull else dest).get("id"),
            "direction": "pull" if pull else "push", "trigger": kind,
            "cron": ((trigger.get("trigger_settings") or {}).get("cron") or None) if kind == "scheduled" else None,
            "filters": [_filter_shape(f.get("type"), f.get("value"), f.get("decoration"))
                        for f in obj.get("filters") or []],
            "dest_namespace": obj.get("dest_namespace") or "",
            "dest_namespace_replace_count": -1 if count is None else count,
            "override": bool(obj.get("override")),
            # `deletion` is the deprecated twin of `replicate_deletion`: trust the new one when present.
            "replicate_deletion": bool(obj["replicate_deletion"] if "replicate_deletion" in obj
                                       else obj.get("deletion")),
            "speed": speed if speed > 0 else -1,  # Harbor stores "unlimited" as 0 or -1
            "copy_by_chunk": bool(obj.get("copy_by_chunk")),
            "single_active_replication": bool(obj.get("single_active_replication")),
            "enabled": bool(obj.get("enabled")), "description": obj.get("description") or "",
        }

    def desired(self, args: ReplicationPolicyArgs) -> dict:
        return {
            "name": args.name, "registry_id": args.registry_id, "direction": args.direction,
            "trigger": args.trigger, "cron": args.cron if args.trigger == "scheduled" else None,
            "filters": args.filters if is_unknown(args.filters)
            else [_filter_shape(f.type, f.value, f.decoration) for f in args.filters],
            "dest_namespace": args.dest_namespace,
            "dest_namespace_replace_count": args.dest_namespace_replace_count, "override": args.override,
            "replicate_deletion": args.replicate_deletion,
            "speed": args.speed if is_unknown(args.speed) or args.speed > 0 else -1,
            "copy_by_chunk": args.copy_by_chunk, "single_active_replication": args.single_active_replication,
            "enabled": args.enabled, "description": args.description,
        }


# -- Project -------------------------------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


class ProjectProvider(_HarborProvider):
    args_type = ProjectArgs
    path = "/projects"
    kind = "project"
    replace_fields = ("name",)

    # Metadata keys that an argument can leave unset (Harbor metadata key -> field); the others are always sent.
    _removable_metadata = {"severity": "severity"}

    def _metadata(self, args: ProjectArgs) -> dict:
        meta = {"public": _flag(args.public), "auto_scan": _flag(args.auto_scan),
                "prevent_vul": _flag(args.prevent_vulnerable)}
        if args.severity:
            meta["severity"] = args.severity
        return meta

    def create_body(self, args: ProjectArgs) -> dict:
        body: dict[str, Any] = {"project_name": args.name, "metadata": self._metadata(args)}
        if args.storage_limit is not None:
            body["storage_limit"] = args.storage_limit
        return body

    def update_body(self, args: ProjectArgs, olds: dict) -> dict:
        return {"metadata": self._metadata(args)}  # Harbor ignores storage_limit here: quotas have their API

    def id_of(self, obj: dict) -> str:
        return str(obj["project_id"])

    def fetch(self, client: HarborClient, id_: str, props: dict) -> dict:
        obj = client.request("GET", f"{self.path}/{id_}", ok=(200,)).body
        if props.get("storage_limit") is None:  # quota unmanaged: no second call
            return obj
        if props.get("quota_id"):
            quota = client.request("GET", f"/quotas/{int(props['quota_id'])}", ok=(200,)).body
        else:
            quota = self._find_quota(client, id_)
        return dict(obj, storage_limit=quota["hard"].get("storage", -1), quota_id=quota["id"])

    def _find_quota(self, client: HarborClient, id_: str) -> dict:
        for quota in client.list_all("/quotas", {"reference": "project", "reference_id": id_}):
            return quota
        raise HarborError(f"project {id_} has no quota object in Harbor")

    def write_update(self, client, id_, args: ProjectArgs, olds: dict) -> dict:
        # Two APIs: project metadata and its quota. Call only the one(s) whose fields changed.
        desired = self.desired(args)
        if any(olds.get(k) != desired[k] for k in ("public", "auto_scan", "prevent_vulnerable", "severity")):
            super().write_update(client, id_, args, olds)
        for key, field in self._removable_metadata.items():
            if olds.get(field) is not None and desired[field] is None:
                # The PUT above merges metadata, so an unset key would stay in Harbor: delete it (404: already
                # gone, e.g. a retried update).
                client.request("DELETE", f"{self.path}/{id_}/metadatas/{key}", ok=(200, 404))
        if args.storage_limit is not None and olds.get("storage_limit") != args.storage_limit:
            quota_id = olds.get("quota_id") or self._find_quota(client, id_)["id"]
            self._set_quota(client, int(quota_id), args.storage_limit)
        return {}

    def explain_delete(self, client: HarborClient, id_: str, props: dict, err: HarborError) -> HarborError:
        if err.status != 412:
            return err
        return HarborError(
            f"cannot delete project {props.get('name')!r} (id {id_}): {'; '.join(err.harbor_messages)}. Harbor "
            f"keeps a project that still holds repositories (or other objects): delete them first, or keep the "
            f"project by setting retain_on_delete on the resource.", 412, err.harbor_messages)

    def _set_quota(self, client: HarborClient, quota_id: int, limit: int) -> None:
        client.request("PUT", f"/quotas/{quota_id}", json_body={"hard": {"storage": limit}}, ok=(200,))

    def state(self, obj: dict) -> dict:
        meta = obj.get("metadata") or {}
        return {"name": obj["name"], "public": meta.get("public") == "true",
                "auto_scan": meta.get("auto_scan") == "true",
                "prevent_vulnerable": meta.get("prevent_vul") == "true",
                "severity": meta.get("severity") or None, "storage_limit": obj.get("storage_limit"),
                "quota_id": obj.get("quota_id"), "project_id": obj["project_id"]}

    def desired(self, args: ProjectArgs) -> dict:
        return {"name": args.name, "public": args.public, "auto_scan": args.auto_scan,
                "prevent_vulnerable": args.prevent_vulnerable, "severity": args.severity,
                "storage_limit": args.storage_limit}


# -- RobotAccount --------------------------------------------------------------------------------------------

# What a peer Harbor needs to replicate into (and, with deletion, prune) this one: list/create the destination
# project, push and pull its repositories.
_REPLICATION_ACCESS = (("repository", "pull"), ("repository", "push"), ("repository", "list"),
                       ("artifact", "read"), ("artifact", "list"), ("tag", "list"), ("tag", "create"))
_DELETION_ACCESS = (("repository", "delete"), ("artifact", "delete"), ("tag", "delete"))


def robot_permissions(projects: list[str], replicate_deletion: bool) -> list[dict]:
    """The permission list of a replication robot, in the order Harbor returns it (sorted)."""
    access = sorted(_REPLICATION_ACCESS + (_DELETION_ACCESS if replicate_deletion else ()))
    # No `effect`: Harbor defaults it to allow (and has refused an explicit one from some creators).
    perms = [{"kind": "system", "namespace": "/",
              "access": [{"resource": "project", "action": a} for a in ("create", "list")]}]
    perms += [{"kind": "project", "namespace": p, "access": [{"resource": r, "action": a} for r, a in access]}
              for p in sorted(projects)]
    return perms


def _normalize_permissions(perms: Optional[list[dict]]) -> list[dict]:
    out = []
    for p in perms or []:
        access = sorted(({"resource": a["resource"], "action": a["action"], "effect": a.get("effect") or "allow"}
                         for a in p.get("access") or []), key=lambda a: (a["resource"], a["action"]))
        out.append({"kind": p["kind"], "namespace": p["namespace"], "access": access})
    return sorted(out, key=lambda p: (p["kind"] != "system", p["namespace"]))


class RobotAccountProvider(_HarborProvider):
    args_type = RobotAccountArgs
    path = "/robots"
    kind = "robot account"
    replace_fields = ("name",)
    secret_fields = ("secret",)
    carried_outputs = ("secret",)

    def create_body(self, args: RobotAccountArgs) -> dict:
        # No `secret`: Harbor 2.15's CreateRobot ignores it and generates one (handler/robot.go); see after_create.
        return {"name": args.name, "description": args.description, "level": "system",
                "disable": args.disabled, "duration": args.duration_days,
                "permissions": robot_permissions(args.projects, args.replicate_deletion)}

    def update_body(self, args: RobotAccountArgs, olds: dict) -> dict:
        # Harbor refuses a PUT whose name or level differ from the stored robot (name with its `robot$` prefix).
        return dict(self.create_body(args), name=olds["harbor_name"])

    def find(self, client: HarborClient, args: RobotAccountArgs) -> Optional[dict]:
        # Whether `q=name=` wants the prefixed name depends on Harbor's robot_name_prefix: list system robots.
        for robot in client.list_all(self.path, {"q": "level=system"}):
            if robot["name"].split("$", 1)[-1] == args.name:
                return robot
        return None

    def after_create(self, client, id_, args: RobotAccountArgs, body: Any) -> dict:
        if args.secret:
            return {"secret": self._refresh_secret(client, id_, args, body["name"])}
        return {"secret": body["secret"]}

    def adopt(self, client, id_, args: RobotAccountArgs, existing: dict) -> dict:
        # The secret of a robot we did not see created is unknown: set (or have Harbor generate) a new one.
        super().write_update(client, id_, args, self.state(existing))
        return {"secret": self._refresh_secret(client, id_, args, existing["name"])}

    def write_update(self, client, id_, args: RobotAccountArgs, olds: dict) -> dict:
        super().write_update(client, id_, args, olds)
        if args.secret and salted_hash(olds.get(SALT_KEY) or "", args.secret) != olds.get("secret_hash"):
            return {"secret": self._refresh_secret(client, id_, args, olds["harbor_name"])}
        return {"secret": olds.get("secret")}

    def _refresh_secret(self, client: HarborClient, id_: str, args: RobotAccountArgs, login: str) -> str:
        """Harbor's secret refresh (PATCH /robots/{id}): sets the declared secret (answering an empty one), or
        generates one (answering it). A declared secret is then proven by logging in with it, as a peer will."""
        answer = client.request("PATCH", f"{self.path}/{id_}", json_body={"secret": args.secret or ""}, ok=(200,))
        if not args.secret:
            return answer.body["secret"]
        if not args.disabled:  # a disabled robot cannot log in: nothing to prove with
            self._prove_login(client, login, args.secret)
        return args.secret

    def _prove_login(self, client: HarborClient, login: str, secret: str) -> None:
        as_robot = HarborClient(dataclasses.replace(client.credentials, username=login, password=secret),
                                client.settings)
        try:
            as_robot.request("GET", "/users/current/permissions", ok=(200,))
        except HarborError as err:
            if err.status != 401:
                raise
            raise HarborError(
                f"robot account {login!r}: Harbor accepted the secret refresh but {login!r} cannot log in with the "
                f"declared secret (401); peers given that secret would fail too. Check Harbor's logs for the "
                f"refresh, or leave `secret` unset to have Harbor generate one.", 401) from None

    def state(self, obj: dict) -> dict:
        permissions = _normalize_permissions(obj.get("permissions"))
        return {"name": obj["name"].split("$", 1)[-1], "harbor_name": obj["name"],
                "description": obj.get("description") or "", "disabled": bool(obj.get("disable")),
                "duration_days": obj.get("duration") if obj.get("duration") is not None else -1,
                "projects": sorted(p["namespace"] for p in permissions if p["kind"] == "project"),
                "replicate_deletion": any(a["action"] == "delete" for p in permissions for a in p["access"]),
                "permissions": permissions, "expires_at": obj.get("expires_at")}

    def desired(self, args: RobotAccountArgs) -> dict:
        known = not is_unknown([args.projects, args.replicate_deletion])
        return {"name": args.name, "description": args.description, "disabled": args.disabled,
                "duration_days": args.duration_days,
                "projects": sorted(args.projects) if known else args.projects,
                "replicate_deletion": args.replicate_deletion,
                "permissions": _normalize_permissions(robot_permissions(args.projects, args.replicate_deletion))
                if known else UNKNOWN}

    def changed_fields(self, olds: dict, news: dict) -> list[str]:
        # `permissions` follows from projects/replicate_deletion: name it only for drift those do not explain.
        changed = super().changed_fields(olds, news)
        if {"projects", "replicate_deletion"} & set(changed):
            changed.remove("permissions")
        return changed


# -- ReplicationRun ------------------------------------------------------------------------------------------

_EXECUTION_COUNTERS = ("total", "succeed", "failed", "in_progress", "stopped")


class ReplicationRunProvider(_HarborProvider):
    """Starts an execution on create and waits for it; `policy_id`/`run_key` changes start a new run."""

    args_type = ReplicationRunArgs
    path = "/replication/executions"
    kind = "replication run"
    replace_fields = ("policy_id", "run_key")

    def __init__(self, settings: Optional[ClientSettings] = None, sleep=time.sleep, clock=time.monotonic):
        super().__init__(settings)
        self._sleep = sleep
        self._clock = clock

    def desired(self, args: ReplicationRunArgs) -> dict:
        return {"policy_id": args.policy_id, "run_key": args.run_key}

    def state(self, obj: dict) -> dict:
        out = {"execution_id": obj.get("id"), "policy_id": obj.get("policy_id"), "status": obj.get("status"),
               "status_text": obj.get("status_text") or ""}
        out.update({k: obj.get(k, 0) for k in _EXECUTION_COUNTERS})
        return out

    def create(self, props: dict) -> CreateResult:
        args = self.parse_args(props)
        client = self.client(props)
        try:
            answer = client.request("POST", self.path, json_body={"policy_id": args.policy_id}, ok=(201,),
                                    replay_safe=False)
            id_ = answer.location_id()
        except HarborError as err:
            if err.status is not None and err.status < 500:
                raise
            id_ = self._recent_execution(client, args, err)
        execution = self._wait(client, id_, args)
        return CreateResult(id_, {**self.carried(props), **self.state(execution)})

    def carried(self, props: dict) -> dict:
        outs = {k: props[k] for k in CONNECTION_KEYS if props.get(k) is not None}
        outs["run_key"] = props.get("run_key") or ""
        return outs

    def _recent_execution(self, client: HarborClient, args: ReplicationRunArgs, err: HarborError) -> str:
        """The answer to our POST was lost: adopt the execution it started, if Harbor shows one that is still
        running or started within the last minute by Harbor's own clock (its `Date` header)."""
        answer = client.request("GET", self.path, params={"policy_id": args.policy_id, "trigger": "manual",
                                                          "sort": "-start_time", "page": 1, "page_size": 1})
        now = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
        for execution in answer.body or []:
            started = _parse_time(execution.get("start_time"))
            if execution.get("status") == "InProgress" or (started and now - started < 60):
                return str(execution["id"])
        raise err

    def _wait(self, client: HarborClient, id_: str, args: ReplicationRunArgs) -> dict:
        deadline = self._clock() + args.timeout_seconds
        while True:
            execution = client.request("GET", f"{self.path}/{id_}", ok=(200,)).body
            if execution.get("status") != "InProgress":
                break
            if self._clock() >= deadline:
                raise HarborError(f"replication execution {id_} of policy {args.policy_id} still running after "
                                  f"{args.timeout_seconds} s ({_counters(execution)}); it goes on in Harbor")
            self._sleep(args.poll_seconds)
        if execution.get("status") != "Succeed":
            failed = [t.get("src_resource") or f"task {t.get('id')}"
                      for t in client.list_all(f"{self.path}/{id_}/tasks", {"status": "Failed"})]
            raise HarborError(
                f"replication execution {id_} of policy {args.policy_id} ended {execution.get('status')}"
                f" ({_counters(execution)}): {execution.get('status_text') or ''} failed tasks: "
                f"{', '.join(failed) or 'none listed'}; see Harbor's task logs "
                f"(/replication/executions/{id_}/tasks/<id>/log)")
        return execution

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        # Only timeout/poll settings or the connection changed (policy_id and run_key replace): nothing to do in
        # Harbor; the new connection is kept for later reads.
        kept = {k: v for k, v in olds.items() if k not in CONNECTION_KEYS and k != "__provider"}
        return UpdateResult({**kept, **self.carried(news)})

    def delete(self, id_: str, props: dict) -> None:
        """Executions are history: Harbor keeps them, forgetting the resource makes no call."""


def _counters(execution: dict) -> str:
    return ", ".join(f"{k} {execution.get(k, 0)}" for k in _EXECUTION_COUNTERS)


def _parse_time(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- Resource classes ----------------------------------------------------------------------------------------

# The salted hashes too: a weak password could be guessed from its hash in a readable state.
_SECRET_OUTPUTS = ["harbor_password", "secret", "access_secret", "access_secret_hash", "secret_hash", "password",
                   "password_hash", SALT_KEY]


def _inputs(args, connection: Optional[Connection]) -> dict:
    props = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    if isinstance(args, ReplicationPolicyArgs):
        props["filters"] = [dataclasses.asdict(f) for f in args.filters]
    for secret in ("access_secret", "secret", "password"):
        if props.get(secret) is not None:
            props[secret] = pulumi.Output.secret(props[secret])
    if connection is not None:
        props.update(harbor_url=connection.url, harbor_username=connection.username,
                     harbor_password=pulumi.Output.secret(connection.password)
                     if connection.password is not None else None,
                     harbor_ca_certificate=connection.ca_certificate)
    return props


@dataclasses.dataclass
class Connection:
    """Harbor endpoint and admin credentials as resource inputs (e.g. the cluster's Outputs). The password is
    stored as a secret and never causes a diff by itself; leave it None to use provider config / environment."""

    url: Any = None
    """Harbor URL (str or Output)."""
    username: Any = None
    """Admin user name (str or Output)."""
    password: Any = None
    """Admin password (str or secret Output)."""
    ca_certificate: Any = None
    """PEM of the CA of Harbor's certificate (str or Output), e.g. the cluster's self-signed CA."""


def _opts(opts: Optional[pulumi.ResourceOptions]) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=_SECRET_OUTPUTS))


class Registry(pulumi.dynamic.Resource, module="harbor", name="Registry"):
    """A Harbor registry endpoint. Outputs: the RegistryArgs fields as Harbor normalizes them, `status`,
    `access_secret_set`, `access_secret_hash` (salted, for rotation detection)."""

    url: pulumi.Output[str]
    status: pulumi.Output[str]

    def __init__(self, resource_name: str, args: RegistryArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(RegistryProvider(settings), resource_name,
                         {**_inputs(args, connection), "status": None}, _opts(opts))


class ReplicationPolicy(pulumi.dynamic.Resource, module="harbor", name="ReplicationPolicy"):
    """A replication policy. Outputs: the ReplicationPolicyArgs fields as Harbor normalizes them."""

    registry_id: pulumi.Output[int]
    direction: pulumi.Output[str]

    def __init__(self, resource_name: str, args: ReplicationPolicyArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(ReplicationPolicyProvider(settings), resource_name, _inputs(args, connection), _opts(opts))


class Project(pulumi.dynamic.Resource, module="harbor", name="Project"):
    """A Harbor project. Outputs: the ProjectArgs fields as Harbor normalizes them and `project_id`."""

    project_id: pulumi.Output[int]

    def __init__(self, resource_name: str, args: ProjectArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(ProjectProvider(settings), resource_name,
                         {**_inputs(args, connection), "project_id": None}, _opts(opts))


class RobotAccount(pulumi.dynamic.Resource, module="harbor", name="RobotAccount"):
    """A system robot for replication. Outputs: `harbor_name` (the login, `robot$<name>`), `secret` (a secret
    output), `permissions`, `expires_at` and the args fields as Harbor normalizes them."""

    harbor_name: pulumi.Output[str]
    secret: pulumi.Output[str]

    def __init__(self, resource_name: str, args: RobotAccountArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props = {**_inputs(args, connection), "harbor_name": None}
        props.setdefault("secret", None)
        super().__init__(RobotAccountProvider(settings), resource_name, props, _opts(opts))
        # additional_secret_outputs protects the state; this keeps the program's copy secret as well.
        self.secret = pulumi.Output.secret(self.secret)


class ReplicationRun(pulumi.dynamic.Resource, module="harbor", name="ReplicationRun"):
    """One awaited execution of a policy. Outputs: `execution_id`, `status`, `status_text` and the counters
    `total`, `succeed`, `failed`, `in_progress`, `stopped`."""

    execution_id: pulumi.Output[int]
    status: pulumi.Output[str]

    def __init__(self, resource_name: str, args: ReplicationRunArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props = {**_inputs(args, connection), "execution_id": None, "status": None}
        super().__init__(ReplicationRunProvider(settings), resource_name, props, _opts(opts))
