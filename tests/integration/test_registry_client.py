"""Unit tests of the registry client pieces: challenges, credentials, the bounded pool, tag-list pagination.

Tag-list pagination is checked against a small HTTP server this test runs on 127.0.0.1 that pages `tags/list`
like Harbor does (sorted, `n` + `last`, `Link: <...>; rel="next"`) and omits Docker-Content-Digest:
Debian's docker-registry 2.8 ignores `n` on tag lists (it returns every tag at once), so it cannot exercise that.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from scripts.registry_tools.client import Credentials, RegistryClient, RegistryError, load_credentials, parse_challenge
from scripts.registry_tools.common import TagWalk, bounded_map, format_table, read_repository_list

TAGS = [f"v{i:03d}" for i in range(25)]
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {}, "layers": []}).encode()


def test_parse_challenge_reads_bearer_parameters_quoted_or_not():
    scheme, params = parse_challenge('Bearer realm="https://h/service/token",service="harbor-registry",'
                                     'scope="repository:p/a:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://h/service/token", "service": "harbor-registry",
                      "scope": "repository:p/a:pull,push"}
    assert parse_challenge("Basic realm=registry") == ("basic", {"realm": "registry"})


def test_credentials_come_from_a_file_or_the_environment_and_never_show_the_password(tmp_path):
    path = tmp_path / "creds"
    path.write_text("robot$migrator:pa:ss\n")
    credentials = load_credentials("TARGET", str(path), environ={})
    assert (credentials.username, credentials.password) == ("robot$migrator", "pa:ss")
    assert "pa:ss" not in repr(credentials)
    from_env = load_credentials("SOURCE", None, environ={"SOURCE_USERNAME": "u", "SOURCE_PASSWORD": "p"})
    assert (from_env.username, from_env.password) == ("u", "p")
    assert load_credentials("SOURCE", None, environ={}) is None
    with pytest.raises(ValueError, match="SOURCE_PASSWORD"):
        load_credentials("SOURCE", None, environ={"SOURCE_USERNAME": "u"})
    path.write_text("no-colon\n")
    with pytest.raises(ValueError, match="user:password"):
        load_credentials("TARGET", str(path), environ={})


def test_registry_url_without_scheme_is_rejected():
    with pytest.raises(ValueError, match="https://host"):
        RegistryClient("registry.example:5000")


def test_bounded_map_pulls_items_lazily_and_keeps_at_most_twice_the_concurrency_in_flight():
    pulled = itertools.count()
    in_flight, peak, lock = 0, 0, threading.Lock()

    def items():
        for i in itertools.count():  # endless: only a lazy consumer can finish
            next(pulled)
            yield i

    def work(i):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.002)
        with lock:
            in_flight -= 1
        if i == 3:
            raise RuntimeError("boom")
        return i * 2

    results = {}
    for item, result, error in bounded_map(work, items(), concurrency=4):
        results[item] = error if error else result
        if len(results) == 40:
            break
    assert next(pulled) <= 40 + 2 * 4 + 1  # what was pulled: the 40 results plus at most one full window
    assert 1 < peak <= 4
    assert isinstance(results[3], RuntimeError)
    assert all(results[i] == 2 * i for i in results if i != 3)


def test_tag_walk_scales_its_total_from_the_repositories_listed_so_far():
    walk = TagWalk("walking", ["a", "b", "c", "d"], show_progress=False)
    walk.listed(10)
    assert (walk.bar.total, walk.bar.postfix) == (40, "repository 1 of 4")
    walk.listed(0)
    walk.listed(2)
    assert (walk.bar.total, walk.bar.postfix) == (16, "repository 3 of 4")
    finished = list(walk.run(lambda i: i + 1, range(12), concurrency=3))
    assert sorted(result for _, result, _ in finished) == list(range(1, 13))


def test_format_table_aligns_text_left_and_numbers_right():
    table = format_table(["NAME", "TAGS"], [["a", 5], ["long-name", 1234]])
    assert table.splitlines() == ["NAME       TAGS", "---------  ----", "a             5", "long-name  1234"]


def test_repository_list_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "repos"
    path.write_text("# planned for wave 1\nteam/app\n\n  library/alpine  # base images\n")
    assert read_repository_list(str(path)) == ["team/app", "library/alpine"]


class _Handler(BaseHTTPRequestHandler):
    def _reply(self, body: bytes, headers: dict, status: int = 200):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def _serve(handler: type) -> Iterator[str]:
    """`handler` on 127.0.0.1 (a free port) in a thread, stopped on exit; yields its http:// URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def paging_registry():
    """A Harbor-like tags/list pager on 127.0.0.1 (see the module docstring); records the query strings."""
    queries: list[dict] = []

    class Handler(_Handler):
        def do_GET(self):
            url = urlsplit(self.path)
            if url.path.endswith("/tags/list"):
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                queries.append(query)
                n, last = int(query["n"]), query.get("last", "")
                page = [t for t in TAGS if t > last][:n]
                headers = {"Content-Type": "application/json"}
                if page and page[-1] != TAGS[-1]:
                    headers["Link"] = f'<{url.path}?last={page[-1]}&n={n}>; rel="next"'
                self._reply(json.dumps({"name": "p/app", "tags": page}).encode(), headers)
            else:  # a manifest, served without Docker-Content-Digest
                self._reply(MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

        do_HEAD = do_GET

    with _serve(Handler) as url:
        yield url, queries


def test_tag_list_pagination_follows_link_headers_until_the_last_page(paging_registry):
    url, queries = paging_registry
    with RegistryClient(url) as client:
        assert list(client.iter_tags("p/app", page_size=10)) == TAGS
    assert queries == [{"n": "10"}, {"last": "v009", "n": "10"}, {"last": "v019", "n": "10"}]


def test_manifest_digest_falls_back_to_sha256_of_the_body_without_the_digest_header(paging_registry):
    url, _ = paging_registry
    with RegistryClient(url) as client:
        assert client.manifest_digest("p/app", "v001") == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@pytest.fixture
def challenging_registry():
    """A registry on 127.0.0.1 whose 401 challenge names the token realm the test sets (`realm_host`, on this
    same server); records the Authorization header of every token request."""
    token_auth: list = []
    box = {"realm_host": "127.0.0.1"}

    class Handler(_Handler):
        def do_GET(self):
            if self.path.startswith("/token"):
                token_auth.append(self.headers.get("Authorization"))
                self._reply(b'{"token": "t0ken"}', {})
            elif self.headers.get("Authorization") == "Bearer t0ken":
                self._reply(b"{}", {})
            else:
                realm = f"http://{box['realm_host']}:{self.server.server_address[1]}/token"
                self._reply(b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'}, 401)

    with _serve(Handler) as url:
        yield url, box, token_auth


CREDENTIALS = Credentials("robot$migrator", "Realm-Secret-1")


def test_credentials_go_to_an_http_token_realm_on_the_registrys_own_host(challenging_registry):
    url, _, token_auth = challenging_registry
    with RegistryClient(url, CREDENTIALS) as client:
        assert client.request("GET", "/v2/", "").status_code == 200
    assert len(token_auth) == 1 and token_auth[0].startswith("Basic ")


def test_credentials_are_not_sent_to_an_http_token_realm_on_another_host(challenging_registry):
    url, box, token_auth = challenging_registry
    box["realm_host"] = "localhost"  # loopback too, but not the host the registry URL names
    with RegistryClient(url, CREDENTIALS) as client, pytest.raises(RegistryError, match="refusing to send them there"):
        client.request("GET", "/v2/", "")
    assert token_auth == []
    with RegistryClient(url, CREDENTIALS, allow_any_token_realm=True) as client:  # the explicit opt-in
        assert client.request("GET", "/v2/", "").status_code == 200
    assert len(token_auth) == 1


@pytest.mark.parametrize("registry,realm,allowed", [
    ("https://registry.example", "https://auth.example/token", True),  # a separate https token service
    ("https://registry.example", "http://registry.example/token", False),  # downgraded to clear text
    ("http://registry.example:5000", "http://registry.example:5001/token", True),
    ("http://registry.example:5000", "http://evil.example/token", False),
])
def test_token_realm_rule(registry, realm, allowed):
    client = RegistryClient(registry, CREDENTIALS)
    if allowed:
        client._check_realm(realm)
    else:
        with pytest.raises(RegistryError, match="refusing"):
            client._check_realm(realm)


@pytest.fixture
def faltering_registry():
    """A registry on 127.0.0.1 whose first manifest read stalls 1.5 s (past the test client's 0.5 s timeout) and whose
    PUTs answer 503; counts the requests of each method."""
    seen = {"GET": 0, "PUT": 0}  # HEAD counts as a read, with GET

    class Handler(_Handler):
        def do_GET(self):
            seen["GET"] += 1
            if seen["GET"] == 1:
                time.sleep(1.5)
            self._reply(MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

        do_HEAD = do_GET

        def do_PUT(self):
            seen["PUT"] += 1
            self._reply(b"", {}, 503)

    with _serve(Handler) as url:
        yield url, seen


def test_a_read_that_times_out_is_retried_and_a_503_write_is_not(faltering_registry):
    url, seen = faltering_registry
    with RegistryClient(url, timeout=0.5) as client:
        assert client.manifest_digest("p/app", "v1") == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
        with pytest.raises(RegistryError) as refused:
            client.request("PUT", "/v2/p/app/manifests/v1", "", ok=(201,), data=MANIFEST)
    # HEAD stalled, HEAD again, then GET for the body (no digest header here); the PUT once.
    assert seen == {"GET": 3, "PUT": 1} and refused.value.status == 503
