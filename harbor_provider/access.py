"""Who may do what: Harbor local users, user groups and project members as Pulumi dynamic resources.

A local user's password is a secret input Harbor never shows: the state keeps its salted hash, and a new one is
set with PUT /users/{id}/password (as an admin changing another user's password, no old one is needed). The admin
flag has its own call (PUT /users/{id}/sysadmin), so a user declared admin takes one more call on create.

A user group is an LDAP group (by DN, which Harbor looks up on create), an HTTP (authproxy) group or an OIDC
group; only its name changes in place (handler/usergroup.go UpdateUserGroup). A project member is a user (by
name: Harbor onboards an LDAP/OIDC user it has not seen) or a group (by id) with a role; only the role changes in
place (PUT /projects/{id}/members/{mid} takes a RoleRequest). Calls: create 2, read 1, update 2, delete 1.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi

from .client import ClientSettings, HarborClient
from .models import GROUP_TYPES, PROJECT_ROLES, LocalUserArgs, ProjectMemberArgs, UserGroupArgs
from .resources import SALT_KEY, Connection, _HarborProvider, _inputs, _opts, salted_hash

# Looked up with the number Harbor answers, which may be absent (None): that is "unknown".
_GROUP_TYPE_NAMES: dict[Optional[int], str] = {v: k for k, v in GROUP_TYPES.items()}
_ROLE_NAMES: dict[Optional[int], str] = {v: k for k, v in PROJECT_ROLES.items()}


class LocalUserProvider(_HarborProvider):
    args_type = LocalUserArgs
    path = "/users"
    kind = "local user"
    replace_fields = ("username",)
    secret_fields = ("password",)

    def create_body(self, args: LocalUserArgs) -> dict:
        return {"username": args.username, "email": args.email, "realname": args.realname or args.username,
                "comment": args.comment, "password": args.password}

    def after_create(self, client: HarborClient, id_: str, args: LocalUserArgs, body: Any) -> dict:
        if args.admin:
            self._set_admin(client, id_, True)
        return {}

    def _set_admin(self, client: HarborClient, id_: str, admin: bool) -> None:
        client.request("PUT", f"{self.path}/{id_}/sysadmin", json_body={"sysadmin_flag": admin}, ok=(200,))

    def find(self, client: HarborClient, args: LocalUserArgs) -> Optional[dict]:
        for user in client.list_all(self.path, {"username": args.username}):  # a fuzzy match: compare exactly
            if user.get("username") == args.username:
                return user
        return None

    def id_of(self, obj: dict) -> str:
        return str(obj["user_id"])

    def adopt(self, client: HarborClient, id_: str, args: LocalUserArgs, existing: dict) -> dict:
        return self.write_update(client, id_, args, self.state(existing))  # no hash: the password is set

    def write_update(self, client: HarborClient, id_: str, args: LocalUserArgs, olds: dict) -> dict:
        desired = self.desired(args)
        if any(olds.get(k) != desired[k] for k in ("email", "realname", "comment")):
            client.request("PUT", f"{self.path}/{id_}", ok=(200,),
                           json_body={"email": args.email, "realname": desired["realname"], "comment": args.comment})
        if salted_hash(olds.get(SALT_KEY) or "", args.password) != olds.get("password_hash"):
            client.request("PUT", f"{self.path}/{id_}/password", json_body={"new_password": args.password},
                           ok=(200,))
        if olds.get("admin") != args.admin:
            self._set_admin(client, id_, args.admin)
        return {}

    def state(self, obj: dict) -> dict:
        return {"username": obj.get("username"), "email": obj.get("email") or "",
                "realname": obj.get("realname") or "", "comment": obj.get("comment") or "",
                "admin": bool(obj.get("sysadmin_flag")), "user_id": obj.get("user_id")}

    def desired(self, args: LocalUserArgs) -> dict:
        return {"username": args.username, "email": args.email, "realname": args.realname or args.username,
                "comment": args.comment, "admin": args.admin}


class UserGroupProvider(_HarborProvider):
    args_type = UserGroupArgs
    path = "/usergroups"
    kind = "user group"
    replace_fields = ("type", "ldap_group_dn")

    def create_body(self, args: UserGroupArgs) -> dict:
        body = {"group_name": args.name, "group_type": GROUP_TYPES[args.type]}
        if args.ldap_group_dn:
            body["ldap_group_dn"] = args.ldap_group_dn
        return body

    def update_body(self, args: UserGroupArgs, olds: dict) -> dict:
        return {"group_name": args.name}

    def find(self, client: HarborClient, args: UserGroupArgs) -> Optional[dict]:
        for group in client.list_all(self.path, {"group_name": args.name}):
            if group.get("group_name") == args.name and group.get("group_type") == GROUP_TYPES[args.type]:
                return group
        return None

    def state(self, obj: dict) -> dict:
        return {"name": obj.get("group_name"), "type": _GROUP_TYPE_NAMES.get(obj.get("group_type"), "unknown"),
                "ldap_group_dn": obj.get("ldap_group_dn") or None}

    def desired(self, args: UserGroupArgs) -> dict:
        return {"name": args.name, "type": args.type, "ldap_group_dn": args.ldap_group_dn or None}


class ProjectMemberProvider(_HarborProvider):
    args_type = ProjectMemberArgs
    path = "/projects"
    kind = "project member"
    replace_fields = ("project_id", "username", "group_id")

    def collection(self, props: dict) -> str:
        return f"/projects/{int(props['project_id'])}/members"

    def label(self, args: ProjectMemberArgs) -> str:
        who = f"user {args.username!r}" if args.username is not None else f"group {args.group_id}"
        return f"{who} of project {args.project_id}"

    def create_body(self, args: ProjectMemberArgs) -> dict:
        if args.username is not None:
            return {"role_id": PROJECT_ROLES[args.role], "member_user": {"username": args.username}}
        return {"role_id": PROJECT_ROLES[args.role], "member_group": {"id": args.group_id}}

    def update_body(self, args: ProjectMemberArgs, olds: dict) -> dict:
        return {"role_id": PROJECT_ROLES[args.role]}

    def fetch(self, client: HarborClient, id_: str, props: dict) -> dict:
        return client.request("GET", f"{self.collection(props)}/{id_}", ok=(200,)).body

    def find(self, client: HarborClient, args: ProjectMemberArgs) -> Optional[dict]:
        wanted = self.desired(args)
        for member in client.list_all(self.collection(vars(args))):
            state = self.state(member)
            if (state["username"], state["group_id"]) == (wanted["username"], wanted["group_id"]):
                return member
        return None

    def adopt(self, client: HarborClient, id_: str, args: ProjectMemberArgs, existing: dict) -> dict:
        return self.write_update(client, id_, args, self.state(existing))

    def state(self, obj: dict) -> dict:
        user = obj.get("entity_type") == "u"
        return {"project_id": obj.get("project_id"), "role": _ROLE_NAMES.get(obj.get("role_id"), "unknown"),
                "username": obj.get("entity_name") if user else None,
                "group_id": None if user else obj.get("entity_id"),
                "entity_name": obj.get("entity_name")}

    def desired(self, args: ProjectMemberArgs) -> dict:
        return {"project_id": args.project_id, "role": args.role, "username": args.username,
                "group_id": args.group_id}


class LocalUser(pulumi.dynamic.Resource, module="harbor", name="LocalUser"):
    """A user of Harbor's database. Outputs: `user_id`, the profile and `admin` as Harbor keeps them, and
    `password_hash` (salted, a secret output); never the password."""

    user_id: pulumi.Output[int]

    def __init__(self, resource_name: str, args: LocalUserArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props: dict[str, Any] = {**_inputs(args, connection), "user_id": None}
        super().__init__(LocalUserProvider(settings), resource_name, props, _opts(opts))


class UserGroup(pulumi.dynamic.Resource, module="harbor", name="UserGroup"):
    """A Harbor user group. Outputs: `name`, `type`, `ldap_group_dn` as Harbor keeps them."""

    def __init__(self, resource_name: str, args: UserGroupArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        super().__init__(UserGroupProvider(settings), resource_name, _inputs(args, connection), _opts(opts))


class ProjectMember(pulumi.dynamic.Resource, module="harbor", name="ProjectMember"):
    """A project membership. Outputs: `project_id`, `role`, `username` or `group_id`, `entity_name`."""

    def __init__(self, resource_name: str, args: ProjectMemberArgs, connection: Optional[Connection] = None,
                 opts: Optional[pulumi.ResourceOptions] = None, settings: Optional[ClientSettings] = None):
        props: dict[str, Any] = {**_inputs(args, connection), "entity_name": None}
        super().__init__(ProjectMemberProvider(settings), resource_name, props, _opts(opts))
