"""A registry client for the S3 storage drills, standard library only (it runs inside a lab host's python3).

    python3 registry_client.py loop REGISTRIES STOP_FILE SECONDS LAYER_BYTES TAG_PREFIX   -> JSON on stdout
    python3 registry_client.py check REGISTRIES IMAGES_JSON                     -> JSON on stdout

REGISTRIES: comma-separated base URLs of the registries that share one bucket (each Harbor node's). `loop` pushes a
new image (a random layer, a config, a schema-2 manifest) to one registry and pulls the previous one from the next
registry, comparing every digest, until STOP_FILE exists or SECONDS passed (tags TAG_PREFIX0, TAG_PREFIX1, ...: a
new prefix per loop, so no loop overwrites another's tags); it prints every operation's result, the
longest time without a successful operation and the images it pushed. `check` pulls every listed image from every
registry and counts those that are missing or differ: the images lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
TIMEOUT = 30


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_blob(base: str, repo: str, blob: bytes) -> None:
    status, headers, body = request("POST", f"{base}/v2/{repo}/blobs/uploads/", b"")
    if status != 202:
        raise RuntimeError(f"upload start {status} {body[:120]!r}")
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    status, _h, body = request("PUT", f"{location}{sep}digest={digest(blob)}", blob,
                               {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise RuntimeError(f"upload {status} {body[:120]!r}")


def push_image(base: str, repo: str, tag: str, layer_bytes: int) -> dict:
    layer = os.urandom(layer_bytes)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": [digest(layer)]}}).encode()
    for blob in (layer, config):
        push_blob(base, repo, blob)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": digest(config)},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "size": len(layer), "digest": digest(layer)}]}).encode()
    status, headers, body = request("PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": MANIFEST})
    if status != 201:
        raise RuntimeError(f"manifest {status} {body[:120]!r}")
    if headers.get("Docker-Content-Digest") != digest(manifest):
        raise RuntimeError("the registry names another manifest digest")
    return {"repo": repo, "tag": tag, "manifest": digest(manifest), "layer": digest(layer)}


def pull_image(base: str, image: dict) -> None:
    """The manifest by tag and its layer, each compared with the digest pushed."""
    status, _h, manifest = request("GET", f"{base}/v2/{image['repo']}/manifests/{image['tag']}", None,
                                   {"Accept": MANIFEST})
    if status != 200 or digest(manifest) != image["manifest"]:
        raise RuntimeError(f"manifest {status}: digest {digest(manifest)} != {image['manifest']}")
    layer = json.loads(manifest)["layers"][0]["digest"]
    status, _h, blob = request("GET", f"{base}/v2/{image['repo']}/blobs/{layer}")
    if status != 200 or digest(blob) != image["layer"]:
        raise RuntimeError(f"layer {status}: digest {digest(blob)} != {image['layer']}")


def loop(registries: list[str], stop: str, seconds: float, layer_bytes: int, prefix: str) -> dict:
    ops, images, t0 = [], [], time.monotonic()
    last_ok, max_gap = time.monotonic(), 0.0
    i = 0
    while not os.path.exists(stop) and time.monotonic() - t0 < seconds:
        for kind in ("push", "pull"):
            base = registries[(i + (kind == "pull")) % len(registries)]
            start, wall = time.monotonic(), time.time()
            error = None
            try:
                if kind == "push":
                    images.append(push_image(base, "drill/app", f"{prefix}{i}", layer_bytes))
                elif images:
                    pull_image(base, images[-1])
            except Exception as e:  # every failure is counted and described, none stops the loop
                error = repr(e)[:160]
            now = time.monotonic()
            if error is None:
                max_gap = max(max_gap, now - last_ok)
                last_ok = now
            ops.append({"op": kind, "registry": base, "start": wall, "ms": round((now - start) * 1000),
                        "ok": error is None, **({"error": error} if error else {})})
        i += 1
    max_gap = max(max_gap, time.monotonic() - last_ok)
    return {"ops": len(ops), "failed_ops": sum(not o["ok"] for o in ops), "max_gap_ms": round(max_gap * 1000),
            "failures": [o for o in ops if not o["ok"]][:20], "images": images, "timeline": ops}


def check(registries: list[str], images: list[dict]) -> dict:
    lost = []
    for image in images:
        for base in registries:
            try:
                pull_image(base, image)
            except Exception as e:
                lost.append({"image": f"{image['repo']}:{image['tag']}", "registry": base, "error": repr(e)[:160]})
    return {"images": len(images), "pulls": len(images) * len(registries),
            "images_lost": len({x["image"] for x in lost}), "missing": lost[:20]}


def main(argv: list[str]) -> int:
    mode, registries = argv[0], argv[1].split(",")
    if mode == "loop":
        result = loop(registries, argv[2], float(argv[3]), int(argv[4]), argv[5])
    else:
        result = check(registries, json.loads(Path(argv[2]).read_text()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
