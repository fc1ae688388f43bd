#!/usr/bin/env python3
"""Pre-migration inventory of a Docker Registry: repositories, tag counts and size from the manifests.

Exit status: 0 when every repository could be read, 2 otherwise.
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
from scripts.registry_tools.inventory import inventory, inventory_document, render_inventory  # noqa: E402
from scripts.convention import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_registry_arguments(parser, "source")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with registry_client(args, "source") as source:
            rows, total = inventory(source, repositories(source, args.repos_from, args.page_size),
                                    concurrency=args.concurrency, page_size=args.page_size)
    except (RegistryError, OSError, ValueError) as error:
        message = f"source {args.source}: {error}"
        print(f"error: {message}", file=sys.stderr)
        write_json(args.json, {"source": args.source, "ok": False, "error": message})
        return 2
    emit(args, inventory_document(source.base_url, rows, total), render_inventory(rows, total))
    return 2 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
