"""A node killed mid-task and restarted completes that task exactly once."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from accord.client import Client
from accord.query.scenarios import trial_recruitment
from accord.trust.keys import load_identity
from consortium import Running


def audit_kinds(path: Path, task_id: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [
            kind
            for (kind,) in db.execute(
                "SELECT kind FROM audit_entries WHERE body LIKE ? ORDER BY seq", (f"%{task_id}%",)
            )
        ]


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_node_killed_mid_task_completes_it_exactly_once(fresh: Running) -> None:
    victim = fresh.ids[0]
    config_path = fresh.layout.node_config(victim)
    config = json.loads(config_path.read_text())
    config["fault_injection"] = {"delay_before_execute": 30}
    config_path.write_text(json.dumps(config))
    fresh.consortium.stop_node(victim)
    fresh.consortium.start_node(victim)
    fresh.consortium.wait_connected(fresh.ids)

    node_audit = fresh.layout.nodes / victim / "state" / "audit.db"
    with Client(fresh.consortium.url, load_identity(fresh.layout.researcher_key)) as client:
        task_id = client.submit(trial_recruitment(fresh.as_of))
        wait_for(lambda: "task.received" in audit_kinds(node_audit, task_id))
        fresh.consortium.kill_node(victim)  # SIGKILL while it sleeps before executing

        config["fault_injection"] = {"delay_before_execute": 0}
        config_path.write_text(json.dumps(config))
        fresh.consortium.start_node(victim)
        result = client.wait(task_id, timeout=60)

    assert result.done
    outcome = next(m for m in result.members if m.member == victim)
    assert outcome.status == "done"
    assert outcome.count is not None
    assert audit_kinds(node_audit, task_id).count("task.received") == 2
    assert audit_kinds(node_audit, task_id).count("task.executed") == 1
    hub_kinds = audit_kinds(fresh.layout.hub / "audit.db", task_id)
    assert hub_kinds.count("task.result") == len(fresh.ids)


def test_node_reconnects_after_hub_restart(fresh: Running) -> None:
    fresh.consortium.restart_hub()
    fresh.consortium.wait_connected(fresh.ids, timeout=60)
    with Client(fresh.consortium.url, load_identity(fresh.layout.researcher_key)) as client:
        result = client.run(trial_recruitment(fresh.as_of), timeout=60)
    assert result.done
    log = (fresh.layout.logs / f"{fresh.ids[0]}.log").read_text()
    assert "reconnecting" in log or "retrying" in log
