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

# How a task's results are disclosed, chosen in TASK_CREATE's "disclosure" field.
PER_MEMBER = "per_member"
"""Each member releases its own result through its disclosure rules (the default)."""
SECURE_SUM = "secure_sum"
"""Members mask their raw sums (accord.trust.secagg); the hub learns only the total."""
DISCLOSURE_MODES = (PER_MEMBER, SECURE_SUM)

MIN_SECURE_MEMBERS = 3
"""Fewest members in a secure round: with two, each learns the other's figure from the
total, so the hub refuses such a task and a node refuses such a round."""

SECURE_SCALE_BITS = 24
"""Fractional bits of the fixed point secure sums are encoded in (the ring Z_{2^64}).

A trade-off between precision and range, the same for every member. Rounding moves each
value by at most 2^-25 (about 3e-8), so a summed model step differs from the exact one
far below the fit's tolerance (the integration tests find coefficients within 1e-8
of the per-member fit). The total must stay below 2^(63 - 24) = 2^39 (about 5.5e11) in
magnitude, and each member's value below that divided by the round's size:
``secagg.encode`` refuses anything larger rather than let it wrap. Counts fit with room to
spare; a model's information matrix grows with persons times squared covariates (age
squared over a million persons is about 1e10). More fractional bits would buy precision
no fit needs at the cost of range a large member could reach; fewer would make model
steps visibly inexact."""

MAX_SECURE_VALUES = 8192
"""Longest masked vector the hub accepts: a model with 21 coefficients needs 488 values,
survival counts on the largest grid 603."""


def secure_info(task_id: str, round_id: str, member: str) -> bytes:
    """HPKE ``info`` binding a masked contribution to its task, round and member.

    A contribution sealed for one round cannot be replayed into another round of the same
    task, where its masks would not cancel (or, worse, would be combined with others).
    """
    return f"accord/secure/v1|task={task_id}|round={round_id}|member={member}".encode()


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
