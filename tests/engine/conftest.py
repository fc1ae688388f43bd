"""Fixtures of the engine tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labs.engine import engine_lab


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment with the CLI built from source (labs/engine/build_toolchain.sh, cached): no PULUMI_* of
    this machine; PULUMI_CLI the built CLI, its plugins where the build installed them (PULUMI_HOME, nothing
    downloaded: as an air-gapped site installs its own, docs/getting-started.md); the default state folder under a
    new HOME; the passphrase in a file."""
    engine_lab.build_toolchain()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a new user's passphrase\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    return {**env, "HOME": str(tmp_path / "home"), "PULUMI_CLI": str(engine_lab.CLI),
            "PULUMI_HOME": str(engine_lab.TOOLCHAIN / "pulumi-home"),
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase)}
