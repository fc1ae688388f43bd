"""Harbor's admin password in code: the AdminPassword dynamic resource.

Harbor takes `harbor_admin_password` (HARBOR_ADMIN_PASSWORD in core's environment) only while the admin has no
password yet; afterwards core ignores it ("password already exists in database. Use Harbor UI or API to change",
src/core/main.go updateInitPasswordWithMgr). So the nodes are installed with a generated initial password, and this
resource brings the admin to the stack's `harborAdminPassword` through the API, then keeps it there:

- PUT /api/v2.0/users/{id}/password as the admin, with `old_password` (src/server/v2.0/handler/user.go
  UpdateUserPassword: a user changing its own password must give the current one, else 403 "Current password is
  incorrect"; the new one must pass requireValidSecret, 8-128 characters with a lower and an upper case letter and
  a digit, else 400; and differ from the current one, else 400);
- the id from GET /api/v2.0/users/current (the admin is user 1, but asking costs one call and assumes nothing);
- the state records the new password only once Harbor accepts it at login, so a failed change leaves the old one
  recorded and the next `pulumi up` tries again;
- a change applied whose answer was lost (the retry then meets a 401 or 403) is recognised: the new password logs in.

With the generated password (no `harborAdminPassword`) nothing is asked of Harbor at create: it is the password the
nodes installed. The outputs carry the password the admin has now; the cluster exports it and the Harbor objects
(harbor_provider/resources.py) log in with it, so they run after a change and store the new credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, \
    UpdateResult

from .client import ClientSettings, Credentials, HarborClient, HarborError
from .models import password_problem
from .typed import is_unknown

INPUTS = ("harbor_url", "harbor_username", "harbor_ca_certificate", "password", "initial_password")
SECRET_OUTPUTS = ["password", "initial_password"]


class AdminPasswordProvider(ResourceProvider):
    """Sets and keeps the admin's password through Harbor's API (see the module docstring)."""

    def __init__(self, settings: Optional[ClientSettings] = None):
        super().__init__()
        self.settings = settings

    def _client(self, props: dict, password: str) -> HarborClient:
        credentials = Credentials(props["harbor_url"], props.get("harbor_username") or "admin", password,
                                  props.get("harbor_ca_certificate"))
        return HarborClient(credentials, self.settings or ClientSettings.from_env())

    @staticmethod
    def _outputs(props: dict) -> dict:
        return {k: props[k] for k in INPUTS if props.get(k) is not None}

    def check(self, olds: dict, news: dict) -> CheckResult:
        failures = [CheckFailure(k, "unknown input of the admin password") for k in news
                    if k not in INPUTS and k != "__provider"]
        for key in ("harbor_url", "password"):
            if not news.get(key):
                failures.append(CheckFailure(key, "is required"))
        password = news.get("password")
        if isinstance(password, str) and not is_unknown(password):
            problem = password_problem(password)
            if problem:
                failures.append(CheckFailure("password", f"harborAdminPassword: {problem} (Harbor refuses it with "
                                                         "400)"))
        return CheckResult(news, failures)

    def diff(self, id_: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in INPUTS if news.get(k) != olds.get(k) or is_unknown(news.get(k))]
        # Never a replacement: there is one admin, and a delete would have nothing to undo.
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict) -> CreateResult:
        if props["password"] != props.get("initial_password"):
            self._ensure(props, props["password"], [props.get("initial_password")])
        return CreateResult(props.get("harbor_username") or "admin", self._outputs(props))

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        if news["password"] != olds.get("password"):
            self._ensure(news, news["password"], [olds.get("password"), news.get("initial_password")])
        return UpdateResult(self._outputs(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        """Harbor cannot show a password: refresh checks that the recorded one still logs in."""
        client = self._client(props, props["password"])
        if not self._logs_in(client):
            raise HarborError(self._lost_message(props))
        return ReadResult(id_, self._outputs(props))

    def delete(self, id_: str, props: dict) -> None:
        """Harbor's admin cannot be deleted: removing the resource (destroying the stack) leaves its password."""

    # -- the change ------------------------------------------------------------------------------------------
    def _logs_in(self, client: HarborClient) -> bool:
        try:
            client.request("GET", "/users/current", ok=(200,))
        except HarborError as err:
            if err.status == 401:
                return False
            raise
        return True

    def _ensure(self, props: dict, desired: str, previous: list[Optional[str]]) -> None:
        """Make `desired` the admin's password, logging in with the first of `previous` Harbor accepts."""
        new = self._client(props, desired)
        if self._logs_in(new):
            return  # already so: an earlier run's change whose answer was lost, or the same change made by hand
        for old in dict.fromkeys(p for p in previous if p and p != desired):
            client = self._client(props, old)
            try:
                me = client.request("GET", "/users/current", ok=(200,)).body
            except HarborError as err:
                if err.status == 401:
                    continue
                raise
            try:
                client.request("PUT", f"/users/{me['user_id']}/password",
                               json_body={"old_password": old, "new_password": desired}, ok=(200,))
            except HarborError as err:
                if self._logs_in(new):
                    return  # applied, and the answer lost: its retry met the changed password
                raise HarborError(f"Harbor refused the new admin password (harborAdminPassword): "
                                  f"{'; '.join(err.harbor_messages) or err}. The old one stays in force and "
                                  "recorded; fix harborAdminPassword and run `pulumi up` again.", err.status) from None
            if not self._logs_in(new):
                raise HarborError("Harbor accepted the new admin password but does not log in with it; the old one "
                                  "stays recorded. Check Harbor's core log, then run `pulumi up` again.")
            return
        raise HarborError(self._lost_message(props))

    @staticmethod
    def _lost_message(props: dict) -> str:
        url, user = props["harbor_url"], props.get("harbor_username") or "admin"
        return (f"Harbor at {url} accepts none of the admin passwords this stack knows (for `{user}`): it was changed "
                "outside the program (Harbor's UI or API). Set harborAdminPassword to the one in force (`scripts/"
                "pulumi.sh STACK config set --secret harbor-ha:harborAdminPassword`) and run `pulumi up`: it is "
                "recorded without a change, and later changes go through Harbor's API again (docs/operations/"
                "rotations.md).")


@dataclass
class AdminPasswordArgs:
    """Inputs of AdminPassword (each a value or an Output)."""

    url: Any  #: Harbor's URL (the cluster's VIP name)
    password: Any  #: the password the admin must have (harborAdminPassword, or the generated one)
    initial_password: Any  #: the generated one the nodes install Harbor with (harbor.yml's harbor_admin_password)
    username: Any = "admin"  #: the admin's login
    ca_certificate: Any = None  #: PEM of the CA of Harbor's certificate (None: the system CAs)


class AdminPassword(pulumi.dynamic.Resource, module="harbor", name="AdminPassword"):
    """Harbor's admin password, set through the API. Output `password`: the one in force (secret)."""

    password: pulumi.Output[str]

    def __init__(self, resource_name: str, args: AdminPasswordArgs, opts: Optional[pulumi.ResourceOptions] = None,
                 settings: Optional[ClientSettings] = None):
        props = {"harbor_url": args.url, "harbor_username": args.username,
                 "harbor_ca_certificate": args.ca_certificate, "password": pulumi.Output.secret(args.password),
                 "initial_password": pulumi.Output.secret(args.initial_password)}
        super().__init__(AdminPasswordProvider(settings), resource_name, props, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)))
        self.password = pulumi.Output.secret(self.password)
