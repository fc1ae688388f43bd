"""components/loadbalancer/acme.sh run in bash with stubs on PATH (`nginx`; for a renewal `ip`, `ssh` and `lego`; real
openssl, real certificates from labs/certs.py): what nginx refuses is rolled back, a key that does not match is never
installed, keys land 0600, a kill at any step of an installation (a power cut) leaves a matching pair, the VIP holder
takes the peer's newer certificate before lego decides to renew, and an adoption cut between its renames keeps the
state."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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


def stub(bindir: Path, name: str, body: str) -> None:
    (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bindir / name).chmod(0o755)


# Every command install_live changes files with: at call number $CUT_AT, the whole script is killed (its process
# group, as a power cut would) before the command runs.
CUTTABLE = ("mv", "ln", "install", "cp", "rm", "sync", "mktemp")


@pytest.mark.parametrize("layout", ["files of an earlier version", "linked pair"])
def test_a_cut_at_any_step_of_an_installation_leaves_a_matching_pair(tmp_path, layout):
    env = setup(tmp_path, 0)
    bindir = tmp_path / "bin"
    for name in CUTTABLE:
        real = shutil.which(name)
        stub(bindir, name, f'n=$(($(cat "{tmp_path}/calls" 2>/dev/null || echo 0) + 1)); echo $n > "{tmp_path}/calls"\n'
                           f'[ "$n" -ne "$CUT_AT" ] || kill -KILL 0\nexec {real} "$@"')
    live, old_crt, old_key = serving(tmp_path, "old.example")
    new_crt, new_key = pair(tmp_path, "new.example")
    pairs = {(old_crt.read_bytes(), old_key.read_bytes()): "old", (new_crt.read_bytes(), new_key.read_bytes()): "new"}
    pristine = tmp_path / "pristine"
    if layout == "linked pair":  # what bootstrap leaves on a host since this version
        linked = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; link_pair'], capture_output=True, text=True,
                                timeout=60, env={**env, "CUT_AT": "0"})
        assert linked.returncode == 0 and (live / "harbor.key").is_symlink(), linked.stderr
    shutil.copytree(live, pristine, symlinks=True)
    seen = []
    for cut_at in range(1, 100):
        shutil.rmtree(live)
        shutil.copytree(pristine, live, symlinks=True)
        (tmp_path / "calls").unlink(missing_ok=True)
        done = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; install_live "{new_crt}" "{new_key}"'],
                              capture_output=True, text=True, timeout=60, env={**env, "CUT_AT": str(cut_at)},
                              start_new_session=True)
        served = ((live / "harbor.crt").read_bytes(), (live / "harbor.key").read_bytes())
        assert served in pairs, f"cut at call {cut_at}: a certificate and a key of different pairs"
        seen.append(pairs[served])
        if done.returncode == 0:
            break
        assert done.returncode == -9, done.stderr
    assert seen[-1] == "new" and len(seen) > 3, seen


def lego_state(root: Path, name: str, days: int) -> tuple[Path, str]:
    """root/lego as lego keeps it for the name harbor.example, with a certificate living `days`; (root, its serial)."""
    _ca, cert, key = lab_certs.ca_and_server(name, ["harbor.example"], days=days)
    certs = root / "lego" / "certificates"
    certs.mkdir(parents=True)
    (certs / "harbor.example.crt").write_bytes(cert)
    (certs / "harbor.example.key").write_bytes(key)
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(certs / "harbor.example.crt")],
                            capture_output=True, text=True, check=True).stdout.strip()
    return root, serial


def test_the_vip_holder_takes_the_peers_newer_certificate_before_lego_decides_to_renew(tmp_path):
    """After a failover during a renewal the other LB renewed while this one was down: back with the VIP, this host
    exchanges with the peer first (its real `acme.sh receive` answers with the newer folder), so lego sees that
    certificate, not the one it would renew again."""
    env = setup(tmp_path, 0)
    bindir = tmp_path / "bin"
    holder, old_serial = lego_state(tmp_path / "holder", "old.example", 1)
    peer, new_serial = lego_state(tmp_path / "peer", "new.example", 2)
    for root in (holder, peer):
        (root / "acme.env").write_text(
            f"LIVE_DIR={root}/live\nNGINX_CONF={tmp_path}/nginx.conf\nVIP=198.18.0.10\nACME_DIR={root}\n"
            f"ACME_DOMAINS=harbor.example\nACME_SERVER=https://ca.example/dir\nACME_EMAIL=a@example.com\n"
            f"WEBROOT={root}/www\nACME_DAYS=30\nPEER=198.18.0.2\nPUSH_KEY={root}/push.key\n"
            f"KNOWN_HOSTS={root}/known_hosts\n")
    # The VIP is here unless HOLDS=no (the peer); ssh runs the peer's receive; lego records the serial it finds.
    stub(bindir, "ip", '[ "${HOLDS:-yes}" = no ] || echo "2: eth0    inet 198.18.0.10/32 scope global eth0"')
    stub(bindir, "ssh", f'echo ssh >> "{tmp_path}/calls"; HOLDS=no ACME_ENV="{peer}/acme.env" exec bash "{SCRIPT}" '
                        'receive')
    stub(bindir, "lego", 'while [ $# -gt 0 ]; do [ "$1" != --path ] || p=$2; shift; done\n'
                         f'echo "lego $(openssl x509 -noout -serial -in "$p/certificates/harbor.example.crt")" '
                         f'>> "{tmp_path}/calls"')
    done = subprocess.run(["bash", str(SCRIPT), "renew"], capture_output=True, text=True, timeout=60,
                          env={**env, "ACME_ENV": str(holder / "acme.env")})
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["ssh", f"lego {new_serial}", "ssh"], (calls, old_serial)
    live = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(holder / "live" / "harbor.crt")],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert live == new_serial


def test_an_adoption_cut_between_its_renames_keeps_lego_s_folder(tmp_path):
    env = setup(tmp_path, 0)
    root, _serial = lego_state(tmp_path / "acme", "kept.example", 1)
    (root / "lego").rename(root / "lego.old")  # adopt moved the folder aside, then the power went
    (root / "acme.env").write_text(f"ACME_DIR={root}\n")
    done = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; restore_lego'], capture_output=True, text=True, timeout=60,
                          env={**env, "ACME_ENV": str(root / "acme.env")})
    assert done.returncode == 0, done.stderr
    assert (root / "lego" / "certificates" / "harbor.example.crt").exists() and not (root / "lego.old").exists()
