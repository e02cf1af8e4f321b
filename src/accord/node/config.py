"""A node's configuration file: who the member is, where the hub is, where the data is.

Relative paths in the file are resolved against the file's own folder, so a member can
move its node directory without editing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accord.errors import ConfigError
from accord.protocol import check_hub_url

MEMBER_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["duckdb", "postgres"] = "duckdb"
    path: str | None = None
    dsn: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    threads: int | None = Field(default=None, ge=1, le=256)
    """DuckDB worker threads (default: one per core). Nodes sharing a machine split it."""


class DisclosureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(default=10, ge=2)
    rounding: int = Field(default=5, ge=1)


class FaultInjection(BaseModel):
    """Deliberate faults for resilience tests; empty in a real deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_before_execute: float = Field(default=0.0, ge=0, le=600)


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    member: str = Field(pattern=MEMBER_ID)
    hub_url: str
    hub_public_key: Path
    key: Path
    tls_ca: Path | None = None  # PEM certificates to trust for the hub; default: the system's
    patient_key: Path | None = None
    """The consortium's patient-token key (hex, at least 32 bytes), shared by the members
    and never by the hub: it keys national ids for counting distinct patients."""
    database: DatabaseConfig
    state_dir: Path = Path("state")
    disclosure: DisclosureConfig = DisclosureConfig()
    connect_give_up_seconds: float = Field(default=30.0, gt=0)
    fault_injection: FaultInjection = FaultInjection()

    @field_validator("hub_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        return check_hub_url(value)

    @property
    def websocket_url(self) -> str:
        url = self.hub_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return url

    def resolved(self, base: Path) -> NodeConfig:
        def at(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        database = self.database
        if database.engine == "duckdb" and database.path is not None:
            database = database.model_copy(update={"path": str(at(Path(database.path)))})
        return self.model_copy(
            update={
                "hub_public_key": at(self.hub_public_key),
                "key": at(self.key),
                "state_dir": at(self.state_dir),
                "tls_ca": at(self.tls_ca) if self.tls_ca else None,
                "patient_key": at(self.patient_key) if self.patient_key else None,
                "database": database,
            }
        )


def describe(error: ValidationError) -> str:
    """Every problem of a pydantic validation error, each with its field path."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()
    )


def load_node_config(path: Path) -> NodeConfig:
    """Read and validate a node config file; every problem is named with its field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"node config {path} does not exist", hint="create it with: accord node init"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read node config {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"node config {path} is not valid JSON: line {error.lineno} column {error.colno}: "
            f"{error.msg}"
        ) from None
    try:
        config = NodeConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"node config {path} is invalid: {describe(error)}") from None
    config = config.resolved(path.parent.resolve())
    db = config.database
    if db.engine == "duckdb":
        if db.path is None:
            raise ConfigError(f"node config {path}: database.path is required for duckdb")
        if not Path(db.path).exists():
            raise ConfigError(
                f"node config {path}: database file {db.path} does not exist",
                hint="load the member's data first (accord synth, or accord ingest)",
            )
    elif db.dsn is None:
        raise ConfigError(f"node config {path}: database.dsn is required for postgres")
    return config


PATIENT_KEY_BYTES = 32


def load_patient_key(path: Path) -> bytes:
    """The consortium's patient-token key from its file: hex text of at least 32 bytes."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the patient key {path}: {error}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < PATIENT_KEY_BYTES:
        raise ConfigError(
            f"patient key {path}: expected at least {PATIENT_KEY_BYTES} bytes written as hex",
            hint="make one with: python -c 'import os; print(os.urandom(32).hex())', "
            "and give the same file to every member, never to the hub",
        )
    return key


def write_node_config(path: Path, config: NodeConfig) -> None:
    """Write a config atomically (temp file, then rename) so a crash leaves no half file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps(config.model_dump(mode="json", by_alias=True), indent=2) + "\n",
        encoding="utf-8",
    )
    tmp.replace(path)
