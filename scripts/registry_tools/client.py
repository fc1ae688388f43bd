"""A small Registry HTTP API v2 client: pagination, manifest digests, Basic and Bearer token auth.

One `RegistryClient` is shared by all worker threads: each thread gets its own `requests.Session` (connection
reuse without sharing a session across threads), while the auth state (scheme learnt from the challenge, tokens
cached per scope) is shared under a lock.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# The manifest media types a migration has to compare: image indexes / manifest lists first, so a multi-arch tag
# resolves to its index digest (what `docker pull` resolves and what Harbor replicates) and never to one platform.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_MEDIA_TYPES = frozenset(MANIFEST_MEDIA_TYPES[:2])
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
CATALOG_SCOPE = "registry:catalog:*"
# Tokens without `expires_in` last 60 s (distribution token spec); renew a little before that.
DEFAULT_TOKEN_LIFETIME = 60
TOKEN_RENEW_MARGIN = 5

_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


class RegistryError(Exception):
    """A registry answered with an error (message built from its `{"errors": [...]}` body when there is one)."""

    def __init__(self, message: str, status: int | None = None, codes: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.codes = codes


class NotFound(RegistryError):
    """404: unknown repository (NAME_UNKNOWN) or unknown tag/manifest (MANIFEST_UNKNOWN)."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password, not even in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


def load_credentials(env_prefix: str, credentials_file: str | None = None, environ=os.environ) -> Credentials | None:
    """Credentials from a file holding `user:password` (first line) or from `<PREFIX>_USERNAME`/`_PASSWORD`.

    Returns None (anonymous access) when neither is given. Never from the command line: argv is visible to every
    user of the host in `ps`.
    """
    if credentials_file:
        line = Path(credentials_file).read_text(encoding="utf-8").splitlines()[0:1]
        user, sep, password = (line[0] if line else "").partition(":")
        if not sep or not user:
            raise ValueError(f"{credentials_file}: expected one line `user:password`")
        return Credentials(user, password)
    user = environ.get(f"{env_prefix}_USERNAME")
    password = environ.get(f"{env_prefix}_PASSWORD")
    if bool(user) != bool(password):
        raise ValueError(f"set both {env_prefix}_USERNAME and {env_prefix}_PASSWORD, or neither")
    return Credentials(user, password) if user else None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://h/service/token",service="harbor-registry",scope="..."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def error_message(response: requests.Response) -> tuple[str, tuple[str, ...]]:
    """A readable message from a registry error response, and its error codes."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict))
    details = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors if isinstance(e, dict))
    text = details or (response.text or "").strip()[:200] or response.reason
    return f"HTTP {response.status_code} {response.request.method} {response.url}: {text}", codes


def repository_scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


def _without_page_size(url: str) -> str:
    """`url` without its `n=` query parameter (the registry then pages with its own size)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "n"]
    return urlunsplit(parts._replace(query=urlencode(query)))


# Reads are retried when the registry is briefly slow or unavailable (a read timeout, a reset connection, 429 or a
# 502-504 from its load balancer): a verification of every tag must not fail on one transient error. Writes are not
# (a blob upload is not idempotent); after the last retry the registry's own answer is reported.
READ_RETRY = Retry(total=4, connect=4, read=4, status=4, backoff_factor=1.0, allowed_methods=frozenset({"GET", "HEAD"}),
                   status_forcelist=(429, 502, 503, 504), respect_retry_after_header=True, raise_on_status=False)


class RegistryClient:
    """Registry HTTP API v2 at `base_url` (`https://host[:port]`), safe to share between threads."""

    def __init__(self, base_url: str, credentials: Credentials | None = None, *, verify_tls: bool | str = True,
                 timeout: float = 30.0, allow_any_token_realm: bool = False):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"registry URL must look like https://host[:port], got {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.credentials = credentials
        self.verify_tls = verify_tls
        self.timeout = timeout
        self.allow_any_token_realm = allow_any_token_realm
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._scheme: str | None = None  # "basic" or "bearer", learnt from the first challenge
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic expiry)

    # -- connection handling ---------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.verify = self.verify_tls
            session.trust_env = False  # registry traffic must not go through a proxy from the environment
            adapter = HTTPAdapter(max_retries=READ_RETRY)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- auth ------------------------------------------------------------------------------------------------
    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            if self._scheme == "basic" and self.credentials:
                pair = f"{self.credentials.username}:{self.credentials.password}".encode()
                return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
            cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic():
            return {"Authorization": f"Bearer {cached[0]}"}
        return {}

    def _answer_challenge(self, response: requests.Response, scope: str) -> None:
        header = response.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.credentials:
                raise RegistryError(f"{self.base_url} requires a user name and password (Basic auth)", 401)
            with self._lock:
                self._scheme = "basic"
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.base_url}: unsupported authentication challenge {header!r}", 401)
        query = [("service", params["service"])] if params.get("service") else []
        # A challenge may name several scopes separated by spaces; the token endpoint takes one `scope` each.
        query += [("scope", s) for s in (params.get("scope") or scope).split()]
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        if auth:
            self._check_realm(params["realm"])
        reply = self._session().get(params["realm"], params=query, auth=auth, timeout=self.timeout)
        if reply.status_code != 200:
            message, codes = error_message(reply)
            raise RegistryError(f"token request failed: {message}", reply.status_code, codes)
        body = reply.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token endpoint {params['realm']} answered without a token", reply.status_code)
        lifetime = int(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        with self._lock:
            self._scheme = "bearer"
            self._tokens[scope] = (token, time.monotonic() + max(lifetime - TOKEN_RENEW_MARGIN, 1))

    def _check_realm(self, realm: str) -> None:
        """The credentials go only to an https token service, or to the registry's own host (over http only when
        the registry URL itself is http): a challenge must not send them in clear text or to a third party."""
        target, base = urlsplit(realm), urlsplit(self.base_url)
        same_host = (target.hostname or "").lower() == (base.hostname or "").lower()
        if self.allow_any_token_realm or target.scheme == "https" or (
                same_host and target.scheme == "http" == base.scheme):
            return
        raise RegistryError(
            f"{self.base_url} sends the credentials to the token service {realm!r}, which is neither https nor "
            f"the registry's own host over its own scheme; refusing to send them there (if that service is "
            f"trusted, allow it explicitly: allow_any_token_realm, --source- or --target-allow-any-token-realm)", 401)

    def request(self, method: str, path_or_url: str, scope: str, *, ok=(200,), **kwargs) -> requests.Response:
        """Send a request, answering one auth challenge; raise NotFound/RegistryError for other statuses."""
        url = urljoin(self.base_url, path_or_url)
        headers = kwargs.pop("headers", {})
        response = None
        for attempt in range(2):
            response = self._session().request(method, url, headers={**headers, **self._auth_header(scope)},
                                               timeout=self.timeout, **kwargs)
            if response.status_code != 401 or attempt == 1:
                break
            response.close()
            self._answer_challenge(response, scope)
        if response.status_code in ok:
            return response
        message, codes = error_message(response)
        raise (NotFound if response.status_code == 404 else RegistryError)(message, response.status_code, codes)

    # -- API -------------------------------------------------------------------------------------------------
    def _paginate(self, path: str, key: str, scope: str, page_size: int) -> Iterator[str]:
        """Follow `Link: <...>; rel="next"` pages; only one page is held at a time.

        A registry whose page limit is below `page_size` (distribution's `catalog.maxentries`) refuses the first
        page with 400 PAGINATION_NUMBER_INVALID: it is asked again without `n`, so it uses its own page size,
        and its Link headers lead on from there.
        """
        url: str | None = f"{path}?n={page_size}"
        while url:
            try:
                response = self.request("GET", url, scope)
            except RegistryError as error:
                if error.status != 400 or "PAGINATION_NUMBER_INVALID" not in error.codes or "n=" not in url:
                    raise
                url = _without_page_size(url)
                response = self.request("GET", url, scope)
            yield from response.json().get(key) or []
            following = response.links.get("next", {}).get("url")
            url = urljoin(response.url, following) if following else None

    def iter_repositories(self, page_size: int = 100) -> Iterator[str]:
        return self._paginate("/v2/_catalog", "repositories", CATALOG_SCOPE, page_size)

    def iter_tags(self, repository: str, page_size: int = 1000) -> Iterator[str]:
        """Tags of a repository; raises NotFound when the registry does not know the repository."""
        return self._paginate(f"/v2/{repository}/tags/list", "tags", repository_scope(repository), page_size)

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The digest of the manifest (or index) a tag points at: HEAD, or GET + sha256 without the header."""
        path = f"/v2/{repository}/manifests/{reference}"
        scope = repository_scope(repository)
        response = self.request("HEAD", path, scope, headers={"Accept": MANIFEST_ACCEPT})
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return self.get_manifest(repository, reference)[0]

    def get_manifest(self, repository: str, reference: str) -> tuple[str, dict]:
        """(digest, parsed manifest); the digest is computed from the bytes received when the header is absent."""
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}", repository_scope(repository),
                                headers={"Accept": MANIFEST_ACCEPT})
        digest = (response.headers.get("Docker-Content-Digest")
                  or "sha256:" + hashlib.sha256(response.content).hexdigest())
        manifest = response.json()
        manifest.setdefault("mediaType", response.headers.get("Content-Type", "").split(";")[0])
        return digest, manifest
