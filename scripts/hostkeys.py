#!/usr/bin/env python3
"""Collect the SSH host keys of a stack's hosts, to pin them as `hosts[].hostKey`.

    scripts/hostkeys.py --stack dev            # prints the `hosts:` list with a hostKey per host
    scripts/hostkeys.py --stack dev --json -   # {host name: key}

It runs `ssh-keyscan -t ed25519` against each host's address and port. Compare each key with what the host itself
shows (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console, or your cloud's console output) before
pinning it: a scan trusts the network it runs over once, pinning makes every later `pulumi up` refuse another key.
Exit status: 0 every host answered, 1 some did not, 2 the stack file could not be read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: import from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/


def scan(address: str, port: int, timeout: int = 5) -> str | None:
    """`type base64` of the host's ed25519 key, or None when it did not answer."""
    done = subprocess.run(["ssh-keyscan", "-T", str(timeout), "-t", "ed25519", "-p", str(port), address],
                          capture_output=True, text=True, timeout=timeout + 5)
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            return f"{fields[1]} {fields[2]}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--json", metavar="FILE", help="write {host: key} as JSON to FILE (- for stdout)")
    args = parser.parse_args(argv)

    import yaml  # only now: --help needs nothing but the standard library

    stack_file = ROOT / f"Pulumi.{args.stack}.yaml"
    try:
        hosts = yaml.safe_load(stack_file.read_text())["config"]["harbor-ha:hosts"]
        targets = [(h["name"], h["address"], int(h.get("port", 22))) for h in hosts]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        print(f"hostkeys: cannot read the hosts of {stack_file.name}: {e}", file=sys.stderr)
        return 2
    keys = {name: scan(address, port) for name, address, port in targets}
    for name, key in keys.items():
        if key is None:
            print(f"hostkeys: {name} did not answer on SSH", file=sys.stderr)
    if args.json:
        text = json.dumps(keys, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    else:
        pinned = [{**h, **({"hostKey": keys[h["name"]]} if keys[h["name"]] else {})} for h in hosts]
        sys.stdout.write(yaml.safe_dump({"harbor-ha:hosts": pinned}, sort_keys=False, width=1000))
    return 0 if all(keys.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
