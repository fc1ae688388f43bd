"""A stand-in for Trivy's vulnerability database: an EMPTY one (no advisories), so that a scan runs end to end here.

Trivy's real database (ghcr.io/aquasecurity/trivy-db, an OCI artifact built from advisories on the internet) cannot
be downloaded on this machine. With `skip_update` and no database Trivy refuses to scan ("--skip-db-update cannot
be specified on the first run"); with this one it opens the database, finds no advisory for anything and reports
nothing found. What runs for real around it: Harbor's scan job, the adapter, Trivy pulling the image from Harbor's
registry with the token Harbor gives it and analysing it. A scan with this database proves that path, never a
finding: a platform team puts the real database in place (Harbor's harbor.yml `trivy.skip_update` note) or lets
Trivy download it.

Files, as Trivy v0.72's pkg/db reads them under `<cache dir>/db/`:
- trivy.db: an empty bbolt file (bbolt's own `init` of a new file: two meta pages, an empty freelist page, an empty
  leaf page as the root bucket);
- metadata.json: schema version 2 (trivy-db's SchemaVersion), with a DownloadedAt, as `trivy` writes after a
  download (a zero DownloadedAt reads as a corrupted copy).
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, timedelta, UTC

SCHEMA_VERSION = 2  #: trivy-db pkg/db SchemaVersion (Trivy v0.72.0 refuses another with skip_update)
PAGE_SIZE = 4096
BOLT_MAGIC = 0xED0CDAED
BOLT_VERSION = 2
META_FLAG, FREELIST_FLAG, LEAF_FLAG = 0x04, 0x10, 0x02


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _page_header(pgid: int, flags: int) -> bytes:
    return struct.pack("<QHHI", pgid, flags, 0, 0)  # id, flags, count, overflow


def empty_db() -> bytes:
    """An empty bbolt database, byte for byte what bbolt v1.4 writes when it creates a file (little-endian)."""
    pages = []
    for txid in (0, 1):
        # magic, version, page size, flags, root bucket (page 3, sequence 0), freelist page, high-water page, txid
        meta = struct.pack("<IIIIQQQQQ", BOLT_MAGIC, BOLT_VERSION, PAGE_SIZE, 0, 3, 0, 2, 4, txid)
        pages.append(_page_header(txid, META_FLAG) + meta + struct.pack("<Q", _fnv64a(meta)))
    pages.append(_page_header(2, FREELIST_FLAG))
    pages.append(_page_header(3, LEAF_FLAG))
    return b"".join(p.ljust(PAGE_SIZE, b"\0") for p in pages)


def metadata(now: datetime) -> str:
    """metadata.json of a database downloaded `now`, due for an update in a day (never asked: skip_update)."""
    def stamp(t: datetime) -> str:
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"Version": SCHEMA_VERSION, "NextUpdate": stamp(now + timedelta(days=1)),
                       "UpdatedAt": stamp(now), "DownloadedAt": stamp(now)})
