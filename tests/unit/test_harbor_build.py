"""labs/harbor/build_installer.py without building: the images it writes from Harbor's own make/ folder (the v2.15.2
archive, unpacked here), fake binaries and a fake base layer, read back as `docker load` reads them."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labs.harbor import build_installer as bi

pytestmark = pytest.mark.unit
VERSION = "2.15.2"
ARCHIVE = bi.UPSTREAM / f"goharbor-harbor-v{VERSION}.tar.gz"
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} missing (HHA_UPSTREAM)")


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Iterator[dict]:
    """The images of v2.15.2 over a fake base, in docker-save format, opened."""
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} missing (HHA_UPSTREAM)")
    tmp = tmp_path_factory.mktemp("harbor-build")
    tree = tmp / "src"
    tree.mkdir()
    with tarfile.open(ARCHIVE) as t:
        t.extractall(tree, members=[m for m in t.getmembers() if m.name.startswith(("make/", "LICENSE", "VERSION",
                                                                                    "src/core/views"))])
    src = bi.Source(version=VERSION, tree=tree, commit="0" * 40, digest="test")
    binaries = tmp / "bin"
    binaries.mkdir()
    for name in bi.HARBOR_BINARIES:
        (binaries / name).write_bytes(b"#!fake " + name.encode())
    registry = tmp / "registry"
    registry.write_bytes(b"#!fake registry")
    trivy = bi.Trivy(version="v0.72.0", adapter_version="v0.38.0", binaries=binaries)
    for name in ("trivy", "scanner-trivy"):
        (binaries / name).write_bytes(b"#!fake " + name.encode())
    base = tmp / "base.tar"
    base.write_bytes(_tar_bytes({"./etc/passwd": b"root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/x\n",
                                 "./etc/group": b"root:x:0:\n", "./etc/shadow": b"root:*:19000:0:99999:7:::\n",
                                 "./etc/ssl/certs/ca-certificates.crt": b"CA BUNDLE\n"}))
    out = tmp / "images.tar.gz"
    bi.docker_save(bi.harbor_images(src, binaries, registry, base, trivy), f"v{VERSION}", base, out)
    without = [i.repo for i in bi.harbor_images(src, binaries, registry, base, None)]
    with tarfile.open(out) as saved:
        manifest = json.loads(saved.extractfile("manifest.json").read())
        yield {"tar": saved, "manifest": manifest, "tree": tree, "base": base, "without_trivy": without}


def _layer(built: dict, entry: dict) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(built["tar"].extractfile(entry["Layers"][-1]).read()))


def _config(built: dict, entry: dict) -> dict:
    return json.loads(built["tar"].extractfile(entry["Config"]).read())


# image -> its folder under make/photon/
PHOTON_DIRS = {"goharbor/harbor-core": "core", "goharbor/harbor-jobservice": "jobservice",
               "goharbor/harbor-registryctl": "registryctl", "goharbor/registry-photon": "registry",
               "goharbor/harbor-exporter": "exporter", "goharbor/nginx-photon": "nginx",
               "goharbor/harbor-portal": "portal", "goharbor/harbor-log": "log"}


def _dockerfile_health(tree: Path, repo: str) -> dict | None:
    """The HEALTHCHECK of Harbor's own Dockerfile of `repo`, as Docker stores it."""
    text = (tree / "make/photon" / PHOTON_DIRS[repo] / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK CMD (.+)$", text, re.M)
    return {"Test": ["CMD-SHELL", match.group(1).strip()]} if match else None


def _entry(built: dict, repo: str) -> dict:
    return next(e for e in built["manifest"] if e["RepoTags"] == [f"{repo}:v{VERSION}"])


@needs_archive
def test_every_image_of_harbors_compose_template_is_built_with_the_release_tag(built):
    template = (built["tree"] / "make/photon/prepare/templates/docker_compose/docker-compose.yml.jinja").read_text()
    wanted = set(re.findall(r"image: (goharbor/[a-z-]+):", template))
    # Not built: the database and valkey (external PostgreSQL and Redis).
    wanted -= {"goharbor/harbor-db", "goharbor/valkey-photon"}
    tags = {t for e in built["manifest"] for t in e["RepoTags"]}
    assert {f"{name}:v{VERSION}" for name in wanted | {"goharbor/prepare"}} == tags


@needs_archive
def test_layers_and_configs_agree_as_docker_load_checks_them(built):
    for entry in built["manifest"]:
        config = _config(built, entry)
        diff_ids = ["sha256:" + hashlib.sha256(built["tar"].extractfile(layer).read()).hexdigest()
                    for layer in entry["Layers"]]
        assert config["rootfs"]["diff_ids"] == diff_ids, entry["RepoTags"]
        assert entry["Config"] == hashlib.sha256(built["tar"].extractfile(entry["Config"]).read()).hexdigest() + ".json"
    # The Debian base is stored once and shared by every image.
    assert len({e["Layers"][0] for e in built["manifest"]}) == 1


@needs_archive
@pytest.mark.parametrize(("repo", "user", "entry_file"), [
    ("goharbor/harbor-core", "harbor", "harbor/harbor_core"),
    ("goharbor/harbor-jobservice", "harbor", "harbor/harbor_jobservice"),
    ("goharbor/harbor-registryctl", "harbor", "home/harbor/harbor_registryctl"),
    ("goharbor/registry-photon", "harbor", "usr/bin/registry_DO_NOT_USE_GC"),
    ("goharbor/harbor-exporter", "harbor", "harbor/harbor_exporter"),
    ("goharbor/nginx-photon", "nginx", None),
    ("goharbor/harbor-portal", "nginx", "usr/share/nginx/html/index.html"),
])
def test_each_service_runs_as_its_uid_10000_user_with_its_files_owned_by_it(built, repo, user, entry_file):
    entry = _entry(built, repo)
    config = _config(built, entry)["config"]
    layer = _layer(built, entry)
    passwd = layer.extractfile("etc/passwd").read().decode()
    assert f"{user}:x:10000:10000:" in passwd and "root:x:0:0" in passwd
    assert config["User"] == user
    assert config["Healthcheck"] == _dockerfile_health(built["tree"], repo)
    if entry_file:
        member = layer.getmember(entry_file)
        assert member.mode & 0o111 or entry_file.endswith(".html")
    if repo.startswith("goharbor/harbor-") and repo != "goharbor/harbor-portal":
        assert layer.getmember(config["Entrypoint"][0].lstrip("/")).uid == 10000


@needs_archive
def test_install_cert_sh_finds_the_photon_layout_it_checks_for(built):
    """make/photon/common/install_cert.sh appends the cluster CA only where /etc/lsb-release says Photon, with `[[`
    (bash), into /etc/pki/tls/certs/ca-bundle.crt; Go reads that file through SSL_CERT_FILE."""
    entry = _entry(built, "goharbor/harbor-core")
    layer = _layer(built, entry)
    assert b"Photon" in layer.extractfile("etc/lsb-release").read()
    assert layer.getmember("usr/bin/sh").linkname == "bash"
    bundle = layer.getmember("etc/pki/tls/certs/ca-bundle.crt")
    assert bundle.uid == 10000 and layer.extractfile(bundle).read() == b"CA BUNDLE\n"
    assert f"SSL_CERT_FILE=/{bi.CA_BUNDLE}" in _config(built, entry)["config"]["Env"]


@needs_archive
def test_prepare_image_carries_harbors_prepare_unmodified_and_the_versions_file(built):
    entry = _entry(built, "goharbor/prepare")
    layer = _layer(built, entry)
    ours = layer.extractfile("usr/src/app/main.py").read()
    assert ours == (built["tree"] / "make/photon/prepare/main.py").read_bytes()
    versions = layer.extractfile("usr/src/app/versions").read().decode()
    assert f"VERSION_TAG: v{VERSION}" in versions
    assert _config(built, entry)["config"]["Entrypoint"] == ["python3", "main.py"]


@needs_archive
def test_trivy_adapter_image_follows_harbors_dockerfile_and_the_versions_name_it(built):
    """make/photon/trivy-adapter: user scanner (10000), the adapter and Trivy executable and owned by it, Harbor's
    entrypoint and health check (with its 10 s timeout), TRIVY_VERSION; prepare's versions file names both versions
    (the Makefile's versions_prepare), and an installer without the adapter's archive has neither."""
    entry = _entry(built, "goharbor/trivy-adapter-photon")
    config = _config(built, entry)["config"]
    layer = _layer(built, entry)
    assert "scanner:x:10000:10000::/home/scanner:" in layer.extractfile("etc/passwd").read().decode()
    assert config["User"] == "scanner" and config["Entrypoint"] == ["/home/scanner/entrypoint.sh"]
    assert "TRIVY_VERSION=v0.72.0" in config["Env"]
    for name in ("home/scanner/entrypoint.sh", "home/scanner/install_cert.sh", "usr/local/bin/trivy",
                 "home/scanner/bin/scanner-trivy"):
        member = layer.getmember(name)
        assert member.uid == 10000 and member.mode & 0o100, name
    assert layer.extractfile("home/scanner/entrypoint.sh").read() == (
        built["tree"] / "make/photon/trivy-adapter/entrypoint.sh").read_bytes()
    dockerfile = (built["tree"] / "make/photon/trivy-adapter/Dockerfile").read_text()
    health = re.search(r"^HEALTHCHECK (.*)--timeout=(\d+)s.* CMD (.+)$", dockerfile, re.M)
    assert health and config["Healthcheck"] == {"Test": ["CMD-SHELL", health.group(3).strip()],
                                                "Timeout": int(health.group(2)) * 10**9}
    versions = _layer(built, _entry(built, "goharbor/prepare")).extractfile("usr/src/app/versions").read().decode()
    assert "TRIVY_VERSION: v0.72.0" in versions and "TRIVY_ADAPTER_VERSION: v0.38.0" in versions
    assert "goharbor/trivy-adapter-photon" not in built["without_trivy"]


@needs_archive
def test_trivy_versions_are_the_release_makefiles():
    with tarfile.open(ARCHIVE) as t:
        makefile = t.extractfile("Makefile").read().decode()
    assert bi.trivy_versions(makefile) == ("v0.72.0", "v0.38.0")
    with pytest.raises(SystemExit, match="TRIVYVERSION"):
        bi.trivy_versions("TRIVYADAPTERVERSION=v0.38.0\n")


@needs_archive
def test_log_image_has_harbors_health_check(built):
    config = _config(built, _entry(built, "goharbor/harbor-log"))["config"]
    assert config["Healthcheck"] == _dockerfile_health(built["tree"], "goharbor/harbor-log")


@needs_archive
def test_log_image_deletes_the_daily_logrotate_and_names_debians_cron_crond(built):
    layer = _layer(built, _entry(built, "goharbor/harbor-log"))
    names = layer.getnames()
    assert "etc/cron.daily/.wh.logrotate" in names and "etc/cron.hourly/logrotate" in names
    assert layer.getmember("usr/sbin/crond").linkname == "cron"


def test_a_layer_refuses_entries_below_the_merged_usr_links_of_the_base():
    """/bin, /sbin, /lib are links into usr/ in Debian 12: a `bin/` entry in a top layer would hide /usr/bin."""
    layer = bi.Layer()
    with pytest.raises(ValueError, match="merged-/usr"):
        layer.symlink("bin/sh", "bash")
    with pytest.raises(ValueError, match="merged-/usr"):
        layer.file("sbin/x", b"")


@needs_archive
def test_no_image_layer_writes_below_the_merged_usr_links(built):
    for entry in built["manifest"]:
        names = _layer(built, entry).getnames()
        assert [n for n in names if n.split("/")[0] in bi.Layer.MERGED_USR] == [], entry["RepoTags"]


def test_debian_mirror_comes_from_apts_sources_deb822_or_one_line(tmp_path):
    legacy = tmp_path / "sources.list"
    legacy.write_text("# comment\ndeb [arch=amd64] http://mirror.example.invalid/debian/ bookworm main\n")
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://other.example.invalid/debian-security\nSuites: bookworm-security\n"
                      "\nTypes: deb\nURIs: http://other.example.invalid/debian\n")
    assert bi.debian_mirror([deb822, legacy]) == "http://other.example.invalid/debian"
    assert bi.debian_mirror([tmp_path / "missing", legacy]) == "http://mirror.example.invalid/debian"
    with pytest.raises(SystemExit, match="no Debian mirror"):
        bi.debian_mirror([tmp_path / "missing"])


def test_a_release_is_built_with_its_makefiles_go_when_the_local_go_is_another_minor_version():
    local = bi.go_version()  # e.g. go1.26.8
    minor = ".".join(local.removeprefix("go").split(".")[:2])
    assert bi.release_toolchain(f"GOBUILDIMAGE=golang:{minor}.0\n") == ""
    assert bi.release_toolchain("X=1\nGOBUILDIMAGE=golang:1.19.3\n") == "go1.19.3"
    assert bi.release_toolchain("no image named\n") == ""
