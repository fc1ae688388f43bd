"""scripts/verify_migration.py against real registries (Debian docker-registry, the CNCF distribution).

The module starts three `docker-registry serve` processes on 127.0.0.1 (a source, a target behind htpasswd Basic
auth, a target behind Bearer tokens from a token endpoint this test runs) and stops them by PID at the end.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.support.registries import (BASE_LAYER, EXTRA, MISMATCHED, MISSING, MULTI_ARCH, PASSWORD, SCRIPTS,
                                     SOURCE_IMAGES, TARGET_PROJECT, USER, record_urls)
from scripts.registry_tools.client import CATALOG_SCOPE, MANIFEST_MEDIA_TYPES, TOKEN_RENEW_MARGIN, repository_scope
from labs.fakes.registries import layer, push_image

ALL_REPOSITORIES = sorted([*SOURCE_IMAGES, MULTI_ARCH[0]])


def run_verify(registries, target, *extra, env=None, json_path=None):
    """Run the CLI as an operator would; credentials only through the environment or a file."""
    return run_cli(registries, "--source", registries.source.url, "--target", target.url, *extra, env=env,
                   json_path=json_path)


def run_cli(registries, *arguments, env=None, json_path=None):
    """verify_migration.py with `arguments` and --json; (the process, its JSON report or None)."""
    json_path = json_path or registries.workdir / "report.json"
    command = [sys.executable, str(SCRIPTS / "verify_migration.py"), "--json", str(json_path), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    report = json.loads(json_path.read_text()) if json_path.exists() else None
    if json_path.exists():
        json_path.unlink()
    return result, report


def problems(report: dict) -> dict:
    """{kind: {(repository, tag), ...}} for every missing, mismatched and extra tag in a JSON report."""
    found = {"missing": set(), "mismatched": set(), "extra": set()}
    for repo in report["repositories"]:
        found["missing"] |= {(repo["repository"], t) for t in repo["missing"]}
        found["mismatched"] |= {(repo["repository"], m["tag"]) for m in repo["mismatched"]}
        found["extra"] |= {(repo["repository"], t) for t in repo["extra"]}
    return found


EXPECTED_PROBLEMS = {"missing": {MISSING}, "mismatched": {MISMATCHED}, "extra": {EXTRA}}
SOURCE_TAG_COUNT = sum(len(tags) for tags in SOURCE_IMAGES.values()) + 1  # + the multi-arch tag


def test_report_names_exactly_the_missing_mismatched_and_extra_tags_behind_basic_auth(registries):
    result, report = run_verify(registries, registries.basic, "--target-project", TARGET_PROJECT,
                                env={"TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD})
    assert result.returncode == 1, result.stderr
    assert problems(report) == EXPECTED_PROBLEMS
    assert report["ok"] is False
    assert [r["repository"] for r in report["repositories"]] == ALL_REPOSITORIES
    totals = report["totals"]
    assert (totals["source_tags"], totals["matching"], totals["errors"]) == (SOURCE_TAG_COUNT, SOURCE_TAG_COUNT - 2, 0)
    app = next(r for r in report["repositories"] if r["repository"] == "team/app")
    assert app["target_repository"] == f"{TARGET_PROJECT}/team/app"
    mismatch = app["mismatched"][0]
    assert mismatch["source_digest"] != mismatch["target_digest"]
    assert all(d.startswith("sha256:") for d in (mismatch["source_digest"], mismatch["target_digest"]))
    # The table names the same tags, and the password appears nowhere.
    for kind, (repository, tag) in (("missing", MISSING), ("mismatched", MISMATCHED), ("extra", EXTRA)):
        assert f"{repository}: {kind} {tag}" in result.stdout
    assert "FAILED" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_report_is_the_same_behind_a_bearer_token_target_with_one_token_per_scope(registries):
    credentials = registries.workdir / "target-credentials"
    credentials.write_text(f"{USER}:{PASSWORD}\n")
    registries.token_server.requests.clear()
    result, report = run_verify(registries, registries.token, "--target-project", TARGET_PROJECT,
                                "--target-credentials-file", str(credentials), "--concurrency", "8")
    assert result.returncode == 1, result.stderr
    assert problems(report) == EXPECTED_PROBLEMS
    # Tokens are cached per scope: one token request per target repository, however many tags it has.
    scopes = sorted(s for r in registries.token_server.requests for s in r["scope"])
    assert scopes == sorted(repository_scope(f"{TARGET_PROJECT}/{r}") for r in ALL_REPOSITORIES)


def test_exit_code_is_zero_when_every_listed_repository_arrived_intact(registries):
    repos = registries.workdir / "repos.txt"
    repos.write_text("# the repositories that replicated cleanly\nlibrary/alpine\n\nmulti/arch\n")
    result, report = run_verify(registries, registries.basic, "--target-project", TARGET_PROJECT,
                                "--repos-from", str(repos), env={"TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True
    assert [r["repository"] for r in report["repositories"]] == ["library/alpine", "multi/arch"]
    assert report["totals"]["matching"] == len(SOURCE_IMAGES["library/alpine"]) + 1
    assert "OK: every source tag" in result.stdout


def test_extra_tags_alone_do_not_fail_the_verification(registries):
    repos = registries.workdir / "repos.txt"
    repos.write_text("team/app\n")
    with registries.client(registries.basic) as target:
        # A second project holding exactly the source's team/app plus one more tag.
        for tag, layers in SOURCE_IMAGES["team/app"].items():
            push_image(target, "complete/team/app", tag, layers)
        push_image(target, "complete/team/app", "nightly", [BASE_LAYER, layer("app/version", b"nightly\n")])
    result, report = run_verify(registries, registries.basic, "--target-project", "complete",
                                "--repos-from", str(repos), env={"TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems(report) == {"missing": set(), "mismatched": set(), "extra": {("team/app", "nightly")}}


def test_a_project_that_never_received_the_images_reports_every_tag_missing(registries):
    result, report = run_verify(registries, registries.basic, "--target-project", "empty-project",
                                env={"TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD})
    assert result.returncode == 1
    assert report["totals"]["missing"] == SOURCE_TAG_COUNT
    assert report["totals"]["matching"] == 0


def test_wrong_password_exits_2_and_never_prints_the_password(registries):
    wrong = "not-the-password-123"
    result, report = run_verify(registries, registries.token, "--target-project", TARGET_PROJECT,
                                env={"TARGET_USERNAME": USER, "TARGET_PASSWORD": wrong})
    assert result.returncode == 2
    assert "token request failed" in result.stdout + result.stderr
    assert wrong not in result.stdout + result.stderr
    # refused before any comparison, with the side named, and the report still written
    assert report is not None and report["ok"] is False
    assert report["error"].startswith(f"target {registries.token.url}: token request failed")


def test_multi_arch_tag_resolves_to_its_index_digest(registries):
    repository, tag, _ = MULTI_ARCH
    with registries.client(registries.source) as source:
        assert source.manifest_digest(repository, tag) == registries.index_digest
        digest, index = source.get_manifest(repository, tag)
    assert digest == registries.index_digest
    assert index["mediaType"] == MANIFEST_MEDIA_TYPES[0]
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]


def test_catalog_pagination_follows_the_link_header_one_repository_per_page(registries, monkeypatch):
    urls = record_urls(monkeypatch)
    with registries.client(registries.source) as source:
        assert list(source.iter_repositories(page_size=1)) == ALL_REPOSITORIES
    catalog_pages = [u for u in urls if "/v2/_catalog" in u]
    assert len(catalog_pages) == len(ALL_REPOSITORIES)  # one page each; the last comes without a Link header
    assert all("n=1" in u for u in catalog_pages)
    lasts = [u.partition("last=")[2].partition("&")[0] for u in catalog_pages]
    assert lasts == ["", "library%2Falpine", "multi%2Farch"]


def test_catalog_pagination_behind_token_auth_uses_the_catalog_scope(registries):
    registries.token_server.requests.clear()
    with registries.client(registries.token) as target:
        names = list(target.iter_repositories(page_size=2))
    assert names == [f"{TARGET_PROJECT}/{r}" for r in ALL_REPOSITORIES]
    assert [r["scope"] for r in registries.token_server.requests] == [[CATALOG_SCOPE]]


def test_a_cached_token_is_reused_until_it_expires_then_renewed(registries):
    server, repository = registries.token_server, f"{TARGET_PROJECT}/library/alpine"
    server.requests.clear()
    server.expires_in = TOKEN_RENEW_MARGIN + 1  # cached for one second
    try:
        with registries.client(registries.token) as target:
            first = target.manifest_digest(repository, "3.18")
            assert target.manifest_digest(repository, "3.19") != first
            assert len(server.requests) == 1
            time.sleep(1.2)
            assert target.manifest_digest(repository, "3.18") == first
        assert [r["scope"] for r in server.requests] == [[repository_scope(repository)]] * 2
    finally:
        server.expires_in = 300


def test_progress_bar_is_drawn_on_a_terminal_only(registries):
    env = {**os.environ, "TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD}
    command = [sys.executable, str(SCRIPTS / "verify_migration.py"), "--source", registries.source.url,
               "--target", registries.basic.url, "--target-project", TARGET_PROJECT]
    piped = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert piped.returncode == 1 and piped.stderr == ""
    main_fd, terminal_fd = pty.openpty()
    try:
        # A new pseudo-terminal is 0 columns wide, and tqdm then draws nothing: give it a real terminal's size.
        fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        on_terminal = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=terminal_fd, timeout=60, env=env)
        drawn = b""
        # The child has exited; the kernel hands its last writes to the terminal's reading side asynchronously.
        while select.select([main_fd], [], [], 0.5)[0]:
            drawn += os.read(main_fd, 65536)
    finally:
        os.close(terminal_fd)
        os.close(main_fd)
    assert on_terminal.returncode == 1
    assert b"\rverifying: 0tag [" in drawn  # then erased at the end (leave=False): the table stays clean


def test_a_record_of_the_source_gives_the_same_report_as_the_live_source(registries, tmp_path):
    record = tmp_path / "record.json"
    result, report = run_cli(registries, "--source", registries.source.url, "--record", str(record))
    assert result.returncode == 0, result.stderr
    assert report == {"source": registries.source.url, "record": str(record), "ok": True,
                      "repositories": len(ALL_REPOSITORIES), "tags": SOURCE_TAG_COUNT}
    assert f"recorded {SOURCE_TAG_COUNT} tags of {len(ALL_REPOSITORIES)} repositories" in result.stdout
    assert json.loads(record.read_text())["repositories"]["multi/arch"] == {"latest": registries.index_digest}
    result, report = run_cli(registries, "--source-record", str(record), "--target", registries.basic.url,
                             "--target-project", TARGET_PROJECT,
                             env={"TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD})
    assert result.returncode == 1, result.stderr
    assert problems(report) == EXPECTED_PROBLEMS
    assert report["totals"]["matching"] == SOURCE_TAG_COUNT - 2
    assert report["source"].startswith(f"record {record} of {registries.source.url} at ")


def test_a_registry_verified_against_its_own_record_finds_the_tag_changed_since(registries, tmp_path):
    """The storage move's check: one registry, recorded before a change and verified against the record after."""
    repos = tmp_path / "repos.txt"
    repos.write_text("recorded/app\n")
    env = {"SOURCE_USERNAME": USER, "SOURCE_PASSWORD": PASSWORD, "TARGET_USERNAME": USER, "TARGET_PASSWORD": PASSWORD}
    with registries.client(registries.basic) as registry:
        for tag in ("v1", "v2"):
            push_image(registry, "recorded/app", tag, [BASE_LAYER, layer("app/version", f"{tag}\n".encode())])
        record = tmp_path / "before.json"
        result, _ = run_cli(registries, "--source", registries.basic.url, "--record", str(record),
                            "--repos-from", str(repos), env=env)
        assert result.returncode == 0, result.stderr
        against_record = ("--source-record", str(record), "--target", registries.basic.url, "--repos-from", str(repos))
        result, report = run_cli(registries, *against_record, env=env)
        assert (result.returncode, report["totals"]["matching"]) == (0, 2), result.stdout + result.stderr
        push_image(registry, "recorded/app", "v2", [BASE_LAYER, layer("app/version", b"v2 changed\n")])
    result, report = run_cli(registries, *against_record, env=env)
    assert result.returncode == 1
    assert problems(report) == {"missing": set(), "mismatched": {("recorded/app", "v2")}, "extra": set()}
    # A second record to the same file is refused: the state before the change must survive a rerun.
    before = record.read_text()
    result, report = run_cli(registries, "--source", registries.basic.url, "--record", str(record),
                             "--repos-from", str(repos), env=env)
    assert result.returncode == 2
    assert "the file exists; a record is written once" in report["error"]
    assert record.read_text() == before


def test_no_record_is_written_when_a_repository_cannot_be_read(registries, tmp_path):
    repos = tmp_path / "repos.txt"
    repos.write_text("library/alpine\nno/such-repository\n")
    record = tmp_path / "record.json"
    result, report = run_cli(registries, "--source", registries.source.url, "--record", str(record),
                             "--repos-from", str(repos))
    assert result.returncode == 2
    assert "no/such-repository: listing tags" in report["error"]
    assert not record.exists()


@pytest.mark.parametrize("arguments, message", [
    (["--target", "http://127.0.0.1:9"], "give one source: --source URL or --source-record FILE"),
    (["--source", "http://127.0.0.1:9", "--source-record", "r.json", "--target", "http://127.0.0.1:9"],
     "give one source"),
    (["--source", "http://127.0.0.1:9"], "give --target URL (compare) or --record FILE"),
    (["--source-record", "r.json", "--record", "s.json"], "--record records a live --source"),
])
def test_usage_errors_name_the_options_and_exit_2(arguments, message):
    result = subprocess.run([sys.executable, str(SCRIPTS / "verify_migration.py"), *arguments],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_file_that_is_not_a_record_is_refused_before_any_request(tmp_path):
    stray = tmp_path / "report.json"
    stray.write_text(json.dumps({"source": "https://old", "ok": True}))
    result = subprocess.run([sys.executable, str(SCRIPTS / "verify_migration.py"), "--source-record", str(stray),
                             "--target", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"--source-record {stray}: not a tag record" in result.stderr
