"""Every stack example in docs/ (and the repository's stacks), WITH its secrets in the form
`pulumi config set --secret [--path]` writes them (`{secure: <ciphertext>}`, nested where the key is):
scripts/render.py accepts it (exit 0, placeholders offline); the program under Pulumi's mock runtime, given the
config as the CLI passes it (each key holding a secret decrypted, as JSON, and marked secret), receives the
decrypted values, sends each one only inside a secret, and exports them only as secrets."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets as pysecrets
import tarfile
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.config import NAMESPACE, SECRET_KEYS, ConfigError, load_stack_file, parse_cluster_config
from labs.engine.pulumi_harness import REDACTED, Registered, run_program, staged_files
from scripts import render

ROOT = Path(__file__).resolve().parents[2]


def _docs_examples() -> dict[str, dict[str, Any]]:
    """{name: the example's `config:` mapping}: each YAML block with a `config:` key in docs/**/*.md, each
    docs/examples/*.yaml."""
    examples = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), re.S)):
            doc = yaml.safe_load(block)
            if isinstance(doc, dict) and "config" in doc:
                examples[f"{page.relative_to(ROOT)}#{i}"] = doc["config"]
    for path in sorted((ROOT / "docs" / "examples").glob("*.yaml")):
        examples[str(path.relative_to(ROOT))] = yaml.safe_load(path.read_text(encoding="utf-8"))["config"]
    return examples


EXAMPLES = _docs_examples()
CONNECTION_KEYS = {"harborUrl", "harborUsername", "harborPassword", "harborCaCertificate"}


class Cipher:
    """Stands in for the passphrase secrets provider: `v1:<nonce>:<ciphertext>` texts, each mapped to the
    plaintext it decrypts to."""

    def __init__(self) -> None:
        self.plain: dict[str, str] = {}

    def encrypt(self, plaintext: str) -> dict[str, str]:
        text = "v1:" + ":".join(base64.b64encode(pysecrets.token_bytes(n)).decode() for n in (12, 32))
        self.plain[text] = plaintext
        return {"secure": text}

    def value(self) -> str:
        """A new plaintext Harbor takes as a password or robot secret (upper, lower case and digits)."""
        return f"Decrypted{len(self.plain)}Secret{pysecrets.token_hex(6)}"

    def secure_all(self, node: Any) -> Any:
        """The docs' `{secure: AAABAH...}` placeholders as ciphertexts of new values."""
        if isinstance(node, dict):
            if set(node) == {"secure"}:
                return self.encrypt(self.value())
            return {k: self.secure_all(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.secure_all(v) for v in node]
        return node

    def decrypt(self, node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"secure"}:
                return self.plain[node["secure"]]
            return {k: self.decrypt(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.decrypt(v) for v in node]
        return node


def _holds_secret(node: Any) -> bool:
    if isinstance(node, dict):
        return set(node) == {"secure"} or any(_holds_secret(v) for v in node.values())
    return isinstance(node, list) and any(_holds_secret(v) for v in node)


def stack_with_secrets(example: dict[str, Any], cipher: Cipher) -> dict[str, Any]:
    """A whole stack file: the example over Pulumi.dev.yaml's hosts when it has none, its secrets as ciphertexts,
    and every top-level secret key the stack takes (`pulumi config set --secret harbor-ha:KEY`)."""
    base = {} if f"{NAMESPACE}:hosts" in example else yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config = cipher.secure_all({**base, **example})
    values = {k.partition(":")[2]: v for k, v in config.items()}
    top = {"harborAdminPassword": cipher.value(), "tlsCertificate": "-----BEGIN CERTIFICATE-----\nUSERCERT\n",
           "tlsPrivateKey": "-----BEGIN PRIVATE KEY-----\nUSERKEY\n"}
    if (values.get("tls") or {}).get("mode") in ("self-signed", "acme"):  # these modes refuse a certificate of yours
        del top["tlsCertificate"], top["tlsPrivateKey"]
    if "sandbox" not in values:
        top["sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nDEPLOYKEY\n"
    # Top-level secret keys the example sets itself (postgresPassword, ...) are secrets present, as the CLI has them.
    given = [k for k in values if k in SECRET_KEYS]
    cfg = parse_cluster_config({k: v for k, v in values.items() if k not in given}, secrets_present=[*top, *given])
    if cfg.backup and cfg.backup.s3_keys_needed_by:
        top.update(backupS3AccessKey="AKIA" + pysecrets.token_hex(8).upper(), backupS3SecretKey=cipher.value())
    config.update({f"{NAMESPACE}:{k}": cipher.encrypt(v) for k, v in top.items()})
    return {"encryptionsalt": "v1:" + base64.b64encode(pysecrets.token_bytes(8)).decode(), "config": config}


def engine_config(config: dict[str, Any], cipher: Cipher) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain values, secret values) by key as the CLI gives them to the program: a key holding any secret is
    passed whole, decrypted, and marked secret (Map.Decrypt / Map.SecureKeys, sdk/go/common/resource/config)."""
    values, secret = {}, {}
    for full_key, value in config.items():
        key = full_key.partition(":")[2]
        (secret if _holds_secret(value) else values)[key] = cipher.decrypt(value)
    return values, secret


def test_the_docs_have_stack_examples_with_nested_secrets():
    nested = [name for name, config in EXAMPLES.items() if _holds_secret(config)]
    assert len(EXAMPLES) >= 12 and len(nested) >= 7, (sorted(EXAMPLES), nested)


STACKS = {**EXAMPLES, "Pulumi.dev.yaml": yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"],
          "Pulumi.prod.yaml": yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]}


@pytest.mark.parametrize("name", sorted(STACKS))
def test_render_py_takes_the_example_with_its_secrets_and_writes_placeholders_only(name, tmp_path):
    cipher = Cipher()
    stack = tmp_path / "Pulumi.mysite.yaml"
    stack.write_text(yaml.safe_dump(stack_with_secrets(STACKS[name], cipher), sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    assert render.main(["--stack", str(stack), "--out", str(out)]) == 0
    written = "\n".join(p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file())
    assert "<secret:admin_password>" in written and "<secret:tls_private_key>" in written
    for ciphertext in cipher.plain:
        assert ciphertext.split(":")[2] not in written, name


def _strings(node: Any) -> str:
    """Every string in `node`, as it is (no escaping), one per line."""
    if isinstance(node, dict):
        return "\n".join(_strings(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(_strings(v) for v in node)
    return node if isinstance(node, str) else json.dumps(node)


def _text(r: Registered, inputs: dict[str, Any]) -> str:
    """The inputs as text, with the files of a role's stdin bundle (base64 of a tar) unpacked."""
    text = _strings(inputs)
    if isinstance(inputs.get("stdin"), str) and inputs["stdin"] != REDACTED:
        with contextlib.suppress(tarfile.TarError, ValueError):  # a stdin that is no bundle: its text is above
            text += "\n".join(staged_files(r).values())
    return text


@pytest.mark.parametrize("name", sorted(STACKS))
@pulumi.runtime.test
def test_program_receives_the_decrypted_secrets_and_keeps_each_one_secret(name):
    cipher = Cipher()
    config = stack_with_secrets(STACKS[name], cipher)["config"]
    values, secret = engine_config(config, cipher)
    program = run_program(values, secret)
    decrypted = sorted(set(cipher.plain.values()))

    def check(_):
        regs = list(program.monitor.registered.values())
        for r in regs:
            clear = _text(r, r.clear)
            leaked = [v for v in decrypted if v in clear]
            assert not leaked, (r.name, [k for k, v in r.clear.items() if any(s in _strings(v) for s in leaked)])
        # Each value reached a resource (decrypted), so the check above looked at every place it went; but a
        # section that only names another Harbor declares nothing that would use its harborPassword.
        sent = "\n".join(_text(r, r.sent) for r in regs)
        harbor_api = secret.get("harborApi") or values.get("harborApi") or {}
        idle = [harbor_api.get("harborPassword")] if set(harbor_api) <= CONNECTION_KEYS else []
        assert [v for v in decrypted if v not in sent and v not in idle] == []
        return regs

    def check_exports(resolved):
        *secret, values = resolved
        for name, is_secret, value in zip(exports, secret, values, strict=True):
            assert is_secret or not [v for v in decrypted if v in _strings(value)], name
        assert dict(zip(exports, secret, strict=True))["adminPassword"]

    exports = program.exports
    return pulumi.Output.all(*[r.urn for r in program.resources]).apply(check).apply(
        lambda _: pulumi.Output.all(*[pulumi.Output.from_input(v).is_secret() for v in exports.values()],
                                    pulumi.Output.from_input(list(exports.values())))).apply(check_exports)


@pytest.mark.parametrize("key,setting", [("vip", "address"), ("harborApi", "harborUrl")])
def test_a_secret_where_no_setting_takes_one_is_refused_naming_its_key(key, setting, tmp_path):
    cipher = Cipher()
    doc = stack_with_secrets(EXAMPLES["docs/harbor-as-code.md#0"], cipher)
    doc["config"][f"{NAMESPACE}:{key}"][setting] = cipher.encrypt("10.0.0.1")
    stack = tmp_path / "Pulumi.mysite.yaml"
    stack.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    problems, _ = render.stack_problems(stack)
    assert len(problems) == 1, problems
    assert re.match(rf"Pulumi.mysite.yaml:\d+: {NAMESPACE}:{key}.{setting}: set with --secret, but this setting is "
                    "not a secret", problems[0]), problems


def test_under_the_engine_a_cluster_key_marked_secret_is_refused():
    values, _ = load_stack_file(str(ROOT / "Pulumi.dev.yaml"))
    with pytest.raises(ConfigError, match=r"harbor-ha:vip: set with --secret, but this setting is not a secret"):
        parse_cluster_config(values, secrets_present=["sshPrivateKey"], secret_sections=["vip"])
