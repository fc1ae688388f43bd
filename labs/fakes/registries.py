"""Real registries on loopback and tiny images made offline, for the tests and the benchmark.

`RegistryServer` runs Debian's `docker-registry serve CONFIG` (CNCF distribution, the registry Harbor embeds) on
127.0.0.1 with a free port and its storage in a directory the caller owns; it is stopped by its PID. Images are
built in memory with the standard library (a tar layer of one small file, an OCI config, an OCI manifest or
index) and pushed with the plain Registry API v2 upload flow (POST, PUT ?digest=, PUT manifest).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from scripts.registry_tools.client import RegistryClient, repository_scope

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
STARTUP_SECONDS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackProcess:
    """A child process that serves on 127.0.0.1:`port`; started by `_popen()`, stopped by its PID."""

    label = "process"

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def _popen(self) -> subprocess.Popen:
        raise NotImplementedError

    def _failure_detail(self) -> str:
        return ""

    def start(self):
        self.process = self._popen()
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:  # bounded by STARTUP_SECONDS
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.label} did not listen on 127.0.0.1:{self.port} within "
                                       f"{STARTUP_SECONDS} s{self._failure_detail()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to this PID only, SIGKILL if it is still there after 5 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RegistryServer(LoopbackProcess):
    """`docker-registry serve` on 127.0.0.1:<free port>; `auth` is the config's `auth:` section (or None), `extra`
    more top-level config sections (e.g. `{"catalog": {"maxentries": 2}}`)."""

    label = "docker-registry"

    def __init__(self, workdir: Path, auth: dict | None = None, name: str = "registry", extra: dict | None = None):
        super().__init__()
        self.workdir = Path(workdir) / name
        self.auth = auth
        self.extra = extra or {}

    def _popen(self) -> subprocess.Popen:
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)  # a restart keeps its storage
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}",
                     "secret": hashlib.sha256(str(self.workdir).encode()).hexdigest()},
        }
        if self.auth:
            config["auth"] = self.auth
        config.update(self.extra)
        config_path = self.workdir / "config.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with open(self.workdir / "registry.log", "wb") as log:
            return subprocess.Popen(["docker-registry", "serve", str(config_path)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _failure_detail(self) -> str:
        return ": " + (self.workdir / "registry.log").read_text(errors="replace")[-2000:]


# -- images ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def layer(path: str, content: bytes) -> Blob:
    """An uncompressed tar layer holding one file; deterministic (mtime 0) so equal input gives equal digests."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    return Blob(OCI_LAYER, buffer.getvalue())


def config_for(layers: list[Blob], architecture: str = "amd64") -> Blob:
    config = {"architecture": architecture, "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]}}  # uncompressed: diff_id = digest
    return Blob(OCI_CONFIG, json.dumps(config, sort_keys=True).encode())


def image_manifest(config: Blob, layers: list[Blob], annotations: dict | None = None) -> Blob:
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
                "layers": [b.descriptor() for b in layers]}
    if annotations:
        manifest["annotations"] = annotations
    return Blob(OCI_MANIFEST, json.dumps(manifest, sort_keys=True).encode())


def image_index(platform_manifests: list[tuple[Blob, str]]) -> Blob:
    """An OCI image index of (manifest, architecture) pairs, all linux."""
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [m.descriptor(platform={"architecture": arch, "os": "linux"})
                           for m, arch in platform_manifests]}
    return Blob(OCI_INDEX, json.dumps(index, sort_keys=True).encode())


# -- pushing --------------------------------------------------------------------------------------------------
def push_blob(client: RegistryClient, repository: str, blob: Blob) -> None:
    """Monolithic upload: POST to open an upload session, PUT the bytes with ?digest= to close it."""
    scope = repository_scope(repository, "pull,push")
    if client.request("HEAD", f"/v2/{repository}/blobs/{blob.digest}", scope, ok=(200, 404)).status_code == 200:
        return
    started = client.request("POST", f"/v2/{repository}/blobs/uploads/", scope, ok=(202,))
    client.request("PUT", started.headers["Location"], scope, ok=(201,), params={"digest": blob.digest},
                   data=blob.data, headers={"Content-Type": "application/octet-stream"})


def push_manifest(client: RegistryClient, repository: str, reference: str, manifest: Blob) -> str:
    client.request("PUT", f"/v2/{repository}/manifests/{reference}", repository_scope(repository, "pull,push"),
                   ok=(201,), data=manifest.data, headers={"Content-Type": manifest.media_type})
    return manifest.digest


def push_image(client: RegistryClient, repository: str, tag: str | None, layers: list[Blob],
               annotations: dict | None = None, architecture: str = "amd64") -> Blob:
    """Push layers, config and manifest (under `tag`, or by digest when tag is None); returns the manifest."""
    config = config_for(layers, architecture)
    for blob in (*layers, config):
        push_blob(client, repository, blob)
    manifest = image_manifest(config, layers, annotations)
    push_manifest(client, repository, tag or manifest.digest, manifest)
    return manifest


def push_multi_arch(client: RegistryClient, repository: str, tag: str, content: bytes,
                    architectures=("amd64", "arm64")) -> str:
    """An OCI index with one image per architecture (each with its own layer); returns the index digest."""
    children = [(push_image(client, repository, None, [layer(f"hello-{arch}", content + arch.encode())],
                            architecture=arch), arch) for arch in architectures]
    return push_manifest(client, repository, tag, image_index(children))


# -- emulated network latency ---------------------------------------------------------------------------------
class DelayProxy(LoopbackProcess):
    """A TCP proxy 127.0.0.1:<free port> -> 127.0.0.1:`upstream_port` that holds every chunk for half of `rtt_ms`
    each way, like a network link with that round-trip time (this kernel has no `netem` qdisc to do it).

    It runs in its own Python process (so it does not compete with the measured client for the GIL), stopped by
    PID.
    """

    label = "delay proxy"

    def __init__(self, upstream_port: int, rtt_ms: float):
        super().__init__()
        self.args = (self.port, upstream_port, rtt_ms / 2000.0)

    def _popen(self) -> subprocess.Popen:
        command = [sys.executable, "-c", "import sys; from labs.fakes.registries import _serve_delay_proxy as serve; "
                   "serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))", *map(str, self.args)]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})


def _serve_delay_proxy(listen_port: int, upstream_port: int, one_way_seconds: float) -> None:
    import asyncio

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:  # in order, each chunk once its delay has passed
            while (entry := await queue.get())[1]:
                await asyncio.sleep(max(0.0, entry[0] - loop.time()))
                writer.write(entry[1])
                await writer.drain()
            writer.close()

        delivery = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + one_way_seconds, data))
        finally:
            queue.put_nowait((0.0, b""))
            await delivery

    async def handle(client_reader, client_writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer),
                             return_exceptions=True)

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
