"""Pre-migration inventory: per repository its tags, distinct manifests and the bytes its blobs take.

Sizes come from the manifests (config + layer sizes; for an index or manifest list, those of every child
manifest), so nothing but manifests is downloaded. Blobs shared by several tags or platforms are counted once
per repository, and once overall in the total: the storage the target will need and the bytes a replication
moves. Memory is proportional to the distinct manifests and blobs (not to the tags).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Iterable, Iterator

from .client import INDEX_MEDIA_TYPES, RegistryClient, RegistryError
from .common import TagWalk, format_table, human_bytes


@dataclass
class RepositoryInventory:
    repository: str
    tags: int = 0
    manifests: int = 0
    size_bytes: int = 0
    error: str | None = None


def manifest_blobs(client: RegistryClient, repository: str, reference: str) -> tuple[str, dict[str, int]]:
    """(digest, {blob digest: size}) of a tag: config and layers, through every child of an index."""
    digest, manifest = client.get_manifest(repository, reference)
    blobs: dict[str, int] = {}
    if manifest.get("mediaType") in INDEX_MEDIA_TYPES or "manifests" in manifest:
        for child in manifest.get("manifests", []):
            blobs.update(manifest_blobs(client, repository, child["digest"])[1])
        return digest, blobs
    for descriptor in [manifest.get("config") or {}, *manifest.get("layers", [])]:
        if "digest" in descriptor:
            blobs[descriptor["digest"]] = int(descriptor.get("size", 0))
    return digest, blobs


def inventory(client: RegistryClient, repositories: Iterable[str], *, concurrency: int = 16,
              page_size: int = 1000, show_progress: bool = True) -> tuple[list[RepositoryInventory], int]:
    """Per-repository rows and the total size of the distinct blobs of all repositories."""
    rows: list[RepositoryInventory] = []
    # Results of neighbouring repositories arrive interleaved, so the distinct sets are kept per repository.
    manifests: dict[str, set[str]] = {}
    blobs: dict[str, dict[str, int]] = {}
    walk = TagWalk("inventory", repositories, show_progress)

    def tags() -> Iterator[tuple[RepositoryInventory, str]]:
        for repository in repositories:
            row = RepositoryInventory(repository)
            rows.append(row)
            manifests[repository], blobs[repository] = set(), {}
            try:
                for tag in client.iter_tags(repository, page_size):
                    row.tags += 1
                    yield row, tag
            except (RegistryError, OSError) as error:  # recorded in the row; the inventory goes on
                row.error = str(error)
            walk.listed(row.tags)

    for (row, tag), result, error in walk.run(lambda item: manifest_blobs(client, item[0].repository, item[1]),
                                              tags(), concurrency):
        if error is not None:
            row.error = f"{tag}: {error}"
        else:
            manifests[row.repository].add(result[0])
            blobs[row.repository].update(result[1])
    all_blobs: dict[str, int] = {}
    for row in rows:
        row.manifests = len(manifests[row.repository])
        row.size_bytes = sum(blobs[row.repository].values())
        all_blobs.update(blobs[row.repository])
    return rows, sum(all_blobs.values())


def inventory_document(source: str, rows: list[RepositoryInventory], total_bytes: int) -> dict:
    return {"source": source, "repositories": [asdict(r) for r in rows],
            "totals": {"repositories": len(rows), "tags": sum(r.tags for r in rows),
                       "manifests": sum(r.manifests for r in rows), "size_bytes": total_bytes}}


def render_inventory(rows: list[RepositoryInventory], total_bytes: int) -> str:
    table = [[r.repository, r.tags, r.manifests, r.size_bytes, human_bytes(r.size_bytes)] for r in rows]
    table.append(["TOTAL (distinct blobs)", sum(r.tags for r in rows), sum(r.manifests for r in rows),
                  total_bytes, human_bytes(total_bytes)])
    lines = [format_table(["REPOSITORY", "TAGS", "MANIFESTS", "BYTES", "SIZE"], table)]
    lines += [f"{r.repository}: error {r.error}" for r in rows if r.error]
    return "\n".join(lines)
