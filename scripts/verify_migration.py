#!/usr/bin/env python3
"""Verify a registry migration: every source tag must be in the target with the same manifest digest.

The source is a registry (--source URL) or a record of one taken earlier (--source-record FILE): a registry whose
storage moves (Harbor from NFS to S3) is recorded with --record while it is read-only, before the switch, and
verified against that record after it.

Exit status: 0 when nothing is missing or different (extra tags in the target are reported, not failed), or the
record was written; 1 when tags are missing or different; 2 when the registries could not be read (auth, network,
usage) or the record could not be taken whole.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: import from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

from scripts.registry_tools.cli import add_common_arguments, add_registry_arguments, emit, registry_client  # noqa: E402
from scripts.registry_tools.client import RegistryError  # noqa: E402
from scripts.registry_tools.common import TagSource, repositories  # noqa: E402
from scripts.registry_tools.record import RecordedRegistry, RecordError, record, write_record  # noqa: E402
from scripts.registry_tools.verify import render_report, verify  # noqa: E402
from scripts.convention import write_json  # noqa: E402


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_registry_arguments(parser, "source", required=False)
    parser.add_argument("--source-record", metavar="FILE",
                        help="a record taken with --record, as the source (instead of --source URL)")
    add_registry_arguments(parser, "target", required=False)
    parser.add_argument("--record", metavar="FILE",
                        help="record every tag of --source with its digest in FILE (written once; it must not "
                             "exist) instead of comparing with a target")
    parser.add_argument("--target-project", metavar="P",
                        help="Harbor project the repositories were replicated into (target name P/<repository>)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if (args.source is None) == (args.source_record is None):
        parser.error("give one source: --source URL or --source-record FILE")
    if (args.target is None) == (args.record is None):
        parser.error("give --target URL (compare) or --record FILE (record the source), one of them")
    if args.record and args.source_record:
        parser.error("--record records a live --source, not a --source-record")
    return args


def record_source(args: argparse.Namespace) -> int:
    side = "source"
    try:
        with registry_client(args, "source") as source:
            document = record(source, repositories(source, args.repos_from, args.page_size),
                              concurrency=args.concurrency, page_size=args.page_size)
        side = "record"
        write_record(args.record, document)
    except (RecordError, RegistryError, OSError, ValueError) as error:
        message = f"source {args.source}: {error}" if side == "source" else str(error)
        print(f"error: {message}", file=sys.stderr)
        write_json(args.json, {"source": args.source, "record": args.record, "ok": False, "error": message})
        return 2
    count = len(document["repositories"])
    emit(args, {"source": args.source, "record": args.record, "ok": True, "repositories": count,
                "tags": document["tags"]},
         f"recorded {document['tags']} tags of {count} repositories of {args.source} in {args.record}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.record:
        return record_source(args)
    side = "source"
    try:
        source: TagSource = (RecordedRegistry(args.source_record) if args.source_record
                             else registry_client(args, "source"))
        with source, registry_client(args, "target") as target:
            names = repositories(source, args.repos_from, args.page_size)
            side = "target"
            target.request("GET", "/v2/", "")  # reachable and the credentials accepted, before any comparison
            side = "verification"  # errors of single tags are in the report; this is the rest (usage)
            report = verify(source, target, names, target_project=args.target_project,
                            concurrency=args.concurrency, page_size=args.page_size)
    except (RecordError, RegistryError, OSError, ValueError) as error:
        where = {"source": f"source {args.source or args.source_record}",
                 "target": f"target {args.target}"}.get(side, side)
        message = str(error) if isinstance(error, RecordError) else f"{where}: {error}"
        print(f"error: {message}", file=sys.stderr)
        write_json(args.json, {"source": args.source or args.source_record, "target": args.target, "ok": False,
                               "error": message})
        return 2
    emit(args, report.to_dict(), render_report(report))
    if any(r.errors for r in report.repositories):
        return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
