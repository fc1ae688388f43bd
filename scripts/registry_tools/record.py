"""A record of a registry's tags and their manifest digests, and that record read back as a verification source.

A registry compared with itself across a change of its storage (Harbor moved from NFS to S3: the same URL before
and after) has no second side to compare with while the change happens. The record is that side: taken while the
registry is read-only, before the switch, and verified against the registry after it with verify_migration.py.
The record is held in memory when read back (about 150 bytes a tag), unlike the live comparison, which streams.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from .client import NotFound, RegistryClient, RegistryError
from .common import TagWalk

FORMAT = "harbor-ha-tag-record/1"


class RecordError(Exception):
    """The record could not be taken or read: nothing was written, or the file is not a record."""


def record(client: RegistryClient, repositories: Iterable[str], *, concurrency: int = 16, page_size: int = 1000,
           show_progress: bool = True) -> dict:
    """Every tag of `repositories` with its manifest digest: {"format", "registry", "recorded", "tags",
    "repositories": {repository: {tag: digest}}}. Any tag that cannot be read fails the whole record, since a
    tag left out would later go unverified."""
    tags: dict[str, dict[str, str]] = {}
    walk = TagWalk("recording", repositories, show_progress)

    def every_tag() -> Iterator[tuple[str, str]]:
        for repository in repositories:
            tags[repository] = {}
            try:
                names = list(client.iter_tags(repository, page_size))
            except (RegistryError, OSError) as error:
                raise RecordError(f"{repository}: listing tags: {error}") from error
            walk.listed(len(names))
            yield from ((repository, tag) for tag in names)

    def digest(item: tuple[str, str]) -> str:
        return client.manifest_digest(*item)

    for (repository, tag), found, error in walk.run(digest, every_tag(), concurrency):
        if error is not None:
            raise RecordError(f"{repository}:{tag}: {error}") from error
        tags[repository][tag] = found  # type: ignore[assignment]  # no error: a digest
    return {"format": FORMAT, "registry": client.base_url,
            "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            "tags": sum(len(t) for t in tags.values()),
            "repositories": {r: dict(sorted(t.items())) for r, t in sorted(tags.items())}}


def write_record(path: str, document: dict) -> None:
    """Written once: a record is the state before a change, and a second run must not replace it with a later one."""
    try:
        with open(path, "x", encoding="utf-8") as out:
            json.dump(document, out, indent=1)
            out.write("\n")
    except FileExistsError:
        raise RecordError(f"--record {path}: the file exists; a record is written once (remove it to record "
                          f"again)") from None


class RecordedRegistry:
    """A record read back, answering the calls verify() makes of a source registry."""

    def __init__(self, path: str):
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RecordError(f"--source-record {path}: {error}") from error
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise RecordError(f"--source-record {path}: not a tag record (no \"format\": \"{FORMAT}\"); take one "
                              f"with verify_migration.py --source URL --record FILE")
        self.base_url = f"record {path} of {document.get('registry')} at {document.get('recorded')}"
        self.tags: dict[str, dict[str, str]] = document.get("repositories") or {}

    def __enter__(self) -> RecordedRegistry:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def iter_repositories(self, page_size: int = 100) -> Iterator[str]:
        return iter(self.tags)

    def iter_tags(self, repository: str, page_size: int = 1000) -> Iterator[str]:
        if repository not in self.tags:
            raise NotFound(f"{repository}: not in the record", 404)
        return iter(self.tags[repository])

    def manifest_digest(self, repository: str, reference: str) -> str:
        try:
            return self.tags[repository][reference]
        except KeyError:
            raise NotFound(f"{repository}:{reference}: not in the record", 404) from None
