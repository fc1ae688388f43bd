"""Applies what the program registers to real hosts over SSH, in the engine's order: a stand-in for `pulumi up`.

Used by the host lab where the real engine does not apply the shape (labs/hosts/host_lab.py ENGINE_SHAPES,
labs/engine/engine_lab.py; docs/real-hosts.md, "What is a stand-in", says where and why), and for the forced re-apply
of every role (under the engine with the engine's state).
The program runs under mocks (labs/engine/pulumi_harness.py: generated secrets get fixed fake values), and every
`command:remote:*` resource it registers is carried out with exactly its inputs: a Command's create/update/delete
text and stdin (the role's tar bundle), a CopyToRemote's file and remote path, each over `ssh` to the connection's
host, user and port with the connection's pinned `hostKey` as the only known host key. Which of them run is decided
by labs/engine/engine_plan.py, the model of the engine's plan between the previous run and this one: `same` runs
nothing, `update` the update command, `replace` the create then (at the end) the old resource's delete, a resource
gone from the program its delete.

Differences from the engine, on purpose: steps run one after the other in registration order (a topological order
of the dependencies), not in parallel, unless `Replay(parallel=True)`: then each run of consecutive steps of which
none depends on another runs at once, as the engine would (members of a new etcd cluster each wait for a quorum, so
one after the other the first never returns); resources other than remote commands (random, tls, Harbor's API objects)
only exist in the mock run. pulumi-tls resources get real keys and certificates there (RealTlsMocks: hosts verify
them: Harbor's TLS port, PostgreSQL's verify-full), kept per resource and inputs like the engine keeps them in state.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from unittest import mock

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labs.engine import engine_plan, pulumi_harness
from labs.engine.pulumi_harness import Registered, RecordingMocks, registrations, unwrap_secrets

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"


@dataclass
class Ran:
    """One step carried out on a host."""

    name: str  #: the resource's name
    op: str  #: create, update, replace, delete (the old resource's delete of a replace: delete-replaced)
    host: str  #: address it ran on
    rc: int
    seconds: float
    lines: list[str]  #: the `[harbor-ha ...]` lines it printed


@dataclass
class UpResult:
    """What one replayed `pulumi up` did."""

    ran: list[Ran] = field(default_factory=list)
    ops: dict[str, str] = field(default_factory=dict)  #: resource name -> planned op (remote resources only)
    #: role commands whose delete runs although the role stays (a replace): a teardown on a day-2 change
    teardowns: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  #: role commands deleted because they left the program
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.rc == 0 for r in self.ran)

    def changed_files(self) -> list[str]:
        """The files the role scripts said they installed (`[harbor-ha ROLE] installed PATH`)."""
        return [line for r in self.ran for line in r.lines if "] installed /" in line]


class SshRunner:
    """Runs a command on a host over ssh with the program's connection inputs and our private key."""

    def __init__(self, key_file: Path, timeout: float = 900):
        self.key_file = key_file
        self.timeout = timeout

    def _ssh(self, conn: dict[str, Any], known_hosts: Path) -> list[str]:
        return ["ssh", "-i", str(self.key_file), "-p", str(int(conn.get("port") or 22)),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "LogLevel=ERROR", f"{conn.get('user') or 'root'}@{conn['host']}"]

    def run(self, conn: dict[str, Any], command: str, stdin: bytes = b"") -> tuple[int, str]:
        """(exit code, stderr) of `command` run by the host's login shell, as pulumi-command's session.Run does."""
        with tempfile.TemporaryDirectory() as tmp:
            known = Path(tmp) / "known_hosts"
            host_key = conn.get("hostKey")
            if not host_key:
                raise ValueError(f"{conn['host']}: no hostKey in the connection; the lab pins every host key")
            known.write_text(f"{conn['host']} {host_key}\n")
            done = subprocess.run([*self._ssh(conn, known), "--", command], input=stdin, capture_output=True,
                                  timeout=self.timeout)
        return done.returncode, done.stderr.decode(errors="replace")


class RealTlsMocks(RecordingMocks):
    """The harness's mocks with real pulumi-tls outputs: the hosts load and verify the cluster CA's certificates
    (Harbor's https port, PostgreSQL's hostssl with verify-full), which the harness's fake PEM text cannot pass.

    Each output is kept per (type, name, inputs), as the engine keeps a resource's outputs in its state: the same
    inputs in a later run give the same key or certificate (no change, no re-apply); new inputs (an added node's
    address) or a rotated name give a new one, as the engine's replace does."""

    kept: dict[tuple[str, str, str], dict[str, str]] = {}  #: across runs, like the stack's state

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if self.preview or not args.typ.startswith("tls:index/"):
            return super().new_resource(args)
        inputs = unwrap_secrets(args.inputs)
        slot = (args.typ, self._seed(args.name), json.dumps(inputs, sort_keys=True, default=str))
        if slot not in self.kept:
            self.kept[slot] = _tls_outputs(args.typ, inputs)
        outputs = {**args.inputs, **self.kept[slot]}
        if "private_key_pem" in outputs:
            self.generated[args.name] = outputs["private_key_pem"]
        return [f"{args.name}-id", outputs]


def _name(subject: dict[str, Any]) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject.get("commonName") or "harbor-ha"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.get("organization") or "harbor-ha")])


def _certificate(subject: x509.Name, public_key: Any, issuer: x509.Name, signing_key: Any, inputs: dict[str, Any],
                 sans: list[x509.GeneralName]) -> str:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=float(inputs.get("validityPeriodHours") or 24))))
    if inputs.get("isCaCertificate"):
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    # pulumi-tls writes the extended key usages the resource allows: pgBackRest's one identity is server and client.
    usages = [oid for use, oid in (("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
                                   ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH))
              if use in (inputs.get("allowedUses") or [])]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _tls_outputs(typ: str, inputs: dict[str, Any]) -> dict[str, str]:
    """What pulumi-tls computes for one resource, for real (PEM text)."""
    if typ == "tls:index/privateKey:PrivateKey" and inputs.get("algorithm") == "ED25519":
        # The sandbox's SSH keys and Garage's node keys: kept like the others (a node's id must not change).
        return pulumi_harness.ed25519_outputs()
    if typ == "tls:index/privateKey:PrivateKey":
        key = (rsa.generate_private_key(65537, int(float(inputs.get("rsaBits") or 2048)))
               if inputs.get("algorithm") == "RSA" else ec.generate_private_key(ec.SECP256R1()))
        # As terraform-provider-tls's resource_private_key.go: private_key_pem is PKCS#1 for RSA ("RSA PRIVATE KEY")
        # and SEC1 for ECDSA ("EC PRIVATE KEY"); private_key_pem_pkcs8 is PKCS#8. Harbor's token service reads only
        # the PKCS#1 form of core's key (real Harbor refused the PKCS#8 one this lab used to give).
        return {"private_key_pem": key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                                     serialization.NoEncryption()).decode(),
                "private_key_pem_pkcs8": key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()).decode(),
                "public_key_pem": key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}
    sans = [*(x509.DNSName(n) for n in inputs.get("dnsNames") or []),
            *(x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or [])]
    if typ == "tls:index/selfSignedCert:SelfSignedCert":
        key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
        name = _name(inputs.get("subject") or {})
        return {"cert_pem": _certificate(name, key.public_key(), name, key, inputs, sans)}
    if typ == "tls:index/certRequest:CertRequest":
        key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
        builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject") or {}))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return {"cert_request_pem": builder.sign(key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM).decode()}
    if typ == "tls:index/locallySignedCert:LocallySignedCert":
        request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        ca_key = serialization.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), None)
        try:
            sans = list(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = []
        return {"cert_pem": _certificate(request.subject, request.public_key(), ca.subject, ca_key, inputs, sans)}
    raise ValueError(f"RealTlsMocks: no real outputs for {typ}")


def _asset_bytes(asset: Any) -> bytes:
    """The content of an asset as the harness records it: `{"asset": <a FileAsset's path or a StringAsset's text>}`
    (labs/engine/pulumi_harness.py unwrap_secrets)."""
    value = str(asset["asset"])
    return Path(value).read_bytes() if value.startswith("/") and Path(value).is_file() else value.encode()


def _comparable(value: Any) -> Any:
    """Inputs as the engine compares them: an asset by its content's sha256 (the SDK sends the hash), not by its
    path."""
    if isinstance(value, dict) and set(value) == {"asset"}:
        return {"asset": hashlib.sha256(_asset_bytes(value)).hexdigest()}
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _planned(r: Registered) -> engine_plan.Res:
    res = r.as_planned()
    res.inputs = _comparable(res.inputs)
    return res


def _ordered(regs: list[Registered]) -> list[Registered]:
    return [r for r in regs if r.typ in (COMMAND, COPY)]


def _needs(regs: list[Registered]) -> dict[str, set[str]]:
    """urn -> every resource it depends on, a component dependency standing for all the component's descendants."""
    children: dict[str, list[str]] = {}
    for r in regs:
        children.setdefault(r.parent, []).append(r.urn)

    def expand(urn: str) -> set[str]:
        out = {urn}
        for child in children.get(urn, []):
            out |= expand(child)
        return out

    return {r.urn: set().union(*(expand(d) for d in r.dependencies)) for r in regs}


class Replay:
    """The stack's state between replayed runs: the registrations of the last successful run."""

    def __init__(self, runner: SshRunner, parallel: bool = False):
        self.runner = runner
        self.parallel = parallel  #: run independent consecutive steps at once (see the module docstring)
        self.state: list[Registered] = []

    def program(self, values: dict[str, Any], secrets: dict[str, str], rotated: frozenset[str] = frozenset()
                ) -> list[Registered]:
        # The harness takes no mocks argument: its RecordingMocks is swapped for this run only.
        with mock.patch.object(pulumi_harness, "RecordingMocks", RealTlsMocks):
            return registrations(values, secrets, rotated=rotated)

    def up(self, regs: list[Registered], *, force_apply: bool = False) -> UpResult:
        """Carry out the plan from the last state to `regs`. force_apply: also run every unchanged Command's
        update again (not what the engine does: the lab's check that a re-run of each role changes nothing)."""
        started = time.monotonic()
        plan = engine_plan.plan([_planned(r) for r in self.state], [_planned(r) for r in regs])
        result = UpResult()
        old = {r.urn: r for r in self.state}
        replaced: list[Registered] = []
        todo: list[tuple[Registered, str]] = []
        for r in _ordered(regs):
            step = plan.steps[r.urn]
            result.ops[r.name] = step.op
            if step.op == "same" and not (force_apply and r.typ == COMMAND and r.inputs.get("update")):
                continue
            if step.op == "replace" and r.urn in old:
                replaced.append(old[r.urn])
            todo.append((r, "update" if step.op in ("same", "update") else "create"))
        for batch in self._batches(todo, regs):
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                result.ran += list(pool.map(lambda job: self._carry_out(*job), batch))
            if not result.ok:
                result.seconds = time.monotonic() - started
                self._keep(regs, result)
                return result
        result.teardowns = [old[u].name for u in plan.teardowns()
                            if u in old and old[u].typ == COMMAND and plan.steps[u].op == "replace"]
        deleted = [old[u] for u in plan.by_op("delete") if u in old]
        result.deleted = [d.name for d in deleted if d.typ == COMMAND and d.inputs.get("delete")]
        for r in [*replaced, *[d for d in deleted if d.typ in (COMMAND, COPY)]]:
            if r.typ == COMMAND and r.inputs.get("delete"):
                result.ran.append(self._run(r, "delete", r.inputs["delete"], b""))
        result.seconds = time.monotonic() - started
        self._keep(regs, result)
        return result

    def _batches(self, todo: list[tuple[Registered, str]], regs: list[Registered]
                 ) -> list[list[tuple[Registered, str]]]:
        """The steps in order, grouped into runs of which none depends on another (one step each unless parallel)."""
        needs = _needs(regs)
        batches: list[list[tuple[Registered, str]]] = []
        for job in todo:
            last = batches[-1] if batches else []
            if self.parallel and last and not needs[job[0].urn] & {r.urn for r, _op in last}:
                last.append(job)
            else:
                batches.append([job])
        return batches

    def _keep(self, regs: list[Registered], result: UpResult) -> None:
        # A failed run keeps the old state for what did not run, as the engine's partial update does (roughly: the
        # next run re-plans from the registrations of the last fully successful one).
        if result.ok:
            self.state = regs

    def _carry_out(self, r: Registered, op: str) -> Ran:
        if r.typ == COPY:
            data = _asset_bytes(r.inputs["source"])
            target = shlex.quote(str(r.inputs["remotePath"]))
            return self._run(r, op, f"cat > {target}.part && mv -f {target}.part {target}", data)
        command = r.inputs.get(op) or r.inputs.get("create") or ""
        return self._run(r, op, command, str(r.inputs.get("stdin") or "").encode())

    def _run(self, r: Registered, op: str, command: str, stdin: bytes) -> Ran:
        conn = r.inputs["connection"]
        t0 = time.monotonic()
        rc, err = self.runner.run(conn, command, stdin)
        lines = [line for line in err.splitlines() if line.startswith("[harbor-ha")]
        if rc != 0:
            lines += [f"exit {rc}: {line}" for line in err.splitlines()[-5:] if not line.startswith("[harbor-ha")]
        return Ran(name=r.name, op=op, host=str(conn["host"]), rc=rc, seconds=time.monotonic() - t0, lines=lines)


def role_of(name: str) -> Optional[str]:
    """`harbor-node-node1-apply` -> the component-host prefix of an apply command, None for other resources."""
    return name[: -len("-apply")] if name.endswith("-apply") else None
