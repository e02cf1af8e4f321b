"""Node configuration: every mistake named with its field, nothing guessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.errors import ConfigError
from accord.node.config import load_node_config


def write(path: Path, body: object) -> Path:
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def valid(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "member.duckdb").write_bytes(b"")
    return {
        "member": "northgate-hospital",
        "hub_url": "http://127.0.0.1:8700",
        "hub_public_key": "hub.pub",
        "key": "northgate-hospital.key",
        "database": {"engine": "duckdb", "path": "member.duckdb"},
    }


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_node_config(write(tmp_path / "node.json", valid(tmp_path)))
    assert config.key == tmp_path / "northgate-hospital.key"
    assert config.database.path == str(tmp_path / "member.duckdb")
    assert config.websocket_url == "ws://127.0.0.1:8700"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_node_config(tmp_path / "absent.json")


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2"):
        load_node_config(write(tmp_path / "node.json", '{\n  "member": ,\n}'))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"member": "Not A Name"}, "member"),
        ({"hub_url": "ftp://hub"}, "hub_url"),
        ({"colour": "blue"}, "colour"),
        ({"database": {"engine": "oracle", "path": "x"}}, "database.engine"),
        ({"disclosure": {"threshold": 1}}, "disclosure.threshold"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, change: dict[str, object], field: str) -> None:
    body = {**valid(tmp_path), **change}
    with pytest.raises(ConfigError) as caught:
        load_node_config(write(tmp_path / "node.json", body))
    assert field in caught.value.message


def test_missing_database_file(tmp_path: Path) -> None:
    body = {**valid(tmp_path), "database": {"engine": "duckdb", "path": "nowhere.duckdb"}}
    with pytest.raises(ConfigError, match=r"nowhere\.duckdb does not exist"):
        load_node_config(write(tmp_path / "node.json", body))
