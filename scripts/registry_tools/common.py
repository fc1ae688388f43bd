"""Pieces shared by the inventory, the record and the verification: the bounded pool, the walk over every tag,
repository lists, tables."""
from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol, TypeVar
from collections.abc import Callable, Iterable, Iterator, Sized

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(fn: Callable[[T], R], items: Iterable[T],
                concurrency: int) -> Iterator[tuple[T, R | None, Exception | None]]:
    """Run `fn` over `items` on `concurrency` threads, yielding (item, result, error) as each finishes.

    At most 2 x concurrency items are pulled from `items` ahead of the results, so a generator of millions of
    tags is never materialized. `items` is consumed on the caller's thread.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limit = 2 * concurrency
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="registry") as pool:
        pending: dict = {}
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                item = next(iterator, _END)
                if item is _END:
                    exhausted = True
                else:
                    pending[pool.submit(fn, item)] = item
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                error = future.exception()
                yield item, (None if error else future.result()), error


_END = object()


class TagSource(Protocol):
    """What a verification reads from its source: a live registry (RegistryClient) or a record of one
    (record.RecordedRegistry)."""
    base_url: str

    def __enter__(self) -> TagSource: ...

    def __exit__(self, *exc: object) -> None: ...

    def iter_repositories(self, page_size: int = 100) -> Iterator[str]: ...

    def iter_tags(self, repository: str, page_size: int = 1000) -> Iterator[str]: ...

    def manifest_digest(self, repository: str, reference: str) -> str: ...


def read_repository_list(path: str) -> list[str]:
    """Repository names, one per line; blank lines and `#` comments ignored."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def repositories(client: TagSource, repos_from: str | None, page_size: int) -> list[str]:
    """The repository names (a list: their count gives the progress bar its total; names are small even by the
    hundred thousand, unlike the tags, which stay streamed)."""
    return read_repository_list(repos_from) if repos_from else list(client.iter_repositories(page_size))


class TagWalk:
    """The walk the inventory, the record and the verification share: each repository's tags listed on the caller's
    thread, each tag's work on the bounded pool, and one progress bar on stderr (when it is a terminal; silent in
    pipelines and CI logs) whose total, hence its ETA, is the tags listed so far scaled to every repository."""

    def __init__(self, description: str, repositories: Iterable[str], show_progress: bool):
        self.repositories = repositories
        self.bar = tqdm(desc=description, unit="tag", disable=None if show_progress else True, file=sys.stderr,
                        leave=False)
        self._tags = self._listed = 0

    def listed(self, tags: int) -> None:
        """One more repository is listed, with `tags` tags: the bar's total is exact once the last one is."""
        self._listed += 1
        self._tags += tags
        count = len(self.repositories) if isinstance(self.repositories, Sized) else None
        if count:
            self.bar.total = max(self._tags, round(self._tags * count / self._listed))
            self.bar.set_postfix_str(f"repository {self._listed} of {count}")

    def run(self, fn: Callable[[T], R], items: Iterable[T],
            concurrency: int) -> Iterator[tuple[T, R | None, Exception | None]]:
        """bounded_map(fn, items, concurrency), each finished item counted on the bar."""
        with self.bar:
            for finished in bounded_map(fn, items, concurrency):
                self.bar.update()
                yield finished


def format_table(headers: list[str], rows: list[list]) -> str:
    """A plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        aligned = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True))
        lines.append("  ".join(aligned).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
