"""Real registries for the migration tests: a source, a Basic-auth target and a Bearer-token target.

Everything listens on 127.0.0.1 with free ports, lives in a temporary directory removed at the end, and every
registry process is stopped by its PID (also when a test fails).
"""
from __future__ import annotations

import base64
import datetime
import json
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization

from labs import certs as lab_certs
from labs.fakes.registries import RegistryServer, free_port, layer, push_image, push_multi_arch
from scripts.registry_tools.client import Credentials, RegistryClient
from tests.support import ROOT

SCRIPTS = ROOT / "scripts"

USER = "migrator"
PASSWORD = "s3cret-for-tests"
TOKEN_SERVICE = "test-registry"
TOKEN_ISSUER = "test-token-issuer"


@dataclass
class TokenServer:
    """A token endpoint like Harbor's /service/token: Basic-authenticated GET, JWT signed with a test key."""

    workdir: Path
    port: int = field(default_factory=free_port)
    requests: list[dict] = field(default_factory=list)  # service/scope of every token request, for assertions
    expires_in: int = 300  # seconds, as announced to clients and written into the JWT

    def __post_init__(self):
        self.key = lab_certs.new_key()
        self.cert = lab_certs.issue("test token signer", self.key)
        self.cert_path = Path(self.workdir) / "token-signer.pem"
        self.cert_path.write_bytes(lab_certs.cert_pem(self.cert))
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def registry_auth(self) -> dict:
        return {"token": {"realm": self.realm, "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER,
                          "rootcertbundle": str(self.cert_path)}}

    def issue(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:  # grants what is asked: `repository:team/app:pull,push`, `registry:catalog:*`
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = datetime.datetime.now(datetime.UTC)
        claims = {"iss": TOKEN_ISSUER, "sub": USER, "aud": TOKEN_SERVICE, "iat": now, "nbf": now,
                  "exp": now + datetime.timedelta(seconds=self.expires_in), "jti": uuid.uuid4().hex, "access": access}
        x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": x5c})

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                server.requests.append({"service": query.get("service"), "scope": query.get("scope", [])})
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).encode()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    body = json.dumps({"token": server.issue(query.get("scope", [])),
                                       "expires_in": server.expires_in}).encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def htpasswd_auth(workdir: Path) -> dict:
    """An htpasswd file made by `htpasswd -B` (bcrypt: docker-registry accepts nothing else), password on stdin."""
    path = Path(workdir) / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-i", "-c", str(path), USER], input=PASSWORD.encode(), check=True,
                   capture_output=True)
    return {"htpasswd": {"realm": "test-basic", "path": str(path)}}


@dataclass
class Registries:
    workdir: Path
    source: RegistryServer
    basic: RegistryServer
    token: RegistryServer
    token_server: TokenServer
    index_digest: str = ""  # of the scenario's multi-arch tag, once pushed

    def client(self, server: RegistryServer, authenticated: bool = True) -> RegistryClient:
        return RegistryClient(server.url, Credentials(USER, PASSWORD) if authenticated and server.auth else None)


class RegistryStack:
    """Starts source + Basic target + token target (+ token server); `close()` stops all that started."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="registry-test-")
        self._started: list = []

    def start(self) -> Registries:
        workdir = Path(self._tmp.name)
        try:
            token_server = self._start(TokenServer(workdir))
            return Registries(workdir,
                              self._start(RegistryServer(workdir, name="source")),
                              self._start(RegistryServer(workdir, auth=htpasswd_auth(workdir), name="basic")),
                              self._start(RegistryServer(workdir, auth=token_server.registry_auth(), name="token")),
                              token_server)
        except BaseException:
            self.close()
            raise

    def _start(self, thing):
        thing.start()
        self._started.append(thing)
        return thing

    def close(self) -> None:
        try:
            for thing in reversed(self._started):
                thing.stop()
        finally:
            self._tmp.cleanup()


# -- the migration scenario --------------------------------------------------------------------------------------
TARGET_PROJECT = "migrated"
BASE_LAYER = layer("etc/os-release", b"ID=tiny-test-os\n")
SOURCE_IMAGES = {  # repository -> tag -> layers ("latest" is the same image as "3.19": one manifest, two tags)
    "library/alpine": {tag: [BASE_LAYER, layer("etc/version", version.encode())]
                       for tag, version in (("3.18", "3.18"), ("3.19", "3.19"), ("latest", "3.19"))},
    "team/app": {tag: [BASE_LAYER, layer("app/version", f"app {tag}\n".encode())] for tag in ("v1", "v2", "v3", "v4")},
}
MULTI_ARCH = ("multi/arch", "latest", b"multi-arch hello ")
# What the target gets wrong, and so exactly what the report must name:
MISSING = ("team/app", "v3")
MISMATCHED = ("team/app", "v4")
EXTRA = ("team/app", "v5")


def push_source(client: RegistryClient, prefix: str = "", skip=(), changed=()) -> str:
    """Push the scenario under `prefix`, leaving out `skip` tags and rebuilding `changed` ones; returns the index
    digest."""
    for repository, tags in SOURCE_IMAGES.items():
        for tag, layers in tags.items():
            if (repository, tag) in skip:
                continue
            if (repository, tag) in changed:
                layers = [BASE_LAYER, layer("app/version", f"rebuilt {tag}\n".encode())]
            push_image(client, prefix + repository, tag, layers)
    repository, tag, content = MULTI_ARCH
    return push_multi_arch(client, prefix + repository, tag, content)


def push_scenario(registries: Registries) -> str:
    """The source, and both targets as a replication into project TARGET_PROJECT that went wrong three ways."""
    with registries.client(registries.source) as source:
        index_digest = push_source(source)
    for server in (registries.basic, registries.token):
        with registries.client(server) as target:
            prefix = f"{TARGET_PROJECT}/"
            assert push_source(target, prefix, skip={MISSING}, changed={MISMATCHED}) == index_digest
            repository, tag = EXTRA
            push_image(target, prefix + repository, tag, [BASE_LAYER, layer("app/version", b"extra\n")])
    return index_digest


def record_urls(monkeypatch) -> list[str]:
    """Record the URL of every HTTP request while still sending it to the real registry."""
    urls: list[str] = []
    original = requests.Session.request

    def recording(self, method, url, *args, **kwargs):
        urls.append(url)
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recording)
    return urls
