"""The wire contract between hub, nodes and researchers: message kinds and bindings.

Every message is a signed envelope (``accord.trust.envelope``). This module is the one
door between the hub and node rooms: both import it, neither imports the other.
"""

from __future__ import annotations

from urllib.parse import urlsplit

API_PREFIX = "/v1"
NODE_CONNECT_PATH = f"{API_PREFIX}/nodes/connect"

# Node -> hub over the node's outbound WebSocket.
NODE_HELLO = "node.hello"
TASK_RESULT = "task.result"
TASK_REFUSED = "task.refused"
QUALITY_STATUS = "quality.status"

# Hub -> node.
NODE_WELCOME = "node.welcome"
TASK_RUN = "task.run"
TASK_ACK = "task.ack"

# Researcher -> hub over HTTPS.
TASK_CREATE = "task.create"
TASK_READ = "task.read"
QUALITY_READ = "quality.read"

# WebSocket close code for a refused node (4000-4999 is the application range).
CLOSE_REFUSED = 4403


def result_info(task_id: str, member: str) -> bytes:
    """HPKE ``info`` binding a result to its task and member.

    A result sealed for one task or member cannot be replayed as another's: decryption
    with any other binding fails.
    """
    return f"accord/result/v1|task={task_id}|member={member}".encode()


LOOPBACK_HOSTS = {"localhost", "::1"}


def check_hub_url(value: str) -> str:
    """An https:// hub URL, or plain http:// only on loopback where nothing can listen in."""
    parsed = urlsplit(value)
    if parsed.scheme in ("https", "wss") and parsed.hostname:
        return value.rstrip("/")
    if parsed.scheme in ("http", "ws") and parsed.hostname:
        host = parsed.hostname
        if host in LOOPBACK_HOSTS or host.startswith("127."):
            return value.rstrip("/")
        raise ValueError(f"plain http:// is allowed on loopback only, not {host}; use https://")
    raise ValueError("expected a URL such as https://hub.example.org (http:// on loopback)")
