"""Command-line options shared by the registry scripts."""
from __future__ import annotations

import argparse

from scripts.convention import write_json

from .client import RegistryClient, load_credentials


def add_registry_arguments(parser: argparse.ArgumentParser, side: str, required: bool = True) -> None:
    """--<side> URL, --<side>-credentials-file, --<side>-insecure / --<side>-ca-file (credentials never on argv)."""
    env = side.upper()
    parser.add_argument(f"--{side}", required=required, metavar="URL",
                        help=f"{side} registry base URL, e.g. https://registry.example:5000")
    parser.add_argument(f"--{side}-credentials-file", metavar="FILE",
                        help=f"file with one line `user:password` for the {side}; otherwise {env}_USERNAME and "
                             f"{env}_PASSWORD from the environment; otherwise anonymous")
    parser.add_argument(f"--{side}-allow-any-token-realm", action="store_true",
                        help=f"send the {side}'s credentials to the token service its auth challenge names even "
                             f"over http to another host (default: only https, or the registry's own host)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(f"--{side}-ca-file", metavar="PEM", help=f"CA bundle to verify the {side}'s TLS certificate")
    tls.add_argument(f"--{side}-insecure", action="store_true", help=f"do not verify the {side}'s TLS certificate")


def registry_client(args: argparse.Namespace, side: str) -> RegistryClient:
    credentials = load_credentials(side.upper(), getattr(args, f"{side}_credentials_file"))
    verify_tls = False if getattr(args, f"{side}_insecure") else (getattr(args, f"{side}_ca_file") or True)
    return RegistryClient(getattr(args, side), credentials, verify_tls=verify_tls, timeout=args.timeout,
                          allow_any_token_realm=getattr(args, f"{side}_allow_any_token_realm"))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repos-from", metavar="FILE",
                        help="repository names, one per line, instead of the source's /v2/_catalog")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="tags checked in parallel, each by its own worker thread and connection (default 16)")
    parser.add_argument("--page-size", type=int, default=1000, help="`n` for catalog and tag list pages")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE (`-` for stdout)")


def emit(args: argparse.Namespace, document: dict, table: str) -> None:
    """The table on stdout and the JSON report to --json FILE; with `--json -` only the JSON, on stdout."""
    if args.json != "-":
        print(table)
    write_json(args.json, document)
