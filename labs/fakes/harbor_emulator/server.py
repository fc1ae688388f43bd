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
  400 "the registry is unhealthy" for hosts marked unreachable, 400 for schedules Harbor refuses;
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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlencode, urlsplit

from .schema import load_contract

ADAPTERS = ("harbor", "docker-hub", "docker-registry", "aws-ecr", "azure-acr", "ali-acr", "tencent-tcr",
            "google-gcr", "huawei-SWR", "github-ghcr", "gitlab", "quay", "jfrog-artifactory", "dtr",
            "volcengine-cr")
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
    """`status` (answer `status`, apply nothing), `slow` (sleep `seconds`, then handle normally) or `drop`
    (handle normally, then close the connection without an answer)."""
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
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HarborEmulator:
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    def __init__(self, username: str = "admin", password: str = "Harbor12345"):
        self.contract = load_contract()
        self.username, self.password = username, password
        self.lock = threading.RLock()
        self.calls: list[tuple[str, str, str]] = []
        self.requests_with_cookie = 0
        self.faults: list[Fault] = []
        self.unreachable_hosts: set[str] = set()
        self.run_plans: dict[int, RunPlan] = {}
        self.registries: dict[int, dict] = {}
        self.policies: dict[int, dict] = {}
        self.projects: dict[int, dict] = {}
        self.quotas: dict[int, dict] = {}
        self.robots: dict[int, dict] = {}
        self.executions: dict[int, dict] = {}
        self.read_only = False  #: Harbor's system read_only switch (PUT /configurations {"read_only": ...})
        self._ids = itertools.count(1)
        self._server: Optional[ThreadingHTTPServer] = None
        self._scheme = "http"
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, tls: Optional[tuple[str, str]] = None) -> "HarborEmulator":
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

    def __enter__(self) -> "HarborEmulator":
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
        if parts.hostname in self.unreachable_hosts:
            raise ApiError(400, "the registry is unhealthy")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

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
        name = body.get("name") or ""
        if any(r["bare_name"] == name and r["level"] == body.get("level") for r in self.robots.values()):
            raise ApiError(409, f"robot account robot${name} already exists")
        if body.get("level") != "system":
            raise ApiError(400, "the emulator implements system robots only")
        rid = self.new_id()
        secret = body.get("secret") or secrets.token_urlsafe(24)
        duration = body.get("duration", -1)
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
        robot = self._get(self.robots, params, "robot_id")
        robot["secret"] = body.get("secret") or secrets.token_urlsafe(24)
        return 200, {"secret": robot["secret"]}, {}

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

    # -- system configuration: only read_only, the switch consistent backups use -----------------------------
    def op_getConfigurations(self, params, query, body):
        return 200, {"read_only": {"value": self.read_only, "editable": True}}, {}

    def op_updateConfigurations(self, params, query, body):
        unknown = set(body) - {"read_only"}
        if unknown:
            raise ApiError(501, f"emulator does not implement configuration items {sorted(unknown)}")
        self.read_only = bool(body["read_only"])
        return 200, None, {}

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
            self._authorize()
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
        if fault and fault.kind == "drop":
            # The write is applied; the client never hears about it.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(status, payload, headers)

    def _authorize(self) -> None:
        cookies = self.headers.get("Cookie") or ""
        if "sid=" in cookies and self.command not in ("GET", "HEAD") and not self.headers.get("X-Harbor-Csrf-Token"):
            raise ApiError(403, "CSRF token invalid")
        expected = base64.b64encode(f"{self.emu.username}:{self.emu.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
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
