"""A stand-in Harbor offline installer, built here: Harbor's images cannot be had on this machine.

`harbor-offline-installer-v<version>.tgz` with the layout of the real one (`harbor/prepare`, `harbor/install.sh`,
`harbor/harbor.yml.tmpl`, `harbor/harbor.v<version>.tar.gz`), so components/harbor_node/harbor-node.sh runs on it
for real: `docker load`, `prepare`, `compose up`, the health gate, the shared keys and the upgrade to a new tarball.

What is a stand-in and what is like Harbor:
- The images are one busybox-static root filesystem (the machine's /bin/busybox), written in `docker save` format
  (what `docker import` of that tree then `docker save` gives), tagged with Harbor's image names and the version.
  Each service is `busybox nc -ll -e` running a small shell HTTP handler, not Harbor's programs. busybox has no TLS
  server: the proxy's https port is served by standin-tls (labs/hosts/standin_tls/main.go, Go stdlib only, built
  static here and cached by its source digest), which terminates TLS and forwards to the proxy's plain handler.
- `prepare` (bash, run on the node; Harbor's runs its prepare image) writes what Harbor's writes and the script
  depends on: `common/config/core/env` with a new random `CSRF_KEY` (32 characters) and `ROBOT_SCANNER_NAME_PREFIX`
  (8 characters), and core's, jobservice's and registryctl's env with new random `CORE_SECRET` and
  `JOBSERVICE_SECRET` (16 characters) on every run, the data_volume secrets only when missing, https.certificate and https.private_key
  copied to data_volume/secret/cert/server.{crt,key}, and `docker-compose.yml` with Harbor's service names (proxy
  publishes http.port to 8080 and https.port to 8443 with the cert folder mounted at /etc/cert, core, registry,
  trivy-adapter with --with-trivy) and Harbor's bind mounts of the single key files under data_volume/secret/ and
  of Trivy's cache and reports.
- metric.port (published when harbor.yml enables it) serves `harbor_up` for core and registry from core's health,
  and a stand-in gauge for each `?comp=`: Harbor's real metrics need Harbor's programs.
- `/api/v2.0/health` answers through the proxy container from core: core is healthy when its bind-mounted keys
  can be read and its env has a CSRF key, registry when the registry container answers. `/api/v2.0/users/current`
  answers as the admin without checking the credential (the admin-password resource's refresh reads it; Harbor's
  login is proven on the emulator and on real Harbor). `/api/v2.0/standin` (not Harbor's) reports the version and sha256 digests of the key, CSRF key and scanner prefix this node's core sees.

usage: python3 -m labs.hosts.standin_installer VERSION OUT_DIR   (prints the installer's path)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")  #: from busybox-static (statically linked: no libraries in the image)
TLS_SOURCE = Path(__file__).resolve().with_name("standin_tls")  #: the Go source of standin-tls (main.go, go.mod)
# Harbor's image names for the services the stand-in runs.
IMAGES = {"proxy": "goharbor/nginx-photon", "core": "goharbor/harbor-core", "registry": "goharbor/registry-photon",
          "trivy-adapter": "goharbor/trivy-adapter-photon"}

# The HTTP handler every stand-in container runs per connection (`nc -ll -e`); its role comes from $ROLE.
# `timeout N wget`, not `wget -T N`: busybox 1.35's wget -T crashes (SIGSEGV) in these containers.
HANDLER = r"""#!/bin/sh
# Stand-in Harbor service (harbor-ha labs/hosts/standin_installer.py): one HTTP request per run.
read -r method path _proto
while read -r line; do [ "$(printf '%s' "$line" | tr -d '\r')" = "" ] && break; done
reply() { printf 'HTTP/1.0 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' "$1" "${#2}" "$2"; }
digest() { if [ -r "$1" ]; then sha256sum < "$1" | cut -c1-64; else echo unreadable; fi; }
VERSION=$(cat /standin/VERSION)
case "$ROLE:$path" in
  proxy:/api/*)
    body=$(timeout 5 wget -q -O - "http://core:8080$path") && reply "200 OK" "$body" || reply "502 Bad Gateway" '{"errors":[{"code":"BAD_GATEWAY"}]}' ;;
  core:/api/v2.0/health)
    core=unhealthy; registry=unhealthy
    if [ -s /etc/core/key ] && [ -s /etc/core/private_key.pem ] && [ -n "$CSRF_KEY" ]; then core=healthy; fi
    if timeout 3 wget -q -O /dev/null http://registry:5000/; then registry=healthy; fi
    overall=healthy; [ "$core$registry" = healthyhealthy ] || overall=unhealthy
    reply "200 OK" "{\"status\":\"$overall\",\"components\":[{\"name\":\"core\",\"status\":\"$core\"},{\"name\":\"registry\",\"status\":\"$registry\"}]}" ;;
  core:/api/v2.0/users/current)
    # The admin, without checking a credential (the proxy forwards none): what the admin-password resource's
    # refresh asks. Harbor's own login checks are proven on the Harbor API emulator and on real Harbor.
    reply "200 OK" '{"user_id":1,"username":"admin","sysadmin_flag":true}' ;;
  core:/api/v2.0/standin)
    csrf=$(printf '%s' "$CSRF_KEY" | sha256sum | cut -c1-64)
    prefix=$(printf '%s' "$ROBOT_SCANNER_NAME_PREFIX" | sha256sum | cut -c1-64)
    reply "200 OK" "{\"standin\":true,\"version\":\"$VERSION\",\"csrf_key_sha256\":\"$csrf\",\"scanner_prefix_sha256\":\"$prefix\",\"secretkey_sha256\":\"$(digest /etc/core/key)\",\"private_key_sha256\":\"$(digest /etc/core/private_key.pem)\"}" ;;
  proxy:/metrics*)
    # Harbor's nginx serves the exporter's metrics on metric.port (other components' by ?comp=): here harbor_up
    # of the two components core's health reports, and one stand-in gauge per component.
    health=$(timeout 5 wget -q -O - http://core:8080/api/v2.0/health) || health=
    up() { case $health in *"\"name\":\"$1\",\"status\":\"healthy\""*) echo 1 ;; *) echo 0 ;; esac; }
    case $path in
      *comp=*) body="harbor_standin_component_up{comp=\"${path##*comp=}\"} 1
" ;;
      *) body="harbor_up{component=\"core\"} $(up core)
harbor_up{component=\"registry\"} $(up registry)
" ;;
    esac
    reply "200 OK" "$body" ;;
  registry:*)
    if [ -s /etc/registry/root.crt ]; then reply "200 OK" '{}'; else reply "503 Service Unavailable" '{}'; fi ;;
  *) reply "404 Not Found" '{"errors":[{"code":"NOT_FOUND"}]}' ;;
esac
"""

PREPARE = r"""#!/usr/bin/env bash
# Stand-in for Harbor's prepare (harbor-ha labs/hosts/standin_installer.py), version @VERSION@.
# Like Harbor's: reads harbor.yml, writes common/config and docker-compose.yml, a NEW random CSRF_KEY and
# ROBOT_SCANNER_NAME_PREFIX on every run, the data_volume secrets only when they are missing.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")"
trivy=0
for arg in "$@"; do case $arg in --with-trivy) trivy=1 ;; *) echo "prepare: unknown option $arg" >&2; exit 1 ;; esac; done
[ -f harbor.yml ] || { echo "prepare: no harbor.yml" >&2; exit 1; }
data_volume=$(awk '$1 == "data_volume:" {print $2}' harbor.yml)
# section_key SECTION KEY: the value of `SECTION:` -> `  KEY:` in harbor.yml (the block style harbor-ha writes).
section_key() { awk -v s="$1:" -v k="$2:" '$0 == s {h = 1; next} h && $1 == k {print $2; exit} /^[^ ]/ {h = 0}' harbor.yml; }
http_port=$(section_key http port)
https_port=$(section_key https port)
certificate=$(section_key https certificate)
metric_port=
if [ "$(section_key metric enabled)" = true ]; then metric_port=$(section_key metric port); fi
private_key=$(section_key https private_key)
[ -n "$data_volume" ] && [ -n "$http_port" ] || { echo "prepare: data_volume or http.port missing" >&2; exit 1; }
if [ -n "$https_port" ]; then
  # Like Harbor's prepare: the certificate and key go to data_volume/secret/cert, which the proxy mounts.
  [ -r "$certificate" ] && [ -r "$private_key" ] || { echo "prepare: https.certificate or private_key unreadable" >&2; exit 1; }
  mkdir -p "$data_volume/secret/cert"
  install -m 0644 "$certificate" "$data_volume/secret/cert/server.crt"
  install -m 0600 "$private_key" "$data_volume/secret/cert/server.key"
fi
random() { tr -dc "$1" < /dev/urandom | head -c "$2" || true; }
for f in secret/keys/secretkey secret/core/private_key.pem secret/registry/root.crt; do
  if [ ! -f "$data_volume/$f" ]; then
    mkdir -p "$(dirname "$data_volume/$f")"; random 'A-Za-z0-9' 16 > "$data_volume/$f"
    echo "Generated $f"
  fi
done
mkdir -p common/config/core common/config/jobservice common/config/registryctl
umask 077
core_secret=$(random 'A-Za-z0-9' 16) jobservice_secret=$(random 'A-Za-z0-9' 16)
{ echo "CONFIG_PATH=/etc/core/app.conf"
  echo "CSRF_KEY=$(random 'A-Za-z0-9' 32)"
  echo "ROBOT_SCANNER_NAME_PREFIX=$(random 'a-z0-9' 8)"
  echo "CORE_SECRET=$core_secret"
  echo "JOBSERVICE_SECRET=$jobservice_secret"
  echo "HARBOR_STANDIN=1"; } > common/config/core/env
for component in jobservice registryctl; do
  printf 'CORE_SECRET=%s\nJOBSERVICE_SECRET=%s\n' "$core_secret" "$jobservice_secret" > "common/config/$component/env"
done
umask 022
@IMAGES@
service() {  # service NAME ROLE [COMMAND]: COMMAND in compose's list form, default the plain handler
  local command=${3:-'["/bin/nc", "-ll", "-p", "'"${port[$2]}"'", "-e", "/standin/handler.sh"]'}
  cat <<EOF
  $1:
    image: ${image[$2]}:v@VERSION@
    container_name: $1
    restart: always
    environment:
      - ROLE=$2
    command: $command
    networks: [harbor]
EOF
}
{
  echo "version: '2.3'"
  echo "services:"
  service registry registry
  cat <<EOF
    volumes:
      - type: bind
        source: $data_volume/secret/registry/root.crt
        target: /etc/registry/root.crt
EOF
  service core core
  cat <<EOF
    env_file: [./common/config/core/env]
    volumes:
      - type: bind
        source: $data_volume/secret/core/private_key.pem
        target: /etc/core/private_key.pem
      - type: bind
        source: $data_volume/secret/keys/secretkey
        target: /etc/core/key
    depends_on: [registry]
EOF
  if [ -n "$https_port" ]; then
    # Harbor's nginx listens on 8080 and 8443; here the plain handler and standin-tls in front of it. standin-tls is
    # the container's main process: the container (and its https port) stops as a whole, as in the drain.
    service proxy proxy '["/bin/sh", "-c", "/bin/nc -ll -p 8080 -e /standin/handler.sh & /bin/nc -ll -p 9090 -e /standin/handler.sh & exec /standin/standin-tls :8443 /etc/cert/server.crt /etc/cert/server.key 127.0.0.1:8080"]'
    cat <<EOF
    volumes:
      - type: bind
        source: $data_volume/secret/cert
        target: /etc/cert
        read_only: true
EOF
  else
    service proxy proxy
  fi
  cat <<EOF
    ports:
      - $http_port:8080
EOF
  if [ -n "$https_port" ]; then echo "      - $https_port:8443"; fi
  if [ -n "$metric_port" ]; then echo "      - $metric_port:9090"; fi
  cat <<EOF
    depends_on: [core]
EOF
  if [ "$trivy" = 1 ]; then
    mkdir -p "$data_volume/trivy-adapter/trivy" "$data_volume/trivy-adapter/reports"
    service trivy-adapter trivy-adapter
    cat <<EOF
    volumes:
      - type: bind
        source: $data_volume/trivy-adapter/trivy
        target: /home/scanner/.cache/trivy
      - type: bind
        source: $data_volume/trivy-adapter/reports
        target: /home/scanner/.cache/reports
EOF
  fi
  echo "networks:"
  echo "  harbor:"
  echo "    external: false"
} > docker-compose.yml
echo "Successfully called func: prepare (stand-in @VERSION@)"
"""

PORTS = {"proxy": 8080, "core": 8080, "registry": 5000, "trivy-adapter": 8080}


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def tls_forwarder(cache_dir: Path) -> Path:
    """standin-tls built from labs/hosts/standin_tls (static, stdlib only), cached under cache_dir by the digest of
    its source files: rebuilt only when they change."""
    sources = sorted(p for p in TLS_SOURCE.iterdir() if p.suffix in (".go", ".mod"))
    digest = hashlib.sha256(b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in sources)).hexdigest()[:16]
    binary = cache_dir / f"standin-tls-{digest}"
    if binary.is_file():
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    done = subprocess.run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."], cwd=TLS_SOURCE,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"go build of {TLS_SOURCE}: {done.stderr[-2000:]}")
    tmp.replace(binary)
    return binary


def rootfs_layer(version: str, forwarder: Path) -> bytes:
    """The image's one layer: busybox-static with a link per applet, the handler, standin-tls, the version."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("bin", "etc", "tmp", "standin", "etc/core", "etc/registry", "etc/cert"):
            _dir(tar, d)
        _add(tar, "bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, "busybox", 0o777, 0
                tar.addfile(info)
        _add(tar, "standin/handler.sh", HANDLER.encode(), 0o755)
        _add(tar, "standin/standin-tls", forwarder.read_bytes(), 0o755)
        _add(tar, "standin/VERSION", f"{version}\n".encode())
        _add(tar, "etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    return buf.getvalue()


def image_tarball(version: str, forwarder: Path) -> bytes:
    """`docker save` format (gzip): one config and one layer, tagged with every stand-in image name."""
    layer = rootfs_layer(version, forwarder)
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"harbor-ha.standin": version}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created": "2026-01-01T00:00:00Z", "comment": "harbor-ha stand-in (busybox-static)"}],
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    tags = [f"{name}:v{version}" for name in IMAGES.values()]
    manifest = json.dumps([{"Config": f"{config_id}.json", "RepoTags": tags, "Layers": [f"{layer_id}/layer.tar"]}])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _dir(tar, layer_id)
        _add(tar, f"{layer_id}/layer.tar", layer)
        _add(tar, f"{layer_id}/VERSION", b"1.0")
        _add(tar, f"{config_id}.json", config)
        _add(tar, "manifest.json", manifest.encode())
    return gzip.compress(buf.getvalue(), mtime=0)


def prepare_script(version: str) -> str:
    tables = ("declare -A image=(" + " ".join(f"[{r}]={i}" for r, i in IMAGES.items()) + ")\n"
              "declare -A port=(" + " ".join(f"[{r}]={p}" for r, p in PORTS.items()) + ")")
    return PREPARE.replace("@VERSION@", version).replace("@IMAGES@", tables)


def build(version: str, out_dir: Path) -> Path:
    """Write harbor-offline-installer-v<version>.tgz (a stand-in) into out_dir; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"harbor-offline-installer-v{version}.tgz"
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        _dir(tar, "harbor")
        _add(tar, f"harbor/harbor.v{version}.tar.gz", image_tarball(version, tls_forwarder(out_dir / "cache")))
        _add(tar, "harbor/prepare", prepare_script(version).encode(), 0o755)
        _add(tar, "harbor/install.sh", b"#!/bin/sh\necho 'stand-in installer: harbor-ha runs prepare itself' >&2\n"
                                       b"exit 1\n", 0o755)
        _add(tar, "harbor/harbor.yml.tmpl", b"# stand-in: harbor-ha renders harbor.yml itself\n")
        _add(tar, "harbor/LICENSE", b"stand-in installer built by harbor-ha's host lab; not Harbor\n")
    shutil.move(tmp, path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.rsplit("usage: ", 1)[1])
    print(build(sys.argv[1], Path(sys.argv[2])))
