#!/usr/bin/env python3
"""Copy Harbor's registry storage from a folder (the NFS export, as a Harbor node mounts it) into an S3 bucket, then
read every object back and compare it: the copy step of the move from `storage.mode: nfs` to `s3`
(docs/object-storage.md, "Moving from NFS to S3").

Runs on a host that sees the folder and reaches the S3 endpoint (a Harbor node): Debian's python3 and
python3-boto3, nothing from the repository. The registry's filesystem driver and its S3 driver lay their files out
alike: SOURCE/docker/registry/v2/X becomes the key ROOT/docker/registry/v2/X (ROOT: storage.s3.rootDirectory).

- Write once: an object already in the bucket with the same bytes is left alone (a second run copies nothing); one
  with other bytes is never overwritten, only reported (exit 1).
- Unfinished uploads (`_uploads/`) are not copied: a push that had not ended is retried by its client.
- Every blob's bytes are checked against the sha256 its path names, in the folder (a corrupted source is reported,
  not copied) and, read back, in the bucket.
Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (never on the command line).
Exit status: 0 all copied and equal, 1 differences (conflicts, corrupted blobs, unequal copies, files that could not
be copied: run it again), 2 usage or access.
Prints one JSON document (also written to --json FILE).
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

PREFIX = "docker/registry/v2"
CHUNK = 1024 * 1024


def sha256_of(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return sha256_of(iter(lambda: f.read(CHUNK), b""))


def object_sha256(client, bucket: str, key: str) -> str:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    return sha256_of(iter(lambda: body.read(CHUNK), b""))


def blob_digest(relative: str) -> str | None:
    """The sha256 a blob's `data` file must hash to (blobs/sha256/ab/<hex>/data), or None for any other file."""
    parts = relative.split("/")
    if len(parts) == 5 and parts[0] == "blobs" and parts[1] == "sha256" and parts[4] == "data":
        return parts[3]
    return None


def source_files(source: Path) -> list[str]:
    """Every file under SOURCE/docker/registry/v2, relative to it, sorted; `_uploads` left out."""
    top = source / PREFIX
    found = []
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "_uploads")
        found += [str((Path(folder) / f).relative_to(top)) for f in files]
    return sorted(found)


def key_of(root: str, relative: str) -> str:
    return f"{root.strip('/')}/{PREFIX}/{relative}".lstrip("/")


def copy_one(client, bucket: str, source: Path, root: str, relative: str) -> dict:
    """One file: checked, copied unless the bucket has it, read back and compared."""
    path = source / PREFIX / relative
    key = key_of(root, relative)
    local = file_sha256(path)
    expected = blob_digest(relative)
    if expected is not None and local != expected:
        return {"key": key, "state": "corrupt_source", "detail": f"sha256 {local}, its path names {expected}"}
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as e:  # botocore's ClientError: only "no such key" means the copy is to be made
        if getattr(e, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        head = None
    if head is not None:
        if head["ContentLength"] == path.stat().st_size and object_sha256(client, bucket, key) == local:
            return {"key": key, "state": "present", "bytes": 0}
        return {"key": key, "state": "conflict", "detail": "in the bucket with other bytes: not overwritten"}
    with path.open("rb") as f:
        client.upload_fileobj(f, bucket, key)
    if object_sha256(client, bucket, key) != local:
        return {"key": key, "state": "unequal", "detail": "read back with other bytes"}
    return {"key": key, "state": "copied", "bytes": path.stat().st_size}


def copy_or_error(client, bucket: str, source: Path, root: str, relative: str) -> dict:
    """copy_one; a failure to read or write (after botocore's retries) is this file's result, not the end of the run:
    the report names it, and a second run copies what is left."""
    try:
        return copy_one(client, bucket, source, root, relative)
    except Exception as e:  # botocore's and the OS's errors alike
        return {"key": key_of(root, relative), "state": "error", "detail": f"{type(e).__name__}: {e}"[:300]}


def resolve(name: str, address: str) -> None:
    """Connect to `address` for `name`, whose TLS certificate is still checked (curl's --resolve): the endpoint of
    roles.objectStore is a name only Harbor's containers resolve, to the node's own S3 proxy."""
    lookup = socket.getaddrinfo

    def pinned(host, *rest, **kw):
        return lookup(address if host == name else host, *rest, **kw)
    socket.getaddrinfo = pinned


def s3_client(args: argparse.Namespace):
    try:  # imported here: --help works without it
        import boto3
        from botocore.config import Config
    except ImportError as missing:  # a host's python3
        raise SystemExit("storage_to_s3: needs boto3 (Debian: apt-get install python3-boto3)") from missing
    options = {"s3": {"addressing_style": "path" if args.path_style else "auto"}, "retries": {"max_attempts": 5},
               "max_pool_connections": args.workers}
    try:  # botocore 1.36+ sends checksum trailers by default, which not every S3 store accepts
        config = Config(**options, request_checksum_calculation="when_required")
    except TypeError:
        config = Config(**options)
    return boto3.client("s3", endpoint_url=args.endpoint, region_name=args.region,
                        verify=args.ca_file or True, config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, type=Path,
                        help="the registry's storage folder (holding docker/registry/v2): DATA_VOLUME/registry")
    parser.add_argument("--endpoint", help="the S3 endpoint URL (storage.s3.endpoint; unset: AWS)")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--root-directory", default="", help="storage.s3.rootDirectory, if set")
    parser.add_argument("--ca-file", help="PEM file of the CA the endpoint's certificate is checked with")
    parser.add_argument("--resolve", metavar="NAME:ADDRESS",
                        help="reach the endpoint's host NAME at ADDRESS (S3_RESOLVE of a node's storage-to-s3.env)")
    parser.add_argument("--no-path-style", dest="path_style", action="store_false",
                        help="virtual-hosted addressing (AWS itself); path style is the default")
    parser.add_argument("--workers", type=int, default=8, help="files copied at once")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
        print("storage_to_s3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Harbor's S3 key)", file=sys.stderr)
        return 2
    if not (args.source / PREFIX).is_dir():
        print(f"storage_to_s3: no folder {args.source / PREFIX}: --source is the registry's storage (the folder "
              "holding docker/registry/v2: DATA_VOLUME/registry on a Harbor node)", file=sys.stderr)
        return 2
    if args.resolve:
        name, sep, address = args.resolve.rpartition(":")
        if not (sep and name and address):
            print(f"storage_to_s3: --resolve {args.resolve!r} is not NAME:ADDRESS", file=sys.stderr)
            return 2
        resolve(name, address)
    t0 = time.monotonic()
    files = source_files(args.source)
    client = s3_client(args)
    try:
        client.head_bucket(Bucket=args.bucket)
    except Exception as e:  # any failure to reach the bucket is a usage or access problem: say which
        print(f"storage_to_s3: bucket {args.bucket} at {args.endpoint or 'AWS'}: {e}", file=sys.stderr)
        return 2
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda rel: copy_or_error(client, args.bucket, args.source, args.root_directory, rel),
                                files))
    count = {state: sum(r["state"] == state for r in results)
             for state in ("copied", "present", "conflict", "corrupt_source", "unequal", "error")}
    report = {"ok": count["copied"] + count["present"] == len(files), "files": len(files),
              "blobs": sum(blob_digest(f) is not None for f in files), **count,
              "verified_equal": count["copied"] + count["present"],
              "bytes_copied": sum(r.get("bytes", 0) for r in results),
              "problems": [r for r in results if "detail" in r][:50], "seconds": round(time.monotonic() - t0, 1)}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
