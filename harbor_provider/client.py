"""HTTP client for Harbor's REST API v2.0.

Every call uses a fresh `requests.Session` that refuses cookies: Harbor answers each request with a `sid` session
cookie, and a client that sends it back switches on Harbor's CSRF check, which rejects every later write with 403.
Retries (with exponential backoff) happen only where a retry is safe to converge: connection errors, timeouts,
5xx and 429. A write whose response was lost is retried too; when the retry answers 409, the resources adopt the
object by name only if an earlier try may have been applied (`HarborError.earlier_try_may_have_applied`: the
connection broke after the request was sent, the answer timed out, or a 5xx other than 503). A 429 or 503, or a
connection never made, means Harbor did not apply it: the 409 is then someone else's object (see `resources.py`).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Optional
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

API_PREFIX = "/api/v2.0"
PAGE_SIZE = 100
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_APPLIED_STATUSES = frozenset({429, 503})
_MAX_PAGES = 10_000  # bound on following `Link` when Harbor sends no X-Total-Count
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class HarborError(Exception):
    """An API call failed; `status` is the HTTP status (None when Harbor could not be reached)."""

    def __init__(self, message: str, status: Optional[int] = None, harbor_messages: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.harbor_messages = harbor_messages
        self.earlier_try_may_have_applied = False
        """An earlier try of this call got no answer after it was sent, or a 5xx other than 503: Harbor may have
        applied it (so a 409 now may be that try's object)."""


@dataclass(frozen=True)
class Credentials:
    """Where and as whom to call Harbor. Never pickled into Pulumi state (built per call)."""

    url: str
    """Harbor's external URL, e.g. `https://harbor.example.com` (the `/api/v2.0` prefix is added)."""
    username: str
    """A Harbor user with the system admin role (or a system robot account with the needed permissions)."""
    password: str
    """That user's password (or the robot's secret)."""
    ca_certificate: Optional[str] = None
    """PEM of the CA that signed Harbor's certificate (e.g. the cluster's generated CA)."""

    @classmethod
    def resolve(cls, inputs: dict[str, Any], provider_config: dict[str, Optional[str]]) -> Credentials:
        """Secret resource inputs first, then provider config, then HARBOR_URL / HARBOR_USERNAME / HARBOR_PASSWORD."""
        env = {"url": "HARBOR_URL", "username": "HARBOR_USERNAME", "password": "HARBOR_PASSWORD"}
        values = {}
        for key, var in env.items():
            value = inputs.get(f"harbor_{key}") or provider_config.get(key) or os.environ.get(var)
            if not value:
                raise HarborError(
                    f"no Harbor {key}: set harbor{key.capitalize()} in the stack config key `harbor-ha:harborApi` "
                    f"or the environment variable {var}"
                )
            values[key] = value
        ca = inputs.get("harbor_ca_certificate") or provider_config.get("caCertificate")
        return cls(**values, ca_certificate=ca)


@dataclass(frozen=True)
class ClientSettings:
    """Timeouts and retry policy (no credentials: this is what the pickled provider carries)."""

    connect_timeout: float = 5.0
    """Seconds to wait for the TCP/TLS connection."""
    read_timeout: float = 30.0
    """Seconds to wait for Harbor's answer to one request."""
    attempts: int = 5
    """Tries per request (the first one included) on connection errors, timeouts, 5xx and 429."""
    backoff: float = 0.5
    """Seconds before the first retry; doubled each time, capped at 10 s."""
    verify_tls: bool = True
    """Verify Harbor's TLS certificate (HARBOR_INSECURE=true turns it off for a self-signed lab cluster)."""
    ca_bundle: Optional[str] = None
    """PEM file of the CA that signed Harbor's certificate (HARBOR_CA_BUNDLE), e.g. the cluster's own CA."""

    @classmethod
    def from_env(cls) -> ClientSettings:
        """Defaults, overridden by HARBOR_TIMEOUT (read timeout, seconds), HARBOR_ATTEMPTS, HARBOR_INSECURE and
        HARBOR_CA_BUNDLE."""
        return cls(
            read_timeout=float(os.environ.get("HARBOR_TIMEOUT", cls.read_timeout)),
            attempts=int(os.environ.get("HARBOR_ATTEMPTS", cls.attempts)),
            verify_tls=os.environ.get("HARBOR_INSECURE", "").lower() not in ("1", "true", "yes"),
            ca_bundle=os.environ.get("HARBOR_CA_BUNDLE") or None,
        )


@dataclass
class Response:
    """What the resources need from one answer."""

    status: int
    body: Any
    headers: Mapping[str, str]
    """Case-insensitive, as HTTP header names are."""
    attempts: int
    """How many HTTP requests this call took (more than 1 means an earlier try may have been applied)."""

    def location_id(self) -> str:
        """The new object's id from the `Location` header of a 201 (Harbor sends no body on most creates)."""
        location = self.headers.get("Location", "")
        tail = location.rstrip("/").rsplit("/", 1)[-1]
        if tail:
            return tail
        if isinstance(self.body, dict) and self.body.get("id") is not None:  # e.g. RobotCreated
            return str(self.body["id"])
        raise HarborError(f"Harbor answered {self.status} without a Location header or an id")


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request):  # noqa: D401 - cookiejar API
        return False


def error_messages(body: Any) -> tuple[str, ...]:
    """The messages of Harbor's `{"errors":[{"code":..,"message":..}]}` body (empty when it is something else)."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return tuple(str(e.get("message") or e.get("code") or e) for e in body["errors"] if isinstance(e, dict))
    return ()


class HarborClient:
    """One Harbor; `request` does a single API call with retries, `list_all` follows pagination."""

    def __init__(
        self,
        credentials: Credentials,
        settings: Optional[ClientSettings] = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.credentials = credentials
        self.settings = settings or ClientSettings()
        self._sleep = sleep
        self.base = credentials.url.rstrip("/") + API_PREFIX

    def _send(self, method: str, url: str, json_body: Any, params: Optional[dict]) -> requests.Response:
        if not self.credentials.ca_certificate or not self.settings.verify_tls:
            return self._send_verified(method, url, json_body, params, self.settings.ca_bundle or True)
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca_file:  # requests verifies against a file
            ca_file.write(self.credentials.ca_certificate)
            ca_file.flush()
            return self._send_verified(method, url, json_body, params, ca_file.name)

    def _send_verified(self, method: str, url: str, json_body: Any, params: Optional[dict],
                       verify: Any) -> requests.Response:
        with requests.Session() as session:
            session.cookies.set_policy(_NoCookies())
            # No proxy, .netrc or CA bundle from the environment: the cluster is reached directly, as configured.
            session.trust_env = False
            return session.request(
                method,
                url,
                json=json_body,
                params=params,
                auth=(self.credentials.username, self.credentials.password),
                headers={"Accept": "application/json"},
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                verify=verify if self.settings.verify_tls else False,
                allow_redirects=False,
            )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Optional[dict] = None,
        ok: tuple[int, ...] = (200, 201),
        replay_safe: bool = True,
    ) -> Response:
        """Call `path` (relative to /api/v2.0, or absolute as in a `Link` header); raise HarborError unless ok.

        `replay_safe=False` is for a write that cannot be recognised afterwards (starting an execution): it is
        retried only when Harbor surely did not apply it (no connection, 429, 503)."""
        url = urljoin(self.base + "/", path.lstrip("/")) if not path.startswith(API_PREFIX) else self._origin() + path
        delay = self.settings.backoff
        may_have_applied = False
        for attempt in range(1, self.settings.attempts + 1):
            try:
                answer = self._send(method, url, json_body, params)
            except requests.exceptions.SSLError as exc:  # retrying cannot help
                raise HarborError(
                    f"{method} {path}: TLS with {self.credentials.url} failed ({exc.args[0] if exc.args else exc}); "
                    f"if Harbor's certificate is self-signed, give its CA with HARBOR_CA_BUNDLE "
                    f"(or HARBOR_INSECURE=true in a lab)") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.settings.attempts or not (replay_safe or _never_sent(exc)):
                    not_retried = "" if replay_safe or _never_sent(exc) else \
                        " (not retried: Harbor may have applied it; check before running again)"
                    unresolved = _unresolved_host(exc)
                    reach = (f"this machine cannot resolve {unresolved}: the machine running `pulumi` must resolve "
                             "Harbor's name (DNS, or its /etc/hosts naming the VIP) and reach it on HTTPS"
                             if unresolved else "check that it is up and reachable from here")
                    error = HarborError(
                        f"{method} {path}: Harbor at {self.credentials.url} did not answer after {attempt} "
                        f"tries ({type(exc).__name__}){not_retried}; {reach}")
                    error.earlier_try_may_have_applied = may_have_applied
                    raise error from exc
                may_have_applied |= not _never_sent(exc)
            else:
                body = _json_or_text(answer)
                if answer.status_code in ok:
                    return Response(answer.status_code, body, answer.headers, attempt)
                retry = _RETRY_STATUSES if replay_safe else _NOT_APPLIED_STATUSES
                if answer.status_code not in retry or attempt == self.settings.attempts:
                    error = self._error(method, path, answer.status_code, body, answer.headers)
                    error.earlier_try_may_have_applied = may_have_applied
                    raise error
                may_have_applied |= answer.status_code not in _NOT_APPLIED_STATUSES
            self._sleep(min(delay, 10.0))
            delay *= 2
        raise AssertionError("unreachable: the loop returns or raises")

    def _origin(self) -> str:
        parts = urlsplit(self.credentials.url)
        return f"{parts.scheme}://{parts.netloc}"

    def _error(self, method: str, path: str, status: int, body: Any, headers: Mapping[str, str]) -> HarborError:
        messages = error_messages(body)
        detail = "; ".join(messages) or (str(body)[:300] if body else "no body")
        hint = {
            401: " (check the Harbor username/password)",
            403: " (the user lacks the permission, or a cookie was sent and Harbor's CSRF check refused it)",
        }.get(status, "")
        if 300 <= status < 400:
            hint = f" (redirected to {headers.get('Location')}: use that as the Harbor URL)"
        return HarborError(f"{method} {path}: Harbor answered {status}: {detail}{hint}", status, messages)

    def list_all(self, path: str, params: Optional[dict] = None) -> Iterator[dict]:
        """Every item of a list endpoint: page_size=100, following `Link: <..>; rel="next"` (bounded by
        `X-Total-Count`, so a server that keeps sending `next` cannot loop us forever)."""
        query = dict(params or {}, page=1, page_size=PAGE_SIZE)
        answer = self.request("GET", path, params=query, ok=(200,))
        total = answer.headers.get("X-Total-Count")
        yield from answer.body or []
        for _ in range(int(total) // PAGE_SIZE + 1 if total is not None else _MAX_PAGES):
            match = _NEXT_LINK.search(answer.headers.get("Link", ""))
            if not match:
                return
            answer = self.request("GET", match.group(1), ok=(200,))
            yield from answer.body or []

    def find_by_name(self, path: str, name: str, name_key: str = "name") -> Optional[dict]:
        """The object of `path` whose `name_key` is exactly `name` (Harbor's `q=name=...` is an exact match; a
        name with characters of the `q` syntax is searched in the full list instead)."""
        params = {} if set(name) & set(",=~{}()[]\"'") else {"q": f"{name_key}={name}"}
        for item in self.list_all(path, params):
            if item.get(name_key) == name:
                return item
        return None


def _never_sent(exc: Exception) -> bool:
    """The connection was never made, so Harbor cannot have applied the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    # NameResolutionError is a NewConnectionError too: no address, nothing sent.
    return isinstance(getattr(reason, "reason", None), urllib3.exceptions.NewConnectionError)


def _unresolved_host(exc: Exception) -> Optional[str]:
    """The host name that could not be resolved, when that is why the connection failed."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return str(getattr(reason.conn, "host", None) or "Harbor's host name")
    return None


def _json_or_text(answer: requests.Response) -> Any:
    if not answer.content:
        return None
    try:
        return answer.json()
    except ValueError:
        return answer.text
