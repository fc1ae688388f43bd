"""Typed arguments of the Harbor resources and the checks Harbor would otherwise only make later (or never).

`validate()` returns `(field, reason)` pairs; the provider's `check` and the stack-config parser both use it, so
a bad value is rejected before any API call with the offending key named.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .typed import SECRET, ConfigSecret, is_unknown

# Every adapter type registered by Harbor 2.15 (src/pkg/reg/adapter/*, GET /replication/adapters).
REGISTRY_TYPES = (
    "harbor", "docker-hub", "docker-registry", "aws-ecr", "azure-acr", "ali-acr", "tencent-tcr", "google-gcr",
    "huawei-SWR", "github-ghcr", "gitlab", "quay", "jfrog-artifactory", "dtr", "volcengine-cr",
)
NAME_MAX = 64
TRIGGERS = ("manual", "scheduled", "event_based")
FILTER_TYPES = ("name", "tag", "label", "resource")
DECORATIONS = ("matches", "excludes")
SEVERITIES = ("none", "low", "medium", "high", "critical")
# Harbor's rule for project names (src/common/utils: ValidateProjectName) and robot names
# (src/server/v2.0/handler/robot.go: validateName); Harbor answers 400 to any other name.
_LOWERCASE_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# lib.RepositoryNameRe (src/lib/patterns.go), which controller/replication/model Policy.Validate applies to
# dest_namespace: docker/distribution v2.8 reference.NameRegexp, an optional registry host then path components.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REPOSITORY_NAME = re.compile(
    rf"^(?:{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
# Harbor's robot duration (handler/robot.go isValidDuration): -1, or 1 .. MaxInt32 - 1 days.
_MAX_DURATION_DAYS = 2**31 - 2
# Fields of Harbor's cron (lib/cron via robfig/cron/v3 with seconds): name, lowest and highest value.
_CRON_FIELDS = (("seconds", 0, 59), ("minutes", 0, 59), ("hours", 0, 23), ("day-of-month", 1, 31),
                ("month", 1, 12), ("day-of-week", 0, 6))
_CRON_NAMES = {4: {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                                   "oct", "nov", "dec"])},
               5: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}}

Problems = list[tuple[str, str]]


def _known(*values) -> bool:
    return not any(is_unknown(v) for v in values)


def check_name(name: Optional[str], problems: Problems, key: str = "name") -> None:
    """Harbor keeps names of registries, policies and robots in 64-character columns (longer ones fail late)."""
    if not _known(name):
        return
    if not name or not name.strip():
        problems.append((key, "must not be empty"))
    elif len(name) > NAME_MAX:
        problems.append((key, f"is {len(name)} characters long; Harbor allows at most {NAME_MAX}"))


def cron_problem(cron: str, every_minute_ok: bool = False) -> Optional[str]:
    """Why Harbor's scheduler would reject `cron`, or None. Harbor wants 6 fields (seconds first) in robfig/cron's
    syntax (`*`, `?`, numbers or names, `a-b` ranges, `/step`, comma lists) and the seconds field `0`
    (utils.ValidateCronString); replication policies also refuse `*` minutes (a job every minute), system schedules
    (`every_minute_ok`) do not."""
    fields = cron.split()
    if len(fields) != 6:
        return (f"{cron!r} has {len(fields)} fields; Harbor needs 6 (seconds minutes hours day-of-month month "
                "day-of-week), e.g. '0 0 2 * * *' for 02:00 every day")
    if fields[0] != "0":
        return f"{cron!r}: the seconds field must be 0 (Harbor does not schedule below the minute)"
    if fields[1] == "*" and not every_minute_ok:
        return f"{cron!r}: the minutes field must not be '*' (that runs every minute); use e.g. '0 0 * * * *'"
    for index, text in enumerate(fields):
        if why := _cron_field_problem(index, text):
            return f"{cron!r}: {why}"
    return None


def _cron_field_problem(index: int, text: str) -> Optional[str]:
    name, low, high = _CRON_FIELDS[index]
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            return f"the {name} field {text!r} has an invalid step {step!r}"
        if span in ("*", "?"):
            continue
        parsed = [int(v) if v.isdigit() else _CRON_NAMES.get(index, {}).get(v.lower()) for v in span.split("-", 1)]
        values = [v for v in parsed if v is not None]
        if len(values) != len(parsed):
            return f"the {name} field {text!r} is not a number, name or range"
        if any(not low <= v <= high for v in values):
            return f"the {name} field {text!r} is outside {low}-{high}"
        if len(values) == 2 and values[0] > values[1]:
            return f"the {name} field {text!r} is a range that ends before it starts"
    return None


@dataclass
class RegistryArgs:
    """A registry endpoint: a remote registry Harbor replicates from or to."""

    name: str
    """Unique endpoint name in Harbor (at most 64 characters)."""
    type: str
    """Adapter type, one of REGISTRY_TYPES (e.g. `docker-registry` for a plain registry:2); cannot change in place."""
    url: str
    """Registry URL; Harbor strips a trailing slash and assumes `http://` when no scheme is given."""
    access_key: Optional[str] = None
    """User name / access key ID of the credential (None: anonymous)."""
    access_secret: Optional[str] = field(default=None, metadata=SECRET)
    """Password / secret access key (a secret); Harbor never returns it, rotation is detected by a salted hash."""
    insecure: bool = False
    """Skip TLS verification of the remote registry."""
    ca_certificate: Optional[str] = None
    """PEM CA bundle to verify the remote registry's certificate with."""
    description: str = ""
    """Free text shown in Harbor's UI."""
    adopt: bool = False
    """When an endpoint with this name already exists, take it over (and set it to these args) instead of failing."""

    def validate(self) -> Problems:
        problems: Problems = []
        check_name(self.name, problems)
        if _known(self.type) and self.type not in REGISTRY_TYPES:
            problems.append(("type", f"unknown registry type {self.type!r}; Harbor 2.15 has: "
                                     + ", ".join(REGISTRY_TYPES)))
        if _known(self.url) and not self.url.strip():
            problems.append(("url", "must not be empty"))
        elif _known(self.url) and "://" in self.url and not self.url.startswith(("http://", "https://")):
            problems.append(("url", f"{self.url!r}: Harbor accepts only http:// and https:// URLs"))
        if _known(self.access_key, self.access_secret) and bool(self.access_key) != bool(self.access_secret):
            problems.append(("access_secret" if self.access_key else "access_key",
                             "access_key and access_secret go together (set both or neither)"))
        return problems


@dataclass
class FilterArgs:
    """One replication filter; a policy may have several (of different types)."""

    type: str
    """`name` (repository, glob), `tag` (glob), `label` (list of label names) or `resource` (`image`|`artifact`)."""
    value: object
    """A string; a list of strings for `label`."""
    decoration: Optional[str] = None
    """`matches` or `excludes` (tag and label filters only; Harbor's default is `matches`)."""


@dataclass(kw_only=True)
class PolicySettings:
    """What a replication policy does: shared by ReplicationPolicyArgs and the stack config's policies."""

    direction: str = "push"
    """`push` (local -> remote) or `pull` (remote -> local)."""
    filters: list[FilterArgs] = field(default_factory=list)
    """Which resources to replicate; several filters are ANDed."""
    dest_namespace: str = ""
    """Destination namespace (project); empty keeps the source namespace."""
    dest_namespace_replace_count: int = -1
    """How many leading path components `dest_namespace` replaces; -1 is Harbor's legacy flattening mode."""
    override: bool = True
    """Overwrite artifacts that already exist at the destination."""
    replicate_deletion: bool = False
    """Also replicate deletions (event_based push only has an effect)."""
    speed: int = -1
    """Bandwidth limit per task in KB/s; -1 is unlimited."""
    copy_by_chunk: bool = False
    """Copy blobs in chunks (for registries with request-size limits)."""
    single_active_replication: bool = False
    """Skip a run while the previous one is still active (not allowed with event_based)."""
    enabled: bool = True
    """A disabled policy is kept but never triggered."""
    description: str = ""
    """Free text shown in Harbor's UI."""
    adopt: bool = False
    """When a policy with this name already exists, take it over instead of failing."""


@dataclass(kw_only=True)
class ReplicationPolicyArgs(PolicySettings):
    """A replication rule between this Harbor and exactly one remote registry endpoint."""

    name: str
    """Unique policy name (at most 64 characters)."""
    registry_id: int
    """Id of the remote Registry (its source for `pull`, its destination for `push`)."""
    trigger: str = "manual"
    """`manual`, `scheduled` (needs `cron`) or `event_based` (push policies only)."""
    cron: Optional[str] = None
    """Harbor 6-field cron (seconds first, seconds `0`), e.g. `0 0 2 * * *`; only with trigger `scheduled`."""

    def validate(self) -> Problems:
        problems: Problems = []
        check_name(self.name, problems)
        if _known(self.direction) and self.direction not in ("push", "pull"):
            problems.append(("direction", f"{self.direction!r}: must be push or pull"))
        if _known(self.trigger) and self.trigger not in TRIGGERS:
            problems.append(("trigger", f"{self.trigger!r}: must be one of {', '.join(TRIGGERS)}"))
        if _known(self.trigger, self.cron):
            if self.trigger == "scheduled" and not self.cron:
                problems.append(("cron", "a scheduled trigger needs a cron expression, e.g. '0 0 2 * * *'"))
            elif self.trigger == "scheduled" and self.cron and (why := cron_problem(self.cron)):
                problems.append(("cron", why))
            elif self.trigger != "scheduled" and self.cron:
                problems.append(("cron", f"only used with trigger 'scheduled' (trigger is {self.trigger!r})"))
        if _known(self.trigger, self.direction) and self.trigger == "event_based" and self.direction == "pull":
            problems.append(("trigger", "event_based works only for push policies (Harbor sees no events of a "
                                        "remote registry); use scheduled for a pull policy"))
        if _known(self.trigger, self.single_active_replication) and self.single_active_replication \
                and self.trigger == "event_based":
            problems.append(("single_active_replication", "cannot be combined with an event_based trigger"))
        if _known(self.speed) and self.speed != -1 and self.speed <= 0:
            problems.append(("speed", f"{self.speed}: KB/s must be positive, or -1 for unlimited"))
        if _known(self.dest_namespace) and self.dest_namespace and not _REPOSITORY_NAME.match(self.dest_namespace):
            problems.append(("dest_namespace", f"{self.dest_namespace!r} is not a repository name Harbor accepts: "
                                               "lowercase path components (letters, digits, separated by . _ __ "
                                               "or -) joined by /, e.g. 'mirror/team'"))
        if _known(self.dest_namespace_replace_count) and not -1 <= self.dest_namespace_replace_count <= 127:
            problems.append(("dest_namespace_replace_count", "must be -1 (legacy) or 0..127"))
        for i, flt in enumerate(self.filters if _known(self.filters) else []):
            problems.extend((f"filters[{i}].{k}", why) for k, why in _filter_problems(flt))
        return problems


def _filter_problems(flt: FilterArgs) -> Problems:
    if not _known(flt.type, flt.value, flt.decoration):
        return []
    if flt.type not in FILTER_TYPES:
        return [("type", f"{flt.type!r}: must be one of {', '.join(FILTER_TYPES)}")]
    problems: Problems = []
    if flt.decoration is not None:
        if flt.type in ("name", "resource"):
            problems.append(("decoration", f"a {flt.type} filter takes no decoration (only tag and label do)"))
        elif flt.decoration not in DECORATIONS:
            problems.append(("decoration", f"{flt.decoration!r}: must be matches or excludes"))
    if flt.type == "label":
        if not isinstance(flt.value, list) or not all(isinstance(v, str) for v in flt.value):
            problems.append(("value", "a label filter takes a list of label names"))
    elif not isinstance(flt.value, str) or not flt.value:
        problems.append(("value", f"a {flt.type} filter takes a non-empty string"))
    elif flt.type == "resource" and flt.value not in ("image", "artifact"):
        problems.append(("value", f"{flt.value!r}: a resource filter is image or artifact"))
    return problems


@dataclass
class ProjectArgs:
    """A Harbor project (the namespace replication writes into)."""

    name: str
    """Project name: lowercase letters, digits and `._-` separators; cannot change in place."""
    public: bool = False
    """Anyone may pull without logging in."""
    auto_scan: bool = False
    """Scan every pushed image for vulnerabilities."""
    prevent_vulnerable: bool = False
    """Refuse pulls of images with vulnerabilities at or above `severity`."""
    severity: Optional[str] = None
    """none | low | medium | high | critical (used with prevent_vulnerable)."""
    storage_limit: Optional[int] = None
    """Storage quota in bytes (-1 unlimited); None leaves the quota unmanaged (saves one API call per read)."""
    adopt: bool = False
    """When the project already exists, take it over instead of failing."""

    def validate(self) -> Problems:
        problems: Problems = []
        if _known(self.name) and (not self.name or not _LOWERCASE_NAME.match(self.name) or len(self.name) > 255):
            problems.append(("name", f"{self.name!r}: Harbor project names are lowercase letters and digits, "
                                     "optionally separated by . _ or -, at most 255 characters"))
        if _known(self.severity) and self.severity is not None and self.severity not in SEVERITIES:
            problems.append(("severity", f"{self.severity!r}: must be one of {', '.join(SEVERITIES)}"))
        if _known(self.storage_limit) and self.storage_limit is not None \
                and self.storage_limit != -1 and self.storage_limit <= 0:
            problems.append(("storage_limit", "bytes must be positive, or -1 for unlimited"))
        return problems


@dataclass
class RobotAccountArgs:
    """A system robot account with the permissions a remote Harbor needs to replicate into this one."""

    name: str
    """Robot name without Harbor's `robot$` prefix (at most 64 characters)."""
    description: str = ""
    """Free text."""
    projects: list[str] = field(default_factory=lambda: ["*"])
    """Projects the robot may pull from and push to (`*`: all, including future ones)."""
    replicate_deletion: bool = False
    """Also grant artifact/tag deletion (needed when the peer's policy replicates deletions)."""
    duration_days: int = -1
    """Lifetime in days; -1 never expires."""
    disabled: bool = False
    """A disabled robot cannot log in."""
    secret: Optional[str] = field(default=None, metadata=SECRET)
    """Set the robot's secret (a secret; 8-128 chars with upper, lower case and a digit); None: Harbor generates
    one. Changing it rotates the secret."""
    adopt: bool = False
    """When a robot with this name already exists, take it over (its secret is refreshed) instead of failing."""

    def validate(self) -> Problems:
        problems: Problems = []
        check_name(self.name, problems)
        if _known(self.name) and self.name and not problems and not _LOWERCASE_NAME.match(self.name):
            problems.append(("name", f"{self.name!r}: Harbor wants robot names in lower case: letters and digits, "
                                     "optionally separated by . _ or - (no '+', no capitals)"))
        if _known(self.duration_days) and self.duration_days != -1 and not 0 < self.duration_days <= _MAX_DURATION_DAYS:
            problems.append(("duration_days", f"must be -1 (never) or 1..{_MAX_DURATION_DAYS} days "
                                              f"(Harbor refuses {2**31 - 1} and above)"))
        if _known(self.projects) and not self.projects:
            problems.append(("projects", "needs at least one project name (or '*')"))
        if _known(self.secret) and self.secret is not None and (why := password_problem(self.secret)):
            problems.append(("secret", why))
        return problems


@dataclass
class ReplicationRunArgs:
    """One execution of a replication policy, started on create and awaited."""

    policy_id: int
    """Id of the ReplicationPolicy to run."""
    run_key: str = ""
    """Any text; changing it starts a new run (e.g. a date, or a release number)."""
    timeout_seconds: int = 3600
    """Fail when the execution has not ended after this long (it keeps running in Harbor)."""
    poll_seconds: float = 5.0
    """Seconds between status checks."""

    def validate(self) -> Problems:
        problems: Problems = []
        if _known(self.timeout_seconds) and self.timeout_seconds <= 0:
            problems.append(("timeout_seconds", "must be positive"))
        if _known(self.poll_seconds) and self.poll_seconds <= 0:
            problems.append(("poll_seconds", "must be positive"))
        return problems


# -- system schedules (one each per Harbor) -------------------------------------------------------------------

GC_WORKERS_MAX = 10  # handler/gc.go validateWorkers: 1..10
AUDIT_RETENTION_HOURS_MAX = 240000  # common.MaxAuditRetentionHour (handler/purge.go retentionHour)
# pkg/auditext/model EventTypes, plus `other` (all but the first three); the purge job silently drops any other
# name (auditext/dao permitEventTypes), so check refuses it.
AUDIT_EVENT_TYPES = ("create_artifact", "delete_artifact", "pull_artifact", "create_project", "delete_project",
                     "delete_repository", "login_user", "logout_user", "create_user", "delete_user", "update_user",
                     "create_robot", "delete_robot", "update_configuration", "other")


def _schedule_problems(cron: str) -> Problems:
    if not _known(cron):
        return []
    why = cron_problem(cron, every_minute_ok=True) if cron else "must not be empty, e.g. '0 0 3 * * 6' (Saturday 03:00)"
    return [("cron", why)] if why else []


@dataclass
class GcScheduleArgs:
    """Harbor's garbage collection schedule (a singleton: declaring it replaces the one set in the UI, deleting it
    leaves no schedule)."""

    cron: str
    """Harbor 6-field cron (seconds first, `0`), e.g. `0 0 3 * * 6` for Saturdays 03:00."""
    delete_untagged: bool = False
    """Also delete untagged artifacts (Harbor's "Allow garbage collection on untagged artifacts")."""
    workers: int = 1
    """Parallel deletion workers, 1..10."""

    def validate(self) -> Problems:
        problems = _schedule_problems(self.cron)
        if _known(self.workers) and not 1 <= self.workers <= GC_WORKERS_MAX:
            problems.append(("workers", f"{self.workers}: Harbor allows 1..{GC_WORKERS_MAX} workers"))
        return problems


@dataclass
class AuditLogPurgeScheduleArgs:
    """Harbor's audit log purge schedule (a singleton, like the GC schedule)."""

    cron: str
    """Harbor 6-field cron, e.g. `0 0 4 * * *` for 04:00 daily."""
    retention_hours: int = 720
    """Keep audit log entries this many hours (0..240000; 720 = 30 days)."""
    operations: list[str] = field(default_factory=lambda: ["create_artifact", "delete_artifact", "pull_artifact"])
    """Which event types are purged: AUDIT_EVENT_TYPES (`other`: all but the artifact ones). Empty: none."""

    def validate(self) -> Problems:
        problems = _schedule_problems(self.cron)
        if _known(self.retention_hours) and not 0 <= self.retention_hours <= AUDIT_RETENTION_HOURS_MAX:
            problems.append(("retention_hours",
                             f"{self.retention_hours}: Harbor allows 0..{AUDIT_RETENTION_HOURS_MAX}"))
        for i, op in enumerate(self.operations if _known(self.operations) else []):
            if op not in AUDIT_EVENT_TYPES:
                problems.append((f"operations[{i}]", f"{op!r} is no audit event type Harbor purges by (it would "
                                                     f"be ignored); known: {', '.join(AUDIT_EVENT_TYPES)}"))
        return problems


@dataclass
class ScanAllScheduleArgs:
    """Harbor's "scan all artifacts" schedule (a singleton)."""

    cron: str
    """Harbor 6-field cron, e.g. `0 0 1 * * 0` for Sundays 01:00."""

    def validate(self) -> Problems:
        return _schedule_problems(self.cron)


# -- tag retention (one policy per project) -------------------------------------------------------------------

# pkg/retention/policy/rule/<template>/evaluator.go: the templates Harbor's UI offers (GET /retentions/metadatas)
# and the largest count each one's Valid() accepts (latest*: below MaxInt16; n days*: 20190904); `always` takes none.
RETENTION_TEMPLATES = {"latestPushedK": 32766, "latestPulledN": 32766, "nDaysSinceLastPush": 20190904,
                       "nDaysSinceLastPull": 20190904, "always": None}
RETENTION_RULES_MAX = 15  # handler/retention.go: "only 15 rules are allowed at most"


@dataclass(kw_only=True)
class TagSelection:
    """Which artifacts a retention or immutability rule applies to (Harbor's `doublestar` selectors)."""

    repositories: str = "**"
    """Repository pattern (doublestar glob, without the project), e.g. `team/**`."""
    exclude_repositories: bool = False
    """The rule applies to the repositories NOT matching `repositories`."""
    tags: str = "**"
    """Tag pattern (doublestar glob), e.g. `v*`."""
    exclude_tags: bool = False
    """The rule applies to the tags NOT matching `tags`."""


@dataclass(kw_only=True)
class RetentionRuleArgs(TagSelection):
    """One retain rule: artifacts it matches are kept; a policy keeps what any rule keeps (algorithm `or`)."""

    template: str
    """latestPushedK | latestPulledN (the N most recently pushed/pulled), nDaysSinceLastPush | nDaysSinceLastPull
    (pushed/pulled within N days) or always."""
    count: Optional[int] = None
    """N: artifacts for latest*, days for nDays*; not with always."""
    untagged: bool = True
    """Untagged artifacts count as matching the tag pattern (Harbor's "untagged artifacts" box)."""
    disabled: bool = False
    """A disabled rule is kept but not applied."""


@dataclass(kw_only=True)
class RetentionSettings:
    """What a retention policy keeps and when it runs: shared by RetentionPolicyArgs and the stack config."""

    rules: list[RetentionRuleArgs] = field(default_factory=list)
    """Up to 15 retain rules; artifacts no rule retains are deleted when the policy runs."""
    cron: Optional[str] = None
    """Harbor 6-field cron of its runs, e.g. `0 0 0 * * 0`; None: it runs only when started by hand."""
    adopt: bool = False
    """When the project already has a retention policy, take it over instead of failing."""


@dataclass(kw_only=True)
class InProject:
    """An object that belongs to one project."""

    project_id: int
    """Id of the Project (its `project_id` output)."""

    def project_problems(self) -> Problems:
        if _known(self.project_id) and self.project_id <= 0:
            return [("project_id", f"{self.project_id}: Harbor project ids are positive")]
        return []


@dataclass(kw_only=True)
class RetentionPolicyArgs(RetentionSettings, InProject):
    """The tag retention policy of one project (Harbor keeps at most one per project)."""

    def validate(self) -> Problems:
        problems = self.project_problems()
        if _known(self.cron) and self.cron and (why := cron_problem(self.cron, every_minute_ok=True)):
            problems.append(("cron", why))
        if not _known(self.rules):
            return problems
        if len(self.rules) > RETENTION_RULES_MAX:
            problems.append(("rules", f"{len(self.rules)} rules: Harbor allows at most {RETENTION_RULES_MAX}"))
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            problems.extend((f"rules[{i}].{k}", why) for k, why in _retention_rule_problems(rule))
            same = repr(dataclasses.astuple(rule))
            if same in seen:  # handler/retention.go checkRuleConflict answers 409
                problems.append((f"rules[{i}]", f"is the same as rules[{seen[same]}]; Harbor refuses duplicates"))
            seen.setdefault(same, i)
        return problems


def _retention_rule_problems(rule: RetentionRuleArgs) -> Problems:
    if not _known(rule.template, rule.count, rule.repositories, rule.tags):
        return []
    if rule.template not in RETENTION_TEMPLATES:
        return [("template", f"{rule.template!r}: must be one of {', '.join(RETENTION_TEMPLATES)}")]
    problems: Problems = []
    most = RETENTION_TEMPLATES[rule.template]
    if most is None and rule.count is not None:
        problems.append(("count", "`always` takes no count"))
    elif most is not None and (rule.count is None or not 0 <= rule.count <= most):
        problems.append(("count", f"{rule.template} needs a count of 0..{most}"))
    for key in ("repositories", "tags"):
        if not getattr(rule, key):  # pkg/retention/policy/rule Selector.Pattern is Required
            problems.append((key, "needs a pattern, e.g. '**' for all"))
    return problems


@dataclass(kw_only=True)
class ImmutableTagRuleSettings(TagSelection):
    """Which tags a tag immutability rule protects: shared by ImmutableTagRuleArgs and the stack config."""

    disabled: bool = False
    """A disabled rule is kept but not enforced."""
    adopt: bool = False
    """When the project has a rule with the same patterns, take it over instead of failing."""


@dataclass(kw_only=True)
class ImmutableTagRuleArgs(ImmutableTagRuleSettings, InProject):
    """A tag immutability rule of a project: matching tags cannot be overwritten or deleted."""

    def validate(self) -> Problems:
        problems = self.project_problems()
        for key in ("repositories", "tags"):
            if _known(getattr(self, key)) and not getattr(self, key):  # immutable/model Selector.Pattern: Required
                problems.append((key, "needs a pattern, e.g. '**' for all"))
        return problems


# -- access: user groups and project members -------------------------------------------------------------------

# common/const.go group types.
GROUP_TYPES = {"ldap": 1, "http": 2, "oidc": 3}
# common/const.go roles (controller/member isValidRole).
PROJECT_ROLES = {"projectAdmin": 1, "developer": 2, "guest": 3, "maintainer": 4, "limitedGuest": 5}
_DN_PART = re.compile(r"^\s*[A-Za-z][A-Za-z0-9-]*\s*=\s*\S")


@dataclass
class UserGroupArgs:
    """A Harbor user group: an LDAP group (by DN), an HTTP (authproxy) group or an OIDC group."""

    name: str
    """Group name shown in Harbor (for OIDC: the group name in the token's groups claim)."""
    type: str = "oidc"
    """ldap | http | oidc; cannot change in place."""
    ldap_group_dn: Optional[str] = None
    """The LDAP group's DN (type ldap only), e.g. `cn=devs,ou=groups,dc=example,dc=com`; Harbor looks it up."""
    adopt: bool = False
    """When Harbor has this group already, take it over instead of failing."""

    def validate(self) -> Problems:
        problems: Problems = []
        check_name(self.name, problems)
        if not _known(self.type, self.ldap_group_dn):
            return problems
        if self.type not in GROUP_TYPES:
            problems.append(("type", f"{self.type!r}: must be one of {', '.join(GROUP_TYPES)}"))
        elif self.type == "ldap" and not self.ldap_group_dn:
            problems.append(("ldap_group_dn", "an ldap group needs its DN"))
        elif self.type != "ldap" and self.ldap_group_dn:
            problems.append(("ldap_group_dn", f"only for type ldap (type is {self.type!r})"))
        elif self.ldap_group_dn and not all(_DN_PART.match(p) for p in self.ldap_group_dn.split(",")):
            # usergroup controller: Harbor answers "invalid DN syntax" (go-ldap ParseDN).
            problems.append(("ldap_group_dn", f"{self.ldap_group_dn!r} is not a DN (attr=value,attr=value...)"))
        return problems


@dataclass(kw_only=True)
class ProjectMemberArgs(InProject):
    """A user or a user group with a role in a project."""

    role: str
    """projectAdmin | maintainer | developer | guest | limitedGuest."""
    username: Optional[str] = None
    """The member user (Harbor onboards an LDAP/OIDC user it has not seen); or `group_id`."""
    group_id: Optional[int] = None
    """The member group's id (a UserGroup's id); or `username`."""
    adopt: bool = False
    """When the user or group is a member already, take the membership over instead of failing."""

    def validate(self) -> Problems:
        problems = self.project_problems()
        if _known(self.role) and self.role not in PROJECT_ROLES:
            problems.append(("role", f"{self.role!r}: must be one of {', '.join(PROJECT_ROLES)}"))
        if _known(self.username, self.group_id) and (self.username is None) == (self.group_id is None):
            problems.append(("username", "give exactly one of username and group_id"))
        return problems


# handler/user.go validateUserProfile: the email pattern, and characters Harbor refuses in names (common/const.go
# IllegalCharsInUsername).
_EMAIL = re.compile(r"""^(([^<>()[\]\\.,;:\s@"]+(\.[^<>()[\]\\.,;:\s@"]+)*)|(".+"))@((\[[0-9]{1,3}\.[0-9]{1,3}"""
                    r"""\.[0-9]{1,3}\.[0-9]{1,3}\])|(([a-zA-Z\-0-9]+\.)+[a-zA-Z]{2,}))$""")
_ILLEGAL_NAME_CHARS = ',"~#%$'


def password_problem(secret: str) -> Optional[str]:
    """handler/user.go requireValidSecret (also the robot secret rule, pkg/robot IsValidSec)."""
    if isinstance(secret, ConfigSecret):
        return None  # read offline, still encrypted: checked under the engine, where it arrives decrypted
    if 8 <= len(secret) <= 128 and all(re.search(p, secret) for p in ("[a-z]", "[A-Z]", "[0-9]")):
        return None
    return "Harbor wants 8-128 characters with a lower case letter, an upper case letter and a digit"


@dataclass
class LocalUserArgs:
    """A user of Harbor's own database (auth mode db_auth only; Harbor refuses local users under LDAP/OIDC)."""

    username: str
    """Login name (1-255 characters, none of , " ~ # % $); cannot change in place."""
    email: str
    """E-mail address (Harbor requires one)."""
    password: str = field(metadata=SECRET)
    """Password (a secret; 8-128 characters with upper and lower case and a digit). Changing it sets it."""
    realname: str = ""
    """Full name (empty: the username)."""
    comment: str = ""
    """At most 30 characters."""
    admin: bool = False
    """Harbor system administrator."""
    adopt: bool = False
    """When the user exists, take it over (its profile, password and admin flag are set)."""

    @property
    def name(self) -> str:
        return self.username

    def validate(self) -> Problems:
        problems: Problems = []
        for key in ("username", "realname"):
            value = getattr(self, key)
            if not _known(value) or (key == "realname" and not value):
                continue
            if not 1 <= len(value) <= 255:
                problems.append((key, "must be 1-255 characters"))
            elif set(value) & set(_ILLEGAL_NAME_CHARS):
                problems.append((key, f"must not contain any of {_ILLEGAL_NAME_CHARS}"))
        if _known(self.email) and not _EMAIL.match(self.email or ""):
            problems.append(("email", f"{self.email!r} is not an e-mail address Harbor accepts"))
        if _known(self.password) and (why := password_problem(self.password or "")):
            problems.append(("password", why))
        if _known(self.comment) and len(self.comment) > 30:
            problems.append(("comment", f"is {len(self.comment)} characters long; Harbor allows at most 30"))
        return problems


# -- configuration (/configurations: one per Harbor) ------------------------------------------------------------

# The keys of PUT /configurations (swagger `Configurations`) by type; the password-type ones (lib/config/metadata
# PasswordType: never returned by GET) go in `secrets`.
CONFIG_BOOLEANS = (
    "primary_auth_mode", "ldap_group_attach_parallel", "ldap_verify_cert", "read_only", "self_registration",
    "uaa_verify_cert", "http_authproxy_verify_cert", "http_authproxy_skip_search", "oidc_verify_cert",
    "oidc_auto_onboard", "oidc_logout", "notification_enable", "quota_per_project_enable", "skip_audit_log_database",
    "scanner_skip_update_pulltime")
CONFIG_INTEGERS = ("ldap_group_search_scope", "ldap_scope", "ldap_timeout", "token_expiration",
                   "robot_token_duration", "storage_per_project", "session_timeout")
CONFIG_STRINGS = (
    "auth_mode", "ldap_base_dn", "ldap_filter", "ldap_group_base_dn", "ldap_group_admin_dn",
    "ldap_group_attribute_name", "ldap_group_search_filter", "ldap_search_dn", "ldap_uid", "ldap_url",
    "ldap_group_membership_attribute", "project_creation_restriction", "uaa_client_id", "uaa_endpoint",
    "http_authproxy_endpoint", "http_authproxy_tokenreview_endpoint", "http_authproxy_admin_groups",
    "http_authproxy_admin_usernames", "http_authproxy_server_certificate", "oidc_name", "oidc_endpoint",
    "oidc_client_id", "oidc_groups_claim", "oidc_admin_group", "oidc_group_filter", "oidc_scope", "oidc_user_claim",
    "oidc_extra_redirect_parms", "robot_name_prefix", "audit_log_forward_endpoint", "banner_message",
    "disabled_audit_log_event_types")
CONFIG_SECRETS = ("ldap_search_password", "oidc_client_secret", "uaa_client_secret")
# lib/config/metadata/type.go: AuthModeType, ProjectCreationRestrictionType, LdapScopeType.
CONFIG_CHOICES = {"auth_mode": ("db_auth", "ldap_auth", "uaa_auth", "http_auth", "oidc_auth"),
                  "project_creation_restriction": ("adminonly", "everyone"),
                  "ldap_scope": (0, 1, 2), "ldap_group_search_scope": (0, 1, 2)}


def normalize_setting(key: str, value: Any) -> Any:
    """A setting as Harbor keeps it: Pulumi's wire format carries every number as a float (30 -> 30.0)."""
    if key in CONFIG_INTEGERS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class ConfigurationArgs:
    """Harbor's system configuration (authentication, who may create projects, robot token lifetime, read-only
    mode, ...): only the keys given are managed; every other key is left as it is in Harbor."""

    settings: dict[str, Any] = field(default_factory=dict)
    """Managed keys with their values, by Harbor's names (`auth_mode`, `oidc_endpoint`, `read_only`, ...)."""
    secrets: dict[str, str] = field(default_factory=dict, metadata=SECRET)
    """Managed secret keys (ldap_search_password, oidc_client_secret, uaa_client_secret): Harbor never shows them;
    the state keeps their salted hashes."""

    def validate(self) -> Problems:
        problems: Problems = []
        kinds = [(CONFIG_BOOLEANS, bool), (CONFIG_INTEGERS, int), (CONFIG_STRINGS, str)]
        for key, value in (self.settings.items() if _known(self.settings) else []):
            value = normalize_setting(key, value)
            wanted = next((tp for names, tp in kinds if key in names), None)
            if key in CONFIG_SECRETS:
                problems.append((f"settings.{key}", "is a secret: give it in `secrets` (kept as a hash)"))
            elif wanted is None:
                problems.append((f"settings.{key}", "is no configuration key of Harbor 2.15"))
            elif not _known(value):
                continue
            elif not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                problems.append((f"settings.{key}", f"expected {wanted.__name__}, got {type(value).__name__}"))
            elif key in CONFIG_CHOICES and value not in CONFIG_CHOICES[key]:
                choices = ", ".join(str(c) for c in CONFIG_CHOICES[key])
                problems.append((f"settings.{key}", f"{value!r}: must be one of {choices}"))
        for key in (self.secrets if _known(self.secrets) else {}):
            if key not in CONFIG_SECRETS:
                problems.append((f"secrets.{key}", f"is not a secret key; those are {', '.join(CONFIG_SECRETS)}"))
        return problems


LABEL_NAME_MAX = 128  # pkg/label/model Label.Valid


@dataclass(kw_only=True)
class LabelSettings:
    """A label's text and colour: shared by LabelArgs and the stack config."""

    name: str
    """1-128 characters; unique within its scope."""
    description: str = ""
    """Free text."""
    color: str = ""
    """Display colour, e.g. `#0065AB` (Harbor's UI offers a palette; any text is stored)."""
    adopt: bool = False
    """When the label exists in its scope, take it over instead of failing."""


@dataclass(kw_only=True)
class LabelArgs(LabelSettings):
    """A label for artifacts: global (every project) or of one project."""

    project_id: Optional[int] = None
    """The project of a project label (its `project_id` output); None: a global label. Cannot change in place."""

    def validate(self) -> Problems:
        problems: Problems = []
        if _known(self.name) and not 1 <= len(self.name or "") <= LABEL_NAME_MAX:
            problems.append(("name", f"must be 1-{LABEL_NAME_MAX} characters"))
        if _known(self.project_id) and self.project_id is not None and self.project_id <= 0:
            problems.append(("project_id", f"{self.project_id}: Harbor project ids are positive"))
        return problems


# pkg/notification initSupportedNotifyType: what a project webhook can send, to whom and how.
WEBHOOK_EVENT_TYPES = ("PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED", "QUOTA_WARNING",
                       "SCANNING_FAILED", "SCANNING_STOPPED", "SCANNING_COMPLETED", "REPLICATION", "TAG_RETENTION")
WEBHOOK_TYPES = ("http", "slack")
WEBHOOK_PAYLOAD_FORMATS = ("Default", "CloudEvents")


@dataclass(kw_only=True)
class WebhookSettings:
    """A project webhook: Harbor calls `address` on the chosen events of the project."""

    name: str
    """Unique within the project."""
    address: str
    """Endpoint URL; Harbor keeps only scheme://host/path (no user info or query: handler/webhook.go SSRF guard)."""
    event_types: list[str] = field(default_factory=lambda: ["PUSH_ARTIFACT"])
    """Events that trigger it, WEBHOOK_EVENT_TYPES."""
    type: str = "http"
    """http or slack."""
    payload_format: Optional[str] = None
    """Default or CloudEvents (http only; Harbor's default: Default)."""
    auth_header: Optional[str] = field(default=None, metadata=SECRET)
    """Value of the Authorization header Harbor sends (a secret; kept as a hash in the state)."""
    skip_cert_verify: bool = False
    """Do not verify the endpoint's TLS certificate."""
    enabled: bool = True
    """A disabled webhook is kept but not called."""
    description: str = ""
    """Free text."""
    adopt: bool = False
    """When the project has a webhook of this name, take it over instead of failing."""


@dataclass(kw_only=True)
class WebhookArgs(WebhookSettings, InProject):
    """A webhook of the project `project_id`."""

    def validate(self) -> Problems:
        problems = self.project_problems()
        check_name(self.name, problems)
        if _known(self.address) and not (self.address or "").strip():
            problems.append(("address", "must not be empty"))
        elif _known(self.address) and "://" in self.address and not self.address.startswith(("http://", "https://")):
            problems.append(("address", f"{self.address!r}: Harbor calls only http:// and https:// endpoints"))
        if _known(self.type) and self.type not in WEBHOOK_TYPES:
            problems.append(("type", f"{self.type!r}: must be one of {', '.join(WEBHOOK_TYPES)}"))
        elif _known(self.type, self.payload_format) and self.payload_format is not None:
            if self.type == "slack":
                problems.append(("payload_format", "Harbor allows no payload format for slack"))
            elif self.payload_format not in WEBHOOK_PAYLOAD_FORMATS:
                problems.append(("payload_format", f"{self.payload_format!r}: must be one of "
                                                   f"{', '.join(WEBHOOK_PAYLOAD_FORMATS)}"))
        if _known(self.event_types):
            if not self.event_types:
                problems.append(("event_types", "needs at least one event type"))
            for i, event in enumerate(self.event_types):
                if _known(event) and event not in WEBHOOK_EVENT_TYPES:
                    problems.append((f"event_types[{i}]", f"{event!r}: must be one of "
                                                          f"{', '.join(WEBHOOK_EVENT_TYPES)}"))
        return problems
