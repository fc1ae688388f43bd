"""pytest fixtures: an emulator per test (started and stopped here, also when the test fails)."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import rpc

from harbor_provider.client import ClientSettings

from .server import HarborEmulator

# Short timeouts and backoff keep the fault tests fast; retries are still exercised.
FAST = ClientSettings(connect_timeout=2.0, read_timeout=1.0, attempts=4, backoff=0.01)


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


def wire(props: dict) -> dict:
    """`props` as the engine hands them to a dynamic provider: through a protobuf Struct, so every number
    arrives as a float (1 -> 1.0)."""
    struct = struct_pb2.Struct()
    struct.update(props)
    return rpc.deserialize_properties(struct)
