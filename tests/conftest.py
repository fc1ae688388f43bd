"""Shared fixtures, and each test's tier marker taken from its folder.

Tiers (folders): unit/ starts no process; integration/ starts real programs on loopback; lab/ builds network
namespaces and needs root; sandbox/ runs the sandbox's host containers on a Docker engine it starts by hand
(root). `pytest -m "not root"` runs everything a user without root can run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from labs.fakes.harbor_emulator.server import HarborEmulator
from tests.support import ROOT
from tests.support.registries import RegistryStack, push_scenario

# folder -> markers its tests carry (declared in pyproject.toml)
TIERS = {
    "unit": ("unit",),
    "integration": ("integration",),
    "lab": ("integration", "lab", "root"),
    "sandbox": ("integration", "sandbox", "root"),
    "hosts": ("hosts", "root"),
    "engine": ("engine", "hosts", "root"),
}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        tier = Path(item.fspath).relative_to(here).parts[0]
        for marker in TIERS.get(tier, ()):
            item.add_marker(marker)
        if "root" in TIERS.get(tier, ()) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason=f"tests/{tier}/ needs root (network namespaces, routes)"))
        elif item.get_closest_marker("root") and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root (files owned by root, as on a host)"))


@pytest.fixture(scope="session")
def lab_report(tmp_path_factory):
    """`lab_report(name, run)`: runs a lab that writes its figures as JSON (`run(path)`) and returns them; every
    real-host and engine tier's report comes from it."""
    def run_lab(name: str, run: Callable[[Path], object]) -> dict:
        path = tmp_path_factory.mktemp(name) / "report.json"
        run(path)
        return json.loads(path.read_text())
    return run_lab


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A copy of the clone's files (those git tracks or would), with the real venv/ linked in (what a user has after
    the README's set-up)."""
    # safe.directory: a user who does not own the clone (a test run as another user) may list it too.
    files = subprocess.run(["git", "-c", "safe.directory=*", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    target = tmp_path / "clone"
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / "venv").symlink_to((ROOT / "venv").resolve())
    return target


@pytest.fixture
def emulator():
    """A Harbor API emulator: a real HTTP server thread on 127.0.0.1 with a free port."""
    emu = HarborEmulator()
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def conn(emulator) -> dict:
    """The connection inputs (the secret-input way to pass credentials) for the emulator."""
    return {"harbor_url": emulator.url, "harbor_username": emulator.username,
            "harbor_password": emulator.password}


@pytest.fixture(scope="module")
def registries():
    """Real docker-registry processes on loopback with the migration scenario pushed; `index_digest` is the
    multi-arch tag's index digest."""
    stack = RegistryStack()
    try:
        started = stack.start()
        started.index_digest = push_scenario(started)
        yield started
    finally:
        stack.close()
