#!/usr/bin/env python3
"""Benchmark of verify_migration against a plain sequential loop, on two real registries built for the run.

Starts two Debian `docker-registry` processes on 127.0.0.1 (storage in a temporary directory, both stopped by PID
at the end), pushes the same --tags tags (spread over --repos repositories, a few shared blobs, one distinct
manifest per tag) to both, so the target is a complete copy. Then, over the same registries in the same run:
- the tool's verify() with its bounded pool (--concurrency),
- a plain sequential loop: list the tags, then HEAD source and HEAD target for each tag, one request after the
  other on one connection per registry, no pool,
and prints both wall times and their ratio, and the tracemalloc peak of verify() over the first --small-tags
tags next to the peak over all of them (memory flat in the number of tags means those two are close).
Exit status 0 when both ways found every tag matching, 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file: import from the repository root

from labs.fakes.registries import DelayProxy, RegistryServer, layer, push_image  # noqa: E402
from scripts.registry_tools.client import RegistryClient  # noqa: E402
from scripts.registry_tools.common import bounded_map, human_bytes  # noqa: E402
from scripts.registry_tools.verify import verify  # noqa: E402

SHARED_LAYERS = [layer("etc/os-release", b"ID=bench\n"), layer("app/payload", b"x" * 4096)]


def build(client: RegistryClient, repositories: list[str], tags_per_repo: int, concurrency: int) -> None:
    """Push the same tags to a registry: blobs once per repository, then one small manifest per tag."""
    for repository in repositories:
        push_image(client, repository, "base", SHARED_LAYERS)
    work = ((r, f"1.0.{i}") for r in repositories for i in range(tags_per_repo - 1))  # "base" is the last tag
    for _, _, error in bounded_map(lambda item: push_image(client, item[0], item[1], SHARED_LAYERS,
                                                           annotations={"bench.tag": item[1]}), work, concurrency):
        if error:
            raise error


def sequential_loop(source: RegistryClient, target: RegistryClient, repositories: list[str]) -> int:
    """The naive way: one request after the other. Returns the number of matching tags."""
    matching = 0
    for repository in repositories:
        target_tags = set(target.iter_tags(repository))
        for tag in source.iter_tags(repository):
            if tag in target_tags and (source.manifest_digest(repository, tag)
                                       == target.manifest_digest(repository, tag)):
                matching += 1
    return matching


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(fn, server_pids: list[int]) -> tuple[object, float, float]:
    """(result, wall seconds, cores busy): CPU of this process and the registries over the wall time."""
    cpu_before = time.process_time() + sum(map(process_cpu_seconds, server_pids))
    started = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - started
    cpu = time.process_time() + sum(map(process_cpu_seconds, server_pids)) - cpu_before
    return result, wall, cpu / wall


def traced_peak(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=2000, help="tags in the source (default 2000)")
    parser.add_argument("--repos", type=int, default=20, help="repositories they are spread over (default 20)")
    parser.add_argument("--small-tags", type=int, default=500, help="tags of the first memory measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="the tool's pool size (default 16)")
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 2.0, 5.0], metavar="MS",
                        help="round-trip times to measure at: 0 = straight to the registries on loopback, otherwise "
                             "through a delay proxy per registry (default: 0 2 5)")
    args = parser.parse_args(argv)
    if args.tags % args.repos or args.small_tags % (args.tags // args.repos) or args.small_tags > args.tags:
        parser.error("--tags must split evenly over --repos, and --small-tags be a whole number of repositories")
    per_repo = args.tags // args.repos
    repositories = [f"bench/app{i:03d}" for i in range(args.repos)]
    small = repositories[:args.small_tags // per_repo]

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as workdir, \
            RegistryServer(workdir, name="source") as source_server, \
            RegistryServer(workdir, name="target") as target_server:
        started = time.perf_counter()
        for server in (source_server, target_server):
            with RegistryClient(server.url) as client:
                build(client, repositories, per_repo, args.concurrency)
        print(f"built {args.tags} tags in {args.repos} repositories ({per_repo} tags each) on two docker-registry "
              f"processes in {time.perf_counter() - started:.1f} s")

        pids = [source_server.process.pid, target_server.process.pid]

        def tool(source_url, target_url, repos):
            with RegistryClient(source_url) as source, RegistryClient(target_url) as target:
                report = verify(source, target, repos, concurrency=args.concurrency, show_progress=False)
            return report.total("matching") if report.ok else -1

        def loop(source_url, target_url):
            with RegistryClient(source_url) as source, RegistryClient(target_url) as target:
                return sequential_loop(source, target, repositories)

        # Memory first (tracemalloc slows Python down, so these runs are not timed); they also warm both registries.
        # One untraced run before them, so neither peak includes one-time allocations (imports, caches).
        tool(source_server.url, target_server.url, small)
        small_matching, small_peak = traced_peak(lambda: tool(source_server.url, target_server.url, small))
        full_matching, full_peak = traced_peak(lambda: tool(source_server.url, target_server.url, repositories))
        matching = [small_matching, full_matching]
        print(f"{'round trip':>22}  {'tool s':>7}  {'loop s':>7}  {'speed-up':>8}  {'tool tags/s':>11}  "
              f"{'loop tags/s':>11}  {'cores busy tool/loop':>20}")
        for rtt in args.rtt_ms:
            with contextlib.ExitStack() as links:
                urls = [s.url if rtt == 0 else links.enter_context(DelayProxy(s.port, rtt)).url
                        for s in (source_server, target_server)]
                tool_matching, tool_seconds, tool_cores = measured(lambda: tool(*urls, repositories), pids)
                loop_matching, loop_seconds, loop_cores = measured(lambda: loop(*urls), pids)
            matching += [tool_matching, loop_matching]
            label = "loopback, direct" if rtt == 0 else f"{rtt:g} ms (delay proxy)"
            print(f"{label:>22}  {tool_seconds:7.3f}  {loop_seconds:7.3f}  {loop_seconds / tool_seconds:7.1f}x  "
                  f"{args.tags / tool_seconds:11.0f}  {args.tags / loop_seconds:11.0f}  "
                  f"{tool_cores:9.2f} / {loop_cores:.2f}")

    print(f"peak traced memory of verify(): {args.small_tags} tags: {human_bytes(small_peak)} ({small_peak} B), "
          f"{args.tags} tags: {human_bytes(full_peak)} ({full_peak} B), ratio {full_peak / small_peak:.2f} "
          f"for {args.tags / args.small_tags:.1f}x the tags")
    print(f"cores on this machine: {os.cpu_count()}; cores busy = CPU seconds of this process and both registries "
          f"(not the delay proxies) per wall second")
    if matching != [args.small_tags] + [args.tags] * (1 + 2 * len(args.rtt_ms)):
        print("error: not every tag matched: the copy is incomplete or a verification is wrong", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
