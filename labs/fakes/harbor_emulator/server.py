"""A Harbor API v2.0 emulator: a real HTTP server on 127.0.0.1 (stdlib, one thread per request).

It implements the endpoints the provider uses with Harbor 2.15's behaviour as far as the provider depends on it:
- every request body is validated against the swagger definition of its operation (unknown fields: 422), and
  every answer body against the operation's response schema (a mismatch is a 500: the emulator drifted);
- basic auth (401), and Harbor's session cookie: every answer sets `sid`, and a write that sends `sid` back
  without a CSRF token gets 403 "CSRF token invalid";
- normalization: registry URLs (lib.ValidateHTTPURL: trailing slash, default `http://`, only scheme://host/path),
  secrets masked as `*****`, policy speed < 0 stored as 0, `replicate_deletion` taken from the deprecated
  `deletion` field as Harbor's handler does and returned in both, `dest_namespace_replace_count` default -1, robot
  names prefixed `robot$` (and a PUT must carry that prefixed name);
- errors as `{"errors":[{"code","message"}]}`: 409 duplicate names, 412 deleting a registry used by a policy,
  400 "the registry is unhealthy" on create and update for hosts Harbor could not ping (marked unreachable,
  `.invalid` names, refused loopback ports), 400 for schedules Harbor refuses;
- pagination (`page`, `page_size` <= 100, `X-Total-Count`, `Link` with rel="next"/"prev");
- fault injection (`inject`): an error status, a slow answer, or the answer dropped after the write was applied.
Every request is recorded in `calls` (method, path, operationId) so benchmarks count real API calls.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlencode, urlsplit

from .schema import load_contract

ADAPTERS = ("harbor", "docker-hub", "docker-registry", "aws-ecr", "azure-acr", "ali-acr", "tencent-tcr",
            "google-gcr", "huawei-SWR", "github-ghcr", "gitlab", "quay", "jfrog-artifactory", "dtr",
            "volcengine-cr")
# handler/robot.go validateName.
_ROBOT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# lib.RepositoryNameRe: docker/distribution v2.8 reference.NameRegexp (optional domain, then path components).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?"
_REPOSITORY_NAME = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")


def _valid_robot_secret(secret: str) -> bool:
    """pkg/robot IsValidSec: 8-128 characters with an upper case letter, a lower case letter and a digit."""
    return 8 <= len(secret) <= 128 and all(re.search(p, secret) for p in ("[a-z]", "[A-Z]", "[0-9]"))


_ROLE_NAMES = {1: "projectAdmin", 2: "developer", 3: "guest", 4: "maintainer", 5: "limitedGuest"}
LOCAL = {"id": 0, "name": "Local", "type": "harbor", "url": "http://core:8080", "insecure": True,
         "status": "healthy", "credential": {"type": "secret", "access_key": "", "access_secret": "*****"}}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.code = code or {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                             409: "CONFLICT", 412: "PRECONDITION", 422: "UNPROCESSABLE_ENTITY",
                             429: "TOO_MANY_REQUESTS"}.get(status, "UNKNOWN")


@dataclass
class Fault:
    """Applies to the next `times` requests whose method matches and whose path matches `path` (regex)."""

    method: str
    path: str
    kind: str
    """`status` (answer `status`, apply nothing), `slow` (sleep `seconds`, then handle normally), `late` (handle
    normally, then sleep `seconds` before answering) or `drop` (handle normally, then close the connection without
    an answer)."""
    status: int = 500
    seconds: float = 0.0
    times: int = 1
    headers: dict = field(default_factory=dict)
    """Extra headers of a `status` answer (e.g. Location of a redirect)."""


@dataclass
class RunPlan:
    """How executions of one policy end."""

    status: str = "Succeed"
    tasks: list[tuple[str, str]] = field(default_factory=lambda: [("library/app:1.0", "Succeed")])
    """(source resource, final status) per task."""
    seconds: float = 0.0
    """How long the execution stays InProgress."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HarborEmulator:
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    def __init__(self, username: str = "admin", password: str = "Harbor12345"):
        self.contract = load_contract()
        self.username = username
        self.lock = threading.RLock()
        self.calls: list[tuple[str, str, str]] = []
        self.requests_with_cookie = 0
        self.faults: list[Fault] = []
        self.unreachable_hosts: set[str] = set()
        self.refresh_ignores_secret = False
        """Model a Harbor that answers a secret refresh with 200 but keeps the old secret."""
        self.run_plans: dict[int, RunPlan] = {}
        self.registries: dict[int, dict] = {}
        self.policies: dict[int, dict] = {}
        self.projects: dict[int, dict] = {}
        self.quotas: dict[int, dict] = {}
        self.robots: dict[int, dict] = {}
        self.executions: dict[int, dict] = {}
        self.retentions: dict[int, dict] = {}
        self.users: dict[int, dict] = {}
        """Local users by id (`add_user`); a member by an unknown name is refused as Harbor's db auth does."""
        self.usergroups: dict[int, dict] = {}
        self.members: dict[int, dict] = {}
        self.immutable_rules: dict[int, dict] = {}
        """By rule id; each with its `project_id` (not part of the API's ImmutableRule)."""
        self.configurations: dict[str, Any] = {
            "auth_mode": "db_auth", "project_creation_restriction": "everyone", "read_only": False,
            "self_registration": False, "robot_token_duration": 30, "robot_name_prefix": "robot$",
            "token_expiration": 30, "ldap_scope": 2, "ldap_uid": "cn", "oidc_verify_cert": True}
        """Harbor's configuration (defaults of lib/config/metadata for the keys tests use)."""
        self.labels: dict[int, dict] = {}
        self.webhooks: dict[int, dict] = {}
        self.schedules: dict[str, dict] = {}
        """System schedules by vendor (`gc`, `purgeaudit`, `scanAll`): type, cron, parameters, times."""
        self._ids = itertools.count(1)
        self._user_ids = itertools.count(1)  # users have their own ids: the admin is user 1, as in Harbor
        self.add_user(username, password)
        self.users[1]["sysadmin_flag"] = True
        self._server: Optional[ThreadingHTTPServer] = None
        self._scheme = "http"
        self._thread: Optional[threading.Thread] = None

    @property
    def password(self) -> str:
        """The admin's password: what the Basic credentials of every call must carry. Set it to model a change
        made outside the program (Harbor's UI); PUT /users/1/password changes it as Harbor does."""
        return self.users[1]["password"]

    @password.setter
    def password(self, value: str) -> None:
        self.users[1]["password"] = value

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, tls: Optional[tuple[str, str]] = None) -> HarborEmulator:
        """Serve on a free port of 127.0.0.1; with `tls=(certfile, keyfile)` over HTTPS."""
        emulator = self

        class Handler(_Handler):
            emu = emulator

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="harbor-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> HarborEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    # -- test helpers ----------------------------------------------------------------------------------------
    def inject(self, method: str, path: str, kind: str, **kw) -> Fault:
        fault = Fault(method, path, kind, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def count(self, method: Optional[str] = None) -> int:
        with self.lock:
            return sum(1 for m, _, _ in self.calls if method in (None, m))

    def take_fault(self, method: str, path: str) -> Optional[Fault]:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def new_id(self) -> int:
        return next(self._ids)

    # -- dispatch --------------------------------------------------------------------------------------------
    def handle(self, op_id: str, params: dict, query: dict, body: Any) -> tuple[int, Any, dict]:
        handler = getattr(self, "op_" + op_id, None)
        if handler is None:
            raise ApiError(501, f"emulator does not implement {op_id}")
        with self.lock:
            return handler(params, query, body)

    # -- registries ------------------------------------------------------------------------------------------
    def _normalize_url(self, url: str) -> str:
        url = url.strip().rstrip("/")
        if not url:
            raise ApiError(400, "empty URL")
        if "://" in url:
            scheme = url.split("://", 1)[0]
            if scheme not in ("http", "https"):
                raise ApiError(400, f"invalid scheme: {scheme}")
        else:
            url = "http://" + url
        parts = urlsplit(url)
        if not self._reachable(parts):
            raise ApiError(400, "the registry is unhealthy")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def _reachable(self, parts) -> bool:
        """Harbor pings an endpoint before it stores it (controller/registry validate -> IsHealthy on create and
        update; the native adapter's HealthCheck counts a failed ping as unhealthy). The emulator cannot reach
        the hosts tests name, so it models what Harbor would find: hosts marked in `unreachable_hosts`, names that
        never resolve (RFC 6761 `.invalid`), and loopback ports where a real connect is refused."""
        host = parts.hostname or ""
        if host in self.unreachable_hosts or host.endswith(".invalid"):
            return False
        if host in ("127.0.0.1", "localhost", "::1"):
            try:
                socket.create_connection((host, parts.port or (443 if parts.scheme == "https" else 80)), 2).close()
            except OSError:
                return False
        return True

    def _unique(self, table: dict, key: str, value: str, what: str, exclude: Optional[int] = None) -> None:
        if any(obj[key] == value and oid != exclude for oid, obj in table.items()):
            raise ApiError(409, f"{what} {value} already exists")

    def _masked_registry(self, reg: dict) -> dict:
        out = json.loads(json.dumps(reg))
        cred = out.get("credential")
        if cred and cred.get("access_secret"):
            cred["access_secret"] = "*****"
        return out

    def op_createRegistry(self, params, query, body):
        if not body.get("name"):
            raise ApiError(400, "name cannot be empty")
        if len(body["name"]) > 64:
            raise ApiError(400, "the max length of name is 64")
        self._unique(self.registries, "name", body["name"], "registry")
        if body.get("type") not in ADAPTERS:
            raise ApiError(400, f"adapter factory for {body.get('type')} not found")
        rid = self.new_id()
        cred = body.get("credential") or {}
        self.registries[rid] = {
            "id": rid, "name": body["name"], "type": body["type"], "url": self._normalize_url(body.get("url", "")),
            "insecure": bool(body.get("insecure")), "description": body.get("description") or "",
            "ca_certificate": body.get("ca_certificate") or "", "status": "healthy",
            "credential": {"type": cred.get("type") or "basic", "access_key": cred.get("access_key") or "",
                           "access_secret": cred.get("access_secret") or ""},
            "creation_time": _now(), "update_time": _now(),
        }
        return 201, None, {"Location": f"/api/v2.0/registries/{rid}"}

    def _get(self, table: dict, params: dict, key: str = "id") -> dict:
        try:
            return table[int(params[key])]
        except (KeyError, ValueError):
            raise ApiError(404, f"{key} {params.get(key)} not found") from None

    def op_getRegistry(self, params, query, body):
        return 200, self._masked_registry(self._get(self.registries, params)), {}

    def op_listRegistries(self, params, query, body):
        return self._page([self._masked_registry(r) for r in self._filter(self.registries.values(), query)],
                          query, "/registries")

    def op_updateRegistry(self, params, query, body):
        reg = self._get(self.registries, params)
        if body.get("name") is not None:
            self._unique(self.registries, "name", body["name"], "registry", exclude=reg["id"])
        url = self._normalize_url(body["url"]) if body.get("url") is not None else reg["url"]
        for key in ("name", "description", "insecure", "ca_certificate"):
            if body.get(key) is not None:
                reg[key] = body[key]
        reg["url"] = url
        for src, dst in (("credential_type", "type"), ("access_key", "access_key"),
                         ("access_secret", "access_secret")):
            if body.get(src) is not None:
                reg["credential"][dst] = body[src]
        reg["update_time"] = _now()
        return 200, None, {}

    def op_pingRegistry(self, params, query, body):
        # As Harbor's handler: a stored registry (by id) with the body's fields over it, then the same ping.
        reg = dict(self._get(self.registries, {"id": body["id"]})) if body.get("id") is not None else {}
        reg.update({k: body[k] for k in ("type", "url") if body.get(k) is not None})
        if not reg.get("type") or not reg.get("url"):
            raise ApiError(400, "type or url cannot be empty")
        self._normalize_url(reg["url"])
        return 200, None, {}

    def op_deleteRegistry(self, params, query, body):
        reg = self._get(self.registries, params)
        if any(reg["id"] in (p["src_registry_id"], p["dest_registry_id"]) for p in self.policies.values()):
            raise ApiError(412, f"the registry {reg['id']} is referenced by replication policies, cannot delete it")
        del self.registries[reg["id"]]
        return 200, None, {}

    # -- replication policies --------------------------------------------------------------------------------
    def _policy_from_body(self, body: dict, existing: Optional[dict]) -> dict:
        src = (body.get("src_registry") or {}).get("id") or 0
        dest = (body.get("dest_registry") or {}).get("id") or 0
        if (src == 0) == (dest == 0):
            raise ApiError(400, "either src_registry or dest_registry should be the local Harbor, not both")
        remote = src or dest
        if remote not in self.registries:
            raise ApiError(400, f"registry {remote} not found")
        trigger = body.get("trigger") or {"type": "manual"}
        kind = trigger.get("type") or "manual"
        cron = (trigger.get("trigger_settings") or {}).get("cron") or ""
        if kind == "scheduled":
            fields = cron.split()
            if len(fields) != 6 or fields[0] != "0" or fields[1] == "*":
                raise ApiError(400, f"invalid cron string for scheduled trigger: {cron}")
        namespace = body.get("dest_namespace") or ""
        if namespace and not _REPOSITORY_NAME.match(namespace):  # controller/replication/model Policy.Validate
            raise ApiError(400, f"invalid destination namespace: {namespace}")
        if kind == "event_based" and src:
            raise ApiError(400, "the event based trigger is not supported for pull based replication")
        if kind == "event_based" and body.get("single_active_replication"):
            raise ApiError(400, "single active replication is not supported for event based replication")
        filters = []
        for f in body.get("filters") or []:  # stored as given; an empty decoration is omitted on read
            shape = {"type": f.get("type"), "value": f.get("value")}
            if f.get("decoration"):
                shape["decoration"] = f["decoration"]
            filters.append(shape)
        # Harbor's handler reads the deprecated `deletion` into ReplicateDeletion, not `replicate_deletion`.
        deletion = body.get("deletion", False)
        count = body.get("dest_namespace_replace_count")
        speed = body.get("speed") or 0
        policy = dict(existing or {}, name=body.get("name") or (existing or {}).get("name"),
                      description=body.get("description") or "", src_registry_id=src, dest_registry_id=dest,
                      dest_namespace=body.get("dest_namespace") or "",
                      dest_namespace_replace_count=-1 if count is None else count,
                      trigger={"type": kind, "trigger_settings": {"cron": cron}}, filters=filters,
                      replicate_deletion=bool(deletion), override=bool(body.get("override")),
                      enabled=bool(body.get("enabled")), speed=max(speed, 0),
                      copy_by_chunk=bool(body.get("copy_by_chunk")),
                      single_active_replication=bool(body.get("single_active_replication")), update_time=_now())
        if not policy["name"]:
            raise ApiError(400, "name is required")
        return policy

    def _policy_view(self, p: dict) -> dict:
        out = {k: v for k, v in p.items() if k not in ("src_registry_id", "dest_registry_id")}
        out["src_registry"] = self._masked_registry(self.registries[p["src_registry_id"]]) \
            if p["src_registry_id"] else dict(LOCAL)
        out["dest_registry"] = self._masked_registry(self.registries[p["dest_registry_id"]]) \
            if p["dest_registry_id"] else dict(LOCAL)
        out["deletion"] = p["replicate_deletion"]
        return out

    def op_createReplicationPolicy(self, params, query, body):
        self._unique(self.policies, "name", body.get("name") or "", "policy")
        policy = self._policy_from_body(body, None)
        pid = self.new_id()
        self.policies[pid] = dict(policy, id=pid, creation_time=_now())
        return 201, None, {"Location": f"/api/v2.0/replication/policies/{pid}"}

    def op_getReplicationPolicy(self, params, query, body):
        return 200, self._policy_view(self._get(self.policies, params)), {}

    def op_listReplicationPolicies(self, params, query, body):
        return self._page([self._policy_view(p) for p in self._filter(self.policies.values(), query)], query,
                          "/replication/policies")

    def op_updateReplicationPolicy(self, params, query, body):
        old = self._get(self.policies, params)
        if body.get("name"):
            self._unique(self.policies, "name", body["name"], "policy", exclude=old["id"])
        self.policies[old["id"]] = self._policy_from_body(body, old)
        return 200, None, {}

    def op_deleteReplicationPolicy(self, params, query, body):
        del self.policies[self._get(self.policies, params)["id"]]
        return 200, None, {}

    # -- projects and quotas ---------------------------------------------------------------------------------
    def op_createProject(self, params, query, body):
        name = body.get("project_name") or ""
        if not re.match(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$", name):
            raise ApiError(400, f"project name is not in lower case or contains illegal characters: {name}")
        self._unique(self.projects, "name", name, "project")
        pid = self.new_id()
        meta = dict(body.get("metadata") or {})
        if body.get("public") is not None and "public" not in meta:
            meta["public"] = "true" if body["public"] else "false"
        meta.setdefault("public", "false")
        self.projects[pid] = {"project_id": pid, "name": name, "metadata": meta, "owner_id": 1,
                              "owner_name": "admin", "repo_count": 0, "creation_time": _now(),
                              "update_time": _now(), "deleted": False}
        qid = self.new_id()
        limit = body.get("storage_limit")
        self.quotas[qid] = {"id": qid, "ref": {"id": pid, "name": name},
                            "hard": {"storage": -1 if limit is None else limit}, "used": {"storage": 0}}
        return 201, None, {"Location": f"/api/v2.0/projects/{pid}"}

    def op_getProject(self, params, query, body):
        return 200, self._get(self.projects, params, "project_name_or_id"), {}

    def op_listProjects(self, params, query, body):
        return self._page(list(self._filter(self.projects.values(), query)), query, "/projects")

    def op_updateProject(self, params, query, body):
        project = self._get(self.projects, params, "project_name_or_id")
        project["metadata"].update(body.get("metadata") or {})
        project["update_time"] = _now()
        return 200, None, {}

    def op_deleteProjectMetadata(self, params, query, body):
        # Harbor's PUT /projects/{id} merges metadata: this is the only way to remove a key.
        project = self._get(self.projects, params, "project_name_or_id")
        name = params["meta_name"]
        if name not in project["metadata"]:
            raise ApiError(404, f"metadata {name} of project {project['project_id']} not found")
        del project["metadata"][name]
        project["update_time"] = _now()
        return 200, None, {}

    def op_deleteProject(self, params, query, body):
        project = self._get(self.projects, params, "project_name_or_id")
        if project["repo_count"]:
            raise ApiError(412, f"the project {project['name']} is not deletable: it contains repositories")
        del self.projects[project["project_id"]]
        self.quotas = {k: q for k, q in self.quotas.items() if q["ref"]["id"] != project["project_id"]}
        return 200, None, {}

    def op_listQuotas(self, params, query, body):
        ref_id = query.get("reference_id")
        found = [q for q in self.quotas.values() if ref_id is None or str(q["ref"]["id"]) == ref_id]
        return self._page(found, query, "/quotas")

    def op_getQuota(self, params, query, body):
        return 200, self._get(self.quotas, params), {}

    def op_updateQuota(self, params, query, body):
        quota = self._get(self.quotas, params)
        quota["hard"].update(body.get("hard") or {})
        return 200, None, {}

    # -- robots ----------------------------------------------------------------------------------------------
    def _robot_view(self, robot: dict) -> dict:
        return {k: v for k, v in robot.items() if k not in ("secret", "bare_name")}

    def op_CreateRobot(self, params, query, body):
        # Harbor's checks in order (src/server/v2.0/handler/robot.go, CreateRobot: validateName, then validate).
        name = body.get("name") or ""
        if not _ROBOT_NAME.match(name):
            raise ApiError(400, "robot name is not in lower case or contains illegal characters")
        duration = body.get("duration", -1)
        if not (duration == -1 or 0 < duration < 2**31 - 1):
            raise ApiError(400, f"bad request error duration input: {duration}, duration must be either -1(Never) "
                                "or a positive integer")
        if any(r["bare_name"] == name and r["level"] == body.get("level") for r in self.robots.values()):
            raise ApiError(409, f"robot account robot${name} already exists")
        if body.get("level") != "system":
            raise ApiError(400, "the emulator implements system robots only")
        rid = self.new_id()
        # CreateRobot builds the robot from name, description, duration and permissions only: a `secret` in the
        # body is ignored and the controller generates one (robot.Ctl.Create -> CreateSec).
        secret = secrets.token_urlsafe(24)
        self.robots[rid] = {"id": rid, "name": f"robot${name}", "bare_name": name, "level": "system",
                            "description": body.get("description") or "", "disable": bool(body.get("disable")),
                            "duration": duration, "expires_at": -1 if duration == -1 else int(time.time())
                            + duration * 86400, "editable": True, "permissions": body.get("permissions") or [],
                            "secret": secret, "creation_time": _now(), "update_time": _now()}
        created = {"id": rid, "name": f"robot${name}", "secret": secret, "creation_time": _now(),
                   "expires_at": self.robots[rid]["expires_at"]}
        return 201, created, {"Location": f"/api/v2.0/robots/{rid}"}

    def op_GetRobotByID(self, params, query, body):
        return 200, self._robot_view(self._get(self.robots, params, "robot_id")), {}

    def op_ListRobot(self, params, query, body):
        q = _query_terms(query)
        found = [r for r in self.robots.values() if all(str(r.get(k)) == v for k, v in q.items())]
        return self._page([self._robot_view(r) for r in found], query, "/robots")

    def op_UpdateRobot(self, params, query, body):
        robot = self._get(self.robots, params, "robot_id")
        if body.get("name") != robot["name"] or body.get("level") != robot["level"]:
            raise ApiError(400, "cannot update the level or name of robot")
        for key in ("description", "disable", "duration", "permissions"):
            if key in body:
                robot[key] = body[key]
        return 200, None, {}

    def op_RefreshSec(self, params, query, body):
        # handler/robot.go RefreshSec: a given secret is validated (robot.IsValidSec) and stored, and the answer's
        # secret is then empty; without one Harbor generates a secret and answers it.
        robot = self._get(self.robots, params, "robot_id")
        given = body.get("secret") or ""
        if given and not _valid_robot_secret(given):
            raise ApiError(400, "the secret must be 8-128, inclusively, characters long with at least 1 uppercase "
                                "letter, 1 lowercase letter and 1 number")
        if given and self.refresh_ignores_secret:
            return 200, {"secret": ""}, {}
        robot["secret"] = given or secrets.token_urlsafe(24)
        return 200, {"secret": "" if given else robot["secret"]}, {}

    def robot_can_log_in(self, login: str, secret: str) -> bool:
        """Harbor's robot authentication (src/server/middleware/security/robot.go): the name after the
        `robot$` prefix, the secret, not disabled, not expired."""
        with self.lock:
            return any(r["name"] == login and r["secret"] == secret and not r["disable"]
                       and (r["expires_at"] == -1 or r["expires_at"] > time.time()) for r in self.robots.values())

    def op_getCurrentUserPermissions(self, params, query, body):
        return 200, [], {}

    def op_DeleteRobot(self, params, query, body):
        del self.robots[self._get(self.robots, params, "robot_id")["id"]]
        return 200, None, {}

    # -- executions ------------------------------------------------------------------------------------------
    def op_startReplication(self, params, query, body):
        policy_id = body.get("policy_id")
        if policy_id not in self.policies:
            raise ApiError(404, f"policy {policy_id} not found")
        plan = self.run_plans.get(policy_id, RunPlan())
        eid = self.new_id()
        self.executions[eid] = {"id": eid, "policy_id": policy_id, "trigger": "manual", "start_time": _now(),
                                "_started": time.time(), "_plan": plan}
        return 201, None, {"Location": f"/api/v2.0/replication/executions/{eid}"}

    def _execution_view(self, ex: dict) -> dict:
        plan: RunPlan = ex["_plan"]
        done = time.time() - ex["_started"] >= plan.seconds
        statuses = [s if done else "InProgress" for _, s in plan.tasks]
        view = {k: v for k, v in ex.items() if not k.startswith("_")}
        view.update(status=plan.status if done else "InProgress", status_text="",
                    total=len(statuses), succeed=statuses.count("Succeed"), failed=statuses.count("Failed"),
                    in_progress=statuses.count("InProgress"), stopped=statuses.count("Stopped"))
        if done:
            view["end_time"] = _now()
        return view

    def op_getReplicationExecution(self, params, query, body):
        return 200, self._execution_view(self._get(self.executions, params)), {}

    def op_listReplicationExecutions(self, params, query, body):
        found = [self._execution_view(e) for e in self.executions.values()
                 if "policy_id" not in query or str(e["policy_id"]) == query["policy_id"]]
        if query.get("trigger"):
            found = [e for e in found if e["trigger"].lower() == query["trigger"].lower()]
        if query.get("sort", "").startswith("-"):
            found.reverse()
        return self._page(found, query, "/replication/executions")

    def op_listReplicationTasks(self, params, query, body):
        ex = self._get(self.executions, params)
        view = self._execution_view(ex)
        tasks = [{"id": i + 1, "execution_id": ex["id"], "status": s if view["status"] != "InProgress"
                  else "InProgress", "src_resource": res, "dst_resource": res, "resource_type": "image",
                  "operation": "copy"} for i, (res, s) in enumerate(ex["_plan"].tasks)]
        if query.get("status"):
            tasks = [t for t in tasks if t["status"] == query["status"]]
        return self._page(tasks, query, f"/replication/executions/{ex['id']}/tasks")

    # -- tag retention -------------------------------------------------------------------------------------
    def _retention_from_body(self, body: dict) -> dict:
        """handler/retention.go Create/UpdateRetention: at most 15 rules, no two equal rules (409), a valid cron
        (ValidateRetentionPolicy)."""
        rules = body.get("rules") or []
        if len(rules) > 15:
            raise ApiError(400, "only 15 rules are allowed at most")
        seen = {}
        for n, rule in enumerate(rules):
            key = json.dumps({k: v for k, v in rule.items() if k != "id"}, sort_keys=True)
            if key in seen:
                raise ApiError(409, f"rule {n} is conflict with rule {seen[key]}")
            seen[key] = n
        cron = ((body.get("trigger") or {}).get("settings") or {}).get("cron") or ""
        if cron and (len(cron.split(" ")) != 6 or cron.split(" ")[0] != "0"):
            raise ApiError(400, f"invalid cron string for scheduled tag retention: {cron}")
        return {"algorithm": body.get("algorithm") or "or",
                "rules": [dict(r, id=i + 1, priority=0) for i, r in enumerate(rules)],
                "trigger": body.get("trigger"), "scope": body.get("scope")}

    def op_createRetention(self, params, query, body):
        policy = self._retention_from_body(body)
        scope = policy["scope"] or {}
        if scope.get("level") != "project":
            raise ApiError(400, f"scope {scope.get('level')} is not support")
        project = self.projects.get(scope.get("ref"))
        if project is None:
            raise ApiError(400, f"invalid Project id {scope.get('ref')}")
        if project["metadata"].get("retention_id"):
            raise ApiError(400, f"project {project['project_id']} already has retention policy "
                                f"{project['metadata']['retention_id']}")
        rid = self.new_id()
        self.retentions[rid] = dict(policy, id=rid)
        project["metadata"]["retention_id"] = str(rid)
        return 201, None, {"Location": f"/api/v2.0/retentions/{rid}"}

    def op_getRetention(self, params, query, body):
        return 200, self._get(self.retentions, params), {}

    def op_updateRetention(self, params, query, body):
        old = self._get(self.retentions, params)
        self.retentions[old["id"]] = dict(self._retention_from_body(body), id=old["id"], scope=old["scope"])
        return 200, None, {}

    def op_deleteRetention(self, params, query, body):
        if int(params["id"]) not in self.retentions:  # DeleteRetention wraps the controller's not-found in a 400
            raise ApiError(400, f"retention policy {params['id']} not found")
        policy = self._get(self.retentions, params)
        del self.retentions[policy["id"]]
        project = self.projects.get(policy["scope"]["ref"])
        if project is not None:
            project["metadata"].pop("retention_id", None)
        return 200, None, {}

    # -- project webhooks -------------------------------------------------------------------------------------
    _WEBHOOK_EVENTS = ("PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED", "QUOTA_WARNING",
                       "SCANNING_FAILED", "SCANNING_STOPPED", "SCANNING_COMPLETED", "REPLICATION", "TAG_RETENTION")

    def _webhook_from_body(self, project: dict, body: dict, existing: Optional[dict]) -> dict:
        """handler/webhook.go validateEventTypes and validateTargets (which rewrites each address to
        scheme://host/path and an http target's empty payload format to Default)."""
        events = body.get("event_types") or []
        if not events:
            raise ApiError(400, "empty event type")
        for event in events:
            if event not in self._WEBHOOK_EVENTS:
                raise ApiError(400, f"unsupported event type {event}")
        targets = []
        for target in body.get("targets") or []:
            address = target.get("address") or ""
            parts = urlsplit(address if "://" in address else "http://" + address)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ApiError(400, f"invalid endpoint: {address}")
            kind, fmt = target.get("type"), target.get("payload_format") or ""
            if kind not in ("http", "slack"):
                raise ApiError(400, f"unsupported target type {kind} with policy {body.get('name')}")
            if fmt and kind == "slack":
                raise ApiError(400, "set payload format is not allowed for slack")
            if fmt and fmt not in ("Default", "CloudEvents"):
                raise ApiError(400, f"unsupported payload format type: {fmt}")
            targets.append(dict(target, address=f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}",
                                payload_format=fmt or ("Default" if kind == "http" else "")))
        if not targets:
            raise ApiError(400, f"empty notification target with policy {body.get('name')}")
        if any(w["name"] == body.get("name") and w["project_id"] == project["project_id"]
               and w["id"] != (existing or {}).get("id") for w in self.webhooks.values()):
            raise ApiError(409, f"notification policy {body.get('name')} already exists")
        return dict(existing or {}, name=body.get("name"), description=body.get("description") or "",
                    project_id=project["project_id"], targets=targets, event_types=events,
                    enabled=bool(body.get("enabled")), creator="admin", update_time=_now())

    def op_CreateWebhookPolicyOfProject(self, params, query, body):
        project = self._project_of(params)
        wid = self.new_id()
        self.webhooks[wid] = dict(self._webhook_from_body(project, body, None), id=wid, creation_time=_now())
        return 201, None, {"Location": f"/api/v2.0/projects/{project['project_id']}/webhook/policies/{wid}"}

    def _webhook(self, params) -> dict:
        project = self._project_of(params)
        webhook = self._get(self.webhooks, params, "webhook_policy_id")
        if webhook["project_id"] != project["project_id"]:
            raise ApiError(404, f"webhook policy {webhook['id']} not found in project {project['project_id']}")
        return webhook

    def op_GetWebhookPolicyOfProject(self, params, query, body):
        return 200, self._webhook(params), {}

    def op_ListWebhookPoliciesOfProject(self, params, query, body):
        project = self._project_of(params)
        found = [w for w in self.webhooks.values() if w["project_id"] == project["project_id"]]
        return self._page(found, query, f"/projects/{project['project_id']}/webhook/policies")

    def op_UpdateWebhookPolicyOfProject(self, params, query, body):
        webhook = self._webhook(params)
        self.webhooks[webhook["id"]] = self._webhook_from_body(self._project_of(params), body, webhook)
        return 200, None, {}

    def op_DeleteWebhookPolicyOfProject(self, params, query, body):
        del self.webhooks[self._webhook(params)["id"]]
        return 200, None, {}

    # -- labels -----------------------------------------------------------------------------------------------
    def _valid_label(self, label: dict) -> None:
        """pkg/label/model Label.Valid, and the manager's 409 for a name taken in the scope."""
        if not 1 <= len(label.get("name") or "") <= 128:
            raise ApiError(400, "max length is 128" if label.get("name") else "cannot be empty")
        if label["scope"] not in ("g", "p") or (label["scope"] == "p" and (label.get("project_id") or 0) <= 0):
            raise ApiError(400, f"invalid: {label['scope']}")
        if any(other["name"] == label["name"] and other["scope"] == label["scope"]
               and other["project_id"] == label["project_id"] and other["id"] != label.get("id")
               for other in self.labels.values()):
            raise ApiError(409, f"label {label['name']} already exists")

    def op_CreateLabel(self, params, query, body):
        label = {"name": body.get("name"), "description": body.get("description") or "",
                 "color": body.get("color") or "", "scope": body.get("scope"),
                 "project_id": 0 if body.get("scope") == "g" else body.get("project_id") or 0}
        self._valid_label(label)
        lid = self.new_id()
        self.labels[lid] = dict(label, id=lid, creation_time=_now(), update_time=_now())
        return 201, None, {"Location": f"/api/v2.0/labels/{lid}"}

    def op_GetLabelByID(self, params, query, body):
        return 200, self._get(self.labels, params, "label_id"), {}

    def op_ListLabels(self, params, query, body):
        found = [lb for lb in self.labels.values() if lb["scope"] == query.get("scope", "g")
                 and query.get("name", "") in lb["name"]
                 and (query.get("scope") != "p" or str(lb["project_id"]) == query.get("project_id"))]
        return self._page(found, query, "/labels")

    def op_UpdateLabel(self, params, query, body):
        label = self._get(self.labels, params, "label_id")
        updated = dict(label, name=body.get("name"), description=body.get("description") or "",
                       color=body.get("color") or "", update_time=_now())
        self._valid_label(updated)
        self.labels[label["id"]] = updated
        return 200, None, {}

    def op_DeleteLabel(self, params, query, body):
        del self.labels[self._get(self.labels, params, "label_id")["id"]]
        return 200, None, {}

    # -- configurations ---------------------------------------------------------------------------------------
    _SECRET_CONFIG = ("ldap_search_password", "oidc_client_secret", "uaa_client_secret")

    def op_getConfigurations(self, params, query, body):
        # controller/config ConvertForGet: password-type keys are never returned.
        return 200, {k: {"value": v, "editable": True} for k, v in self.configurations.items()
                     if k not in self._SECRET_CONFIG}, {}

    def op_updateConfigurations(self, params, query, body):
        """controller/config validateCfg (metadata types); only the keys given change."""
        choices = {"auth_mode": ("db_auth", "ldap_auth", "uaa_auth", "http_auth", "oidc_auth"),
                   "project_creation_restriction": ("adminonly", "everyone"),
                   "ldap_scope": (0, 1, 2), "ldap_group_search_scope": (0, 1, 2)}
        for key, allowed in choices.items():
            if key in body and body[key] not in allowed:
                raise ApiError(400, f"invalid {key}")
        if body.get("auth_mode", self.configurations["auth_mode"]) != self.configurations["auth_mode"] \
                and len(self.users) > 1:
            raise ApiError(400, "the auth mode cannot be modified as new users have been inserted into database")
        self.configurations.update(body)
        return 200, None, {}

    # -- user groups and project members ---------------------------------------------------------------------
    def add_user(self, username: str, password: str = "Passw0rd-of-a-user") -> int:
        uid = next(self._user_ids)
        self.users[uid] = {"user_id": uid, "username": username, "email": f"{username}@example.com",
                           "realname": username, "comment": "", "sysadmin_flag": False, "password": password,
                           "creation_time": _now(), "update_time": _now()}
        return uid

    def _user_view(self, user: dict) -> dict:
        return {k: v for k, v in user.items() if k != "password"}

    def op_createUser(self, params, query, body):
        """handler/user.go CreateUser: password rule, then validateUserProfile; a taken name is a 409."""
        if not _valid_robot_secret(body.get("password") or ""):
            raise ApiError(400, "the password or secret must be 8-128, inclusively, characters long with at least 1 "
                                "uppercase letter, 1 lowercase letter and 1 number")
        if not body.get("email"):
            raise ApiError(400, "email can't be empty")
        if not 1 <= len(body.get("realname") or "") <= 255:
            raise ApiError(400, "realname with illegal length")
        if len(body.get("comment") or "") > 30:
            raise ApiError(400, "comment with illegal length")
        name = body.get("username") or ""
        if not 1 <= len(name) <= 255 or set(name) & set(',"~#%$'):
            raise ApiError(400, "username contains illegal characters")
        if any(u["username"] == name for u in self.users.values()):
            raise ApiError(409, f"username {name} is already used")
        uid = self.add_user(name, body["password"])
        self.users[uid].update(email=body["email"], realname=body["realname"], comment=body.get("comment") or "")
        return 201, None, {"Location": f"/api/v2.0/users/{uid}"}

    def op_getUser(self, params, query, body):
        return 200, self._user_view(self._get(self.users, params, "user_id")), {}

    def op_listUsers(self, params, query, body):
        found = [self._user_view(u) for u in self.users.values() if query.get("username", "") in u["username"]]
        return self._page(found, query, "/users")

    def op_updateUserProfile(self, params, query, body):
        self._get(self.users, params, "user_id").update(
            {k: body.get(k) or "" for k in ("email", "realname", "comment")})
        return 200, None, {}

    def op_getCurrentUserInfo(self, params, query, body):
        """handler/user.go GetCurrentUserInfo: the caller (the emulator authenticates the admin only)."""
        return 200, self._user_view(self.users[1]), {}

    def op_updateUserPassword(self, params, query, body):
        """handler/user.go UpdateUserPassword: requireModifiable (outside db_auth only the local admin, id 1); the
        caller changing its own password must give the current one (403); the new one must pass requireValidSecret
        (400) and differ from the current one (400)."""
        uid = int(params["user_id"])  # the contract matched {user_id} as an integer
        if self.configurations["auth_mode"] != "db_auth" and uid != 1:
            raise ApiError(403, f"User with ID {uid} can't be updated")
        user = self._get(self.users, params, "user_id")
        body = body or {}
        if uid == 1 and body.get("old_password") != user["password"]:  # matchUserID: the caller is the admin
            raise ApiError(403, "Current password is incorrect")
        new = body.get("new_password") or ""
        if not _valid_robot_secret(new):
            raise ApiError(400, "the password or secret must be 8-128, inclusively, characters long with at least 1 "
                                "uppercase letter, 1 lowercase letter and 1 number")
        if new == user["password"]:
            raise ApiError(400, "New password is identical to old password")
        user.update(password=new, update_time=_now())
        return 200, None, {}

    def op_setUserSysAdmin(self, params, query, body):
        self._get(self.users, params, "user_id")["sysadmin_flag"] = bool(body.get("sysadmin_flag"))
        return 200, None, {}

    def op_deleteUser(self, params, query, body):
        user = self._get(self.users, params, "user_id")
        if user["user_id"] == 1:
            raise ApiError(403, "User with ID 1 cannot be deleted")
        del self.users[user["user_id"]]
        return 200, None, {}

    def op_createUserGroup(self, params, query, body):
        if not body.get("group_name"):
            raise ApiError(400, "group name is required")
        kind, dn = body.get("group_type"), body.get("ldap_group_dn") or ""
        # pkg/usergroup manager: an LDAP group is unique by DN, the others by name and type. The emulator has no
        # LDAP server: every DN with DN syntax is taken as found.
        same = [g for g in self.usergroups.values() if g["group_type"] == kind
                and (g["ldap_group_dn"] == dn if kind == 1 else g["group_name"] == body["group_name"])]
        if same:
            raise ApiError(409, f"duplicate user group, group name:{body['group_name']}, group type: {kind}, "
                                f"ldap group DN: {dn}")
        if kind == 1 and not re.match(r"^\s*[A-Za-z][\w-]*\s*=", dn):
            raise ApiError(400, f"invalid DN syntax. DN: {dn}")
        gid = self.new_id()
        self.usergroups[gid] = {"id": gid, "group_name": body["group_name"], "group_type": kind,
                                "ldap_group_dn": dn}
        return 201, None, {"Location": f"/api/v2.0/usergroups/{gid}"}

    def op_getUserGroup(self, params, query, body):
        return 200, self._get(self.usergroups, params, "group_id"), {}

    def op_listUserGroups(self, params, query, body):
        found = [g for g in self.usergroups.values()
                 if query.get("group_name", g["group_name"]) in g["group_name"]
                 and query.get("ldap_group_dn", g["ldap_group_dn"]) == g["ldap_group_dn"]]
        return self._page(found, query, "/usergroups")

    def op_updateUserGroup(self, params, query, body):
        if not body.get("group_name"):
            raise ApiError(400, "group name is required")
        self._get(self.usergroups, params, "group_id")["group_name"] = body["group_name"]
        return 200, None, {}

    def op_deleteUserGroup(self, params, query, body):
        del self.usergroups[self._get(self.usergroups, params, "group_id")["id"]]
        return 200, None, {}

    def op_createProjectMember(self, params, query, body):
        """controller/member Create: the entity, then no duplicate (409), then a valid role (400)."""
        project = self._project_of(params)
        user, group = body.get("member_user") or {}, body.get("member_group") or {}
        if group.get("id"):
            entity = self.usergroups.get(group["id"])
            if entity is None:
                raise ApiError(400, f"Group {group['id']} not found")
            kind, entity_id, name = "g", entity["id"], entity["group_name"]
        else:
            entity = next((u for u in self.users.values() if u["username"] == user.get("username")), None)
            if entity is None:
                raise ApiError(404, f"user {user.get('username')} not found")
            kind, entity_id, name = "u", entity["user_id"], entity["username"]
        if any(m["project_id"] == project["project_id"] and m["entity_type"] == kind and m["entity_id"] == entity_id
               for m in self.members.values()):
            raise ApiError(409, "The project member specified already exist")
        if body.get("role_id") not in (1, 2, 3, 4, 5):
            raise ApiError(400, "Failed to update project member, role is not in 1,2,3")
        mid = self.new_id()
        self.members[mid] = {"id": mid, "project_id": project["project_id"], "entity_name": name,
                             "role_id": body["role_id"], "role_name": _ROLE_NAMES[body["role_id"]],
                             "entity_id": entity_id, "entity_type": kind}
        return 201, None, {"Location": f"/api/v2.0/projects/{project['project_id']}/members/{mid}"}

    def _member(self, params) -> dict:
        project = self._project_of(params)
        member = self._get(self.members, params, "mid")
        if member["project_id"] != project["project_id"]:
            raise ApiError(404, f"member {member['id']} not found in project {project['project_id']}")
        return member

    def op_getProjectMember(self, params, query, body):
        return 200, self._member(params), {}

    def op_listProjectMembers(self, params, query, body):
        project = self._project_of(params)
        found = [m for m in self.members.values() if m["project_id"] == project["project_id"]]
        return self._page(found, query, f"/projects/{project['project_id']}/members")

    def op_updateProjectMember(self, params, query, body):
        member = self._member(params)
        if body.get("role_id") not in (1, 2, 3, 4, 5):
            raise ApiError(400, "Failed to update project member, role is not in 1,2,3")
        member.update(role_id=body["role_id"], role_name=_ROLE_NAMES[body["role_id"]])
        return 200, None, {}

    def op_deleteProjectMember(self, params, query, body):
        del self.members[self._member(params)["id"]]
        return 200, None, {}

    # -- immutable tag rules --------------------------------------------------------------------------------
    def _project_of(self, params: dict) -> dict:
        return self._get(self.projects, params, "project_name_or_id")

    @staticmethod
    def _tag_filter(body: dict) -> str:
        """pkg/immutable manager: the rule is stored as its JSON (`tag_filter`), unique per project."""
        return json.dumps({k: v for k, v in body.items() if k not in ("id", "priority")}, sort_keys=True)

    def op_CreateImmuRule(self, params, query, body):
        project = self._project_of(params)
        if any(r["project_id"] == project["project_id"] and self._tag_filter(r["rule"]) == self._tag_filter(body)
               for r in self.immutable_rules.values()):
            raise ApiError(409, "immutable rule already exists")
        rid = self.new_id()
        # dao CreateImmutableRule stores every new rule enabled, whatever the body says.
        self.immutable_rules[rid] = {"project_id": project["project_id"],
                                     "rule": dict(body, id=rid, priority=0, disabled=False)}
        return 201, None, {"Location": f"/api/v2.0/projects/{project['project_id']}/immutabletagrules/{rid}"}

    def op_ListImmuRules(self, params, query, body):
        project = self._project_of(params)
        rules = [r["rule"] for r in self.immutable_rules.values() if r["project_id"] == project["project_id"]]
        return self._page(rules, query, f"/projects/{project['project_id']}/immutabletagrules")

    def op_UpdateImmuRule(self, params, query, body):
        if int(params["immutable_rule_id"]) != body.get("id"):
            raise ApiError(400, "the immutable_rule_id doesn't match the id in the payload body of ImmutableRule")
        self._project_of(params)
        stored = self._get(self.immutable_rules, params, "immutable_rule_id")["rule"]
        # controller/immutable UpdateImmutableRule: a different `disabled` only toggles the rule.
        if stored["disabled"] != bool(body.get("disabled")):
            stored["disabled"] = bool(body.get("disabled"))
        else:
            stored.update({k: v for k, v in body.items() if k not in ("id", "priority", "disabled")})
        return 200, None, {}

    def op_DeleteImmuRule(self, params, query, body):
        self._project_of(params)
        del self.immutable_rules[self._get(self.immutable_rules, params, "immutable_rule_id")["rule"]["id"]]
        return 200, None, {}

    # -- system schedules ------------------------------------------------------------------------------------
    def _set_schedule(self, vendor: str, body: dict) -> tuple[int, Any, dict]:
        """handler/gc.go and purge.go `kick`, scan_all.go createOrUpdateScanAllSchedule: type None removes the
        schedule; Hourly/Daily/Weekly/Custom validate the cron (utils.ValidateCronString) and replace it."""
        schedule = body.get("schedule") or {}
        kind, cron = schedule.get("type"), schedule.get("cron") or ""
        parameters = dict(body.get("parameters") or {})
        if kind == "None":
            self.schedules.pop(vendor, None)
            return 200, None, {}
        if kind not in ("Hourly", "Daily", "Weekly", "Custom"):
            raise ApiError(400, f"the emulator does not model schedule type {kind!r}")
        cron_fields = cron.split(" ")
        if len(cron_fields) != 6 or cron_fields[0] != "0":
            raise ApiError(400, f"invalid cron string for scheduled {vendor}: {cron}")
        if vendor == "gc" and "workers" in parameters and not 0 < parameters["workers"] <= 10:
            raise ApiError(400, f"Error: Invalid number of workers:{parameters['workers']}. Workers must be greater "
                                "than 0 and less than or equal to 10.")
        if vendor == "purgeaudit" and parameters.get("audit_retention_hour", 0) > 240000:
            raise ApiError(400, "audit_retention_hour should be less than 240000")
        now = _now()
        self.schedules[vendor] = {"id": self.new_id(), "type": kind, "cron": cron, "parameters": parameters,
                                  "creation_time": now, "update_time": now}
        return 200, None, {}

    def _history_view(self, vendor: str) -> tuple[int, Any, dict]:
        """GET of the GC and purge schedules: an ExecHistory with the parameters as JSON text; no body when
        there is no schedule."""
        sch = self.schedules.get(vendor)
        if sch is None:
            return 200, None, {}
        return 200, {"id": sch["id"], "job_name": "", "job_kind": sch["cron"], "deleted": False,
                     "job_parameters": json.dumps(sch["parameters"]), "job_status": "",
                     "schedule": {"type": sch["type"], "cron": sch["cron"]},
                     "creation_time": sch["creation_time"], "update_time": sch["update_time"]}, {}

    def op_getGCSchedule(self, params, query, body):
        return self._history_view("gc")

    def op_createGCSchedule(self, params, query, body):
        return (201,) + self._set_schedule("gc", body)[1:]

    def op_updateGCSchedule(self, params, query, body):
        return self._set_schedule("gc", body)

    def op_getPurgeSchedule(self, params, query, body):
        return self._history_view("purgeaudit")

    def op_createPurgeSchedule(self, params, query, body):
        return (201,) + self._set_schedule("purgeaudit", body)[1:]

    def op_updatePurgeSchedule(self, params, query, body):
        return self._set_schedule("purgeaudit", body)

    def op_getScanAllSchedule(self, params, query, body):
        sch = self.schedules.get("scanAll")
        if sch is None:
            return 200, None, {}
        return 200, {"id": sch["id"], "status": "", "schedule": {"type": sch["type"], "cron": sch["cron"]},
                     "parameters": sch["parameters"], "creation_time": sch["creation_time"],
                     "update_time": sch["update_time"]}, {}

    def op_createScanAllSchedule(self, params, query, body):
        if "scanAll" in self.schedules:
            raise ApiError(412, "fail to set schedule for scan all as always had one, please delete it firstly then "
                                "to re-schedule")
        return (201,) + self._set_schedule("scanAll", body)[1:]

    def op_updateScanAllSchedule(self, params, query, body):
        return self._set_schedule("scanAll", body)

    def op_getPing(self, params, query, body):
        return 200, "Pong", {}

    # -- lists -----------------------------------------------------------------------------------------------
    def _filter(self, items, query: dict):
        terms = _query_terms(query)
        if query.get("name"):
            terms["name"] = query["name"]
        return [i for i in items if all(str(i.get(k)) == v for k, v in terms.items())]

    def _page(self, items: list, query: dict, path: str) -> tuple[int, Any, dict]:
        page = int(query.get("page", 1))
        size = int(query.get("page_size", 10))
        if size > 100 or size < 1 or page < 1:
            raise ApiError(422, "page_size in query should be less than or equal to 100 (and page >= 1)")
        total = len(items)
        links = []
        keep = {k: v for k, v in query.items() if k not in ("page", "page_size")}
        if page > 1:
            links.append(f'</api/v2.0{path}?{urlencode(dict(keep, page=page - 1, page_size=size))}>; rel="prev"')
        if page * size < total:
            links.append(f'</api/v2.0{path}?{urlencode(dict(keep, page=page + 1, page_size=size))}>; rel="next"')
        headers = {"X-Total-Count": str(total)}
        if links:
            headers["Link"] = " , ".join(links)
        return 200, items[(page - 1) * size: page * size], headers


def _query_terms(query: dict) -> dict:
    """Harbor's `q=k=v,k2=v2` exact-match terms (the only pattern the provider uses)."""
    terms = {}
    for part in filter(None, query.get("q", "").split(",")):
        key, _, value = part.partition("=")
        terms[key] = value
    return terms


def _basic_auth(header: str) -> tuple[str, str, str]:
    """(user, ':', password) of a Basic Authorization header (empty strings when there is none)."""
    if not header.startswith("Basic "):
        return "", "", ""
    try:
        return base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return "", "", ""


class _Handler(BaseHTTPRequestHandler):
    emu: HarborEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _serve(self) -> None:
        emu = self.emu
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        path = split.path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        op, params = emu.contract.match(self.command, path.removeprefix(emu.contract.base_path))
        with emu.lock:
            emu.calls.append((self.command, path, op.operation_id if op else "?"))
            emu.requests_with_cookie += "Cookie" in self.headers
        fault = emu.take_fault(self.command, path)
        try:
            if fault and fault.kind == "status":
                err = ApiError(fault.status, f"injected fault {fault.status}")
                return self._answer(fault.status, {"errors": [{"code": err.code, "message": str(err)}]},
                                    fault.headers)
            if fault and fault.kind == "slow":
                time.sleep(fault.seconds)
            self._authorize(op)
            if op is None or not path.startswith(emu.contract.base_path):
                raise ApiError(404, f"no API operation {self.command} {path}")
            body = self._body(op, raw)
            status, payload, headers = emu.handle(op.operation_id, params, query, body)
            # The emulator's own answers must match the contract too, or its fidelity is in question.
            if op.response_schema is not None and payload is not None:
                wrong = emu.contract.errors(op.response_schema, payload)
                if wrong:
                    raise ApiError(500, f"emulator answer breaks the swagger of {op.operation_id}: {wrong[:3]}")
        except ApiError as err:
            status, payload, headers = err.status, {"errors": [{"code": err.code, "message": str(err)}]}, {}
        if fault and fault.kind == "late":
            time.sleep(fault.seconds)
        if fault and fault.kind == "drop":
            # The write is applied; the client never hears about it.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(status, payload, headers)

    def _authorize(self, op) -> None:
        cookies = self.headers.get("Cookie") or ""
        if "sid=" in cookies and self.command not in ("GET", "HEAD") and not self.headers.get("X-Harbor-Csrf-Token"):
            raise ApiError(403, "CSRF token invalid")
        expected = base64.b64encode(f"{self.emu.username}:{self.emu.password}".encode()).decode()
        if self.headers.get("Authorization") == f"Basic {expected}":
            return
        # Robots log in too; the emulator models no robot permissions, so it lets them ask only who they are.
        if op is not None and op.operation_id == "getCurrentUserPermissions":
            login, _, secret = _basic_auth(self.headers.get("Authorization") or "")
            if self.emu.robot_can_log_in(login, secret):
                return
        raise ApiError(401, "unauthorized")

    def _body(self, op, raw: bytes) -> Any:
        if op.body_ref is None:
            return None
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, f"body is not JSON: {exc}") from None
        errors = self.emu.contract.body_errors(op.body_ref, body)
        if errors:
            raise ApiError(422, f"{op.body_ref}: " + "; ".join(errors))
        return body

    def _answer(self, status: int, payload: Any, headers: dict) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Set-Cookie", f"sid={secrets.token_hex(16)}; Path=/; HttpOnly")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
