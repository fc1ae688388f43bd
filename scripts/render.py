#!/usr/bin/env python3
"""Write every file each host of a stack would receive, offline, without the Pulumi CLI (like `helm template`).

    scripts/render.py --stack dev --out out/

writes `out/<host-name>/<absolute path on the host>` and `out/MANIFEST.tsv` (host, path, owner, mode, role and how
the change takes effect); secret values appear as `<secret:NAME>` placeholders. It reads `Pulumi.<stack>.yaml` and
validates every section as `pulumi preview` does (cluster, harborApi, migration), printing each problem as one line
`FILE:LINE: key: reason`. Files it wrote on an earlier run for hosts or paths no longer in the stack are removed
(only those listed in the previous MANIFEST.tsv; nothing else in the folder is touched). `--json FILE|-` writes
the problems, or the manifest, as JSON.

Exit status: 0 rendered, 1 the stack file is invalid, 2 could not run (no such stack file, output not writable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: import from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from scripts.convention import (  # noqa: E402
    COULD_NOT_RUN, MET, NOT_MET, add_json_argument, add_stack_argument, stack_file, write_json)

if TYPE_CHECKING:
    from components.config import ClusterConfig

MANIFEST = "MANIFEST.tsv"
MANIFEST_HEADER = ("host", "path", "owner", "mode", "role", "applied_by")


def stack_problems(path: Path) -> tuple[list[str], ClusterConfig | None]:
    """(every problem of the stack file, one line each naming its file and line or key; the ClusterConfig or None).

    The same parse functions `pulumi preview` runs (__main__.py), here all of them even when an earlier one fails.
    """
    from components.config import ConfigError, describe_problems, load_stack_file, parse_cluster_config
    from harbor_provider.stack_config import merge_sections, parse_harbor_section, parse_migration_section
    from harbor_provider.typed import ConfigError as SectionError

    try:
        values, secrets = load_stack_file(str(path))
    except ConfigError as e:
        return describe_problems(str(path), e.problems), None
    problems: list[str] = []
    cfg = None
    try:
        cfg = parse_cluster_config(values, secrets_present=secrets)
    except ConfigError as e:
        problems += e.problems
    sections = []
    for key, parse in (("harborApi", parse_harbor_section), ("migration", parse_migration_section)):
        try:
            sections.append(parse(values.get(key)))
        except SectionError as e:
            problems += e.problems
    if len(sections) == 2:
        try:
            merge_sections(*sections)
        except SectionError as e:
            problems += e.problems
    return describe_problems(str(path), problems), cfg


def previous_manifest(out: Path) -> list[tuple[str, str]]:
    """(host, path) of each file the last run wrote into `out` (none when there was no run)."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return []
    rows = [line.split("\t") for line in manifest.read_text(encoding="utf-8").splitlines()[1:] if line]
    return [(row[0], row[1]) for row in rows if len(row) >= 2]


def remove_stale(out: Path, stale: list[tuple[str, str]]) -> int:
    """Delete files an earlier run wrote that this one did not, and the folders they leave empty; only inside
    `out` (a manifest line pointing elsewhere is ignored)."""
    root = out.resolve()
    removed = 0
    for host, path in stale:
        target = (out / host / path.lstrip("/")).resolve()
        if not target.is_relative_to(root) or target == root or not target.is_file():
            continue
        target.unlink()
        removed += 1
        parent = target.parent
        while parent != root and parent.is_relative_to(root) and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    add_json_argument(parser)
    args = parser.parse_args(argv)

    path = stack_file(args.stack)
    if not path.is_file():
        print(f"{path}: no such stack file", file=sys.stderr)
        return COULD_NOT_RUN
    problems, cfg = stack_problems(path)
    if problems or cfg is None:
        for line in problems:
            print(line, file=sys.stderr)
        write_json(args.json, {"stack": str(path), "ok": False, "problems": problems, "files": []})
        return NOT_MET

    from components.plan import APPLIED_BY, rendered_files

    rows: list[tuple[str, ...]] = []
    try:
        stale = set(previous_manifest(args.out))
        for host, role, spec, content in rendered_files(cfg):
            target = args.out / host / spec.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            stale.discard((host, spec.path))
            rows.append((host, spec.path, f"{spec.owner}:{spec.group}", f"{spec.mode:04o}", role, APPLIED_BY[role]))
        removed = remove_stale(args.out, sorted(stale))
        (args.out / MANIFEST).write_text("".join("\t".join(row) + "\n" for row in [MANIFEST_HEADER, *rows]),
                                         encoding="utf-8")
    except OSError as e:
        print(f"{args.out}: {e.strerror or e}", file=sys.stderr)
        return COULD_NOT_RUN
    write_json(args.json, {"stack": str(path), "ok": True, "problems": [], "out": str(args.out),
                           "files": [dict(zip(MANIFEST_HEADER, row, strict=True)) for row in rows]})
    if args.json == "-":
        return MET
    hosts = len({row[0] for row in rows})
    print(f"rendered {len(rows)} files for {hosts} hosts of {path.name} into {args.out} (manifest: "
          f"{args.out / MANIFEST}; {removed} stale files removed)")
    return MET


if __name__ == "__main__":
    sys.exit(main())
