"""Request validation against Harbor's swagger 2.0 contract (../shared/harbor/swagger-2.15.2.yaml).

Swagger 2.0 definitions are JSON Schema draft 4 with extensions; they are converted once: `x-nullable` becomes a
`null` type, objects with `properties` reject unknown fields (`additionalProperties: false`), descriptions and
`x-*` keys are dropped. Paths become regexes mapped to their operationId and body definition.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jsonschema
import yaml

_SWAGGER_IN_SHARED = Path("shared") / "harbor" / "swagger-2.15.2.yaml"
# ../shared next to the checkout (/work/main -> /work/shared; a worktree /work/wt/<name> is one level deeper).
SWAGGER = next((p / _SWAGGER_IN_SHARED for p in Path(__file__).resolve().parents[4:]
                if (p / _SWAGGER_IN_SHARED).exists()), Path(__file__).resolve().parents[4] / _SWAGGER_IN_SHARED)
_KEEP = {"type", "properties", "items", "additionalProperties", "maxLength", "minLength", "maximum", "minimum",
         "enum", "required", "allOf", "$ref", "pattern"}


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in _KEEP:
            out[key] = _convert(value)
    if "$ref" in out:
        return {"$ref": out["$ref"]}
    if out == {"type": "object"}:
        # go-swagger generates `interface{}` for an object schema without properties: any JSON value passes (e.g.
        # Schedule.parameters' values: booleans and numbers).
        return {}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if (node.get("x-nullable") or node.get("x-isnullable")) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    template: str
    body_ref: Optional[str]
    """Name of the definition the body must match (None: no body)."""
    response_schema: Optional[dict]
    """Schema of the 200/201 answer body (None: no body declared)."""


class Contract:
    """The swagger file: operations by path, and a body validator per definition."""

    def __init__(self, path: Path = SWAGGER):
        spec = yaml.safe_load(path.read_text())
        self.base_path = spec["basePath"]
        self.definitions = {name: _convert(d) for name, d in spec["definitions"].items()}
        self._routes: list[tuple[re.Pattern, Operation]] = []
        for template, methods in spec["paths"].items():
            regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$")
            for method, op in methods.items():
                if method == "parameters":
                    continue
                body = next((p for p in op.get("parameters", []) if p.get("in") == "body"), None)
                ref = body["schema"].get("$ref", "").rsplit("/", 1)[-1] if body else None
                answer = op.get("responses", {}).get("200") or op.get("responses", {}).get("201") or {}
                schema = _convert(answer["schema"]) if "schema" in answer else None
                self._routes.append((regex, Operation(op["operationId"], method.upper(), template, ref, schema)))
        # Literal paths first, so /registries/ping is not taken for /registries/{id}.
        self._routes.sort(key=lambda r: r[1].template.count("{"))

    def match(self, method: str, path: str) -> tuple[Optional[Operation], dict]:
        """The operation for `path` (without basePath), and its path parameters."""
        for regex, op in self._routes:
            if op.method == method and (m := regex.match(path)):
                return op, m.groupdict()
        return None, {}

    def body_errors(self, definition: str, body: Any) -> list[str]:
        return self.errors({"$ref": f"#/definitions/{definition}"}, body)

    def errors(self, schema: dict, value: Any) -> list[str]:
        """Where `value` breaks `schema` (whose `$ref`s point into the definitions)."""
        validator = jsonschema.Draft4Validator({"definitions": self.definitions, **schema})
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '<body>'}: {e.message}"
                for e in validator.iter_errors(value)]


@functools.lru_cache(maxsize=1)
def load_contract() -> Contract:
    """The parsed swagger, shared by every emulator of the test session (parsing takes about a second)."""
    return Contract()
