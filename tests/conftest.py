"""Shared fixtures, and each test's tier marker taken from its folder.

Tiers (folders): unit/ starts no process; integration/ starts real programs on loopback; lab/ builds network
namespaces and needs root; sandbox/ runs the sandbox's host containers on a Docker engine it starts by hand
(root). `pytest -m "not root"` runs everything a user without root can run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from labs.fakes.harbor_emulator.server import HarborEmulator
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
