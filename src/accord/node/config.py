"""A node's configuration file: who the member is, where the hub is, where the data is.

Relative paths in the file are resolved against the file's own folder, so a member can
move its node directory without editing it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from accord.errors import ConfigError
from accord.protocol import check_hub_url

MEMBER_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
SPARK_DATABASE = re.compile(r"[A-Za-z0-9_]{1,128}")
"""A database name Spark's session catalog accepts: letters, digits and underscores."""
GATE_DB_NAME = "accord_quality.duckdb"
"""A Spark member's quality gate verdicts, by default in its tables folder."""
# Spark settings that have a field of their own in SparkConfig.
_SPARK_FIELDS = {"spark.master": "master", "spark.sql.warehouse.dir": "warehouse"}


class SparkConfig(BaseModel):
    """How the node reaches a CDM held in Apache Spark.

    ``tables`` is a folder holding one parquet dataset per CDM table, each in a folder
    named after its table (``person/``, ``condition_occurrence/``, ...): the node
    registers them as tables of the database named by ``database.schema`` and reads the
    files where they are. Without it the tables must already be in a persistent catalog
    (a Hive metastore, set up through ``conf``).

    Spark's tables cannot keep the quality gate's verdicts (parquet takes no ``DELETE``
    and no transaction), so they are kept in a DuckDB file of their own, ``gate_db``:
    the data steward's ``accord quality run --node`` writes it and the node reads it
    before every task. By default it is ``accord_quality.duckdb`` in the ``tables``
    folder; a member whose tables are in a persistent catalog names one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str = Field(default="local[2]", pattern=r"^\S+$")
    """Where Spark runs: ``local[2]`` (two threads in the node's process), or a cluster."""
    tables: str | None = None
    warehouse: str | None = None
    """Spark's warehouse folder (``spark.sql.warehouse.dir``); default: a temporary one."""
    conf: dict[str, str] = Field(default_factory=dict)
    """Further Spark settings, such as ``spark.driver.memory``."""
    gate_db: str | None = None
    """The DuckDB file holding the quality gate's verdicts on these tables."""

    @field_validator("conf")
    @classmethod
    def _spark_settings(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.startswith("spark."):
                raise ValueError(f"{key!r} is not a Spark setting (they start with 'spark.')")
            if key in _SPARK_FIELDS:
                raise ValueError(f"set {key} with database.spark.{_SPARK_FIELDS[key]}")
        return value

    @property
    def persistent_catalog(self) -> bool:
        """Whether the tables come from a catalog that outlives the session (Hive)."""
        return self.conf.get("spark.sql.catalogImplementation") == "hive"

    @property
    def gate_path(self) -> Path | None:
        """Where the quality gate's verdicts are kept (``None``: nowhere configured)."""
        if self.gate_db is not None:
            return Path(self.gate_db)
        if self.tables is not None:
            return Path(self.tables) / GATE_DB_NAME
        return None


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["duckdb", "postgres", "spark"] = "duckdb"
    path: str | None = None
    dsn: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    threads: int | None = Field(default=None, ge=1, le=256)
    """DuckDB worker threads (default: one per core). Nodes sharing a machine split it."""
    spark: SparkConfig | None = None
    """For ``engine: spark``: the session and where the CDM's tables are."""

    @model_validator(mode="after")
    def _settings_of_the_engine(self) -> DatabaseConfig:
        if self.engine != "spark":
            if self.spark is not None:
                raise ValueError(f"spark settings are for engine spark, not {self.engine}")
            return self
        misplaced = [
            name
            for name, value in (("path", self.path), ("dsn", self.dsn), ("threads", self.threads))
            if value is not None
        ]
        if misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} cannot be set for engine spark; "
                "its settings go under database.spark"
            )
        if self.schema_ is not None and not SPARK_DATABASE.fullmatch(self.schema_):
            raise ValueError(
                f"schema {self.schema_[:80]!r} cannot name a Spark database: use letters, "
                "digits and underscores (at most 128)"
            )
        spark = self.spark or SparkConfig()
        if spark.tables is None and not spark.persistent_catalog:
            raise ValueError(
                "engine spark needs database.spark.tables (a folder of parquet tables, one "
                "per CDM table) or a persistent catalog in database.spark.conf "
                "(spark.sql.catalogImplementation: hive)"
            )
        return self


class DisclosureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(default=10, ge=2)
    rounding: int = Field(default=5, ge=1)


class FaultInjection(BaseModel):
    """Deliberate faults for resilience tests; empty in a real deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_before_execute: float = Field(default=0.0, ge=0, le=600)
    refuse_secure: bool = False
    """Refuse every round of a secure sum, as a member whose rules forbid taking part."""


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
        if database.spark is not None:
            spark = database.spark
            folders = {
                "tables": spark.tables,
                "warehouse": spark.warehouse,
                "gate_db": spark.gate_db,
            }
            spark = spark.model_copy(
                update={k: str(at(Path(v))) for k, v in folders.items() if v is not None}
            )
            database = database.model_copy(update={"spark": spark})
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
    elif db.engine == "spark":
        tables = db.spark.tables if db.spark is not None else None
        if tables is not None and not Path(tables).is_dir():
            raise ConfigError(
                f"node config {path}: database.spark.tables: folder {tables} does not exist",
                hint="name the folder holding the CDM's parquet tables (person/, ...)",
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
