#!/usr/bin/env python3
"""Generate docs/configuration.md from the config model itself, so the reference cannot drift from the code.

    scripts/gen_config_docs.py            # rewrite docs/configuration.md
    scripts/gen_config_docs.py --check    # exit 1 when the file differs (tests/unit/test_config_docs.py)

Where each column comes from (components/config.py is the single declaration):
- key, type, default, range/format, required: recorded while `parse_cluster_config` reads the example stacks
  (EXAMPLE_STACKS; every `_Reader.get` call names its key, type, default and check);
- what it is: the `#:` comment of the settings dataclass field the value lands in;
- why the default: the `#` comment lines right above the `get` call;
- harborApi/migration: the dataclasses of harbor_provider/ and their attribute docstrings.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: import from the repository root

from scripts.convention import use_clone_venv  # noqa: E402

use_clone_venv()  # started by a python3 without the program's packages: re-run under the clone's venv/

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "configuration.md"
# The stacks whose parsing is recorded: together they reach every key (the Patroni example the patroni-mode ones,
# the external one the existing services', the s3 one the storage keys).
EXAMPLE_STACKS = (ROOT / "Pulumi.dev.yaml", ROOT / "Pulumi.prod.yaml", ROOT / "docs" / "examples" / "patroni.yaml",
                  ROOT / "docs" / "examples" / "external.yaml", ROOT / "docs" / "examples" / "s3.yaml",
                  ROOT / "docs" / "examples" / "acme.yaml")

# Defaults computed from other keys: the recorded value is only the example's, so the rule is stated instead.
# (test_config_docs fails when a default differs between the two example stacks and is not listed here.)
COMPUTED_DEFAULTS = {
    "tls.mode": "certificate with tlsCertificate, else self-signed",
    "tls.acme.dnsNames": "[harbor.hostname]",
    "keepalived.advertInt": "0.2 with vrrpVersion 3, 1 with 2",
    "keepalived.trackProcess": "true, false when the LB hosts are Harbor nodes",
    "harbor.httpPort": "80, 8080 when the LB hosts are Harbor nodes",
    "harbor.httpsPort": "443, 8443 when the LB hosts are Harbor nodes",
    "harbor.installer": "url: the GitHub release of `version`",
    "redis.mode": "sentinel with several redis hosts, else standalone",
    "redis.quorum": "a majority of the sentinels",
    "roles.etcd": "the postgres hosts (patroni mode)",
    "backup.s3": "required with repository s3",
    "backup.s3.endpoint": "required with repository s3",
    "backup.s3.bucket": "required with repository s3",
    "postgres.vip": "required with mode patroni",
    "postgres.vip.address": "required with mode patroni",
    "postgres.host": "required with mode external",
    "roles.nfs": "required, except with nfs.mode external, storage.mode s3 and in the sandbox",
    "roles.postgres": "required, except with postgres.mode external",
    "roles.redis": "required, except with redis.mode external",
    "postgres.maxConnections": "`300`; required with mode external",
    "nfs.server": "required with mode external",
    "nfs.exportPath": "`/srv/harbor`; required with mode external",
    "storage.garage.sha256": "required with roles.objectStore",
}
# Role keys land in ClusterConfig fields of other names.
ROLE_FIELDS = {"nfs": "nfs_host", "postgres": "postgres_hosts", "etcd": "etcd_hosts", "backup": "backup_host",
               "redis": "redis_hosts", "sentinels": "sentinel_hosts", "harborNodes": "harbor_nodes",
               "retiringNodes": "retiring_nodes",
               "loadBalancers": "lb_hosts", "monitoring": "monitoring_hosts",
               "objectStore": "object_store_hosts"}


@dataclasses.dataclass
class KeyDoc:
    section: str
    name: str
    kind: str
    default: Any
    required: bool
    constraint: str
    line: int


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def record_reads() -> list[KeyDoc]:
    """Every key parse_cluster_config reads, in reading order, with what its `get` call declares; read for every
    example stack, so that a default computed from other keys shows (it must be in COMPUTED_DEFAULTS)."""
    from components import config

    reads: dict[str, KeyDoc] = {}
    defaults: dict[str, set[str]] = {}
    original = config._Reader.get

    def recording(self, name, kind, default, *, check=None, required=False):
        section = re.sub(r"\[\d+\]", "[]", self.key.partition(":")[2])
        key = f"{section}.{name}"
        reads.setdefault(key, KeyDoc(section, name, config._kind_name(kind), default, required, _constraint(check),
                                     sys._getframe(1).f_lineno))
        defaults.setdefault(key, set()).add(repr(default))
        return original(self, name, kind, default, check=check, required=required)

    config._Reader.get = recording  # type: ignore[method-assign]
    try:
        for stack in EXAMPLE_STACKS:
            values, secrets = config.load_stack_file(str(stack))
            config.parse_cluster_config(values, secrets_present=secrets)
    finally:
        config._Reader.get = original  # type: ignore[method-assign]
    unexplained = sorted(k for k, v in defaults.items() if len(v) > 1 and k not in COMPUTED_DEFAULTS)
    if unexplained:
        raise SystemExit(f"defaults computed from other keys need a COMPUTED_DEFAULTS entry: {unexplained}")
    return list(reads.values())


def _constraint(check) -> str:
    if check is None:
        return ""
    cells = dict(zip(check.__code__.co_freevars, (c.cell_contents for c in check.__closure__ or ()), strict=True))
    if "low" in cells:
        return f"{_number(cells['low'])} to {_number(cells['high'])}"
    if "what" in cells:
        return cells["what"]
    source = inspect.getsource(check).strip()
    choices = re.search(r"in \(([^)]*)\)", source)
    return "one of " + choices.group(1).replace('"', "") if choices else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def why_comment(source_lines: list[str], line: int, name: str) -> str:
    """The `#` lines right above the statement that reads `name` (found at or above the recorded line)."""
    index = line - 1
    while index > 0 and f'"{name}"' not in source_lines[index]:
        index -= 1
    comments: list[str] = []
    index -= 1
    while index >= 0 and source_lines[index].strip().startswith("#"):
        comments.insert(0, source_lines[index].strip().lstrip("#").strip())
        index -= 1
    return " ".join(comments)


def field_docs() -> dict[str, dict[str, str]]:
    """{dataclass name: {field: its `#:` comment}} for the settings dataclasses of components/config.py."""
    from components import config

    docs: dict[str, dict[str, str]] = {}
    for name, cls in vars(config).items():
        if inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == config.__name__:
            docs[name] = {m.group(1): m.group(2).strip() for m in
                          re.finditer(r"^\s+(\w+): .*?#: (.*)$", inspect.getsource(cls), re.MULTILINE)}
    return docs


SECTION_CLASSES = {"hosts[]": ["Host"], "network": ["ClusterConfig"], "roles": ["ClusterConfig"],
                   "vip": ["VrrpSettings", "ClusterConfig"], "keepalived": ["VrrpSettings"],
                   "loadBalancer": ["LoadBalancerSettings"], "harbor": ["HarborSettings"],
                   "harbor.installer": ["HarborSettings"], "harbor.proxy": ["HarborSettings"],
                   "tls": ["TlsSettings"], "tls.acme": ["AcmeSettings"],
                   "postgres": ["PostgresSettings", "PatroniSettings"],
                   "postgres.patroni": ["PatroniSettings"], "postgres.vip": ["PatroniSettings"],
                   "postgres.etcd": ["PatroniSettings"], "backup": ["BackupSettings"], "backup.s3": ["BackupSettings"],
                   "redis": ["RedisSettings"], "nfs": ["NfsSettings"], "firewall": ["FirewallSettings"],
                   "monitoring": ["MonitoringSettings"], "monitoring.receivers": ["MonitoringSettings"],
                   "monitoring.receivers.webhook": ["WebhookReceiver"],
                   "monitoring.receivers.email": ["EmailReceiver"], "monitoring.receivers.slack": ["SlackReceiver"],
                   "storage": ["StorageSettings"], "storage.s3": ["S3Settings"], "storage.garage": ["GarageSettings"]}


def what_it_is(docs: dict[str, dict[str, str]], section: str, name: str) -> str:
    if f"{section}.{name}" in SECTION_CLASSES:
        return f"a mapping: the `{name}.*` keys below"
    if section == "roles":
        candidates = [ROLE_FIELDS[name]]
    else:
        last = section.split(".")[-1]
        # vip.address and postgres.vip.address fill a field named after the VIP itself.
        candidates = [snake(name), f"{snake(last)}_{snake(name)}", f"{snake(name)}_{snake(last)}",
                      "vip" if (last, name) == ("vip", "address") else ""]
    for cls in SECTION_CLASSES.get(section, []):
        for field in candidates:
            if field and field in docs.get(cls, {}):
                return docs[cls][field]
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(doc: KeyDoc) -> str:
    key = f"{doc.section}.{doc.name}"
    if key in COMPUTED_DEFAULTS:
        return COMPUTED_DEFAULTS[key]
    if doc.required:
        return "required"
    if doc.default is None or doc.default == "":
        return "none"
    if doc.default == {}:
        return "empty: the defaults below"
    if isinstance(doc.default, bool):
        return str(doc.default).lower()
    return f"`{doc.default}`"


def cluster_tables() -> list[str]:
    from components import config

    reads = record_reads()
    docs = field_docs()
    source = inspect.getsource(config).splitlines()
    out: list[str] = []
    sections: dict[str, list[KeyDoc]] = {}
    for doc in reads:
        sections.setdefault(doc.section.split(".")[0], []).append(doc)
    for section, keys in sections.items():
        title = f"`{config.NAMESPACE}:{section.removesuffix('[]')}`" + (" (a list of hosts)" if section == "hosts[]"
                                                                         else "")
        out += [f"### {title}", "", "| key | type | default | allowed | what it is | why this default |",
                "|---|---|---|---|---|---|"]
        for doc in keys:
            name = doc.name if doc.section == section else f"{doc.section.split('.', 1)[1]}.{doc.name}"
            out.append(f"| `{name}` | {doc.kind} | {_cell(_default(doc))} | {_cell(doc.constraint)} | "
                       f"{_cell(what_it_is(docs, doc.section, doc.name))} | "
                       f"{_cell(why_comment(source, doc.line, doc.name))} |")
        out.append("")
    return out


def attribute_docs(cls: type) -> dict[str, str]:
    """{field: the docstring under it} of a dataclass (attribute docstrings, as harbor_provider writes them)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def dataclass_table(cls: type) -> list[str]:
    from harbor_provider.typed import camel

    docs = attribute_docs(cls)
    rows = ["| key | default | what it is |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            value = str(f.default).lower() if isinstance(f.default, bool) else f.default
            default = "none" if f.default is None else f"`{value}`" if value != "" else '`""`'
        elif f.default_factory is not dataclasses.MISSING:
            default = "empty"
        else:
            default = "required"
        rows.append(f"| `{camel(f.name)}` | {_cell(default)} | {_cell(docs.get(f.name, ''))} |")
    return rows


def secret_settings(cls: type, where: str) -> list[str]:
    """The settings of a harbor_provider section dataclass declared to take a secret (`metadata=SECRET`), as key
    paths (`harborApi.users[].password`)."""
    import types
    import typing

    from harbor_provider.typed import camel

    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{where}.{camel(f.name)}"
        if f.metadata.get("secret"):
            found.append(key)
            continue
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is list:
            tp, key = typing.get_args(tp)[0], key + "[]"
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            found += secret_settings(tp, key)
    return found


def generate() -> str:
    from components.config import NAMESPACE, SECRET_KEYS
    from components.host.files import SECRET_VALUES
    from harbor_provider.stack_config import HarborSection, MigrationSection

    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/gen_config_docs.py from components/config.py and harbor_provider/: do not edit;",
        "     change the code (or its comments) and run `scripts/gen_config_docs.py`. -->",
        "",
        f"Every key lives in the `{NAMESPACE}` namespace of `Pulumi.<stack>.yaml` (`pulumi config set "
        f"{NAMESPACE}:<key>`, or `--path` for nested values). Unknown keys are errors, with a \"did you mean\" for "
        "near misses; `scripts/render.py --stack NAME --out DIR` checks a stack file offline.",
        "",
        "## Secrets",
        "",
        "Set with `pulumi config set --secret`; a plain value is refused.",
        "",
        "| key | what it is |",
        "|---|---|",
    ]
    secret_docs = {"sshPrivateKey": "the private key the program logs in with on every host (required)",
                   "tlsCertificate": SECRET_VALUES["tls_certificate"] + "; set with tlsPrivateKey, else self-signed",
                   "tlsPrivateKey": SECRET_VALUES["tls_private_key"],
                   "harborAdminPassword": "Harbor's admin password (unset: generated); set and changed through "
                                          "Harbor's API (operations/rotations.md)",
                   "backupS3AccessKey": SECRET_VALUES["backup_s3_access_key"],
                   "backupS3SecretKey": SECRET_VALUES["backup_s3_secret_key"],
                   "monitoringSmtpPassword": SECRET_VALUES["monitoring_smtp_password"],
                   "monitoringSlackApiUrl": SECRET_VALUES["monitoring_slack_api_url"],
                   "monitoringWebhookToken": SECRET_VALUES["monitoring_webhook_token"],
                   "storageS3AccessKey": SECRET_VALUES["storage_s3_access_key"] + "; storage.mode s3 without "
                   "roles.objectStore",
                   "storageS3SecretKey": SECRET_VALUES["storage_s3_secret_key"] + "; storage.mode s3 without "
                   "roles.objectStore",
                   "postgresPassword": "password of postgres.user on the existing server (postgres.mode external: "
                                       "required)",
                   "redisPassword": "password of the existing Redis (redis.mode external; unset: no AUTH)",
                   "acmeDnsHook": SECRET_VALUES["acme_dns_hook"] + ", run as `HOOK present|cleanup FQDN VALUE` "
                                  "on the VIP holder (tls.acme.challenge dns-01: required)"}
    lines += [f"| `{NAMESPACE}:{key}` | {_cell(secret_docs[key])} |" for key in SECRET_KEYS]
    nested = secret_settings(HarborSection, "harborApi") + secret_settings(MigrationSection, "migration")
    lines += ["", "Inside `harborApi` and `migration`, with `pulumi config set --secret --path 'migration.password'` "
              "(the stack file holds them as `{secure: ...}`; `render.py` shows them as `<secret:KEY>`): "
              + ", ".join(f"`{key}`" for key in nested) + ". A secret in any other setting is refused: the program "
              "would keep it in clear."]
    lines += ["", "## The cluster", ""]
    lines += cluster_tables()
    lines += ["## `harbor-ha:harborApi`: Harbor's own objects", "",
              "Registries, projects, robot accounts and replication policies declared on this cluster (or on the "
              "existing Harbor `harborUrl` names); each object's fields: [harbor-as-code.md](harbor-as-code.md).",
              "", *dataclass_table(HarborSection), "",
              "## `harbor-ha:migration`: pull an old registry into a project", "",
              "The short form of a registry endpoint, a project and a pull policy: [migration.md](migration.md).",
              "", *dataclass_table(MigrationSection), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is not up to date")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
