"""Turn plain dicts (resource inputs, stack config) into the typed dataclasses, with errors naming the key.

Resource inputs use the dataclass field names (snake_case); stack config uses camelCase (`accessKey`), so the
same parser serves both with `camel=True`. During `pulumi preview` an input may still be unknown: such a value is
kept as it is and its checks are skipped. The engine sends an unknown as the UNKNOWN string; the SDK's dynamic
provider host hands it to check and diff as a `pulumi.output.Unknown` object (it deserializes with
keep_unknowns=True): both count as unknown.

Stack config read from the file (`scripts/render.py`) holds a secret as `{secure: <ciphertext>}`, the form
`pulumi config set --secret --path` writes: `offline_secrets` turns each into a `ConfigSecret` placeholder; only a
field declared with `metadata=SECRET` takes one. Under the engine the same key arrives decrypted (the CLI decrypts
the whole key and marks it secret), and the resources keep those fields secret Outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Union

from pulumi.output import Unknown

# The SDK's marker for a value not known until apply (pulumi.runtime.rpc.UNKNOWN).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


# Field metadata of a setting that may (and should) be set with `pulumi config set --secret [--path]`.
SECRET = {"secret": True}


class ConfigSecret(str):
    """A `{secure: ...}` value read from a stack file without the passphrase: its text is the placeholder
    `<secret:KEY>`; the checks of its content run under the engine, where it is decrypted."""


def offline_secrets(value: Any, where: str) -> Any:
    """`value` with each `{secure: <ciphertext>}` mapping (at any depth) replaced by a ConfigSecret naming its key."""
    if isinstance(value, dict):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            return ConfigSecret(f"<secret:{where}>")
        return {k: offline_secrets(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [offline_secrets(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _not_secret(where: str) -> str:
    return (f"{where}: set with --secret, but this setting is not a secret (the program keeps it in clear): "
            "set it without --secret")


def stray_secrets(value: Any, where: str) -> list[str]:
    """A problem for each ConfigSecret in `value`, which no setting there takes."""
    if isinstance(value, ConfigSecret):
        return [_not_secret(where)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in stray_secrets(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in stray_secrets(v, f"{where}[{i}]")]
    return []


class ConfigError(ValueError):
    """One or more `key.path: reason` problems found while parsing or validating."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def is_unknown(value: Any) -> bool:
    """True for a preview-time unknown value (also nested in a list or dict)."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, (list, tuple)):
        return any(is_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    return False


def camel(name: str) -> str:
    """`access_key` -> `accessKey`."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(tp: Any, value: Any, where: str, camel_keys: bool, problems: list[str], secret: bool = False) -> Any:
    """`value` as type `tp`; `secret`: the field takes a value set with --secret (a ConfigSecret offline)."""
    origin = typing.get_origin(tp)
    if is_unknown(value):
        return value
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(inner[0], value, where, camel_keys, problems, secret)
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {type(value).__name__}")
            return []
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]", camel_keys, problems, secret) for i, v in enumerate(value)]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse_into(tp, value, where, camel_keys, problems)
    if not secret and (strays := stray_secrets(value, where)):
        problems.extend(strays)
        return value
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return {}
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)  # Pulumi's wire format carries every number as a float
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        # Only the type: the value may be a secret (a password set as a number) and this message reaches CI logs.
        problems.append(f"{where}: expected {_describe(tp)}, got {type(value).__name__}")
        return value
    return value


def parse_into(cls: type, data: Any, where: str, camel_keys: bool, problems: list[str]) -> Any:
    """Build `cls` from `data`, appending `where.key: reason` to `problems` (unknown keys are problems too)."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {camel(f.name) if camel_keys else f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{where}.{key}: unknown key{hint} (known: {', '.join(sorted(fields))})")
    values = {}
    for key, field in fields.items():
        if key in data and data[key] is not None:
            values[field.name] = _convert(hints[field.name], data[key], f"{where}.{key}", camel_keys, problems,
                                          bool(field.metadata.get("secret")))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            # A misspelt key was reported above with a "did you mean": not twice.
            if not difflib.get_close_matches(key, [str(k) for k in data if k != key], n=1, cutoff=0.75):
                problems.append(f"{where}.{key}: required")
            values[field.name] = None
    return cls(**values)


def parse(cls: type, data: Any, where: str, camel_keys: bool = False) -> Any:
    """`parse_into` that raises ConfigError listing every problem."""
    problems: list[str] = []
    result = parse_into(cls, data, where, camel_keys, problems)
    if problems:
        raise ConfigError(problems)
    return result
