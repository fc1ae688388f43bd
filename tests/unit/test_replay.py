"""labs/hosts/replay.py, the host lab's stand-in for `pulumi up`: its step order and its real TLS outputs."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from labs.engine.pulumi_harness import patroni_values, registrations, resolve, stack_config, stack_output
from labs.hosts.replay import COMMAND, Replay, _ordered, _tls_outputs


def batches_of_applies(parallel: bool) -> list[list[str]]:
    regs = registrations(patroni_values())
    todo = [(r, "create") for r in _ordered(regs)]
    return [[r.name for r, _op in batch if r.typ == COMMAND and r.name.endswith("-apply")]
            for batch in Replay(runner=None, parallel=parallel)._batches(todo, regs)]  # type: ignore[arg-type]


def test_parallel_replay_starts_the_etcd_members_together_and_the_replicas_after_the_first_member():
    batches = [b for b in batches_of_applies(parallel=True) if b]
    etcd = next(b for b in batches if any(n.startswith("harbor-etcd-") for n in b))
    assert sorted(n for n in etcd if n.startswith("harbor-etcd-")) == [
        "harbor-etcd-db1-apply", "harbor-etcd-db2-apply", "harbor-etcd-db3-apply"]
    where = {n: i for i, b in enumerate(batches) for n in b}
    assert where["harbor-patroni-db1-apply"] > where["harbor-etcd-db1-apply"]
    assert where["harbor-patroni-db2-apply"] == where["harbor-patroni-db3-apply"] > where["harbor-patroni-db1-apply"]
    assert where["harbor-patroni-repo-backup1-apply"] > where["harbor-patroni-db2-apply"]


def test_sequential_replay_runs_one_step_at_a_time():
    assert all(len(b) <= 1 for b in batches_of_applies(parallel=False))


def test_a_locally_signed_certificate_carries_every_extended_key_usage_it_allows():
    # pgBackRest's one identity is its TLS server's and its client's (components/secrets.py).
    ca_key = _tls_outputs("tls:index/privateKey:PrivateKey", {"algorithm": "ECDSA"})["private_key_pem"]
    ca = _tls_outputs("tls:index/selfSignedCert:SelfSignedCert", {"privateKeyPem": ca_key, "isCaCertificate": True,
                                                                  "subject": {"commonName": "ca"}})["cert_pem"]
    key = _tls_outputs("tls:index/privateKey:PrivateKey", {"algorithm": "ECDSA"})["private_key_pem"]
    csr = _tls_outputs("tls:index/certRequest:CertRequest", {"privateKeyPem": key,
                                                             "subject": {"commonName": "harbor-ha-pgbackrest"}})
    cert = _tls_outputs("tls:index/locallySignedCert:LocallySignedCert", {
        "certRequestPem": csr["cert_request_pem"], "caCertPem": ca, "caPrivateKeyPem": ca_key,
        "allowedUses": ["digital_signature", "key_encipherment", "server_auth", "client_auth"]})["cert_pem"]
    usages = x509.load_pem_x509_certificate(cert.encode()).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_replay_reads_the_admin_password_from_the_stacks_outputs():
    """host_lab logs in with what `pulumi stack output adminPassword` would show: the generated password."""
    values, _ = stack_config("dev")
    registrations(values)
    password = resolve(stack_output("adminPassword"))
    assert isinstance(password, str) and len(password) == 24
    with pytest.raises(KeyError, match="exported no"):
        stack_output("noSuchOutput")


@pytest.mark.parametrize(("algorithm", "preamble"), [("RSA", "RSA PRIVATE KEY"), ("ECDSA", "EC PRIVATE KEY")])
def test_private_key_pem_has_the_preamble_pulumi_tls_gives(algorithm, preamble):
    """terraform-provider-tls marshals RSA keys as PKCS#1 and ECDSA keys as SEC1 in private_key_pem (PKCS#8 only in
    private_key_pem_pkcs8); Harbor's core refuses a PKCS#8 token key ("unable to get PrivateKey from PEM type")."""
    out = _tls_outputs("tls:index/privateKey:PrivateKey", {"algorithm": algorithm, "rsaBits": 2048})
    assert out["private_key_pem"].startswith(f"-----BEGIN {preamble}-----")
    assert out["private_key_pem_pkcs8"].startswith("-----BEGIN PRIVATE KEY-----")
