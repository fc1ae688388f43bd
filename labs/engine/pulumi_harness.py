"""Runs `__main__.py` under Pulumi mocks and records every resource, its inputs and its dependencies.

No Pulumi CLI and no hosts: the mock monitor answers every registration, and generated secrets get fixed fake
values (`FAKE_SECRETS_PREFIX...`) so the tests can look for them in places they must never appear.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import runpy
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pulumi.output import Unknown
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.rpc import _special_secret_sig as rpc_secret_sig
from pulumi.runtime.rpc import _special_sig_key as rpc_sig_key
from pulumi.runtime.settings import get_root_resource

from components.config import NAMESPACE, load_stack_file
from labs.engine import engine_plan

ROOT = Path(__file__).resolve().parents[2]  #: the repository root (the program and its stack files)
FAKE_SECRET_MARK = "FakeSecret"


@dataclass
class Registered:
    """One resource as the engine saw it."""

    typ: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    dependencies: list[str]  #: URNs the engine was told this resource depends on
    protect: bool  #: the engine refuses to delete it
    additional_secret_outputs: list[str]  #: outputs the engine stores encrypted
    custom: bool = True  #: False for a ComponentResource
    replace_on_changes: list[str] = field(default_factory=list)  #: as registered (the SDK adds its own)
    delete_before_replace: bool = False  #: as registered
    ignore_changes: list[str] = field(default_factory=list)  #: as registered
    aliases: list[str] = field(default_factory=list)  #: alias URNs, from the registered alias specs
    secret_inputs: frozenset[str] = frozenset()  #: top-level inputs the engine received as secrets
    sent: dict[str, Any] = field(default_factory=dict)  #: the inputs sent; unknowns as engine_plan.UNKNOWN
    clear: dict[str, Any] = field(default_factory=dict)  #: the inputs sent, each secret (at any depth) as REDACTED

    def as_planned(self) -> engine_plan.Res:
        """This registration as the engine-plan model takes it."""
        return engine_plan.Res(urn=self.urn, typ=self.typ, name=self.name, parent=self.parent, inputs=self.sent,
                               dependencies=self.dependencies, protect=self.protect,
                               delete_before_replace=self.delete_before_replace,
                               replace_on_changes=self.replace_on_changes, ignore_changes=self.ignore_changes,
                               aliases=self.aliases, custom=self.custom)


def staged_files(r: Registered) -> dict[str, str]:
    """What a role's apply command puts in its stage folder: its stdin bundle, unpacked ({name: text})."""
    raw = base64.b64decode(str(r.inputs.get("stdin") or ""))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def _secret_keys(value: dict) -> frozenset[str]:
    return frozenset(k for k, v in value.items() if isinstance(v, dict) and v.get(rpc_sig_key) == rpc_secret_sig)


REDACTED = "<redacted secret>"


def redact_secrets(value: Any) -> Any:
    """Values as the engine keeps them in clear: every secret (at any depth) replaced by REDACTED."""
    if isinstance(value, dict):
        if value.get(rpc_sig_key) == rpc_secret_sig:
            return REDACTED
        return {k: redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return unwrap_secrets(value)


def unwrap_secrets(value: Any) -> Any:
    """Values as plain data: secrets out of the engine's secret wrapper, unknowns as engine_plan.UNKNOWN."""
    if isinstance(value, Unknown):
        return engine_plan.UNKNOWN
    if isinstance(value, pulumi.Asset):  # the engine compares an asset by its content hash, not by object
        return {"asset": getattr(value, "text", None) or getattr(value, "path", None)}
    if isinstance(value, dict):
        if value.get(rpc_sig_key) == rpc_secret_sig:
            inner = value.get("value")
            return engine_plan.UNKNOWN_SECRET if isinstance(inner, Unknown) else unwrap_secrets(inner)
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def depends_transitively(regs: list[Registered], a: Registered, b: Registered) -> bool:
    """True when `a` (directly or through others) depends on `b`."""
    index = {r.urn: r for r in regs}
    seen, todo = set(), list(a.dependencies)
    while todo:
        urn = todo.pop()
        if urn == b.urn:
            return True
        if urn not in seen and urn in index:
            seen.add(urn)
            todo.extend(index[urn].dependencies)
    return False


def fake_secret(kind: str, name: str) -> str:
    """A deterministic, recognisable stand-in for a generated secret."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{FAKE_SECRET_MARK}{kind}{digest}"


def ed25519_outputs() -> dict[str, str]:
    """A new ED25519 key as pulumi-tls gives it: OpenSSH (the sandbox's SSH keys) and PEM (Garage's node keys:
    PKCS#8 and SubjectPublicKeyInfo, as Go's x509 marshals them)."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    return {
        "private_key_openssh": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                 serialization.NoEncryption()).decode(),
        "public_key_openssh": public.public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH).decode() + "\n",
        "private_key_pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
        "public_key_pem": public.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }


class RecordingMocks(pulumi.runtime.Mocks):
    """Gives generated secrets fake values (kept in `generated`); everything else echoes its inputs."""

    def __init__(self, rotated: frozenset[str] = frozenset(), preview: bool = False):
        super().__init__()
        self.generated: dict[str, str] = {}  #: resource name -> the secret value it produced
        self.rotated = rotated  #: names of generated secrets that get a new value (as after `--replace` of them)
        self.preview = preview  #: answer like a preview: no computed output is known yet

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if self.preview:
            # What a provider returns on a preview create: its inputs; the SDK makes every missing output unknown.
            return ["", outputs]
        if args.typ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            length = int(args.inputs["length"])
            outputs["result"] = self.generated[args.name] = (fake_secret("pw", self._seed(args.name)) * 4)[-length:]
        elif args.typ == "tls:index/privateKey:PrivateKey" and args.inputs.get("algorithm") == "ED25519":
            # Real ones: tests/sandbox/ logs in with the SSH keys the program registered, Garage's node ids derive
            # from the public key.
            pair = ed25519_outputs()
            outputs.update(pair)
            self.generated[args.name] = pair["private_key_openssh"]
        elif args.typ == "random:index/randomId:RandomId":
            raw = hashlib.sha256(self._seed(args.name).encode()).digest()[:int(args.inputs["byteLength"])]
            outputs["hex"] = self.generated[args.name] = raw.hex()
        elif args.typ == "tls:index/privateKey:PrivateKey":
            key = fake_secret("key", self._seed(args.name))
            outputs["private_key_pem"] = self.generated[args.name] = (
                f"-----BEGIN PRIVATE KEY-----\n{key}\n-----END PRIVATE KEY-----\n")
        elif args.typ == "tls:index/certRequest:CertRequest":
            outputs["cert_request_pem"] = (f"-----BEGIN CERTIFICATE REQUEST-----\n{args.name}\n"
                                           "-----END CERTIFICATE REQUEST-----\n")
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            outputs["cert_pem"] = (f"-----BEGIN CERTIFICATE-----\n{fake_secret('cert', self._seed(args.name))}\n"
                                   "-----END CERTIFICATE-----\n")
        # Harbor's objects have numeric ids (the provider parses them); everything else gets a readable one.
        if args.typ.startswith("pulumi-python:dynamic"):
            return [str(len(self.generated) + 1000 + len(outputs)), outputs]
        return [f"{args.name}-id", outputs]

    def _seed(self, name: str) -> str:
        return f"{name}-rotated" if name in self.rotated else name

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also keeping each registration's inputs and dependencies."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.registered: dict[str, Registered] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            sent = rpc.deserialize_properties(request.object, keep_unknowns=True, keep_internal=True)
            self.registered[response.urn] = Registered(
                typ=request.type, name=request.name, urn=response.urn, parent=request.parent,
                inputs=unwrap_secrets(self.resources[response.urn].state) if response.urn in self.resources else {},
                dependencies=list(request.dependencies), protect=bool(request.protect),
                additional_secret_outputs=list(request.additionalSecretOutputs), custom=bool(request.custom),
                replace_on_changes=list(request.replaceOnChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                aliases=[self._alias_urn(request, a) for a in request.aliases],
                secret_inputs=_secret_keys(sent), sent=unwrap_secrets(sent), clear=redact_secrets(sent))
        return response

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine's URN carries the parent's whole type chain (pulumi/pulumi sdk/go/common/resource/urn.go NewURN
        # with the parent's QualifiedType); the SDK's mock keeps only the parent's own type. Inherited child aliases
        # (labs/engine/engine_plan.py) need the engine's form.
        if parent and parent.split("::")[2] != "pulumi:pulumi:Stack":  # the stack itself is left out of the chain
            type_ = parent.split("::")[2] + "$" + type_
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def _alias_urn(self, request, alias) -> str:
        """An alias spec as the URN it names: unset fields default to the resource's own (the engine's rule)."""
        if alias.urn:
            return alias.urn
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        return self.make_urn(parent, spec.type or request.type, spec.name or request.name)


# The latest run, also when the program raised: every resource it had constructed by then.
last_program: Program | None = None


@dataclass
class Program:
    """A program run: its globals (cluster, ...), the monitor and every resource object created."""

    namespace: dict[str, Any]
    monitor: RecordingMonitor
    resources: list[pulumi.Resource] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)  #: what the program passed to pulumi.export, by name

    def all_registered(self) -> pulumi.Output[list[Registered]]:
        """Resolves once every resource of the run is registered, with what the engine saw."""
        return pulumi.Output.all(*[r.urn for r in self.resources]).apply(
            lambda urns: [self.monitor.registered[u] for u in urns if u in self.monitor.registered])


def stack_config(stack: str) -> tuple[dict[str, Any], list[str]]:
    return load_stack_file(str(ROOT / f"Pulumi.{stack}.yaml"))


def single_values(repository: str = "host") -> dict[str, Any]:
    """Pulumi.prod.yaml (postgres.mode single) with a backup section: a repository host `backup1`, or a bucket."""
    values = stack_config("prod")[0]
    values["hosts"].append({"name": "backup1", "address": "10.20.0.51", "user": "ubuntu"})
    values["backup"] = {"repository": repository, "resticRepository": "sftp:backup1:/srv/restic"}
    if repository == "host":
        values["roles"]["backup"] = "backup1"
    else:
        values["backup"]["s3"] = {"endpoint": "s3.example.internal", "bucket": "harbor-pg", "port": 9000}
    return values


def patroni_values() -> dict[str, Any]:
    """docs/examples/patroni.yaml: the prod example moved to Patroni on three database hosts (strict synchronous),
    with a backup host (a fresh copy on each call)."""
    return load_stack_file(str(ROOT / "docs" / "examples" / "patroni.yaml"))[0]


def run_program(values: dict[str, Any], secrets: dict[str, Any] | None = None, *,
                rotated: frozenset[str] = frozenset(), preview: bool = False) -> Program:
    """Run __main__.py with these plain `harbor-ha:*` values and secret config values (with an sshPrivateKey, except
    for a sandbox stack: it generates its key; a key holding a value set with `--secret --path` is given whole,
    decrypted); `rotated` generated secrets get new values, `preview` runs it as `pulumi preview` of a new stack sees
    it (computed outputs unknown)."""
    given_key = {} if "sandbox" in values else {"sshPrivateKey": fake_secret("ssh", "key")}
    secrets = {**given_key, **(secrets or {})}
    global last_program
    mocks = RecordingMocks(rotated, preview)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="harbor-ha", stack="test", preview=preview, monitor=monitor)
    # As the CLI passes config to the program: a structured value as JSON text, also one holding a secret (decrypted,
    # its key marked secret: Map.Decrypt and Map.SecureKeys of the Go SDK's resource/config).
    config = {f"{NAMESPACE}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in {**values, **secrets}.items()}
    pulumi.runtime.set_all_config(config, secret_keys=[f"{NAMESPACE}:{k}" for k in secrets])

    program = last_program = Program(namespace={}, monitor=monitor)

    # Runs synchronously in each resource's constructor: the list is complete even when the program raises.
    def record(args: pulumi.ResourceTransformationArgs):
        program.resources.append(args.resource)
        return None

    pulumi.runtime.register_stack_transformation(record)
    # The mocks' root stack registers its outputs before the program runs and lives on across runs: this run's
    # exports are read off it here.
    root = get_root_resource()
    root.outputs = {}
    program.namespace = runpy.run_path(str(ROOT / "__main__.py"), run_name="__pulumi_test__")
    program.exports = dict(root.outputs)
    return program


def registered_resources(values: dict[str, Any], secrets: dict[str, str] | None = None,
                         **kw: Any) -> tuple[Program, list[Registered]]:
    """Run the program to completion under mocks, outside a `pulumi.runtime.test`: (the run, what it registered)."""
    program = run_program(values, secrets, **kw)
    loop = asyncio.get_event_loop()
    urns = loop.run_until_complete(pulumi.Output.all(*[r.urn for r in program.resources]).future())
    return program, [program.monitor.registered[u] for u in urns if u in program.monitor.registered]


def stack_output(name: str) -> Any:
    """What the last run exported as `name` (pulumi.export on the root stack), unresolved."""
    root = pulumi.runtime.get_root_resource()
    outputs = getattr(root, "outputs", None)
    if not outputs or name not in outputs:
        raise KeyError(f"the last program run exported no {name!r}")
    return outputs[name]


def resolve(value: Any) -> Any:
    """The value of an Output of the last run (secret or not), as `pulumi stack output --show-secrets` shows it."""
    if not isinstance(value, pulumi.Output):
        return value
    return asyncio.get_event_loop().run_until_complete(value.future())


def registrations(values: dict[str, Any], secrets: dict[str, str] | None = None, **kw: Any) -> list[Registered]:
    """Every registration of a whole run, for plans of two runs (labs/engine/engine_plan.py)."""
    return registered_resources(values, secrets, **kw)[1]
