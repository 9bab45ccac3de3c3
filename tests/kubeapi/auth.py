"""Authentication: who a bearer token is. An unknown or missing token answers 401, as a real server without
anonymous access does; `FAKE_TOKEN` is the cluster admin (group `system:masters`)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from tests.kubeapi import resources
from tests.kubeapi.status import unauthorized
from tests.kubeapi.store import ObjectStore

FAKE_TOKEN = "kubeapi-emulator-token"
"""The admin token of the kubeconfig that kubectl, helm and `KubeAPI.api_client()` use."""

ADMIN_USER = "kubeapi-admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    service_account: tuple[str, str] | None = None  # (namespace, name) for a ServiceAccount token

    @property
    def is_admin(self) -> bool:
        return MASTERS in self.groups


ADMIN = User(ADMIN_USER, (MASTERS, AUTHENTICATED))


def service_account_user(name: str, namespace: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
        (namespace, name),
    )


class Authenticator:
    """The tokens the server knows (safe to add from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, User] = {FAKE_TOKEN: ADMIN}

    def add(self, user: User) -> str:
        token = f"kubeapi-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._users[token] = user
        return token

    def authenticate(self, headers: Mapping[str, str], store: ObjectStore) -> User:
        """The user behind `Authorization: Bearer <token>`; a ServiceAccount's token is valid only while the
        ServiceAccount exists (the token authenticator looks it up, as a bound token's does)."""
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        with self._lock:
            user = self._users.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise unauthorized()
        if user.service_account is not None:
            namespace, name = user.service_account
            if store.find(resources.by_kind("v1", "ServiceAccount"), namespace, name) is None:
                raise unauthorized()
        return user
