"""labs/harbor/trivy_db_standin.py: the empty vulnerability database the real-Harbor lab gives Trivy (no advisories),
checked against bbolt's file format and Trivy's metadata rules without running either (the lab runs Trivy on it)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import pytest

from labs.harbor import trivy_db_standin as standin

pytestmark = pytest.mark.unit


def test_fnv64a_is_the_hash_bbolt_checks_its_meta_pages_with():
    # FNV-1a 64-bit test vectors (the reference's "" and "a").
    assert standin._fnv64a(b"") == 0xCBF29CE484222325
    assert standin._fnv64a(b"a") == 0xAF63DC4C8601EC8C


def test_empty_db_has_bbolts_four_pages_two_valid_metas_and_an_empty_root_leaf():
    db = standin.empty_db()
    assert len(db) == 4 * standin.PAGE_SIZE
    for txid in (0, 1):
        page = db[txid * standin.PAGE_SIZE:]
        pgid, flags, count = struct.unpack_from("<QHH", page)
        assert (pgid, flags, count) == (txid, standin.META_FLAG, 0)
        meta = page[16:16 + 56]
        magic, version, page_size, _, root, _, freelist, high, tx = struct.unpack("<IIIIQQQQQ", meta)
        assert (magic, version, page_size, root, freelist, high, tx) == (0xED0CDAED, 2, 4096, 3, 2, 4, txid)
        assert struct.unpack_from("<Q", page, 16 + 56)[0] == standin._fnv64a(meta)
    assert struct.unpack_from("<QHH", db, 2 * standin.PAGE_SIZE) == (2, standin.FREELIST_FLAG, 0)
    assert struct.unpack_from("<QHH", db, 3 * standin.PAGE_SIZE) == (3, standin.LEAF_FLAG, 0)


def test_metadata_is_trivys_schema_2_downloaded_now_so_skip_update_accepts_it():
    now = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
    meta = json.loads(standin.metadata(now))
    assert meta == {"Version": 2, "NextUpdate": "2026-12-06T21:00:00Z", "UpdatedAt": "2026-12-05T21:00:00Z",
                    "DownloadedAt": "2026-12-05T21:00:00Z"}
