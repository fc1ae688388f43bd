"""Harbor's offline installer built here from its source archives: `harbor-offline-installer-v<version>.tgz`.

usage: python3 -m labs.harbor.build_installer VERSION [VERSION...]   (root; prints each installer's path)

Inputs (../shared/upstream, or HHA_UPSTREAM): goharbor/harbor's archive of the version, goharbor/distribution's
release/2.8 archive (Harbor's registry fork), goharbor/harbor-scanner-trivy's archive (the Trivy adapter) and the
pinniped pkce archive (the one Go package the module proxy refuses). Go dependencies come from `go env GOPROXY`,
Debian packages from apt's own configured mirror.

Steps, each cached under HHA_HARBOR_CACHE (/var/cache/harbor-ha/harbor-installer) by the digest of its inputs:
1. Harbor's source unpacked; go.pinniped.dev replaced by the pkce archive as a local module in this build copy of
   go.mod; the REST server code generated as Harbor's Makefile `gen_apis` does (the go-swagger version and flags it
   names).
2. core, jobservice, registryctl and exporter built with the Makefile's ldflags (version, commit from the archive's
   git-archive header); the registry from the distribution fork (GOPATH tree with vendor/, tags include_oss
   include_gcs, as Harbor's registry builder); the Trivy adapter from its archive at the Makefile's
   TRIVYADAPTERVERSION (goharbor-harbor-scanner-trivy-<version>.tar.gz; without it the installer has no Trivy) and
   Trivy itself from the module proxy at its TRIVYVERSION (v2.15.2: adapter v0.38.0, Trivy v0.72.0).
3. One Debian 12 root filesystem (debootstrap minbase with the union of the packages Harbor's make/photon/*/
   Dockerfile.base install, Debian's names), the shared bottom layer of every image.
4. One top layer per image following make/photon/<image>/Dockerfile: binaries, entrypoints, user and group 10000,
   paths, volumes, health checks; images written in `docker save` format (no Docker daemon, no build container).
5. The installer: Harbor's make/{install.sh,prepare,common.sh,harbor.yml.tmpl}, LICENSE and harbor.v<version>.tar.gz
   under harbor/, prepare's image tag set to the version as the Makefile's update_prepare_version does.

Where the images differ from Harbor's photon ones (docs/real-hosts.md):
- The portal is a placeholder: an nginx serving one page saying so on the portal's port (Harbor's Angular portal
  does not build from the npm registry here: its lock file pins @clr/angular 18.0.0, which is not served).
- Photon conventions the unmodified scripts rely on: /bin/sh is bash (install_cert.sh uses `[[`), /etc/lsb-release
  names the Photon layout (install_cert.sh appends the trusted CAs only on "Photon"), the CA bundle is
  /etc/pki/tls/certs/ca-bundle.crt (SSL_CERT_FILE points Go and curl at it), `crond` is Debian's cron.
- No /harbor/icons in core (the archive has no icons folder): the artifact icon API answers without them.
- Binaries are static (CGO_ENABLED=0, as Harbor's exporter build).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = Path(os.environ.get("HHA_UPSTREAM", REPO.parent / "shared" / "upstream"))
CACHE = Path(os.environ.get("HHA_HARBOR_CACHE", "/var/cache/harbor-ha/harbor-installer"))
DISTRIBUTION_ARCHIVE = "goharbor-distribution-release-2.8-ea065fef1275.tar.gz"
PINNIPED_ARCHIVE = "pinniped-v0.37.0-pkce.tar.gz"
SUITE = "bookworm"
# Debian names of what Harbor's Dockerfile.base files install on photon (tzdata, shadow, nginx, cronie, rsyslog,
# logrotate, sudo, python3 with PyYAML/jinja2 and the prepare Pipfile's click/packaging, htpasswd), plus curl for the
# health checks, net-tools for the log image's netstat check, ca-certificates for the CA bundle and distutils
# (prepare's utils/configs.py imports it; Debian ships it apart from python3.11).
BASE_PACKAGES = ("ca-certificates", "curl", "tzdata", "procps", "net-tools", "nginx", "rsyslog", "logrotate", "cron",
                 "sudo", "gzip", "python3", "python3-distutils", "python3-jinja2", "python3-yaml", "python3-click",
                 "python3-packaging", "openssl", "apache2-utils")
HARBOR_UID = 10000
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "etc/pki/tls/certs/ca-bundle.crt"
PLACEHOLDER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Harbor portal placeholder</title></head>
<body><h1>Harbor portal placeholder</h1>
<p>This Harbor was built from source by harbor-ha (labs/harbor/build_installer.py). Its web portal could not be
built here (the portal's npm lock file pins a package the registry does not serve), so this page stands in for it
on the portal's port. The API (/api/v2.0/), the registry (/v2/) and the token service are Harbor's own.</p>
</body></html>
"""


def log(msg: str) -> None:
    print(f"build_installer: {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_of(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """A build step under `nice`; its output goes to stderr, a failure stops the build naming the command."""
    log(f"$ {' '.join(cmd)}" + (f"   (in {cwd})" if cwd else ""))
    proc = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, env={**os.environ, **(env or {})},
                          stdout=sys.stderr, stderr=sys.stderr, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"build_installer: failed ({proc.returncode}): {' '.join(cmd)}")


def cached(path: Path) -> bool:
    """A step's output is complete when its `.ok` marker exists (written last)."""
    return path.with_name(path.name + ".ok").exists()


def mark(path: Path) -> None:
    path.with_name(path.name + ".ok").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def archive(name: str) -> Path:
    path = UPSTREAM / name
    if not path.is_file():
        raise SystemExit(f"build_installer: {path} missing (set HHA_UPSTREAM to the folder of the source archives)")
    return path


def go_env(toolchain: str = "") -> dict[str, str]:
    """Go settings of the builds: the machine's own GOPROXY (go env), no VCS stamping (archives, not clones), the
    release's Go toolchain where the local one is of another minor version (a served module, golang.org/toolchain)."""
    proxy = subprocess.run(["go", "env", "GOPROXY"], capture_output=True, text=True, check=True).stdout.strip()
    if not proxy or proxy == "off":
        raise SystemExit("build_installer: `go env GOPROXY` is empty or off: configure Go's module proxy first")
    return {"GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0", "GOTOOLCHAIN": toolchain or "local"}


def go_version(toolchain: str = "") -> str:
    if toolchain:
        return toolchain
    return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True,
                          env={**os.environ, "GOTOOLCHAIN": "local"}).stdout.strip()


def release_toolchain(makefile: str) -> str:
    """The Go of Harbor's Makefile (GOBUILDIMAGE=golang:X.Y.Z) when the local Go is of another minor version, else
    "" (the local one): v2.14.2's go-swagger v0.31.0 does not compile with Go 1.26."""
    match = re.search(r"^GOBUILDIMAGE=golang:(\d+\.\d+)(\.\d+)?", makefile, re.M)
    if not match:
        return ""
    local = re.match(r"go(\d+\.\d+)", go_version())
    return "" if local and local.group(1) == match.group(1) else f"go{match.group(1)}{match.group(2) or ''}"


def debian_mirror(files: list[Path] | None = None) -> str:
    """The Debian mirror apt on this machine uses (deb822 .sources, then .list lines)."""
    if files is None:
        files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        for url in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)",
                                                                            text, re.M):
            if url.rstrip("/").endswith("/debian"):
                return url.rstrip("/")
    raise SystemExit("build_installer: no Debian mirror in apt's sources (/etc/apt/sources.list*): configure apt")


# --- 1-2: Harbor's binaries -----------------------------------------------------------------------------------------

def swagger(version: str, toolchain: str) -> Path:
    """go-swagger at the version Harbor's Makefile names, installed from the module proxy into the cache."""
    gobin = CACHE / (f"tools-{version}" + (f"-{toolchain}" if toolchain else ""))
    if not cached(gobin):
        fresh_dir(gobin)
        run(["go", "install", f"github.com/go-swagger/go-swagger/cmd/swagger@{version}"],
            env={**go_env(toolchain), "GOBIN": str(gobin)})
        mark(gobin)
    return gobin / "swagger"


@dataclass
class Source:
    """Harbor's unpacked source of one version, ready to build."""

    version: str
    tree: Path
    commit: str
    digest: str
    toolchain: str = ""  #: the Go toolchain of the release's Makefile, "" for the local one
    release: str = field(init=False)

    def __post_init__(self) -> None:
        self.release = (self.tree / "VERSION").read_text().strip()


def harbor_source(version: str) -> Source:
    tgz = archive(f"goharbor-harbor-v{version}.tar.gz")
    pkce = archive(PINNIPED_ARCHIVE)
    with tarfile.open(tgz) as t:
        commit = t.pax_headers.get("comment", "")  # git archive records the commit it was made from
        makefile = t.extractfile("Makefile").read().decode()  # type: ignore[union-attr]
    # Each release pins its go-swagger (v2.15: v0.33.1, v2.14: v0.31.0); the generated code must match its version.
    match = re.search(r"^SWAGGER_VERSION=(v\S+)", makefile, re.M)
    if not match:
        raise SystemExit(f"build_installer: {tgz.name}'s Makefile names no SWAGGER_VERSION")
    swagger_version, toolchain = match.group(1), release_toolchain(makefile)
    key = digest_of(sha256_file(tgz), sha256_file(pkce), swagger_version, *([toolchain] if toolchain else []))
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise SystemExit(f"build_installer: {tgz.name} carries no git-archive commit header")
    tree = CACHE / f"src-v{version}-{key}"
    if not cached(tree):
        fresh_dir(tree)
        run(["tar", "-xzf", str(tgz), "-C", str(tree)])
        mod = fresh_dir(tree / "pinniped")
        run(["tar", "-xzf", str(pkce), "-C", str(mod)])
        # The proxy refuses go.pinniped.dev (403); Harbor imports only pkg/oidcclient/pkce, which needs no module
        # of its own: the archive becomes the module, replaced in this build copy of go.mod only.
        (mod / "go.mod").write_text("module go.pinniped.dev\n\ngo 1.24\n")
        run(["go", "mod", "edit", "-replace", "go.pinniped.dev=../pinniped"], cwd=tree / "src")
        # Harbor's Makefile gen_apis: swagger generate server with its template dir and flags.
        run([str(swagger(swagger_version, toolchain)), "generate", "server",
             f"--template-dir={tree}/tools/swagger/templates", "--exclude-main",
             "--additional-initialism=CVE", "--additional-initialism=GC", "--additional-initialism=OIDC",
             "-f", "api/v2.0/swagger.yaml", "-A", "harbor", "--target", "src/server/v2.0"], cwd=tree)
        mark(tree)
    return Source(version=version, tree=tree, commit=commit, digest=key, toolchain=toolchain)


# name of the binary: (package under src/, Makefile's ldflags carry the version)
HARBOR_BINARIES = {"harbor_core": "./core", "harbor_jobservice": "./jobservice",
                   "harbor_registryctl": "./registryctl", "harbor_exporter": "./cmd/exporter"}


def harbor_binaries(src: Source) -> Path:
    out = CACHE / f"bin-v{src.version}-{digest_of(src.digest, go_version(src.toolchain))}"
    if not cached(out):
        fresh_dir(out)
        pkg = "github.com/goharbor/harbor/src/pkg"
        # Makefile: CORE_LDFLAGS for core; the exporter's Dockerfile passes the same two; jobservice and
        # registryctl get only -w -s (GOBUILDLDFLAGS empty).
        version_flags = f"-X {pkg}/version.GitCommit={src.commit[:8]} -X {pkg}/version.ReleaseVersion={src.release}"
        for name, pkg_dir in HARBOR_BINARIES.items():
            flags = "-w -s" + (f" {version_flags}" if name in ("harbor_core", "harbor_exporter") else "")
            run(["go", "build", "--ldflags", flags, "-o", str(out / name), pkg_dir], cwd=src.tree / "src",
                env=go_env(src.toolchain))
        mark(out)
    return out


def registry_binary() -> Path:
    tgz = archive(DISTRIBUTION_ARCHIVE)
    gopath = CACHE / f"distribution-{digest_of(sha256_file(tgz), go_version())}"
    binary = gopath / "bin" / "registry"
    if not cached(gopath):
        fresh_dir(gopath)
        pkg_dir = gopath / "src/github.com/docker/distribution"
        pkg_dir.mkdir(parents=True)
        run(["tar", "-xzf", str(tgz), "-C", str(pkg_dir)])
        with tarfile.open(tgz) as t:
            commit = t.pax_headers.get("comment", "unknown")
        pkg = "github.com/docker/distribution"
        # distribution's Makefile `binaries` (as Harbor's registry builder runs it), GOPATH mode with vendor/.
        run(["go", "build", "-tags", "include_oss include_gcs", "-ldflags",
             f"-s -w -X {pkg}/version.Version=v2.8.3+{commit[:12]} -X {pkg}/version.Revision={commit} "
             f"-X {pkg}/version.Package={pkg}", "-o", str(binary), "./cmd/registry"],
            cwd=pkg_dir, env={**go_env(), "GOPATH": str(gopath), "GO111MODULE": "off", "GOFLAGS": ""})
        mark(gopath)
    return binary


@dataclass
class Trivy:
    """The Trivy adapter and Trivy of a release's Makefile (TRIVYADAPTERVERSION, TRIVYVERSION), built here."""

    version: str  #: Trivy's, e.g. v0.72.0 (the image's TRIVY_VERSION, the scanner version Harbor shows)
    adapter_version: str
    binaries: Path  #: holds scanner-trivy and trivy


def trivy_versions(makefile: str) -> tuple[str, str]:
    versions = [re.search(rf"^{name}=(v\S+)", makefile, re.M) for name in ("TRIVYVERSION", "TRIVYADAPTERVERSION")]
    if not all(versions):
        raise SystemExit("build_installer: the Makefile names no TRIVYVERSION or TRIVYADAPTERVERSION")
    return versions[0].group(1), versions[1].group(1)  # type: ignore[union-attr]


def trivy_binaries(makefile: str) -> Trivy | None:
    """The adapter from its source archive (Harbor's Dockerfile.binary: CGO_ENABLED=0 go build of
    cmd/scanner-trivy) and Trivy from the module proxy at the Makefile's version (Trivy's goreleaser flags:
    GOEXPERIMENT=jsonv2, its version in app.ver). None, saying why, when the adapter's archive is not there."""
    version, adapter_version = trivy_versions(makefile)
    name = f"goharbor-harbor-scanner-trivy-{adapter_version}.tar.gz"
    if not (UPSTREAM / name).is_file():
        log(f"no Trivy adapter: {UPSTREAM / name} missing (the installer is made without trivy-adapter-photon)")
        return None
    tgz = archive(name)
    out = CACHE / f"trivy-{version}-adapter-{adapter_version}-{digest_of(sha256_file(tgz), go_version())}"
    if not cached(out):
        fresh_dir(out)
        src = out / "src"
        src.mkdir()
        run(["tar", "-xzf", str(tgz), "-C", str(src)])
        with tarfile.open(tgz) as t:
            commit = t.pax_headers.get("comment", "unknown")
        # The adapter's version and commit as its own release sets them (Harbor's build leaves "dev"): its
        # /api/v1/metadata reports them.
        run(["go", "build", "-ldflags", f"-s -w -X main.version={adapter_version} -X main.commit={commit[:7]}",
             "-o", str(out / "scanner-trivy"), "./cmd/scanner-trivy"], cwd=src, env=go_env())
        shutil.rmtree(src)
        run(["go", "install", "-ldflags", f"-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver="
             f"{version.lstrip('v')}", f"github.com/aquasecurity/trivy/cmd/trivy@{version}"],
            env={**go_env(), "GOBIN": str(out), "GOEXPERIMENT": "jsonv2"})
        mark(out)
    return Trivy(version=version, adapter_version=adapter_version, binaries=out)


# --- 3: the Debian base layer ---------------------------------------------------------------------------------------

def base_layer() -> Path:
    """The debootstrapped Debian 12 tree as one uncompressed layer tarball (owners numeric, devices left out)."""
    mirror = debian_mirror()
    key = digest_of(SUITE, mirror, *BASE_PACKAGES)
    layer = CACHE / f"base-{SUITE}-{key}.tar"
    if not cached(layer):
        rootfs = CACHE / f"base-{SUITE}-{key}.rootfs"
        if rootfs.exists():
            shutil.rmtree(rootfs)
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), mirror])
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (rootfs / sub).glob("*"):
                if f.is_file():
                    f.unlink()
        run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "--mtime=@0", "--exclude=./dev/*",
             "--exclude=./proc/*", "--exclude=./sys/*", "-C", str(rootfs), "-cf", str(layer) + ".part", "."])
        os.replace(str(layer) + ".part", layer)
        shutil.rmtree(rootfs)
        mark(layer)
    return layer


def base_file(layer: Path, name: str) -> bytes:
    with tarfile.open(layer) as t:
        member = t.extractfile(f"./{name}")
        if member is None:
            raise SystemExit(f"build_installer: the base layer has no {name}")
        return member.read()


# --- 4: images ------------------------------------------------------------------------------------------------------

class Layer:
    """A top layer written with tarfile: files, directories and symlinks with explicit owners (all mtimes 0)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (bytes())
        self.dirs: set[str] = set()

    # Debian 12 has merged /usr: these are symlinks into usr/ in the base, and an entry below them here would
    # replace the link with a directory holding only that entry.
    MERGED_USR = ("bin", "sbin", "lib", "lib64")

    def _info(self, name: str, mode: int, owner: int) -> tarfile.TarInfo:
        if name.strip("/").split("/")[0] in self.MERGED_USR:
            raise ValueError(f"{name}: below a merged-/usr link of the base; write usr/{name.strip('/')}")
        info = tarfile.TarInfo(name.strip("/"))
        info.mode, info.mtime, info.uid, info.gid = mode, 0, owner, owner
        return info

    def dir(self, name: str, mode: int = 0o755, owner: int = 0) -> None:
        name = name.strip("/")
        parent = name.rpartition("/")[0]
        if parent and parent not in self.dirs:
            self.dir(parent)
        if name in self.dirs:
            return
        info = self._info(name, mode, owner)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)
        self.dirs.add(name)

    def file(self, name: str, data: bytes, mode: int = 0o644, owner: int = 0) -> None:
        parent = name.strip("/").rpartition("/")[0]
        if parent:
            self.dir(parent)
        info = self._info(name, mode, owner)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def copy(self, name: str, src: Path, mode: int | None = None, owner: int = 0) -> None:
        self.file(name, src.read_bytes(), mode if mode is not None else (0o755 if os.access(src, os.X_OK) else 0o644),
                  owner)

    def tree(self, name: str, src: Path, owner: int = 0) -> None:
        self.dir(name, owner=owner)
        for path in sorted(src.rglob("*")):
            target = f"{name.strip('/')}/{path.relative_to(src)}"
            if path.is_dir():
                self.dir(target, owner=owner)
            else:
                self.copy(target, path, owner=owner)

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, 0o777, 0)
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(info)

    def whiteout(self, name: str) -> None:
        """Deletes a file of the layers below (OCI/Docker whiteout)."""
        head, _, tail = name.strip("/").rpartition("/")
        self.file(f"{head}/.wh.{tail}", b"")

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


@dataclass
class Image:
    repo: str  #: Harbor's image name (goharbor/...)
    layer: bytes
    config: dict


def account_files(layer: Layer, base: Path, user: str, home: str, replace: str | None = None) -> None:
    """/etc/passwd, group and shadow of the base with USER at uid/gid 10000 (Harbor's useradd/groupmod), replacing
    the base's own account named `replace` (Debian's nginx runs as www-data; Harbor's nginx as nginx, uid 10000)."""
    for name, line in (("etc/passwd", f"{user}:x:{HARBOR_UID}:{HARBOR_UID}::{home}:/bin/bash"),
                       ("etc/group", f"{user}:x:{HARBOR_UID}:"), ("etc/shadow", f"{user}:!:19000::::::")):
        kept = [x for x in base_file(base, name).decode().splitlines() if x.split(":")[0] not in (user, replace)]
        layer.file(name, ("\n".join([*kept, line]) + "\n").encode(), 0o640 if name == "etc/shadow" else 0o644)
    layer.dir(home, 0o755, HARBOR_UID)


def photon_conventions(layer: Layer, base: Path) -> None:
    """What Harbor's unmodified scripts expect of their photon base (see the module docstring)."""
    layer.symlink("usr/bin/sh", "bash")
    layer.file("etc/lsb-release", b'DISTRIB_ID="Debian"\nDISTRIB_RELEASE="12"\n'
               b'DISTRIB_DESCRIPTION="Debian GNU/Linux 12 in the Photon layout (harbor-ha build_installer)"\n')
    layer.file(CA_BUNDLE, base_file(base, "etc/ssl/certs/ca-certificates.crt"), 0o644, HARBOR_UID)
    layer.dir("etc/pki/tls/certs", owner=HARBOR_UID)


def config(*, entrypoint: list[str] | None = None, cmd: list[str] | None = None, user: str = "",
           workdir: str = "", env: tuple[str, ...] = (), volumes: tuple[str, ...] = (),
           health: str | None = None, health_timeout_s: int = 0, stop_signal: str = "") -> dict:
    cfg: dict = {"Env": [PATH_ENV, f"SSL_CERT_FILE=/{CA_BUNDLE}", *env], "User": user, "WorkingDir": workdir,
                 "Entrypoint": entrypoint, "Cmd": cmd, "Volumes": {v: {} for v in volumes} or None,
                 "Labels": {"org.opencontainers.image.source": "built by harbor-ha labs/harbor/build_installer.py"}}
    if health:
        # Dockerfile `HEALTHCHECK CMD ...` (shell form) with Docker's defaults.
        cfg["Healthcheck"] = {"Test": ["CMD-SHELL", health]}
        if health_timeout_s:  # `HEALTHCHECK --timeout=` (nanoseconds in the image config)
            cfg["Healthcheck"]["Timeout"] = health_timeout_s * 10**9
    else:
        cfg["Healthcheck"] = None
    if stop_signal:
        cfg["StopSignal"] = stop_signal
    return cfg


def harbor_images(src: Source, binaries: Path, registry: Path, base: Path, trivy: Trivy | None) -> list[Image]:
    photon = src.tree / "make" / "photon"
    common_cert = photon / "common" / "install_cert.sh"
    versions = (f"VERSION_TAG: v{src.version}\nREGISTRY_VERSION: v{src.version}\n"  # the Makefile's versions_prepare
                f"TRIVY_VERSION: {trivy.version if trivy else 'none'}\n"
                f"TRIVY_ADAPTER_VERSION: {trivy.adapter_version if trivy else 'none'}\n").encode()
    images = []

    def harbor_image(repo: str, files: dict[str, Path], dirs: tuple[str, ...], **cfg: Any) -> Image:
        """A Harbor service image: user harbor (10000) owns its files (`chown -R harbor:harbor` in the Dockerfiles),
        every file executable as the Dockerfiles' `chmod u+x` make them."""
        layer = Layer()
        photon_conventions(layer, base)
        account_files(layer, base, "harbor", "/home/harbor")
        for d in dirs:
            layer.dir(d, owner=HARBOR_UID)
        for target, source in files.items():
            layer.copy(target, source, 0o755, HARBOR_UID)
        for target, tree in cfg.pop("trees", {}).items():
            layer.tree(target, tree, HARBOR_UID)
        for target, data in cfg.pop("data", {}).items():
            layer.file(target, data, 0o644, HARBOR_UID)
        return Image(repo, layer.bytes(), config(user="harbor", **cfg))

    registry_files = {"usr/bin/registry_DO_NOT_USE_GC": registry}
    images.append(harbor_image(
        "goharbor/harbor-core", {"harbor/install_cert.sh": common_cert,
                                 "harbor/entrypoint.sh": photon / "core" / "entrypoint.sh",
                                 "harbor/harbor_core": binaries / "harbor_core"}, ("harbor",),
        trees={"harbor/views": src.tree / "src" / "core" / "views",
               "harbor/migrations": src.tree / "make" / "migrations"},
        data={"harbor/versions": versions}, entrypoint=["/harbor/entrypoint.sh"], workdir="/harbor/",
        health="curl --fail -s http://localhost:8080/api/v2.0/ping || "
               "curl -k --fail -s https://localhost:8443/api/v2.0/ping || exit 1"))
    images.append(harbor_image(
        "goharbor/harbor-jobservice", {"harbor/install_cert.sh": common_cert,
                                       "harbor/entrypoint.sh": photon / "jobservice" / "entrypoint.sh",
                                       "harbor/harbor_jobservice": binaries / "harbor_jobservice"},
        ("harbor", "var/log/jobs"), entrypoint=["/harbor/entrypoint.sh"], workdir="/harbor/",
        volumes=("/var/log/jobs/",),
        health="curl --fail -s http://localhost:8080/api/v1/stats || curl -sk --fail --key "
               "/etc/harbor/ssl/job_service.key --cert /etc/harbor/ssl/job_service.crt "
               "https://localhost:8443/api/v1/stats || exit 1"))
    images.append(harbor_image(
        "goharbor/harbor-registryctl", {"home/harbor/install_cert.sh": common_cert, **registry_files,
                                        "home/harbor/start.sh": photon / "registryctl" / "start.sh",
                                        "home/harbor/harbor_registryctl": binaries / "harbor_registryctl"},
        ("etc/registry", "var/lib/registry"), entrypoint=["/home/harbor/start.sh"], volumes=("/var/lib/registry",),
        health="curl --fail -s http://localhost:8080/api/health || curl -sk --fail --key "
               "/etc/harbor/ssl/registryctl.key --cert /etc/harbor/ssl/registryctl.crt "
               "https://localhost:8443/api/health || exit 1"))
    images.append(harbor_image(
        "goharbor/registry-photon", {"home/harbor/install_cert.sh": common_cert, **registry_files,
                                     "home/harbor/entrypoint.sh": photon / "registry" / "entrypoint.sh"},
        ("etc/registry", "storage"), entrypoint=["/home/harbor/entrypoint.sh"], volumes=("/storage",),
        health="curl --fail -s http://localhost:5000 || curl -k --fail -s https://localhost:5443 || exit 1"))
    images.append(harbor_image(
        "goharbor/harbor-exporter", {"harbor/harbor_exporter": binaries / "harbor_exporter",
                                     "harbor/entrypoint.sh": photon / "exporter" / "entrypoint.sh",
                                     "harbor/install_cert.sh": common_cert}, ("harbor",),
        entrypoint=["/harbor/entrypoint.sh"], workdir="/harbor"))

    # nginx and the portal placeholder (make/photon/{nginx,portal}/Dockerfile.base): nginx as user nginx, 10000.
    def nginx_layer() -> Layer:
        layer = Layer()
        photon_conventions(layer, base)
        account_files(layer, base, "nginx", "/home/nginx")
        layer.symlink("var/log/nginx/access.log", "/dev/stdout")
        layer.symlink("var/log/nginx/error.log", "/dev/stderr")
        for d in ("var/log/nginx", "var/lib/nginx", "var/cache/nginx", "run"):
            layer.dir(d, owner=HARBOR_UID)
        return layer

    nginx_volumes = ("/var/cache/nginx", "/var/log/nginx", "/run")
    images.append(Image("goharbor/nginx-photon", nginx_layer().bytes(), config(
        cmd=["nginx", "-g", "daemon off;"], user="nginx", volumes=nginx_volumes, stop_signal="SIGQUIT",
        health="curl --fail -s http://localhost:8080 || exit 1")))
    layer = nginx_layer()
    layer.dir("etc/nginx", owner=HARBOR_UID)
    layer.file("usr/share/nginx/html/index.html", PLACEHOLDER_PAGE.encode())
    layer.copy("usr/share/nginx/html/LICENSE", src.tree / "LICENSE")
    images.append(Image("goharbor/harbor-portal", layer.bytes(), config(
        cmd=["nginx", "-g", "daemon off;"], user="nginx", volumes=nginx_volumes, stop_signal="SIGQUIT",
        health="curl --fail -s http://localhost:8080 || curl -k --fail -s https://localhost:8443 || exit 1")))

    # log (make/photon/log): rsyslog as uid 10000 through sudo, cron for logrotate.
    layer = Layer()
    photon_conventions(layer, base)
    account_files(layer, base, "syslog", "/home/syslog")
    layer.copy("etc/rsyslog.conf", photon / "log" / "rsyslog.conf", 0o644, HARBOR_UID)
    layer.dir("etc/rsyslog.d", 0o755, HARBOR_UID)
    layer.copy("etc/rsyslog.d/rsyslog_docker.conf", photon / "log" / "rsyslog_docker.conf", 0o755, HARBOR_UID)
    layer.whiteout("etc/cron.daily/logrotate")
    layer.copy("etc/cron.hourly/logrotate", photon / "log" / "logrotate", 0o755)
    layer.copy("usr/local/bin/start.sh", photon / "log" / "start.sh", 0o755)
    layer.symlink("usr/sbin/crond", "cron")  # photon's cronie is crond; start.sh runs `crond`
    layer.dir("var/spool/rsyslog")
    layer.dir("run", owner=HARBOR_UID)
    layer.dir("var/lib/logrotate", owner=HARBOR_UID)
    images.append(Image("goharbor/harbor-log", layer.bytes(), config(
        cmd=["/bin/sh", "-c", "/usr/local/bin/start.sh"], volumes=("/var/log/docker/", "/run/", "/etc/logrotate.d/"),
        health="netstat -ltun|grep 10514")))

    if trivy:
        images.append(trivy_image(photon, base, trivy))

    # prepare (make/photon/prepare): Harbor's Python prepare, unmodified, on Debian's python3 packages.
    layer = Layer()
    photon_conventions(layer, base)
    layer.dir("harbor_make")
    layer.tree("usr/src/app", photon / "prepare")
    layer.file("usr/src/app/versions", versions)
    images.append(Image("goharbor/prepare", layer.bytes(), config(
        entrypoint=["python3", "main.py"], workdir="/usr/src/app", env=("LANG=C.UTF-8",), volumes=("/harbor_make",))))
    return images


def trivy_image(photon: Path, base: Path, trivy: Trivy) -> Image:
    """make/photon/trivy-adapter: user scanner (10000) with its home, the adapter in /home/scanner/bin, Trivy in
    /usr/local/bin, Harbor's entrypoint (install_cert.sh, then the adapter). Photon's rpm package of the
    Dockerfile.base is left out: Trivy reads rpm databases itself (Go), it does not run rpm."""
    layer = Layer()
    photon_conventions(layer, base)
    account_files(layer, base, "scanner", "/home/scanner")
    layer.dir("home/scanner/bin", owner=HARBOR_UID)
    # The compose file binds the database cache and the reports under it; made here so Docker does not make it
    # root's.
    layer.dir("home/scanner/.cache", owner=HARBOR_UID)
    for target, source in (("home/scanner/install_cert.sh", photon / "common" / "install_cert.sh"),
                           ("home/scanner/entrypoint.sh", photon / "trivy-adapter" / "entrypoint.sh"),
                           ("usr/local/bin/trivy", trivy.binaries / "trivy"),
                           ("home/scanner/bin/scanner-trivy", trivy.binaries / "scanner-trivy")):
        layer.copy(target, source, 0o755, HARBOR_UID)
    return Image("goharbor/trivy-adapter-photon", layer.bytes(), config(
        entrypoint=["/home/scanner/entrypoint.sh"], user="scanner", env=(f"TRIVY_VERSION={trivy.version}",),
        health="curl --fail -s http://localhost:8080/probe/healthy || "
               "curl -k --fail -s https://localhost:8443/probe/healthy || exit 1", health_timeout_s=10))


def docker_save(images: list[Image], tag: str, base: Path, out: Path) -> None:
    """The `docker save` format of IMAGES (tagged TAG) over the shared BASE layer, gzipped to OUT."""
    base_id = "sha256:" + sha256_file(base)
    manifest = []
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        base_dir = base_id.split(":")[1]
        tar.add(str(base), f"{base_dir}/layer.tar", filter=_zero_owner)
        for image in images:
            top = hashlib.sha256(image.layer).hexdigest()
            _bytes(tar, f"{top}/layer.tar", image.layer)
            cfg = {"architecture": "amd64", "os": "linux", "config": image.config,
                   "rootfs": {"type": "layers", "diff_ids": [base_id, f"sha256:{top}"]},
                   "history": [{"created_by": f"debootstrap --variant=minbase {SUITE}"},
                               {"created_by": "harbor-ha labs/harbor/build_installer.py"}]}
            blob = json.dumps(cfg, sort_keys=True).encode()
            config_id = hashlib.sha256(blob).hexdigest()
            _bytes(tar, f"{config_id}.json", blob)
            manifest.append({"Config": f"{config_id}.json", "RepoTags": [f"{image.repo}:{tag}"],
                             "Layers": [f"{base_dir}/layer.tar", f"{top}/layer.tar"]})
        _bytes(tar, "manifest.json", json.dumps(manifest).encode())
    os.replace(part, out)


def _zero_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


# --- 5: the installer -----------------------------------------------------------------------------------------------

INSTALLER_FILES = ("install.sh", "prepare", "common.sh", "harbor.yml.tmpl")


def build(version: str) -> Path:
    """The offline installer of VERSION (cached by the digests of every input, this builder included)."""
    src = harbor_source(version)
    registry = registry_binary()
    base = base_layer()
    trivy = trivy_binaries((src.tree / "Makefile").read_text())
    key = digest_of(src.digest, sha256_file(Path(__file__)), registry.parent.parent.name, base.name, go_version(),
                    *([trivy.binaries.name] if trivy else []))
    out = CACHE / f"installer-{key}" / f"harbor-offline-installer-v{version}.tgz"
    if cached(out):
        return out
    binaries = harbor_binaries(src)
    fresh_dir(out.parent)
    images = CACHE / f"installer-{key}" / f"harbor.v{version}.tar.gz"
    log(f"writing the images of v{version}")
    docker_save(harbor_images(src, binaries, registry, base, trivy), f"v{version}", base, images)
    part = out.with_name(out.name + ".part")
    with tarfile.open(part, "w:gz", compresslevel=1) as tar:
        tar.add(str(src.tree / "LICENSE"), "harbor/LICENSE", filter=_zero_owner)
        for name in INSTALLER_FILES:
            data = (src.tree / "make" / name).read_bytes()
            if name == "prepare":
                # The Makefile's update_prepare_version: the prepare image tag becomes the release's.
                data = re.sub(rb"goharbor/prepare:\S+\s+", f"goharbor/prepare:v{version} ".encode(), data)
            info = tarfile.TarInfo(f"harbor/{name}")
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if name.endswith(".sh") or name == "prepare" else 0o644
            tar.addfile(info, io.BytesIO(data))
        tar.add(str(images), f"harbor/harbor.v{version}.tar.gz", filter=_zero_owner)
    images.unlink()
    os.replace(part, out)
    mark(out)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    for version in argv:
        start = time.monotonic()
        path = build(version)
        log(f"v{version}: {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - start:.0f} s")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
