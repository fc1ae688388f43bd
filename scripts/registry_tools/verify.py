"""Compare every tag of a source registry with its copy in a target (Harbor project or plain registry).

Memory stays flat in the total number of tags: repositories and tags are streamed, at most 2 x concurrency
comparisons are in flight, and per repository only the target's tag names are held (the registry sends them
unordered, so finding extra tags needs that set). What is kept to the end is one row of counters per repository
and the names of the tags that are missing, different or extra: the report itself.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from collections.abc import Iterable, Iterator

from .client import NotFound, RegistryClient, RegistryError
from .common import TagSource, TagWalk, format_table

DETAIL_LINES_PER_KIND = 10  # the table shows the first names of each kind; the JSON report has them all


@dataclass
class Mismatch:
    tag: str
    source_digest: str
    target_digest: str


@dataclass
class RepositoryResult:
    repository: str
    target_repository: str
    source_tags: int = 0
    target_tags: int = 0
    matching: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[Mismatch] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.errors)


@dataclass
class Report:
    source: str
    target: str
    target_project: str | None
    repositories: list[RepositoryResult]

    def total(self, name: str) -> int:
        return sum(len(v) if isinstance(v := getattr(r, name), list) else v for r in self.repositories)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.repositories)

    def to_dict(self) -> dict:
        for r in self.repositories:
            r.missing.sort()
            r.mismatched.sort(key=lambda m: m.tag)
        kinds = ("source_tags", "target_tags", "matching", "missing", "mismatched", "extra", "errors")
        return {
            "source": self.source,
            "target": self.target,
            "target_project": self.target_project,
            "ok": self.ok,
            "totals": {"repositories": len(self.repositories), **{k: self.total(k) for k in kinds}},
            "repositories": [asdict(r) for r in self.repositories],
        }


def target_name(repository: str, target_project: str | None) -> str:
    """Harbor serves a replicated `team/app` of project `p` as `p/team/app`."""
    return f"{target_project.strip('/')}/{repository}" if target_project else repository


def verify(source: TagSource, target: RegistryClient, repositories: Iterable[str], *,
           target_project: str | None = None, concurrency: int = 16, page_size: int = 1000,
           show_progress: bool = True) -> Report:
    results: list[RepositoryResult] = []
    walk = TagWalk("verifying", repositories, show_progress)

    def common_tags() -> Iterator[tuple[RepositoryResult, str]]:
        """Yield the tags present on both sides; record missing and extra ones on the way."""
        for repository in repositories:
            result = RepositoryResult(repository, target_name(repository, target_project))
            results.append(result)
            try:
                target_tags = set(target.iter_tags(result.target_repository, page_size))
            except NotFound:
                target_tags = set()  # the repository never arrived: every source tag will be reported missing
            except (RegistryError, OSError) as error:
                result.errors.append(f"listing target tags: {error}")
                walk.listed(0)
                continue
            result.target_tags = len(target_tags)
            try:
                for tag in source.iter_tags(repository, page_size):
                    result.source_tags += 1
                    if tag in target_tags:
                        target_tags.discard(tag)
                        yield result, tag
                    else:
                        result.missing.append(tag)
                        walk.bar.update()
            except (RegistryError, OSError) as error:
                result.errors.append(f"listing source tags: {error}")
            else:  # only a complete source listing tells which target tags are extra
                result.extra = sorted(target_tags)
            walk.listed(result.source_tags)

    def compare(item: tuple[RepositoryResult, str]) -> tuple[str, str | None]:
        result, tag = item
        try:
            source_digest = source.manifest_digest(result.repository, tag)
        except (RegistryError, OSError) as error:
            raise RegistryError(f"source: {error}") from error
        try:
            return source_digest, target.manifest_digest(result.target_repository, tag)
        except NotFound:  # listed by the target but its manifest is gone: not there for a pull
            return source_digest, None
        except (RegistryError, OSError) as error:
            raise RegistryError(f"target: {error}") from error

    for (result, tag), digests, error in walk.run(compare, common_tags(), concurrency):
        if error is not None:
            result.errors.append(f"{tag}: {error}")
        elif digests[1] is None:
            result.missing.append(tag)
        elif digests[0] != digests[1]:
            result.mismatched.append(Mismatch(tag, *digests))
        else:
            result.matching += 1
    return Report(source.base_url, target.base_url, target_project, results)


def render_report(report: Report) -> str:
    """The summary table, then the names behind every non-zero count (at most DETAIL_LINES_PER_KIND each)."""
    rows = [[r.repository, r.source_tags, r.target_tags, r.matching, len(r.missing), len(r.mismatched),
             len(r.extra), len(r.errors)] for r in report.repositories]
    rows.append(["TOTAL", *(report.total(k) for k in
                            ("source_tags", "target_tags", "matching", "missing", "mismatched", "extra", "errors"))])
    lines = [format_table(["REPOSITORY", "SOURCE", "TARGET", "MATCHING", "MISSING", "MISMATCHED", "EXTRA", "ERRORS"],
                          rows), ""]
    for r in report.repositories:
        details = [("missing", r.missing), ("extra", r.extra), ("error", r.errors),
                   ("mismatched", [f"{m.tag} (source {m.source_digest}, target {m.target_digest})"
                                   for m in r.mismatched])]
        for kind, names in details:
            for name in sorted(names)[:DETAIL_LINES_PER_KIND]:
                lines.append(f"{r.repository}: {kind} {name}")
            if len(names) > DETAIL_LINES_PER_KIND:
                lines.append(f"{r.repository}: ... and {len(names) - DETAIL_LINES_PER_KIND} more {kind} (see --json)")
    verdict = "OK: every source tag is in the target with the same digest" if report.ok else \
        "FAILED: tags are missing or different in the target"
    if report.ok and not report.repositories:
        verdict = "OK: the source has no repositories"
    lines.append(verdict)
    return "\n".join(lines)
