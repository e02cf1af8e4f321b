"""Errors a user can act on, kept apart from internal failures.

A ``UserError`` is printed as one line (what was wrong, what to do) with no traceback and
exits with its component's code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes numbered by component, so a script can tell who failed."""

    OK = 0
    USAGE = 2
    CONFIG = 10
    KEYS = 11
    DATA = 20
    QUARANTINED = 21
    QUERY = 30
    DISCLOSURE = 40
    TRUST = 50
    AUDIT = 51
    HUB = 60
    NODE = 70
    NETWORK = 80


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.USAGE: "bad command-line usage",
    ExitCode.CONFIG: "a configuration file is missing or malformed",
    ExitCode.KEYS: "a key file is missing, unreadable or of the wrong kind",
    ExitCode.DATA: "a database or data file is missing or not what was expected",
    ExitCode.QUARANTINED: "the quality gate quarantined the load: nothing from it was kept",
    ExitCode.QUERY: "a query failed validation",
    ExitCode.DISCLOSURE: "a result was withheld by disclosure control",
    ExitCode.TRUST: "a signature, nonce or encryption check failed",
    ExitCode.AUDIT: "the audit log does not verify",
    ExitCode.HUB: "the hub refused or could not serve the request",
    ExitCode.NODE: "a node could not start or run",
    ExitCode.NETWORK: "a network address was unreachable or already in use",
}


class UserError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(UserError):
    exit_code = ExitCode.CONFIG


class KeyFileError(UserError):
    exit_code = ExitCode.KEYS


class DataError(UserError):
    exit_code = ExitCode.DATA


class QueryError(UserError):
    exit_code = ExitCode.QUERY


class TrustError(UserError):
    """A message failed a signature, freshness, replay or decryption check."""

    exit_code = ExitCode.TRUST


class AuditError(UserError):
    exit_code = ExitCode.AUDIT


class HubError(UserError):
    exit_code = ExitCode.HUB


class NodeError(UserError):
    exit_code = ExitCode.NODE


class NetworkError(UserError):
    exit_code = ExitCode.NETWORK
