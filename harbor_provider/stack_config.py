"""The `harbor-ha:harborApi` and `harbor-ha:migration` stack config sections: parsed once into typed objects, validated
with errors naming the key (`harbor-ha:harborApi.policies[1].trigger.cron: ...`), then declared as Harbor resources.

Independent of `components/`: the program passes the cluster's URL and admin password Outputs to
`declare_harbor_objects` (or the section names an existing Harbor with `harborUrl` + credentials).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from collections.abc import Sequence
from typing import Any, ClassVar, Optional, cast

import pulumi

from .client import ClientSettings
from .models import (
    AuditLogPurgeScheduleArgs,
    ConfigurationArgs,
    FilterArgs,
    GcScheduleArgs,
    LocalUserArgs,
    ImmutableTagRuleArgs,
    ImmutableTagRuleSettings,
    LabelArgs,
    LabelSettings,
    ProjectMemberArgs,
    PolicySettings,
    ProjectArgs,
    RegistryArgs,
    ReplicationPolicyArgs,
    ReplicationRunArgs,
    RetentionPolicyArgs,
    RetentionSettings,
    RobotAccountArgs,
    ScanAllScheduleArgs,
    UserGroupArgs,
    WebhookArgs,
    WebhookSettings,
)
from .resources import Connection, Project, Registry, ReplicationPolicy, ReplicationRun, RobotAccount
from .access import LocalUser, ProjectMember, UserGroup
from .configuration import Configuration
from .labels import Label
from .retention import ImmutableTagRule, RetentionPolicy
from .schedules import AuditLogPurgeSchedule, GcSchedule, ScanAllSchedule
from .typed import SECRET, ConfigError, camel, offline_secrets, parse_into
from .webhooks import Webhook


@dataclass
class TriggerConfig:
    """When a policy runs."""

    type: str = "manual"
    """manual | scheduled | event_based."""
    cron: Optional[str] = None
    """Harbor 6-field cron for `scheduled`, e.g. `0 0 2 * * *` (02:00 daily)."""


@dataclass
class RunConfig:
    """Run the policy during `pulumi up` and wait for it."""

    key: str = ""
    """Change it to run again (e.g. a date)."""
    timeout_seconds: int = 3600
    """Fail the update when the execution has not ended by then."""
    poll_seconds: float = 5.0
    """Seconds between status checks."""


@dataclass(kw_only=True)
class PolicyConfig(PolicySettings):
    """A replication policy in stack config; `registry` names an entry of `registries`."""

    name: str
    """Unique policy name."""
    registry: str
    """Name of the remote registry endpoint (declared in the same section)."""
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    """When it runs."""
    run: Optional[RunConfig] = None
    """Also run it now (a ReplicationRun)."""

    def to_args(self, registry_id: Any) -> ReplicationPolicyArgs:
        shared = {f.name: getattr(self, f.name) for f in fields(PolicySettings)}
        return ReplicationPolicyArgs(name=self.name, registry_id=registry_id, trigger=self.trigger.type,
                                     cron=self.trigger.cron, **shared)


@dataclass(kw_only=True)
class _ProjectObjectConfig:
    """An object of a project declared in the same section: its args' settings, and the project by name."""

    settings_type: ClassVar[type]
    args_type: ClassVar[type]

    project: Optional[str]
    """Name of the project (declared in `projects`); None only where a kind allows it (a global label)."""

    def to_args(self, project_id: Any) -> Any:
        shared = {f.name: getattr(self, f.name) for f in fields(self.settings_type)}
        return self.args_type(project_id=project_id, **shared)


@dataclass(kw_only=True)
class RetentionConfig(RetentionSettings, _ProjectObjectConfig):
    """The tag retention policy of a project declared in the same section."""

    settings_type = RetentionSettings
    args_type = RetentionPolicyArgs

    project: str
    """Name of the project (declared in `projects`)."""

    @property
    def name(self) -> str:
        return self.project


@dataclass(kw_only=True)
class ImmutableTagRuleConfig(ImmutableTagRuleSettings, _ProjectObjectConfig):
    """A tag immutability rule of a project declared in the same section."""

    settings_type = ImmutableTagRuleSettings
    args_type = ImmutableTagRuleArgs

    project: str
    """Name of the project (declared in `projects`)."""

    @property
    def name(self) -> str:
        return f"{self.project}:{self.repositories}:{self.tags}"


@dataclass
class MemberConfig:
    """A user or a group of `userGroups` with a role in a project of the same section."""

    project: str
    """Name of the project (declared in `projects`)."""
    role: str
    """projectAdmin | maintainer | developer | guest | limitedGuest."""
    user: Optional[str] = None
    """A user name (LDAP/OIDC users Harbor has not seen are onboarded); or `group`."""
    group: Optional[str] = None
    """Name of a group declared in `userGroups`; or `user`."""
    adopt: bool = False
    """Take over an existing membership (its role is set)."""

    @property
    def name(self) -> str:
        return f"{self.project}:{'user' if self.user is not None else 'group'}:{self.user or self.group}"

    def to_args(self, project_id: Any, group_id: Any = 0) -> ProjectMemberArgs:
        """`group_id`: the group's id (its Output); the 0 default stands for it while validating."""
        return ProjectMemberArgs(project_id=project_id, role=self.role, username=self.user,
                                 group_id=group_id if self.group is not None else None, adopt=self.adopt)


@dataclass(kw_only=True)
class LabelConfig(LabelSettings, _ProjectObjectConfig):
    """A global label, or a label of a project declared in the same section."""

    settings_type = LabelSettings
    args_type = LabelArgs

    project: Optional[str] = None
    """Name of the project (declared in `projects`); absent: a global label."""

    @property
    def identity(self) -> str:
        """Unique in the section: a name is unique within its scope."""
        return f"{self.project}:{self.name}" if self.project else self.name

    def to_args(self, project_id: Any) -> LabelArgs:
        return super().to_args(project_id if self.project else None)


@dataclass(kw_only=True)
class WebhookConfig(WebhookSettings, _ProjectObjectConfig):
    """A webhook of a project declared in the same section."""

    settings_type = WebhookSettings
    args_type = WebhookArgs

    project: str
    """Name of the project (declared in `projects`)."""

    @property
    def identity(self) -> str:
        return f"{self.project}:{self.name}"


@dataclass
class HarborSection:
    """The `harbor-ha:harborApi` stack config section."""

    harbor_url: Optional[str] = None
    """An existing Harbor to configure instead of the cluster's (with harborUsername/harborPassword)."""
    harbor_username: Optional[str] = None
    """User for harborUrl (default admin)."""
    harbor_password: Optional[str] = field(default=None, metadata=SECRET)
    """Password for harborUrl (`pulumi config set --secret`)."""
    harbor_ca_certificate: Optional[str] = None
    """PEM of the CA of harborUrl's certificate, when it is not publicly trusted."""
    registries: list[RegistryArgs] = field(default_factory=list)
    """Remote registry endpoints."""
    projects: list[ProjectArgs] = field(default_factory=list)
    """Projects."""
    robots: list[RobotAccountArgs] = field(default_factory=list)
    """System robots for peers that replicate into this Harbor."""
    policies: list[PolicyConfig] = field(default_factory=list)
    """Replication policies."""
    retention_policies: list[RetentionConfig] = field(default_factory=list)
    """Tag retention policies, one per project."""
    immutable_tag_rules: list[ImmutableTagRuleConfig] = field(default_factory=list)
    """Tag immutability rules (several per project)."""
    users: list[LocalUserArgs] = field(default_factory=list)
    """Local users (Harbor's db_auth mode only); passwords with `pulumi config set --secret`."""
    user_groups: list[UserGroupArgs] = field(default_factory=list)
    """User groups (LDAP, HTTP, OIDC)."""
    members: list[MemberConfig] = field(default_factory=list)
    """Project members: users and groups with their role."""
    webhooks: list[WebhookConfig] = field(default_factory=list)
    """Project webhooks (`authHeader` with --secret)."""
    labels: list[LabelConfig] = field(default_factory=list)
    """Labels: global, or of a project (`project`)."""
    configuration: Optional[ConfigurationArgs] = None
    """Harbor's configuration keys to manage (`settings`, `secrets`), by Harbor's names; others are left alone."""
    gc_schedule: Optional[GcScheduleArgs] = None
    """Garbage collection schedule (absent: left as set in Harbor)."""
    audit_log_purge_schedule: Optional[AuditLogPurgeScheduleArgs] = None
    """Audit log purge schedule (absent: left as set in Harbor)."""
    scan_all_schedule: Optional[ScanAllScheduleArgs] = None
    """Scan-all schedule (absent: left as set in Harbor)."""
    name_keys: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    """Not config: for each kind, the config key that names each object (`harbor-ha:migration.targetProject`),
    so that errors after merging sections name what the user wrote."""


_KINDS = {"registries": "registry", "projects": "project", "robots": "robot", "policies": "policy",
          "retention_policies": "retention policy of project",
          "immutable_tag_rules": "immutable tag rule (project:repositories:tags)", "user_groups": "user group",
          "users": "user", "labels": "label ([project:]name)",
          "webhooks": "webhook (project:name)",
          "members": "member (project:user|group:name)"}
# Kinds that belong to a project of the same section (named by its `project` key).
_PROJECT_KINDS = ("retention_policies", "immutable_tag_rules", "members", "webhooks")
# Settings Harbor has once (section attribute -> resource class and name).
_SINGLETONS = {"configuration": (Configuration, "harbor-configuration"),
               "gc_schedule": (GcSchedule, "harbor-gc-schedule"),
               "audit_log_purge_schedule": (AuditLogPurgeSchedule, "harbor-audit-log-purge-schedule"),
               "scan_all_schedule": (ScanAllSchedule, "harbor-scan-all-schedule")}


@dataclass
class MigrationSection:
    """The `migration:` stack config section: pull everything (or a filtered part) of an old registry."""

    source_url: str
    """URL of the old registry, e.g. https://old-registry.example.com:5000."""
    target_project: str
    """Harbor project receiving the images (created, or adopted when it exists)."""
    source_type: str = "docker-registry"
    """Adapter type of the source (docker-registry for a registry:2)."""
    username: Optional[str] = None
    """Source registry user (None: anonymous)."""
    password: Optional[str] = field(default=None, metadata=SECRET)
    """Source registry password (`pulumi config set --secret`)."""
    insecure: bool = False
    """Skip TLS verification of the source."""
    name_filter: Optional[str] = None
    """Repository glob to migrate, e.g. `team/**` (None: all)."""
    tag_filter: Optional[str] = None
    """Tag glob to migrate, e.g. `v*` (None: all)."""
    run_now: bool = False
    """Run the replication during `pulumi up` and wait for it."""
    run_key: str = ""
    """Change to run the migration again."""
    timeout_seconds: int = 3600
    """Fail when the run has not ended by then."""
    registry_name: str = "migration-source"
    """Name of the source endpoint in Harbor."""
    policy_name: str = "migration-pull"
    """Name of the pull policy in Harbor."""

    def to_section(self) -> HarborSection:
        filters = []
        if self.name_filter:
            filters.append(FilterArgs(type="name", value=self.name_filter))
        if self.tag_filter:
            filters.append(FilterArgs(type="tag", value=self.tag_filter))
        registry = RegistryArgs(name=self.registry_name, type=self.source_type, url=self.source_url,
                                access_key=self.username, access_secret=self.password, insecure=self.insecure,
                                description="migration source")
        # Replace count 0 puts `team/app` under `<project>/team/app`: the old paths survive below the project.
        policy = PolicyConfig(name=self.policy_name, registry=self.registry_name, direction="pull",
                              filters=filters, dest_namespace=self.target_project, dest_namespace_replace_count=0,
                              description="migration from " + self.source_url,
                              run=RunConfig(key=self.run_key, timeout_seconds=self.timeout_seconds)
                              if self.run_now else None)
        return HarborSection(registries=[registry], projects=[ProjectArgs(name=self.target_project, adopt=True)],
                             policies=[policy])


# Which config key a validate() field name stands for, where it is not just its camelCase.
_MEMBER_KEYS = {"username": "user", "group_id": "group"}
_POLICY_KEYS = {"trigger": "trigger.type", "cron": "trigger.cron", "registry_id": "registry"}


def _check(obj: Any, where: str, problems: list[str], keys: Optional[dict] = None) -> None:
    for key, reason in obj.validate():
        head, _, rest = key.partition(".")
        name = (keys or {}).get(key) or (camel(head) + ("." + rest if rest else ""))
        problems.append(f"{where}.{name}: {reason}")


def _name_key(kind: str) -> str:
    """The config key that names an object in errors (a retention policy is named by its project)."""
    return {"retention_policies": "project", "members": "project", "immutable_tag_rules": "tags",
            "users": "username"}.get(kind, "name")


def _identity(item: Any) -> str:
    """What must be unique among the objects of one kind (the name, unless the object says otherwise)."""
    return getattr(item, "identity", item.name)


def _unique(items: Sequence[Any], where: str, problems: list[str], name_key: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if _identity(item) in seen:
            problems.append(f"{where}[{i}].{name_key}: {_identity(item)!r} is declared twice")
        seen.add(_identity(item))


def parse_harbor_section(raw: Optional[dict], key: str = "harbor-ha:harborApi") -> HarborSection:
    """Parse and validate the section (None or empty: nothing to declare). Raises ConfigError."""
    problems: list[str] = []
    section = parse_into(HarborSection, offline_secrets(raw or {}, key), key, True, problems) or HarborSection()
    if problems:
        raise ConfigError(problems)
    validate_section(section, key, problems)
    if problems:
        raise ConfigError(problems)
    _record_name_keys(section, key, {})
    return section


def _record_name_keys(section: HarborSection, key: str, renames: dict[str, str]) -> None:
    for kind in _KINDS:
        where = [f"{key}.{camel(kind)}[{i}].{_name_key(kind)}" for i in range(len(getattr(section, kind)))]
        section.name_keys[kind] = [renames.get(w, w) for w in where]


def validate_section(section: HarborSection, key: str, problems: list[str]) -> None:
    for kind in ("registries", "projects", "robots", "users", "user_groups"):
        for i, item in enumerate(getattr(section, kind)):
            _check(item, f"{key}.{camel(kind)}[{i}]", problems)
    for attr in _SINGLETONS:
        if getattr(section, attr) is not None:
            _check(getattr(section, attr), f"{key}.{camel(attr)}", problems)
    groups = [g.name for g in section.user_groups]
    for i, member in enumerate(section.members):
        if member.group is not None and member.group not in groups:
            problems.append(f"{key}.members[{i}].group: unknown group {member.group!r} "
                            f"(declared in {key}.userGroups: {', '.join(groups) or 'none'})")
    registries = [r.name for r in section.registries]
    for i, policy in enumerate(section.policies):
        _check(policy.to_args(0), f"{key}.policies[{i}]", problems, _POLICY_KEYS)
        if policy.registry not in registries:
            problems.append(f"{key}.policies[{i}].registry: unknown registry {policy.registry!r} "
                            f"(declared in {key}.registries: {', '.join(registries) or 'none'})")
        if policy.run is not None:
            run = ReplicationRunArgs(policy_id=0, run_key=policy.run.key, timeout_seconds=policy.run.timeout_seconds,
                                     poll_seconds=policy.run.poll_seconds)
            _check(run, f"{key}.policies[{i}].run", problems)
    projects = [p.name for p in section.projects]
    for kind in _PROJECT_KINDS + ("labels",):
        for i, item in enumerate(getattr(section, kind)):
            where = f"{key}.{camel(kind)}[{i}]"
            _check(item.to_args(1), where, problems, _MEMBER_KEYS if kind == "members" else None)
            if item.project is not None and item.project not in projects:
                problems.append(f"{where}.project: unknown project {item.project!r} "
                                f"(declared in {key}.projects: {', '.join(projects) or 'none'})")
    if section.harbor_url and not section.harbor_password:
        problems.append(f"{key}.harborPassword: required with harborUrl (set it with --secret)")
    for kind in _KINDS:
        _unique(getattr(section, kind), f"{key}.{camel(kind)}", problems, _name_key(kind))


def parse_migration_section(raw: Optional[dict], key: str = "harbor-ha:migration") -> Optional[HarborSection]:
    """The `migration:` section as the Harbor objects it stands for (None when absent). Raises ConfigError."""
    if not raw:
        return None
    problems: list[str] = []
    migration = parse_into(MigrationSection, offline_secrets(raw, key), key, True, problems)
    if problems:
        raise ConfigError(problems)
    section = migration.to_section()
    # Name the migration keys, not the generated objects', in errors.
    renames = {f"{key}.registries[0].url": f"{key}.sourceUrl", f"{key}.registries[0].type": f"{key}.sourceType",
               f"{key}.registries[0].accessKey": f"{key}.username",
               f"{key}.registries[0].accessSecret": f"{key}.password",
               f"{key}.registries[0].name": f"{key}.registryName", f"{key}.projects[0].name": f"{key}.targetProject",
               f"{key}.policies[0].name": f"{key}.policyName", f"{key}.policies[0].run.timeoutSeconds":
               f"{key}.timeoutSeconds", f"{key}.policies[0].filters[0].value": f"{key}.nameFilter"}
    validate_section(section, key, problems)
    if problems:
        raise ConfigError([_rename(p, renames) for p in problems])
    _record_name_keys(section, key, renames)
    return section


def _rename(problem: str, renames: dict[str, str]) -> str:
    where, _, reason = problem.partition(": ")
    return f"{renames.get(where, where)}: {reason}"


def merge_sections(*sections: Optional[HarborSection]) -> HarborSection:
    """One section with the objects of all (names must stay unique: checked again, naming both config keys)."""
    merged = HarborSection()
    for section in filter(None, sections):
        for kind in _KINDS:
            items = getattr(section, kind)
            getattr(merged, kind).extend(items)
            keys = section.name_keys.get(kind) or [f"{camel(kind)}[{i}].{_name_key(kind)}" for i in range(len(items))]
            merged.name_keys.setdefault(kind, []).extend(keys)
        for attr in ("harbor_url", "harbor_username", "harbor_password", "harbor_ca_certificate"):
            setattr(merged, attr, getattr(merged, attr) or getattr(section, attr))
    problems: list[str] = []
    for attr in _SINGLETONS:
        declared = [s for s in sections if s is not None and getattr(s, attr) is not None]
        if len(declared) > 1:
            problems.append(f"{camel(attr)}: declared in more than one section; Harbor has one")
        if declared:
            setattr(merged, attr, getattr(declared[0], attr))
    for kind, singular in _KINDS.items():
        first: dict[str, str] = {}
        for item, key in zip(getattr(merged, kind), merged.name_keys[kind], strict=True):
            if _identity(item) in first:
                problems.append(f"{first[_identity(item)]} and {key} both declare {singular} {_identity(item)!r}")
            first.setdefault(_identity(item), key)
    if problems:
        raise ConfigError(problems)
    return merged


@dataclass
class HarborObjects:
    """The declared resources by their config name."""

    registries: dict[str, Registry] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    robots: dict[str, RobotAccount] = field(default_factory=dict)
    policies: dict[str, ReplicationPolicy] = field(default_factory=dict)
    runs: dict[str, ReplicationRun] = field(default_factory=dict)
    retention_policies: dict[str, RetentionPolicy] = field(default_factory=dict)
    """By project name."""
    immutable_tag_rules: dict[str, ImmutableTagRule] = field(default_factory=dict)
    """By `project:repositories:tags`."""
    labels: dict[str, Label] = field(default_factory=dict)
    """By `[project:]name`."""
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    """By `project:name`."""
    users: dict[str, LocalUser] = field(default_factory=dict)
    user_groups: dict[str, UserGroup] = field(default_factory=dict)
    members: dict[str, ProjectMember] = field(default_factory=dict)
    """By `project:user|group:name`."""
    singletons: dict[str, pulumi.dynamic.Resource] = field(default_factory=dict)
    """What Harbor has once (the configuration, the schedules), by section attribute (`gc_schedule`, ...)."""


def declare_harbor_objects(
    section: HarborSection,
    *,
    url: Any = None,
    username: Any = "admin",
    password: Any = None,
    ca_certificate: Any = None,
    depends_on: Sequence[pulumi.Resource] = (),
    parent: Optional[pulumi.Resource] = None,
    settings: Optional[ClientSettings] = None,
) -> HarborObjects:
    """Create the section's resources against `url` (the cluster's URL Output) as `username`/`password` (the
    generated admin password Output), trusting `ca_certificate` (PEM, e.g. the cluster's CA Output), after
    `depends_on` (e.g. the cluster's health check). When the section has `harborUrl`, that Harbor and its
    credentials are used instead."""
    if section.harbor_url:
        connection = Connection(section.harbor_url, section.harbor_username or "admin", section.harbor_password,
                                section.harbor_ca_certificate)
    else:
        connection = Connection(url, username, password, ca_certificate)
    objects = HarborObjects()

    def opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on) + list(extra))

    for attr, (resource_cls, resource_name) in _SINGLETONS.items():
        if getattr(section, attr) is not None:
            objects.singletons[attr] = resource_cls(resource_name, getattr(section, attr), connection, opts(),
                                                   settings)
    for registry_args in section.registries:
        objects.registries[registry_args.name] = Registry(f"harbor-registry-{registry_args.name}", registry_args,
                                                          connection, opts(), settings)
    for project_args in section.projects:
        objects.projects[project_args.name] = Project(f"harbor-project-{project_args.name}", project_args,
                                                      connection, opts(), settings)
    for robot in section.robots:
        objects.robots[robot.name] = RobotAccount(f"harbor-robot-{robot.name}", robot, connection, opts(), settings)
    for policy in section.policies:
        registry = objects.registries[policy.registry]
        # A pull policy writes into its destination project: create that first.
        dest_projects = [p for name, p in objects.projects.items() if name == policy.dest_namespace]
        objects.policies[policy.name] = ReplicationPolicy(
            f"harbor-policy-{policy.name}", policy.to_args(registry.id.apply(int)), connection,
            opts(registry, *dest_projects), settings)
        if policy.run is not None:
            resource = objects.policies[policy.name]
            run = ReplicationRunArgs(policy_id=cast(int, resource.id.apply(int)),  # resolved before create
                                     run_key=policy.run.key,
                                     timeout_seconds=policy.run.timeout_seconds,
                                     poll_seconds=policy.run.poll_seconds)
            objects.runs[policy.name] = ReplicationRun(f"harbor-run-{policy.name}", run, connection,
                                                       opts(resource), settings)
    for retention in section.retention_policies:
        project = objects.projects[retention.project]
        objects.retention_policies[retention.project] = RetentionPolicy(
            f"harbor-retention-{retention.project}", retention.to_args(project.id.apply(int)), connection,
            opts(project), settings)
    for user_args in section.users:
        objects.users[user_args.username] = LocalUser(f"harbor-user-{user_args.username}", user_args, connection,
                                                      opts(), settings)
    for group_args in section.user_groups:
        objects.user_groups[group_args.name] = UserGroup(f"harbor-group-{group_args.name}", group_args, connection,
                                                         opts(), settings)
    for member in section.members:
        project = objects.projects[member.project]
        group = objects.user_groups.get(member.group) if member.group is not None else None
        user = objects.users.get(member.user) if member.user is not None else None
        member_of: list[pulumi.Resource] = [project] + [r for r in (group, user) if r is not None]
        objects.members[member.name] = ProjectMember(
            f"harbor-member-{member.name}",
            member.to_args(project.id.apply(int), group.id.apply(int) if group is not None else None),
            connection, opts(*member_of), settings)
    for hook in section.webhooks:
        project = objects.projects[hook.project]
        objects.webhooks[hook.identity] = Webhook(f"harbor-webhook-{hook.identity}",
                                                  hook.to_args(project.id.apply(int)), connection, opts(project),
                                                  settings)
    for label in section.labels:
        label_project = objects.projects[label.project] if label.project else None
        objects.labels[label.identity] = Label(
            f"harbor-label-{label.identity}", label.to_args(label_project.id.apply(int) if label_project else None),
            connection, opts(*([label_project] if label_project else [])), settings)
    for rule in section.immutable_tag_rules:
        project = objects.projects[rule.project]
        objects.immutable_tag_rules[rule.name] = ImmutableTagRule(
            f"harbor-immutable-{rule.name}", rule.to_args(project.id.apply(int)), connection, opts(project), settings)
    return objects

