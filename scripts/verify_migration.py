#!/usr/bin/env python3
"""Verify a registry migration: every source tag must be in the target with the same manifest digest.

Exit status: 0 when nothing is missing or different (extra tags in the target are reported, not failed),
1 when tags are missing or different, 2 when the registries could not be read (auth, network, usage).
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
from scripts.registry_tools.common import repositories  # noqa: E402
from scripts.registry_tools.verify import render_report, verify  # noqa: E402
from scripts.convention import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_registry_arguments(parser, "source")
    add_registry_arguments(parser, "target")
    parser.add_argument("--target-project", metavar="P",
                        help="Harbor project the repositories were replicated into (target name P/<repository>)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    side = "source"
    try:
        with registry_client(args, "source") as source, registry_client(args, "target") as target:
            names = repositories(source, args.repos_from, args.page_size)
            side = "target"
            target.request("GET", "/v2/", "")  # reachable and the credentials accepted, before any comparison
            side = "verification"  # errors of single tags are in the report; this is the rest (usage)
            report = verify(source, target, names, target_project=args.target_project,
                            concurrency=args.concurrency, page_size=args.page_size)
    except (RegistryError, OSError, ValueError) as error:
        where = {"source": f"source {args.source}", "target": f"target {args.target}"}.get(side, side)
        message = f"{where}: {error}"
        print(f"error: {message}", file=sys.stderr)
        write_json(args.json, {"source": args.source, "target": args.target, "ok": False, "error": message})
        return 2
    emit(args, report.to_dict(), render_report(report))
    if any(r.errors for r in report.repositories):
        return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
