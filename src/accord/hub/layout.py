"""Where a hub keeps its keys and state on disk, and how a new hub directory is made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from accord.errors import ConfigError
from accord.hub.store import HubStore
from accord.trust.audit import AuditLog
from accord.trust.keys import Identity, generate_identity, load_identity, write_identity

HUB_NAME = "hub"


@dataclass(frozen=True)
class HubLayout:
    """The hub directory: ``hub.key``/``hub.pub``, ``hub.db``, ``audit.db``, ``nonces.db``."""

    root: Path

    @property
    def key(self) -> Path:
        return self.root / f"{HUB_NAME}.key"

    @property
    def public_key(self) -> Path:
        return self.root / f"{HUB_NAME}.pub"

    @property
    def database(self) -> Path:
        return self.root / "hub.db"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.db"

    @property
    def nonces(self) -> Path:
        return self.root / "nonces.db"

    def identity(self) -> Identity:
        return load_identity(self.key)

    def require_initialised(self) -> None:
        if not self.key.exists() or not self.database.exists():
            raise ConfigError(
                f"{self.root} is not a hub directory (no {self.key.name} or {self.database.name})",
                hint=f"create one with: accord hub init {self.root}",
            )

    def initialise(self) -> Identity:
        """Create keys, the migrated database and the audit log; refuses to clobber a hub."""
        if self.key.exists():
            raise ConfigError(f"{self.root} already holds a hub key", hint="use another directory")
        self.root.mkdir(parents=True, exist_ok=True)
        identity = generate_identity(HUB_NAME)
        write_identity(identity, self.root)
        HubStore.open_path(self.database).engine.dispose()
        with AuditLog.open(self.audit_log, identity) as audit:
            audit.append("hub.initialised", {"hub": HUB_NAME})
        return identity
