"""The node keeps its DuckDB file open between close tasks, lets go when idle, and never
serves a stale verdict: what it caches lives only as long as the file stays open."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from accord.ingest.engines import connect_for_writing
from accord.node.config import DatabaseConfig
from accord.node.executor import MemberDatabase
from accord.quality import gate
from accord.synth import generate_consortium


@pytest.fixture
def member(tmp_path: Path) -> Path:
    manifest = generate_consortium(tmp_path, members=1, persons_per_member=200, seed=4)
    return tmp_path / manifest.members[0].db_file


def test_close_tasks_share_one_open_file_which_closes_when_idle(member: Path) -> None:
    database = MemberDatabase(DatabaseConfig(path=str(member)), idle_seconds=0.2)
    for _ in range(3):
        with database.connect() as connection:
            assert connection.execute("SELECT count(*) FROM person").fetchone() == (200,)
    assert database.opened == 1
    database.close_if_idle()  # used a moment ago: stays open
    assert database.opened == 1
    time.sleep(0.25)
    database.close_if_idle()
    with database.connect():
        pass
    assert database.opened == 2
    database.close()


def test_a_writer_waits_for_another_process_to_let_go(member: Path) -> None:
    # A node is another process holding the file read-only for a moment.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"c = duckdb.connect({str(member)!r}, read_only=True)\n"
            "print('open', flush=True)\n"
            "time.sleep(1.0)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "open"
    started = time.monotonic()
    with connect_for_writing(member) as writer:
        writer.execute("SELECT 1").fetchall()
    assert time.monotonic() - started >= 0.3
    assert holder.wait(10) == 0


def test_a_new_verdict_is_seen_once_the_file_is_reopened(member: Path) -> None:
    database = MemberDatabase(DatabaseConfig(path=str(member)), idle_seconds=0.0)
    with database.connect() as connection:
        assert "has not passed the quality gate" in (database.serving_refusal(connection) or "")
    database.close_if_idle()
    gate.submit_database(member, kind="synth", source="test")
    with database.connect() as connection:
        assert database.serving_refusal(connection) is None
    database.close()
