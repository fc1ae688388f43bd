"""The registry tools (scripts/verify_migration.py, scripts/registry_inventory.py) against a registry whose page
limit is below the page size they ask for (distribution's `catalog.maxentries` answers 400 PAGINATION_NUMBER_INVALID
to a larger `n`; the tools then page with the registry's own size and follow its Link headers), and against a side
that cannot be reached (the error names it and the JSON report is still written)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from labs.fakes.registries import RegistryServer, free_port, layer, push_image
from scripts.registry_tools.client import RegistryClient
from tests.support import ROOT
from tests.support.registries import record_urls

REPOSITORIES = ["app/one", "app/three", "app/two", "base/alpine", "base/debian"]
MAX_ENTRIES = 2


@pytest.fixture(scope="module")
def limited_registry(tmp_path_factory):
    """A real `docker-registry serve` on loopback with catalog.maxentries 2, five repositories of two tags each."""
    server = RegistryServer(tmp_path_factory.mktemp("paging"), name="limited",
                            extra={"catalog": {"maxentries": MAX_ENTRIES}})
    with server:
        with RegistryClient(server.url) as client:
            for repository in REPOSITORIES:
                for tag in ("v1", "v2"):
                    push_image(client, repository, tag, [layer("f", f"{repository}:{tag}".encode())])
        yield server


def test_the_registry_refuses_a_page_size_above_its_limit(limited_registry):
    """Starts nothing new: asks the registry above directly, to show what the tools must cope with."""
    answer = requests.get(f"{limited_registry.url}/v2/_catalog?n=1000", timeout=10)
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


def test_catalog_is_read_in_the_registrys_own_pages(limited_registry, monkeypatch):
    urls = record_urls(monkeypatch)
    with RegistryClient(limited_registry.url) as client:
        assert list(client.iter_repositories(page_size=1000)) == REPOSITORIES
    pages = [u for u in urls if "/v2/_catalog" in u]
    # refused n=1000, then the registry's own first page, then its Link headers (n=2) to the end
    assert "n=1000" in pages[0] and "n=" not in pages[1]
    assert len(pages) == 2 + (len(REPOSITORIES) + MAX_ENTRIES - 1) // MAX_ENTRIES - 1


@pytest.mark.parametrize("script, extra", [("verify_migration.py", ["--target"]), ("registry_inventory.py", [])])
def test_operator_tools_read_every_repository_of_a_limited_registry(limited_registry, tmp_path, script, extra):
    """Runs scripts/verify_migration.py (the registry against itself) and scripts/registry_inventory.py as
    processes against the limited registry, with their default page size of 1000."""
    report = tmp_path / "report.json"
    command = [sys.executable, str(ROOT / "scripts" / script), "--source", limited_registry.url,
               *[arg for flag in extra for arg in (flag, limited_registry.url)], "--json", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(report.read_text())
    assert sorted(r["repository"] for r in document["repositories"]) == REPOSITORIES


@pytest.mark.parametrize("down", ["source", "target"])
def test_verify_names_the_side_it_could_not_reach_and_still_writes_the_json(limited_registry, tmp_path, down):
    """Runs scripts/verify_migration.py with one side on a loopback port nothing listens on."""
    closed = f"http://127.0.0.1:{free_port()}"
    urls = {"source": limited_registry.url, "target": limited_registry.url, down: closed}
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify_migration.py"), "--source",
                             urls["source"], "--target", urls["target"], "--json", str(report)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {down} {closed}: "), result.stderr
    document = json.loads(report.read_text())
    assert document["ok"] is False and document["error"].startswith(f"{down} {closed}: ")
