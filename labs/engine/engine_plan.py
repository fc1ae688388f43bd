"""What `pulumi up` would plan between two runs: a model built from the engine's and providers' own source.

Mocks never diff, so tests feed two registration lists (old run, new run) to `plan()`. Sources read (bare mirrors):
  ENG = pulumi/pulumi 1b5949891b (3.260.0-dev, newest available; v3.272.0 is not in the mirror, nearest tag v3.259.0)
  CMD = pulumi/pulumi-command v1.2.1 (7f3eb6f3b7); GOP = pulumi/pulumi-go-provider v1.3.0 (3bfb720d76, its go.mod pin)
  RND = hashicorp/terraform-provider-random f8d869dc98d9 (pinned by pulumi-random f64d8726a4 provider/shim/go.mod)
  TLS = hashicorp/terraform-provider-tls d72d90e1b4 (pin 609226f53114 of pulumi-tls f7db93b22b is unavailable)
  PY  = pulumi 3.272.0 Python SDK (site-packages) pulumi/dynamic/__main__.py
Rules (each cited again above its code):
 1. Identity: a registration matches the old state at its URN, else its first alias (explicit, then inherited from an
    aliased parent); a matched old resource is never deleted. ENG step_generator.go getOldResource, generateAliases,
    inheritedChildAlias, isOperatedOn.
 2. ignore_changes resets those input paths to the old values before diffing. ENG processIgnoreChanges.
 3. Diff = the engine's object diff, path by path (None counts as absent; UNKNOWN never equals anything). ENG
    properties_diff.go PropertyMap.diff, plugin/provider.go NewDetailedDiffFromObjectDiff. Components (no provider) are
    same when inputs are deep-equal, else update, never replace: ENG stepGenerator.diff (`prov == nil`).
 4. Unknown inputs at preview go to the provider's Diff (AllowUnknowns = DryRun): ENG diffResource. pulumi-command
    diffs them like any change (GOP infer/resource.go diff); whole-value UNKNOWN changes the top-level path.
 5. Replace = provider replace keys (provider_replace_keys) or a replace_on_changes path that Contains a changed path:
    ENG applyReplaceOnChanges, PropertyPath.Contains (`triggers[*]` contains `triggers[0]`, not `triggers`).
    GOP diff forces replace only for a detailed-diff key equal to a replaceOnChanges field (CMD common/inputs.go,
    remote/copy.go tag `triggers`): so `triggers` added/removed/made UNKNOWN replaces via the provider, element
    changes via the SDK's own replace_on_changes=["triggers[*]"] (CMD sdk/python/pulumi_command/remote/command.py).
 6. Protect: replace refused when old AND new are protected (ENG continueStepsFromDiff); delete refused when the old
    state is protected (ENG step.go DeleteStep.Apply, deleteProtectedError).
 7. Replace runs the OLD resource's Delete: after the new create (CreateStep.Apply sets old.Delete, GenerateDeletes
    emits the delete) or first with delete_before_replace (continueStepsFromDiff). Command.Delete runs the delete
    command stored in the old state (CMD remote/commandController.go Delete); CopyToRemote has no Delete at all.
 8. Deletes: every old resource no registration claimed (children of a removed parent are simply absent): ENG
    GenerateDeletes; listed dependents-first as ENG ScheduleDeletes does (reverse snapshot order).
 9. Dynamic providers: ResourceProvider.diff default returns changes=None -> DIFF_UNKNOWN -> the engine diffs inputs
    itself (update, never replace): PY Diff, ENG diffResource. Pass `dynamic_diff` to use a provider's own diff.
10. Preview check: CMD v1.2.1 CopyToRemote.Check fails on an UNKNOWN `source` (fixed by #1184 for #1183, unreleased);
    and (seen with the real engine, labs/engine/engine_lab.py against the design of a89f059) a Command or
    CopyToRemote whose `triggers` hold an unknown SECRET fails with "triggers[0]: malformed secret: missing value".
11. Replace targets (`pulumi up --replace URN`): the targeted resource's diff is a replace blaming `id`, whatever
    its inputs (ENG v3.274.1 stepGenerator.diff, isTargetedReplace); its dependents see its new outputs as changes.
    Found by the real engine (labs/engine/engine_lab.py, the DB password rotation): the model had said `same`.
Not modelled: provider-reference changes, --target, refresh, retainOnDelete, deletedWith, taint, TLS expiry renewal.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Optional
from collections.abc import Callable

Path = tuple  # property path: str keys and int indexes


class _Unknown:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN: Any = _Unknown("UNKNOWN")  #: an input whose value is not known (preview only)
UNKNOWN_SECRET: Any = _Unknown("UNKNOWN_SECRET")  #: the same, for a value that will be a secret
#: pulumi-command 1.2.1 under engine v3.274.1 at preview, for a secret not yet known inside `triggers`
SECRET_TRIGGER_ERROR = "triggers[{index}]: malformed secret: missing value"
_MISSING: Any = object()
DYNAMIC = "pulumi-python:dynamic"
COMMANDS = ("command:remote:Command", "command:local:Command")
#: CMD v1.2.1 remote/copyController.go CopyToRemote.Check ("either asset or archive must be set") as printed by
#: ENG sdk/go/common/diag/errors.go GetResourcePropertyInvalidValueError (issue pulumi/pulumi-command#1183)
COPY_UNKNOWN_SOURCE_ERROR = ("command:remote:CopyToRemote resource '{name}': property asset value {{<nil>}} "
                             "has a problem: either asset or archive must be set")
#: ENG step_generator.go continueStepsFromDiff (Go %q quoting of the URN)
REPLACE_PROTECTED = ('unable to replace resource "{urn}"\nas it is currently marked for protection. To unprotect the '
                     "resource, remove the `protect` flag from the resource in your Pulumi program and run `pulumi up`")
#: ENG step.go deleteProtectedError.Error (URN.Quote is single quotes off Windows)
DELETE_PROTECTED = ('resource "{urn}" cannot be deleted\nbecause it is protected. To unprotect the resource, either '
                    "remove the `protect` flag from the resource in your Pulumi program and run `pulumi up`, or use "
                    "the command:\n`pulumi state unprotect '{urn}'`")


@dataclass
class Res:
    urn: str
    typ: str
    name: str
    parent: str
    inputs: dict
    dependencies: list[str]
    protect: bool = False
    delete_before_replace: bool = False  # False = not set: the provider decides
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    custom: bool = True


@dataclass
class Step:
    urn: str
    op: str
    diff_keys: list[str]
    replace_keys: list[str]
    teardown: bool
    refused: Optional[str]
    delete_before_replace: bool = False  # replace only: the old delete runs before the create (rule 7)


@dataclass
class Plan:
    steps: dict[str, Step]

    def ops(self) -> dict[str, str]:
        return {u: s.op for u, s in self.steps.items()}

    def by_op(self, op: str) -> list[str]:
        return [u for u, s in self.steps.items() if s.op == op]

    def teardowns(self) -> list[str]:
        return [u for u, s in self.steps.items() if s.teardown]

    def refusals(self) -> list[str]:
        return [u for u, s in self.steps.items() if s.refused]


def _camel(*names: str) -> frozenset[str]:
    return frozenset(re.sub(r"_(\w)", lambda m: m.group(1).upper(), n) for n in names)


_PASSWORD = _camel("keepers", "length", "special", "upper", "lower", "number", "numeric", "min_numeric", "min_upper",
                   "min_lower", "min_special", "override_special")
_CERT = ("validity_period_hours", "allowed_uses", "is_ca_certificate", "max_path_length", "set_subject_key_id")
# Attributes with a RequiresReplace* plan modifier in the provider's current schema, in Pulumi (camelCase) names.
_REPLACE_KEYS: dict[str, frozenset[str]] = {
    # RND internal/provider/resource_{password,string}.go passwordSchemaV3/stringSchemaV3: every input
    "random:index/randomPassword:RandomPassword": _PASSWORD,
    "random:index/randomString:RandomString": _PASSWORD,
    "random:index/randomId:RandomId": _camel("keepers", "byte_length", "prefix"),  # resource_id.go Schema
    "random:index/randomInteger:RandomInteger": _camel("keepers", "min", "max", "seed"),
    "random:index/randomPet:RandomPet": _camel("keepers", "length", "prefix", "separator"),
    "random:index/randomShuffle:RandomShuffle": _camel("keepers", "seed", "inputs", "result_count"),  # TF `input`
    "random:index/randomBytes:RandomBytes": _camel("keepers", "length"),
    **{f"random:index/randomUuid{v}:RandomUuid{v}": _camel("keepers") for v in ("", "4", "7")},
    # TLS internal/provider/resource_private_key.go privateKeyResourceSchemaV1
    "tls:index/privateKey:PrivateKey": _camel("algorithm", "rsa_bits", "ecdsa_curve"),
    # TLS resource_self_signed_cert.go Schema (PEM inputs: common.go requireReplaceIfStateContainsPEMString);
    # early_renewal_hours has no modifier (update)
    "tls:index/selfSignedCert:SelfSignedCert": _camel("private_key_pem", *_CERT, "set_authority_key_id", "dns_names",
                                                      "ip_addresses", "uris", "subject"),
    "tls:index/locallySignedCert:LocallySignedCert": _camel("ca_cert_pem", "ca_private_key_pem", "cert_request_pem",
                                                            *_CERT),
    "tls:index/certRequest:CertRequest": _camel("private_key_pem", "dns_names", "ip_addresses", "uris", "subject"),
    # CMD common/inputs.go ResourceInputs.Triggers and remote/copy.go CopyToRemoteInputs.Triggers carry
    # `provider:"replaceOnChanges"`; GOP infer/resource.go derivedResourceController.Diff applies it (rule 5)
    "command:remote:Command": frozenset({"triggers"}),
    "command:local:Command": frozenset({"triggers"}),
    "command:remote:CopyToRemote": frozenset({"triggers"}),
}


def provider_replace_keys(typ: str) -> frozenset[str]:
    """Inputs whose change makes the provider itself answer "replace" (dynamic providers: none by default)."""
    if typ.startswith(DYNAMIC):
        return frozenset()
    return _REPLACE_KEYS[typ]  # KeyError: an unmodelled provider, better than a silent guess


def _is_unknown(value: Any) -> bool:
    return isinstance(value, _Unknown)


def preview_rejections(new: list[Res]) -> list[str]:
    """URNs whose Check fails at preview in pulumi-command v1.2.1 (text: COPY_UNKNOWN_SOURCE_ERROR).

    CMD remote/copyController.go CopyToRemote.Check is the only CustomCheck in v1.2.1; Command uses GOP
    infer.DefaultCheck, which decodes unknowns to zero values without failures (infer/internal/ende walk)."""
    copies = [r.urn for r in new if r.typ == "command:remote:CopyToRemote" and _is_unknown(r.inputs.get("source"))]
    # Found by the real engine, not in the model's first reading of the source: the provider's decoding of a secret
    # whose value is unknown (go-provider's secret wrapper, missing `value`) fails Check (SECRET_TRIGGER_ERROR).
    secret_triggers = [r.urn for r in new if r.typ.startswith("command:") and
                       any(t is UNKNOWN_SECRET for t in r.inputs.get("triggers") or [])]
    return copies + [u for u in secret_triggers if u not in copies]


def parse_path(text: str) -> Path:
    """ENG properties_path.go ParsePropertyPath subset: a.b, a[0], a[*], a["k"], *."""
    parts: list = []
    for name, index, quoted in re.findall(r'([^.\[\]]+)|\[(\d+|\*)\]|\["([^"]*)"\]', text):
        parts.append((name or quoted) if not index else (index if index == "*" else int(index)))
    return tuple(parts)


def _contains(pattern: Path, path: Path) -> bool:
    # ENG properties_path.go PropertyPath.Contains: prefix match, "*" matches any key or index
    return len(path) >= len(pattern) and all(p == "*" or p == q for p, q in zip(pattern, path, strict=False))


def _same(a: Any, b: Any) -> bool:
    if _is_unknown(a) or _is_unknown(b):
        return False
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _paths(old: Any, new: Any, prefix: Path = ()) -> list[Path]:
    """Changed paths as NewDetailedDiffFromObjectDiff reports them (objects/arrays recurse, leaves compare)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in {**old, **new} if old.get(k) is not None or new.get(k) is not None]
        return [p for k in sorted(keys) for p in _paths(old.get(k), new.get(k), prefix + (k,))]
    if isinstance(old, list) and isinstance(new, list):
        out = [p for i, (o, n) in enumerate(zip(old, new, strict=False)) for p in _paths(o, n, prefix + (i,))]
        return out + [prefix + (i,) for i in range(min(len(old), len(new)), max(len(old), len(new)))]
    return [] if _same(old, new) else [prefix]


def _reset(path: Path, old: Any, new: Any) -> Any:
    """ENG PropertyPath.Reset as used by processIgnoreChanges: new takes old's value at path."""
    if not path:
        return copy.deepcopy(old)
    head, rest = path[0], path[1:]
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(head, str):
        out = dict(new)
        for k in ({**old, **new} if head == "*" else [head]):
            out[k] = _reset(rest, old.get(k, _MISSING), new.get(k, _MISSING))
            if out[k] is _MISSING:
                del out[k]
        return out
    if isinstance(old, list) and isinstance(new, list) and (head == "*" or isinstance(head, int)):
        idx = range(min(len(old), len(new))) if head == "*" else [head] if head < min(len(old), len(new)) else []
        out = list(new)
        for i in idx:
            out[i] = _reset(rest, old[i], new[i])
        return out
    return new  # added/removed containers cannot be ignored (the engine logs an info message)


DynamicDiff = Callable[[str, dict, dict], Any]  # (type, old inputs, new inputs) -> pulumi.dynamic.DiffResult | None


def _diff(old: Res, new: Res, dynamic_diff: Optional[DynamicDiff]) -> tuple[bool, list[str], list[str], bool]:
    """(changed, diff_keys, replace_keys, provider asked delete-before-replace)."""
    # Rule 2 - ENG step_generator.go continueStepsFromImport -> processIgnoreChanges(inputs, old.Inputs)
    inputs = new.inputs
    for p in new.ignore_changes:
        inputs = _reset(parse_path(p), old.inputs, inputs)
    # Rule 3 - ENG PropertyMap.diff / NewDetailedDiffFromObjectDiff
    paths = _paths(old.inputs, inputs)
    changed, keys = bool(paths), sorted({str(p[0]) for p in paths})
    # Rule 3 - ENG stepGenerator.diff: `prov == nil` (components) -> DeepEquals; no detailed diff, so no replace
    if not new.custom:
        return changed, keys, [], False
    replace: set[str] = set()
    dbr = False
    # Rule 9 - PY dynamic/__main__.py Diff: changes None -> DIFF_UNKNOWN (ENG diffResource diffs inputs itself);
    # False -> DIFF_NONE; True -> DIFF_SOME with `replaces`/`deleteBeforeReplace`
    result = dynamic_diff(new.typ, old.inputs, inputs) if dynamic_diff and new.typ.startswith(DYNAMIC) else None
    if result is not None and result.changes is not None:
        changed = bool(result.changes)
        replace |= set(result.replaces or []) if changed else set()
        dbr = changed and bool(result.delete_before_replace)
    # Rule 5 - provider replace keys: GOP forceReplace(k) tests the detailed-diff key itself (exact top-level path);
    # bridged TF providers replace when the attribute's value changes anywhere inside it
    own = provider_replace_keys(new.typ)
    exact = new.typ.startswith("command:")
    replace |= {str(p[0]) for p in paths if p[0] in own and (len(p) == 1 or not exact)}
    # Rule 5 - ENG applyReplaceOnChanges: a replaceOnChanges path that Contains a changed path makes it a replace
    patterns = [parse_path(p) for p in new.replace_on_changes]
    replace |= {str(p[0]) for p in paths if any(_contains(pat, p) for pat in patterns)}
    return changed, keys, sorted(replace) if changed else [], dbr


def _has_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(map(_has_unknown, value.values()))
    return any(map(_has_unknown, value)) if isinstance(value, list) else _is_unknown(value)


def _has_delete_command(res: Res) -> bool:
    # Rule 7 - CMD remote/commandController.go Command.Delete: runs props.Delete from the OLD state, if set
    return res.typ in COMMANDS and bool(res.inputs.get("delete"))


def _child_alias(child: Res, parent_new: str, parent_old: str) -> str:
    # Rule 1 - ENG inheritedChildAlias: the parent's old qualified type, and the parent-name prefix swapped
    head, project, parent_type, parent_old_name = parent_old.split("::", 3)
    parent_new_name = parent_new.split("::", 3)[3]
    name = child.name
    if name.startswith(parent_new_name):
        name = parent_old_name + name[len(parent_new_name):]
    return f"{head}::{project}::{parent_type}${child.typ}::{name}"


def plan(old: list[Res], new: list[Res], *, preview: bool = False,
         dynamic_diff: Optional[DynamicDiff] = None, replace_targets: frozenset[str] = frozenset()) -> Plan:
    """The steps `pulumi up` (or `pulumi preview` with preview=True) would take from `old` to `new`;
    replace_targets: the URNs given with `--replace`."""
    olds = {r.urn: r for r in old}
    claimed: dict[str, str] = {}  # old URN -> the new URN that took it (ENG sg.aliased)
    moved: dict[str, str] = {}  # new URN -> old URN it matched through an alias (ENG sg.aliases)
    steps: dict[str, Step] = {}
    for n in new:
        if not preview and _has_unknown(n.inputs):
            raise ValueError(f"{n.urn}: UNKNOWN input outside preview (an update registers resolved inputs)")
        # Rule 1 - ENG getOldResource: the URN first, then generateAliases (explicit, then parent-inherited)
        inherited = [_child_alias(n, n.parent, moved[n.parent])] if n.parent in moved else []
        match = next((u for u in [n.urn, *n.aliases, *inherited] if u in olds), None)
        if match is None:
            steps[n.urn] = Step(n.urn, "create", [], [], False, None)
            continue
        if match in claimed:  # ENG getOldResource: GetDuplicateResourceAliasError
            raise ValueError(f"{n.urn} and {claimed[match]} both claim {match}")
        claimed[match] = n.urn
        if match != n.urn:
            moved[n.urn] = match
        o = olds[match]
        # Rule 11 - ENG stepGenerator.diff: isTargetedReplace -> DiffSome with ReplaceKeys ["id"], before any diff
        if n.urn in replace_targets and n.custom:
            changed, keys, replace, dbr = True, ["id"], ["id"], False
        else:
            changed, keys, replace, dbr = _diff(o, n, dynamic_diff)
        if not changed:
            steps[n.urn] = Step(n.urn, "same", [], [], False, None)
        elif not replace:
            steps[n.urn] = Step(n.urn, "update", keys, [], False, None)
        else:
            # Rule 6 - ENG continueStepsFromDiff: `new.Protect && old.Protect` refuses the replace
            refused = REPLACE_PROTECTED.format(urn=n.urn) if n.protect and o.protect else None
            # Rule 7 - ENG continueStepsFromDiff: goal.DeleteBeforeReplace overrides the provider's diff answer
            steps[n.urn] = Step(n.urn, "replace", keys, replace, not refused and _has_delete_command(o), refused,
                                delete_before_replace=n.delete_before_replace or dbr)
    # Rule 8 - ENG GenerateDeletes (`!sg.isOperatedOn(res.URN)`), ScheduleDeletes (dependents first)
    for o in reversed(old):
        if o.urn in claimed:
            continue
        # Rule 6 - ENG step.go DeleteStep.Apply: `!s.replacing && s.old.Protect` -> deleteProtectedError
        refused = DELETE_PROTECTED.format(urn=o.urn) if o.protect else None
        steps[o.urn] = Step(o.urn, "delete", [], [], not refused and _has_delete_command(o), refused)
    return Plan(steps)
