#!/usr/bin/env python3
"""Write every file each host of a stack would receive, offline, without the Pulumi CLI (like `helm template`).

    python scripts/render.py --stack dev --out out/

writes `out/<host-name>/<absolute path on the host>`; secret values appear as `<secret:NAME>` placeholders.
It reads `Pulumi.<stack>.yaml` and uses the program's own rendering code (components/plan.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import ConfigError, load_stack_file, parse_cluster_config  # noqa: E402
from components.plan import render_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    args = parser.parse_args(argv)

    stack_file = ROOT / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        print(f"render: no stack file {stack_file}", file=sys.stderr)
        return 2
    values, secrets = load_stack_file(str(stack_file))
    try:
        cfg = parse_cluster_config(values, secrets_present=secrets)
    except ConfigError as e:
        print(f"render: {stack_file.name}: {e}", file=sys.stderr)
        return 1
    count = 0
    for host, files in render_all(cfg).items():
        for path, content in files.items():
            target = args.out / host / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            count += 1
    print(f"rendered {count} files for {len(cfg.hosts)} hosts of stack {args.stack} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
