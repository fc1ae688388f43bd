"""components/loadbalancer/acme.sh's install step run in bash with an `nginx` stub on PATH (real openssl, real
certificates from labs/certs.py): what nginx refuses is rolled back, a key that does not match is never installed,
and keys land 0600."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from labs import certs as lab_certs
from tests.support import ROOT

SCRIPT = ROOT / "components" / "loadbalancer" / "acme.sh"


def setup(tmp_path: Path, nginx_rc: int) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # `nginx -t` answers nginx_rc; `nginx -s reload` is recorded.
    (bindir / "nginx").write_text(f'#!/bin/sh\ncase "$*" in *-s\\ reload*) echo reload >> "{tmp_path}/reloads";'
                                  f" exit 0;; esac\nexit {nginx_rc}\n")
    (bindir / "nginx").chmod(0o755)
    env_file = tmp_path / "acme.env"
    env_file.write_text(f"LIVE_DIR={tmp_path}/live\nNGINX_CONF={tmp_path}/nginx.conf\nVIP=198.18.0.10\n")
    return {**os.environ, "ACME_ENV": str(env_file), "PATH": f"{bindir}:{os.environ['PATH']}"}


def pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    _ca, cert, key = lab_certs.ca_and_server(name, [name])
    (tmp_path / f"{name}.crt").write_bytes(cert)
    (tmp_path / f"{name}.key").write_bytes(key)
    return tmp_path / f"{name}.crt", tmp_path / f"{name}.key"


def serving(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """live/ holding a pair for `name`, as nginx serves it: (live folder, certificate, key)."""
    live = tmp_path / "live"
    live.mkdir()
    crt, key = pair(tmp_path, name)
    (live / "harbor.crt").write_bytes(crt.read_bytes())
    (live / "harbor.key").write_bytes(key.read_bytes())
    return live, crt, key


def install(env: dict[str, str], crt: Path, key: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'. "{SCRIPT}"; install_live "{crt}" "{key}"'], capture_output=True,
                          text=True, timeout=60, env=env)


def test_a_certificate_nginx_accepts_is_installed_with_a_private_key_and_reloaded(tmp_path):
    env = setup(tmp_path, 0)
    live, old_crt, old_key = serving(tmp_path, "old.example")
    new_crt, new_key = pair(tmp_path, "new.example")
    done = install(env, new_crt, new_key)
    assert done.returncode == 0, done.stderr
    assert (live / "harbor.crt").read_bytes() == new_crt.read_bytes()
    assert (live / "harbor.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "reloads").read_text() == "reload\n"
    # The same pair again: nothing to do, no reload.
    assert install(env, new_crt, new_key).returncode == 0
    assert (tmp_path / "reloads").read_text() == "reload\n"


def test_a_certificate_nginx_refuses_is_rolled_back_without_a_reload(tmp_path):
    env = setup(tmp_path, 1)
    live, old_crt, old_key = serving(tmp_path, "old.example")
    new_crt, new_key = pair(tmp_path, "new.example")
    done = install(env, new_crt, new_key)
    assert done.returncode != 0 and "nginx -t refused the new certificate" in done.stderr
    assert (live / "harbor.crt").read_bytes() == old_crt.read_bytes()
    assert (live / "harbor.key").read_bytes() == old_key.read_bytes()
    assert not (tmp_path / "reloads").exists()


def test_a_key_that_does_not_match_the_certificate_is_never_installed(tmp_path):
    env = setup(tmp_path, 0)
    crt, _ = pair(tmp_path, "a.example")
    _, other_key = pair(tmp_path, "b.example")
    done = install(env, crt, other_key)
    assert done.returncode != 0 and "does not match" in done.stderr
    assert not (tmp_path / "live").exists()
