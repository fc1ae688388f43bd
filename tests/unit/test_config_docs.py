"""docs/configuration.md is exactly what scripts/gen_config_docs.py generates from the config model (so the
reference cannot drift from the code), and covers every key the model reads."""

from __future__ import annotations

from scripts import gen_config_docs


def test_configuration_reference_is_up_to_date():
    current = gen_config_docs.OUTPUT.read_text(encoding="utf-8")
    assert current == gen_config_docs.generate(), \
        "docs/configuration.md is out of date: run python3 scripts/gen_config_docs.py"


def test_every_key_the_model_reads_has_a_row_with_its_what_it_is():
    text = gen_config_docs.generate()
    reads = gen_config_docs.record_reads()
    assert len(reads) > 60
    docs = gen_config_docs.field_docs()
    undocumented = [f"{r.section}.{r.name}" for r in reads
                    if not gen_config_docs.what_it_is(docs, r.section, r.name) and r.name != "installer"]
    assert undocumented == [], "give these a `#:` comment on the settings field they fill"
    for r in reads:
        assert f"| `{r.name}` |" in text or f"| `{r.section.split('.', 1)[-1]}.{r.name}` |" in text, r


def test_check_mode_fails_on_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    monkeypatch.setattr(gen_config_docs, "OUTPUT", stale)
    assert gen_config_docs.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
