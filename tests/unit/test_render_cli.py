"""scripts/render.py: each bad stack file refused with its one error line and exit 1, the output folder kept clean
(files of hosts no longer in the stack removed, nothing else), and the manifest of what was written.

Each tests/stacks/bad/*.yaml starts with `# expect: <the error line>` (a trailing ` ...` means: starts with).
"""

from __future__ import annotations

import pytest

from scripts import render
from tests.support import ROOT

BAD_STACKS = sorted((ROOT / "tests" / "stacks" / "bad").glob("*.yaml"))


def expected_line(stack) -> str:
    first = stack.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{stack.name}: first line must be `# expect: <error line>`"
    return first.removeprefix("# expect: ")


def test_there_are_bad_stacks():
    assert len(BAD_STACKS) >= 8


@pytest.mark.parametrize("stack", BAD_STACKS, ids=lambda p: p.stem)
def test_bad_stack_is_refused_with_one_line_naming_file_and_key(stack, tmp_path, capsys):
    code = render.main(["--stack", str(stack), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    expected = expected_line(stack)
    assert code == 1, err
    assert len(err.splitlines()) == 1, f"expected one error line, got:\n{err}"
    if expected.endswith(" ..."):
        assert err.startswith(expected.removesuffix(" ...")), err
    else:
        assert err.strip() == expected
    assert not (tmp_path / "out").exists(), "nothing may be written for a bad stack"


def test_missing_stack_file_could_not_run(tmp_path, capsys):
    assert render.main(["--stack", "no-such-stack", "--out", str(tmp_path)]) == 2
    assert "Pulumi.no-such-stack.yaml: no such stack file" in capsys.readouterr().err


def manifest_rows(out) -> list[dict[str, str]]:
    header, *lines = (out / render.MANIFEST).read_text(encoding="utf-8").splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def written_files(out) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != render.MANIFEST}


def test_manifest_lists_every_written_file_with_owner_mode_and_how_it_is_applied(tmp_path):
    out = tmp_path / "out"
    assert render.main(["--stack", "prod", "--out", str(out)]) == 0
    rows = manifest_rows(out)
    assert {f"{r['host']}{r['path']}" for r in rows} == written_files(out)
    by_path = {(r["host"], r["path"]): r for r in rows}
    pg_hba = by_path[("db1", "/etc/postgresql/16/main/pg_hba.conf")]
    assert (pg_hba["owner"], pg_hba["mode"], pg_hba["role"]) == ("postgres:postgres", "0640", "postgres")
    assert by_path[("lb1", "/etc/nginx/nginx.conf")]["applied_by"].startswith("nginx: reload")
    assert all(r["applied_by"] for r in rows)


def test_rendering_another_stack_into_the_folder_removes_only_the_files_render_wrote(tmp_path):
    out = tmp_path / "out"
    assert render.main(["--stack", "prod", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "lb1" / "extra.conf").write_text("mine too\n")
    assert render.main(["--stack", "dev", "--out", str(out)]) == 0
    hosts = {p.name for p in out.iterdir() if p.is_dir()}
    assert hosts == {"data1", "harbor1", "harbor2", "lb1"}, "prod's host folders must be gone, except one with a " \
                                                            "file render did not write"
    assert [p.name for p in (out / "lb1").rglob("*")] == ["extra.conf"]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert {f"{r['host']}{r['path']}" for r in manifest_rows(out)} == written_files(out) - {"notes.txt",
                                                                                            "lb1/extra.conf"}


def test_a_manifest_line_pointing_outside_the_folder_is_never_deleted(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep\n")
    (out / render.MANIFEST).write_text("host\tpath\nhost\t/../../victim.txt\n")
    assert render.main(["--stack", "dev", "--out", str(out)]) == 0
    assert victim.read_text() == "keep\n"


def test_json_report_carries_the_problems_or_the_manifest(tmp_path, capsys):
    import json

    bad = ROOT / "tests" / "stacks" / "bad" / "near-miss-key.yaml"
    assert render.main(["--stack", str(bad), "--out", str(tmp_path / "bad"), "--json", "-"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and report["problems"] == captured.err.splitlines()
    assert render.main(["--stack", "dev", "--out", str(tmp_path / "good"), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)  # only the JSON on stdout
    assert report["ok"] is True and report["files"] == manifest_rows(tmp_path / "good")
