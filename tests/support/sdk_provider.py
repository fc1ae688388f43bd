"""Drive a dynamic provider the way the engine does: through the SDK's own provider host.

`pulumi/dynamic/__main__.py` is what the engine starts for a Python dynamic resource: its
`DynamicResourceProviderServicer` receives protobuf requests, unpickles the provider (dill, under the `__provider`
key), deserializes the properties (`keep_unknowns=True` for Check and Diff, so a preview-time unknown arrives as a
`pulumi.output.Unknown` object, not as the sentinel string) and serializes the answer back. `SdkHost` builds those
requests from plain dicts (an unknown is `UNKNOWN`, the sentinel string the engine puts on the wire) and calls the
servicer's methods, so a test sees exactly what the provider would see and answer under the engine.

The module's source ends with `main()` (start a gRPC server, wait forever), so it is executed without that last
statement instead of being imported.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import types
from typing import Any, Optional

from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import proto, rpc

PROVIDER_KEY = "__provider"
UNKNOWN = rpc.UNKNOWN
"""What the engine sends for a value not known until apply."""


@functools.lru_cache(maxsize=1)
def sdk_host_module() -> types.ModuleType:
    """pulumi.dynamic.__main__ without its trailing `main()` call."""
    spec = importlib.util.find_spec("pulumi.dynamic.__main__")
    with open(spec.origin) as source:
        tree = ast.parse(source.read(), spec.origin)
    last = tree.body[-1]
    if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) \
            and getattr(last.value.func, "id", None) == "main":
        tree.body.pop()
    module = types.ModuleType("pulumi_dynamic_host")
    module.__file__ = spec.origin
    exec(compile(tree, spec.origin, "exec"), module.__dict__)
    return module


class ProviderAborted(Exception):
    """The servicer aborted the call (the provider raised): the message is the traceback the engine shows."""


class _Context:
    """The gRPC servicer context: only `abort` is used by the dynamic provider host."""

    def abort(self, code, details):
        raise ProviderAborted(details)

    def set_code(self, code):
        pass

    def set_details(self, details):
        pass


def _struct(props: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(props)
    return struct


def _plain(struct: struct_pb2.Struct) -> dict:
    """An answer's properties as the engine would store them (secrets unwrapped, no provider key)."""
    props = rpc.deserialize_properties(struct, keep_unknowns=True)
    return {k: rpc.unwrap_rpc_secret(v) for k, v in props.items() if k != PROVIDER_KEY}


class SdkHost:
    """One provider object, pickled as the SDK pickles it, served by the SDK's servicer."""

    urn = "urn:pulumi:test::harbor-ha::pulumi-python:dynamic/harbor:Test::test"

    def __init__(self, provider: Any, config: Optional[dict] = None):
        self.servicer = sdk_host_module().DynamicResourceProviderServicer()
        self.context = _Context()
        self.pickled = serialize_provider(provider)
        if config is not None:
            self.servicer.Configure(proto.ConfigureRequest(args=_struct(config)), self.context)

    def _with_provider(self, props: dict) -> struct_pb2.Struct:
        return _struct({**props, PROVIDER_KEY: self.pickled})

    def _check(self, olds: dict, news: dict) -> proto.CheckResponse:
        return self.servicer.Check(proto.CheckRequest(urn=self.urn, olds=self._with_provider(olds),
                                                      news=self._with_provider(news)), self.context)

    def check(self, olds: dict, news: dict) -> tuple[dict, list[tuple[str, str]]]:
        """The checked inputs and the failures as (property, reason)."""
        answer = self._check(olds, news)
        return _plain(answer.inputs), [(f.property, f.reason) for f in answer.failures]

    def diff(self, id_: str, olds: dict, news: dict) -> proto.DiffResponse:
        return self._diff(id_, olds, self._with_provider(news))

    def _diff(self, id_: str, olds: dict, news: struct_pb2.Struct) -> proto.DiffResponse:
        return self.servicer.Diff(proto.DiffRequest(id=id_, urn=self.urn, olds=self._with_provider(olds),
                                                    news=news), self.context)

    def create(self, props: dict) -> tuple[str, dict]:
        answer = self.servicer.Create(proto.CreateRequest(urn=self.urn, properties=self._with_provider(props)),
                                      self.context)
        return answer.id, _plain(answer.properties)

    def read(self, id_: str, props: dict) -> tuple[str, dict]:
        answer = self.servicer.Read(proto.ReadRequest(id=id_, urn=self.urn, properties=self._with_provider(props)),
                                    self.context)
        return answer.id, _plain(answer.properties)

    def update(self, id_: str, olds: dict, news: dict) -> dict:
        answer = self.servicer.Update(proto.UpdateRequest(id=id_, urn=self.urn, olds=self._with_provider(olds),
                                                          news=self._with_provider(news)), self.context)
        return _plain(answer.properties)

    def delete(self, id_: str, props: dict) -> None:
        self.servicer.Delete(proto.DeleteRequest(id=id_, urn=self.urn, properties=self._with_provider(props)),
                             self.context)

    def preview(self, olds: dict, news: dict, id_: str = "") -> tuple[list[tuple[str, str]], Optional[Any]]:
        """What a preview does with `news`: Check, then (for an existing resource, `id_`) Diff on the checked
        inputs as the engine passes them back. Returns the check failures and the DiffResponse (None: no id)."""
        answer = self._check(olds, news)
        failures = [(f.property, f.reason) for f in answer.failures]
        return failures, (self._diff(id_, olds, answer.inputs) if id_ else None)
