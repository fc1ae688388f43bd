"""Runs `__main__.py` under Pulumi mocks and records every resource, its inputs and its dependencies.

No Pulumi CLI and no hosts: the mock monitor answers every registration, and generated secrets get fixed fake
values (`FAKE_SECRETS_PREFIX...`) so the tests can look for them in places they must never appear.
"""

from __future__ import annotations

import copy

import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.rpc import _special_secret_sig as rpc_secret_sig
from pulumi.runtime.rpc import _special_sig_key as rpc_sig_key

from components.config import NAMESPACE, load_stack_file

from tests.support import ROOT
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


def unwrap_secrets(value: Any) -> Any:
    """Inputs as plain values: the mock monitor keeps secrets wrapped in the engine's secret signature."""
    if isinstance(value, dict):
        if value.get(rpc_sig_key) == rpc_secret_sig:
            return unwrap_secrets(value["value"])
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def fake_secret(kind: str, name: str) -> str:
    """A deterministic, recognisable stand-in for a generated secret."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{FAKE_SECRET_MARK}{kind}{digest}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Gives generated secrets fake values (kept in `generated`); everything else echoes its inputs."""

    def __init__(self):
        super().__init__()
        self.generated: dict[str, str] = {}  #: resource name -> the secret value it produced

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            length = int(args.inputs["length"])
            outputs["result"] = self.generated[args.name] = (fake_secret("pw", args.name) * 4)[-length:]
        elif args.typ == "tls:index/privateKey:PrivateKey":
            outputs["private_key_pem"] = self.generated[args.name] = (
                f"-----BEGIN PRIVATE KEY-----\n{fake_secret('key', args.name)}\n-----END PRIVATE KEY-----\n")
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            outputs["cert_pem"] = (f"-----BEGIN CERTIFICATE-----\n{fake_secret('cert', args.name)}\n"
                                   "-----END CERTIFICATE-----\n")
        # Harbor's objects have numeric ids (the provider parses them); everything else gets a readable one.
        if args.typ.startswith("pulumi-python:dynamic"):
            return [str(len(self.generated) + 1000 + len(outputs)), outputs]
        return [f"{args.name}-id", outputs]

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
            self.registered[response.urn] = Registered(
                typ=request.type, name=request.name, urn=response.urn, parent=request.parent,
                inputs=unwrap_secrets(self.resources[response.urn].state) if response.urn in self.resources else {},
                dependencies=list(request.dependencies), protect=bool(request.protect),
                additional_secret_outputs=list(request.additionalSecretOutputs))
        return response


# The latest run, also when the program raised: every resource it had constructed by then.
last_program: "Program | None" = None


@dataclass
class Program:
    """A program run: its globals (cluster, ...), the monitor and every resource object created."""

    namespace: dict[str, Any]
    monitor: RecordingMonitor
    resources: list[pulumi.Resource] = field(default_factory=list)

    def all_registered(self) -> pulumi.Output[list[Registered]]:
        """Resolves once every resource of the run is registered, with what the engine saw."""
        return pulumi.Output.all(*[r.urn for r in self.resources]).apply(
            lambda urns: [self.monitor.registered[u] for u in urns if u in self.monitor.registered])


def stack_config(stack: str) -> tuple[dict[str, Any], list[str]]:
    return load_stack_file(str(ROOT / f"Pulumi.{stack}.yaml"))


def patroni_values() -> dict[str, Any]:
    """The prod example moved to Patroni on three database hosts (strict synchronous), with a backup host."""
    values = copy.deepcopy(stack_config("prod")[0])
    values["hosts"] += [{"name": "db2", "address": "10.20.0.12"}, {"name": "db3", "address": "10.20.0.13"},
                        {"name": "backup1", "address": "10.20.0.51"}]
    values["roles"].update(postgres=["db1", "db2", "db3"], backup="backup1")
    values["postgres"].update(mode="patroni", vip={"address": "10.20.0.50", "interface": "ens3"},
                              synchronous="strict")
    values["backup"] = {"resticRepository": "sftp:backup1:/srv/restic"}
    return values


def run_program(values: dict[str, Any], secrets: dict[str, str] | None = None) -> Program:
    """Run __main__.py with these plain `harbor-ha:*` values and secret config values."""
    secrets = {"sshPrivateKey": fake_secret("ssh", "key"), **(secrets or {})}
    global last_program
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="harbor-ha", stack="test", preview=False, monitor=monitor)
    config = {f"{NAMESPACE}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    config.update({f"{NAMESPACE}:{k}": v for k, v in secrets.items()})
    pulumi.runtime.set_all_config(config, secret_keys=[f"{NAMESPACE}:{k}" for k in secrets])

    program = last_program = Program(namespace={}, monitor=monitor)

    # Runs synchronously in each resource's constructor: the list is complete even when the program raises.
    def record(args: pulumi.ResourceTransformationArgs):
        program.resources.append(args.resource)
        return None

    pulumi.runtime.register_stack_transformation(record)
    program.namespace = runpy.run_path(str(ROOT / "__main__.py"), run_name="__pulumi_test__")
    return program
