"""Every key Harbor's installer template knows, including the ones it ships commented out.

`harbor.yml.tmpl` documents optional sections as commented YAML (`# external_database:` / `#   harbor:` /
`#     host: ...`), sometimes commented twice inside a commented block (`#   # registry_db_index: 1`). A YAML parser
sees none of them, so this reads the template line by line: each line loses its leading `#` markers (one `#` and
one following space per level, keeping the indentation before it), then lines that look like a YAML key build the
key tree by indentation. Prose comments are told apart from commented keys by shape: a commented key is a
lowercase identifier followed by `:` and a space or the end of the line (prose like `# Note: ...` or
`# port for http, ...` is not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:[ \t]+(?P<value>.*))?$")
_COMMENTED_KEY = re.compile(r"^[a-z_][A-Za-z0-9_]*$")
_ITEM = re.compile(r"^(?P<indent> *)- ")
# The template's fill-in-the-blank values (`port: harbor_db_port` under `# external_database:`): YAML reads them
# as strings but they stand for values of any type, so they constrain nothing.
_PLACEHOLDER = re.compile(r"^harbor_db_[a-z_]+$")


@dataclass
class TemplateKey:
    """One key of the template."""

    commented: bool  #: only present commented out
    kind: Optional[type] = None  #: type of its value (dict/list for blocks); None: the template shows no value
    children: dict[str, TemplateKey] = field(default_factory=dict)


def uncomment(line: str) -> tuple[str, int]:
    """Strip leading comment markers, keeping indentation: (`  key: v`, how many `#` levels were removed)."""
    levels = 0
    while True:
        stripped = line.lstrip(" ")
        if not stripped.startswith("#"):
            return line, levels
        rest = stripped[1:]
        line = " " * (len(line) - len(stripped)) + (rest[1:] if rest.startswith(" ") else rest)
        levels += 1


def _scalar_kind(text: str) -> Optional[type]:
    # A trailing ` # comment` is not part of the value (`logger_sweeper_duration: 1 #days`).
    value = yaml.safe_load(re.sub(r"\s+#.*$", "", text))
    if value is None or (isinstance(value, str) and _PLACEHOLDER.match(value)):
        return None
    return type(value)


def parse_template(text: str) -> dict[str, TemplateKey]:
    """The key tree of a harbor.yml template, commented keys included."""
    root: dict[str, TemplateKey] = {}
    stack: list[tuple[int, TemplateKey]] = []  # (indent, key) of the enclosing keys, innermost last
    for raw in text.splitlines():
        line, levels = uncomment(raw.rstrip())
        if not line.strip():
            continue
        item = _ITEM.match(line)
        if item:
            # A sequence item belongs to the innermost key at or left of its indent (YAML allows `key:\n- a`).
            while stack and stack[-1][0] > len(item.group("indent")):
                stack.pop()
            if stack and stack[-1][1].kind in (None, list) and not stack[-1][1].children:
                stack[-1][1].kind = list
            continue
        m = _KEY.match(line)
        if not m or (levels and not _COMMENTED_KEY.match(m.group("key"))):
            continue  # prose
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            stack[-1][1].kind = dict
        siblings = stack[-1][1].children if stack else root
        node = siblings.setdefault(m.group("key"), TemplateKey(commented=levels > 0))
        node.commented = node.commented and levels > 0
        value = m.group("value")
        if value and not value.lstrip().startswith("#"):
            node.kind = _scalar_kind(value)
        stack.append((indent, node))
    return root


def check_against_template(data: Any, template: dict[str, TemplateKey], path: str = "") -> list[str]:
    """Problems of `data` (a parsed harbor.yml) against the template: unknown key paths and mismatched types."""
    problems = []
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        node = template.get(key)
        if node is None:
            problems.append(f"{here}: not a key of Harbor's harbor.yml template")
            continue
        expected = node.kind
        if isinstance(value, dict):
            if expected is dict:
                problems.extend(check_against_template(value, node.children, here))
            else:
                problems.append(f"{here}: a mapping here, the template has "
                                f"{'no value' if expected is None else expected.__name__}")
        elif expected is dict:
            problems.append(f"{here}: {type(value).__name__} here, the template has a mapping")
        elif expected is not None and value is not None and type(value) is not expected:
            problems.append(f"{here}: {type(value).__name__} {value!r} here, the template has {expected.__name__}")
    return problems
