#!/usr/bin/env python3
"""The client side of the HA drills: runs on the client host, standard library only, prints one JSON document.

`labs/ha_lab.py` runs it inside the lab's client namespace; `scripts/ha_drill.py` pipes this file to
`ssh CLIENT python3 - ...` on a real client host. Modes:

    stream  HOST --count N --period S --timeout S --repo R --blob DIGEST
            open-loop load: request i starts at i*period on its own thread and its own HTTPS connection,
            alternating GET /v2/ and GET /v2/<repo>/blobs/<digest>; one line "started <epoch>" on stderr
            when the first request is sent, then the result of every request
    push    HOST --repo R --tag T [--layer-file F]   push a small image over the registry HTTP API
    pull    HOST --repo R --tag T                    pull it back, verifying every digest
    blob    HOST --repo R --size N                   push one random blob (the stream's probe)
    workload HOST --repo R --count N --duration S    what CI systems do: push fresh images (a distinct random layer
            each), pull an earlier one after each push, each operation retried like docker's own; then pull every
            image reported pushed and compare its digests (lost and corrupted images are counted). `--also HOST2`
            (repeatable): several registries sharing one storage, round i pushes through the i-th and pulls through
            the next (the host lab's s3 shape)
    verify  HOST... --repo R --pushed FILE           pull every image of FILE (JSON tag -> manifest digest) through
            every HOST and count the lost and corrupted ones
    redis   SENTINEL... --master-set NAME --duration S
            follow the sentinels and write to whoever they name as master, every 50 ms; password in the
            REDIS_PASSWORD environment variable (never on a command line)

Against a real Harbor (scripts/ha_drill.py), HARBOR_USER and HARBOR_PASSWORD in the environment make the client
fetch one bearer token for the repository first (Harbor's token service, as `docker login` does) and send it with
every request.

TLS: the LB's certificate is verified (system CAs, or only the PEM in HA_CA_PEM: the cluster's or the lab's CA)
for `--server-name` (Harbor's hostname) while connecting to HOST:`--port`; `--insecure` turns that off;
`--plain-http` speaks HTTP (a registry on a lab host's own port, no TLS).

Failure policy (documented in docs/ha.md): a request fails when it gets no complete 2xx answer within
`--timeout` seconds in total (connect + TLS + response), or on any connection error; there are no retries.
"""

import argparse
import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import sys
import tarfile
import threading
import time
import urllib.parse
from typing import Optional

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Which registry node answered: the lab's registry config.yml adds this header (http.headers).
NODE_HEADER = "X-Lab-Node"


# How every HTTPS request connects; set once by `configure_tls` (main) before any request.
_TLS: dict = {"port": 443, "context": None, "server_name": None}


def configure_tls(port: int, ca_pem: Optional[str], insecure: bool, server_name: Optional[str],
                  plain: bool = False) -> None:
    """Verify the LB's certificate against the system CAs, or only `ca_pem` (the cluster's or the lab's CA),
    for `server_name` (default: the host connected to). `insecure` turns verification off (a lab with a
    certificate nobody has the CA of): the Basic credentials of `login` then go to whoever answers. `plain`: no TLS
    at all (HTTP to `port`)."""
    if plain:
        _TLS.update(port=port, context=None, server_name=None, plain=True)
        return
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    _TLS.update(port=port, context=ctx, server_name=server_name, plain=False)


class _Connection(http.client.HTTPSConnection):
    """Connects to the VIP's address but checks the certificate for the server name (Harbor's hostname)."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext, server_name: Optional[str]):
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


_AUTH: dict = {}  # {"Authorization": "Bearer ..."} once a token was fetched


def login(host: str, repo: str) -> None:
    """Docker's token flow: the 401 on /v2/ names the token service; basic auth there returns a bearer token."""
    user, password = os.environ.get("HARBOR_USER"), os.environ.get("HARBOR_PASSWORD")
    if not user or not password:
        return
    status, headers, _ = request(host, "GET", "/v2/")
    challenge = headers.get("www-authenticate", "")
    if status != 401 or not challenge.lower().startswith("bearer "):
        return
    params = dict(part.split("=", 1) for part in challenge[7:].replace('"', "").split(","))
    realm = params.pop("realm")
    query = urllib.parse.urlencode({"service": params.get("service", ""), "scope": f"repository:{repo}:pull,push"})
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, _, body = request(host, "GET", f"{_path_of(realm)}?{query}", headers={"Authorization": f"Basic {basic}"})
    if status != 200:
        raise RuntimeError(f"token service answered HTTP {status}: check HARBOR_USER/HARBOR_PASSWORD")
    _AUTH["Authorization"] = "Bearer " + json.loads(body)["token"]


def request(host: str, method: str, path: str, *, body: bytes = b"", headers: Optional[dict] = None,
            timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One HTTPS request on a fresh connection, with a total deadline of `timeout` seconds."""
    if _TLS["context"] is None and not _TLS.get("plain"):
        raise RuntimeError("configure_tls() first")
    headers = {**_AUTH, **(headers or {})}
    deadline = time.monotonic() + timeout
    conn: http.client.HTTPConnection = (
        http.client.HTTPConnection(host, _TLS["port"], timeout=timeout) if _TLS.get("plain")
        else _Connection(host, _TLS["port"], timeout, _TLS["context"], _TLS["server_name"]))
    try:
        conn.connect()
        conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            conn.sock.settimeout(remaining)
            chunk = resp.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(chunks)
    finally:
        conn.close()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# stream
# --------------------------------------------------------------------------------------------------------------

def stream(host: str, count: int, period: float, timeout: float, repo: str, blob: str) -> dict:
    results: list[Optional[dict]] = [None] * count

    def one(i: int) -> None:
        path = "/v2/" if i % 2 == 0 else f"/v2/{repo}/blobs/{blob}"
        start = time.time()
        entry = {"i": i, "path": path, "start": start}
        try:
            status, headers, body = request(host, "GET", path, timeout=timeout)
            entry["status"] = status
            entry["node"] = headers.get(NODE_HEADER.lower())
            ok = status == 200 and (i % 2 == 0 or _digest(body) == blob)
            if status == 200 and not ok:
                entry["error"] = "blob content does not match its digest"
            elif not ok:
                entry["error"] = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        entry["ms"] = round((time.time() - start) * 1000, 1)
        entry["ok"] = "error" not in entry
        results[i] = entry

    threads = []
    t0 = time.monotonic()
    print(f"started {time.time():.6f}", file=sys.stderr, flush=True)
    for i in range(count):
        delay = t0 + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout + 5)
    done = [r for r in results if r is not None]
    return {"total": count, "failed": sum(1 for r in done if not r["ok"]) + count - len(done),
            "max_ms": max((r["ms"] for r in done), default=None), "requests": done}


# --------------------------------------------------------------------------------------------------------------
# push / pull (registry HTTP API v2, monolithic blob uploads)
# --------------------------------------------------------------------------------------------------------------

def _path_of(location: str) -> str:
    if location.startswith(("http://", "https://")):
        location = "/" + location.split("/", 3)[3]
    return location


def push_blob(host: str, repo: str, data: bytes, served: list) -> str:
    digest = _digest(data)
    status, headers, body = request(host, "POST", f"/v2/{repo}/blobs/uploads/")
    served.append(("POST upload", headers.get(NODE_HEADER.lower())))
    if status != 202:
        raise RuntimeError(f"starting a blob upload: HTTP {status} {body[:200]!r}")
    loc = _path_of(headers["location"])
    sep = "&" if "?" in loc else "?"
    status, headers, body = request(host, "PUT", f"{loc}{sep}digest={digest}", body=data,
                                    headers={"Content-Type": "application/octet-stream"})
    served.append(("PUT blob", headers.get(NODE_HEADER.lower())))
    if status != 201:
        raise RuntimeError(f"uploading blob {digest}: HTTP {status} {body[:200]!r}")
    return digest


def _layer(name: str, data: bytes) -> tuple[bytes, str]:
    """A gzip'ed tar holding `data` as bin/<name>, byte-for-byte reproducible; and its uncompressed digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("bin/" + name)
        info.size, info.mode, info.uname, info.gname = len(data), 0o755, "root", "root"
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), _digest(tar_bytes)


def push(host: str, repo: str, tag: str, name: str, data: bytes) -> dict:
    """Push a one-layer image whose layer holds `data` as bin/<name>."""
    served: list = []
    layer, diff_id = _layer(name, data)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "config": {"Cmd": ["/bin/" + name]}}, sort_keys=True).encode()
    layer_digest = push_blob(host, repo, layer, served)
    config_digest = push_blob(host, repo, config, served)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
    }, sort_keys=True).encode()
    status, headers, body = request(host, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                    headers={"Content-Type": OCI_MANIFEST})
    served.append(("PUT manifest", headers.get(NODE_HEADER.lower())))
    if status != 201:
        raise RuntimeError(f"pushing the manifest: HTTP {status} {body[:200]!r}")
    return {"digest": _digest(manifest), "registry_digest": headers.get("docker-content-digest"),
            "manifest_node": headers.get(NODE_HEADER.lower()), "served": served,
            "blobs": [config_digest, layer_digest]}


def pull(host: str, repo: str, tag: str) -> dict:
    served: list = []
    status, headers, body = request(host, "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    served.append(("GET manifest", headers.get(NODE_HEADER.lower())))
    if status != 200:
        raise RuntimeError(f"pulling the manifest: HTTP {status} {body[:200]!r}")
    manifest = json.loads(body)
    bad = []
    for desc in [manifest["config"], *manifest["layers"]]:
        s, h, blob = request(host, "GET", f"/v2/{repo}/blobs/{desc['digest']}", timeout=30)
        served.append((f"GET blob {desc['digest'][:19]}", h.get(NODE_HEADER.lower())))
        if s != 200:  # unreadable, as a failed manifest read: retried, then counted lost (not corrupted)
            raise RuntimeError(f"pulling blob {desc['digest'][:19]}: HTTP {s} {blob[:200]!r}")
        if _digest(blob) != desc["digest"]:
            bad.append(f"{desc['digest']}: content {_digest(blob)}")
    return {"digest": _digest(body), "registry_digest": headers.get("docker-content-digest"), "served": served,
            "bad_blobs": bad}


# --------------------------------------------------------------------------------------------------------------
# workload: pushes and pulls as a CI system makes them, retried like docker's own client
# --------------------------------------------------------------------------------------------------------------

def with_retries(op, attempts: int, delay: float, relogin) -> tuple[Optional[dict], list[str]]:
    """Run `op` up to `attempts` times, waiting delay x attempt seconds between tries, as docker's push and pull do
    (moby distribution/xfer: 5 attempts, "Retrying in 5/10/15/20 seconds"). A 401 fetches a new token first (a
    token service that was down when the last one expired). Returns the result (None when every try failed) and the
    error of each failed try."""
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            return op(), errors
        except (OSError, http.client.HTTPException, RuntimeError, ValueError, KeyError) as e:
            errors.append(f"{type(e).__name__}: {e}"[:300])
            if attempt == attempts:
                break
            time.sleep(delay * attempt)
            if "HTTP 401" in errors[-1]:
                # a failed login here makes the next try fail and say why
                with contextlib.suppress(OSError, http.client.HTTPException, RuntimeError, ValueError, KeyError):
                    relogin()
    return None, errors


def workload(host: str, repo: str, count: int, duration: float, layer_size: int, attempts: int, delay: float,
             verify: bool = True, stop_file: Optional[str] = None, also: tuple[str, ...] = ()) -> dict:
    """Up to `count` push+pull rounds within `duration` seconds (bounded by both; no new round either once
    `stop_file` exists: a drill ends the load when its cluster is whole again), then, with `verify`, every image
    reported pushed pulled back and compared. One line "started <epoch>" on stderr when the first push starts.
    `also`: further registries sharing the storage; round i pushes through the i-th of (host, *also) and pulls
    through the next; the verification reads through `host`."""
    hosts = (host, *also)
    ops: list[dict] = []
    pushed: dict[str, str] = {}  # tag -> manifest digest, for the images whose push succeeded
    nonce = os.urandom(4).hex()
    t0 = time.monotonic()
    print(f"started {time.time():.6f}", file=sys.stderr, flush=True)

    def record(kind: str, ref: str, via: str, op) -> Optional[dict]:
        start = time.time()
        result, errors = with_retries(op, attempts, delay, lambda: login(via, repo))
        ops.append({"op": kind, "ref": ref, "start": start, "end": time.time(), "ok": result is not None,
                    "attempts": len(errors) + (result is not None), "errors": errors,
                    "digest": result.get("digest") if result else None, **({"host": via} if also else {})})
        return result

    for i in range(count):
        if time.monotonic() - t0 >= duration or (stop_file and os.path.exists(stop_file)):
            break
        tag = f"w{nonce}-{i}"
        pusher, puller = hosts[i % len(hosts)], hosts[(i + 1) % len(hosts)]
        result = record("push", tag, pusher, lambda t=tag: push(pusher, repo, t, f"w{i}", os.urandom(layer_size)))
        if result is not None:
            if result.get("registry_digest") not in (None, result["digest"]):
                ops[-1].update(ok=False, errors=[*ops[-1]["errors"], "the registry's digest differs from ours"])
            else:
                pushed[tag] = result["digest"]
        if pushed:
            earlier = list(pushed)[int.from_bytes(os.urandom(2), "big") % len(pushed)]
            record("pull", earlier, puller, lambda t=earlier: _checked_pull(puller, repo, t, pushed[t]))
    checks = verify_images(host, repo, pushed, attempts, delay) if verify else []
    return {**workload_summary(ops, checks, verify), "pushed": pushed, "ops": ops, "checks": checks}


def verify_images(host: str, repo: str, pushed: dict[str, str], attempts: int, delay: float) -> list[dict]:
    """Pull every image in `pushed` (tag -> manifest digest) and say of each: ok, lost (unreadable after every
    try) or corrupted (another digest, or a blob whose content does not match its digest)."""
    checks = []
    for tag, digest in pushed.items():
        result, errors = with_retries(lambda t=tag: pull(host, repo, t), attempts, delay, lambda: login(host, repo))
        if result is None:
            checks.append({"ref": tag, "state": "lost", "errors": errors})
        elif result["digest"] != digest or result["bad_blobs"]:
            checks.append({"ref": tag, "state": "corrupted", "digest": result["digest"],
                           "bad_blobs": result["bad_blobs"]})
        else:
            checks.append({"ref": tag, "state": "ok"})
    return checks


def verify_everywhere(hosts: list[str], repo: str, pushed: dict[str, str], attempts: int, delay: float) -> dict:
    """verify_images through each of `hosts` (registries sharing one storage): an image is lost or corrupted when
    it is so through any of them."""
    states: dict[str, list[str]] = {}
    bad: list[dict] = []
    for host in hosts:
        for check in verify_images(host, repo, pushed, attempts, delay):
            states.setdefault(check["ref"], []).append(check["state"])
            if check["state"] != "ok":
                bad.append({**check, "host": host})
    return {"images": len(pushed), "pulls": len(pushed) * len(hosts),
            "images_ok": sum(1 for s in states.values() if set(s) == {"ok"}),
            "images_lost": sum(1 for s in states.values() if "lost" in s),
            "images_corrupted": sum(1 for s in states.values() if "corrupted" in s and "lost" not in s),
            "failed": bad[:20]}


def _checked_pull(host: str, repo: str, tag: str, digest: str) -> dict:
    result = pull(host, repo, tag)
    # the cause first: the drills' reports keep the first 140 characters of an error
    problems = [f"blob {b}" for b in result["bad_blobs"]]
    if result["digest"] != digest:
        problems.append(f"manifest {result['digest']} (pushed {digest})")
    if problems:
        raise ValueError(f"{tag}: {'; '.join(problems)}")
    return result


def workload_summary(ops: list[dict], checks: list[dict], verified: bool) -> dict:
    """Failed operations (after their retries), retried ones, the longest time without a completed push (from the
    first push's start to the last op's end), and the verification's lost and corrupted images."""
    pushes = [o for o in ops if o["op"] == "push"]
    ends = sorted(o["end"] for o in pushes if o["ok"])
    if pushes:
        edges = [pushes[0]["start"], *ends, max(o["end"] for o in ops)]
        max_gap_ms: Optional[float] = round(max(b - a for a, b in zip(edges, edges[1:], strict=False)) * 1000, 1)
    else:
        max_gap_ms = None
    return {
        "pushes": len(pushes), "pushes_failed": sum(1 for o in pushes if not o["ok"]),
        "pulls": len(ops) - len(pushes), "pulls_failed": sum(1 for o in ops if o["op"] == "pull" and not o["ok"]),
        "retried_ok": sum(1 for o in ops if o["ok"] and o["attempts"] > 1),
        "max_push_gap_ms": max_gap_ms,
        "verified": verified,
        "images_pushed": sum(1 for o in pushes if o["ok"]),
        "images_lost": sum(1 for c in checks if c["state"] == "lost") if verified else None,
        "images_corrupted": sum(1 for c in checks if c["state"] == "corrupted") if verified else None,
    }


# --------------------------------------------------------------------------------------------------------------
# redis: a minimal RESP client, enough for SENTINEL get-master-addr-by-name, AUTH and SET
# --------------------------------------------------------------------------------------------------------------

def _resp_read(f) -> object:
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")


def redis_call(host: str, port: int, *commands: list, timeout: float = 0.5) -> list:
    """Send each command on one connection, return the replies (an error reply raises)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        payload = b""
        for cmd in commands:
            parts = [str(c).encode() for c in cmd]
            payload += b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        s.sendall(payload)
        f = s.makefile("rb")
        return [_resp_read(f) for _ in commands]


def follow_sentinels(sentinels: list[str], master_set: str, duration: float, password: str) -> dict:
    """Every 50 ms: ask the sentinels who the master is, then write to it. Records each change of outcome.

    Stops at `duration`, or once writes have succeeded for 1 s after a failure (the failover is over).
    """
    events = []
    last = None
    failed_once = False
    end = time.monotonic() + duration
    n = 0
    print(f"started {time.time():.6f}", file=sys.stderr, flush=True)
    while time.monotonic() < end:
        n += 1
        master, outcome = None, None
        for s in sentinels:
            host, _, port = s.rpartition(":")
            try:
                addr = redis_call(host, int(port), ["SENTINEL", "get-master-addr-by-name", master_set])[0]
                master = f"{addr[0]}:{addr[1]}"
                break
            except (OSError, RuntimeError, ConnectionError):
                continue
        if master is None:
            outcome = "no sentinel answered"
        else:
            host, _, port = master.rpartition(":")
            try:
                replies = redis_call(host, int(port), ["AUTH", password], ["SET", "ha-lab:probe", str(n)])
                outcome = "ok" if replies[1] == "OK" else f"SET answered {replies[1]!r}"
            except (OSError, RuntimeError, ConnectionError) as e:
                outcome = f"{type(e).__name__}: {e}"
        if (master, outcome) != last:
            events.append({"t": time.time(), "master": master, "outcome": outcome})
            last = (master, outcome)
        failed_once = failed_once or outcome != "ok"
        if failed_once and outcome == "ok" and time.time() - events[-1]["t"] > 1.0:
            break
        time.sleep(0.05)
    return {"attempts": n, "events": events}


def main(argv: Optional[list[str]] = None) -> int:
    # not __doc__: piped over SSH, the file runs after a prelude line, so it has no docstring there
    p = argparse.ArgumentParser(description="the client side of the HA drills (scripts/drills/ha_client.py)")
    sub = p.add_subparsers(dest="mode", required=True)
    https = argparse.ArgumentParser(add_help=False)
    https.add_argument("--port", type=int, default=443, help="HTTPS port of the VIP")
    https.add_argument("--server-name", help="name to check the certificate for (default: HOST)")
    https.add_argument("--plain-http", action="store_true", help="HTTP, no TLS (a lab registry's own port)")
    https.add_argument("--insecure", action="store_true",
                       help="do not verify the certificate (default: verify it against the system CAs, or only "
                            "against the PEM in the HA_CA_PEM environment variable)")
    s = sub.add_parser("stream", parents=[https])
    s.add_argument("host")
    s.add_argument("--count", type=int, default=200)
    s.add_argument("--period", type=float, default=0.04)
    s.add_argument("--timeout", type=float, default=2.0)
    s.add_argument("--repo", required=True)
    s.add_argument("--blob", required=True)
    for name in ("push", "pull"):
        s = sub.add_parser(name, parents=[https])
        s.add_argument("host")
        s.add_argument("--repo", required=True)
        s.add_argument("--tag", required=True)
        if name == "push":
            # busybox-static where installed, else this Python binary: any file makes a valid layer.
            s.add_argument("--layer-file", default="/bin/busybox" if os.path.exists("/bin/busybox") else sys.executable)
    s = sub.add_parser("workload", parents=[https])
    s.add_argument("host")
    s.add_argument("--repo", required=True)
    s.add_argument("--count", type=int, default=100, help="push+pull rounds at most")
    s.add_argument("--duration", type=float, default=120, help="seconds at most (no new round starts after)")
    s.add_argument("--layer-size", type=int, default=256 * 1024, help="bytes of random data in each image's layer")
    s.add_argument("--attempts", type=int, default=5, help="tries per operation (docker's default: 5)")
    s.add_argument("--retry-delay", type=float, default=5.0,
                   help="seconds x attempt between tries (docker: 5)")
    s.add_argument("--no-verify", action="store_true", help="skip pulling every pushed image back at the end")
    s.add_argument("--stop-file", help="start no new round once this file exists (then verify as usual)")
    s.add_argument("--also", action="append", default=[], metavar="HOST",
                   help="another registry sharing the storage: rounds push and pull through each in turn")
    s = sub.add_parser("verify", parents=[https])
    s.add_argument("hosts", nargs="+")
    s.add_argument("--repo", required=True)
    s.add_argument("--pushed", required=True, help="JSON file: tag -> manifest digest (workload's `pushed`)")
    s.add_argument("--attempts", type=int, default=5, help="tries per image and host")
    s.add_argument("--retry-delay", type=float, default=5.0)
    s = sub.add_parser("blob", parents=[https])
    s.add_argument("host")
    s.add_argument("--repo", required=True)
    s.add_argument("--size", type=int, default=16384)
    s = sub.add_parser("redis")
    s.add_argument("sentinels", nargs="+", help="HOST:PORT of each sentinel")
    s.add_argument("--master-set", required=True)
    s.add_argument("--duration", type=float, required=True)
    a = p.parse_args(argv)

    if a.mode in ("stream", "push", "pull", "blob", "workload", "verify"):
        configure_tls(a.port, os.environ.get("HA_CA_PEM"), a.insecure, a.server_name, plain=a.plain_http)
        login(a.hosts[0] if a.mode == "verify" else a.host, a.repo)
    if a.mode == "stream":
        out = stream(a.host, a.count, a.period, a.timeout, a.repo, a.blob)
    elif a.mode == "push":
        with open(a.layer_file, "rb") as f:
            out = push(a.host, a.repo, a.tag, os.path.basename(a.layer_file), f.read())
    elif a.mode == "workload":
        out = workload(a.host, a.repo, a.count, a.duration, a.layer_size, a.attempts, a.retry_delay,
                       verify=not a.no_verify, stop_file=a.stop_file, also=tuple(a.also))
    elif a.mode == "verify":
        with open(a.pushed) as f:
            out = verify_everywhere(a.hosts, a.repo, json.load(f), a.attempts, a.retry_delay)
    elif a.mode == "pull":
        out = pull(a.host, a.repo, a.tag)
    elif a.mode == "blob":
        served: list = []
        out = {"digest": push_blob(a.host, a.repo, os.urandom(a.size), served), "served": served}
    else:
        password = os.environ.get("REDIS_PASSWORD")
        if not password:
            p.error("set REDIS_PASSWORD in the environment")
        out = follow_sentinels(a.sentinels, a.master_set, a.duration, password)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
