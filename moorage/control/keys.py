"""Access keys: created, listed and revoked here; looked up on every request.

Secrets are kept in the store because SigV4 needs the secret itself to recompute a
signature (it cannot be hashed). They are never logged. Lookups hit an in-memory map that
this service rebuilds whenever it changes a key, so a revocation takes effect at once.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.clock import Clock, timestamp
from moorage.errors import ValidationException
from moorage.settings import Settings
from moorage.store import Store

ROLES = ("admin", "invoke")
_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str
    role: str
    endpoints: str  # a glob over endpoint names, for invoke keys


class KeyService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._active: dict[str, Key] | None = None
        #: goes up whenever a key is added, replaced or revoked (verifiers drop cached signing keys)
        self.version = 0

    def lookup(self, access_key_id: str) -> Key | None:
        if self._active is None:
            self._active = {row.access_key_id: Key(row.access_key_id, row.secret, row.role, row.endpoints)
                            for row in self.store.keys() if row.revoked is None}
        return self._active.get(access_key_id)

    def create(self, role: str, endpoints: str = "*", *, access_key_id: str | None = None,
               secret: str | None = None) -> Key:
        if role not in ROLES:
            raise ValidationException(f"Role must be one of {', '.join(ROLES)}; got {role!r}.")
        return self._add(_new_key(role, endpoints, access_key_id, secret))

    def _add(self, key: Key) -> Key:
        self.store.add_key(key.access_key_id, key.secret, key.role, key.endpoints, timestamp(self.clock))
        self._changed()
        return key

    def _changed(self) -> None:
        self._active = None
        self.version += 1

    def list(self) -> list[dict[str, Any]]:
        return [{"AccessKeyId": row.access_key_id, "Role": row.role, "Endpoints": row.endpoints,
                 "CreationTime": row.created, "Status": "Revoked" if row.revoked else "Active"}
                for row in self.store.keys()]

    def revoke(self, access_key_id: str) -> None:
        if not self.store.revoke_key(access_key_id, timestamp(self.clock)):
            raise ValidationException(f"No active access key {access_key_id}.")
        self._changed()

    def bootstrap(self, settings: Settings) -> str | None:
        """Make sure an admin key exists. Returns a message for the operator when this start
        created one (or took one from the environment), else None."""
        env_id = settings.admin_access_key_id
        env_secret = settings.admin_secret_access_key.get_secret_value()
        if env_id and env_secret:
            known = self.lookup(env_id)
            if known is None or known.secret != env_secret or known.role != "admin":
                self.store.delete_key(env_id)
                self.create("admin", access_key_id=env_id, secret=env_secret)
            return None
        if any(row.role == "admin" and row.revoked is None for row in self.store.keys()):
            return None
        # the file first: a key is never stored unless its operator can read it back
        key = _new_key("admin")
        path = settings.data_dir / "credentials"
        _write_credentials(path, key)
        self._add(key)
        return (f"Created an admin access key; its credentials are in {path} (profile 'moorage').\n"
                f"  boto3:  AWS_SHARED_CREDENTIALS_FILE={path} AWS_PROFILE=moorage\n"
                f"  CLI:    moorage --help (it reads that file by default)")


def _new_key(role: str, endpoints: str = "*", access_key_id: str | None = None,
             secret: str | None = None) -> Key:
    return Key(access_key_id or "MOOR" + "".join(secrets.choice(_ALPHABET) for _ in range(16)),
               secret or secrets.token_urlsafe(30), role, endpoints or "*")


def _write_credentials(path: Path, key: Key) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"[moorage]\naws_access_key_id = {key.access_key_id}\n"
            f"aws_secret_access_key = {key.secret}\n")
    # created 0600 from the start: the secret is never world-readable, not even briefly
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    path.chmod(0o600)
