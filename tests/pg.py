"""A throwaway PostgreSQL server for tests, started from the installed server binaries.

The server lives in a temporary directory, listens on 127.0.0.1 only (and on a unix
socket inside that directory), trusts loopback connections, and is stopped and deleted
afterwards. PostgreSQL refuses to run as root, so under root the directory is handed to
the ``postgres`` system user and the binaries run as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

SERVER_PACKAGE = "postgresql"
SYSTEM_USER = "postgres"
SEARCH_GLOB = "/usr/lib/postgresql/*/bin"
DATABASE = "accord_test"


class PostgresUnavailable(Exception):
    """The binaries (or the user to run them as) are missing on this machine."""


def find_binaries() -> Path:
    """The directory holding both ``initdb`` and ``pg_ctl``: PATH first, then the newest
    Debian-style install."""
    initdb = shutil.which("initdb")
    candidates = [Path(initdb).parent] if initdb else []
    candidates += sorted(
        (Path(d) for d in glob(SEARCH_GLOB)),
        key=lambda d: _version_key(d.parent.name),
        reverse=True,
    )
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in "
        f"{SEARCH_GLOB}; install the Debian package '{SERVER_PACKAGE}' "
        f"(apt-get install {SERVER_PACKAGE})"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One server; ``start()`` then ``dsn``, and ``stop()`` when done."""

    binaries: Path = field(default_factory=find_binaries)
    root: Path = field(init=False)
    port: int = field(init=False, default=0)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def dsn(self, database: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} user={SYSTEM_USER} dbname={database}"

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="accord-pg-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._hand_over(self.root)
        self._run(
            "initdb", "-D", str(self.data), "-U", SYSTEM_USER, "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        # Our own pg_hba: trust only the unix socket (private to this directory) and
        # loopback; nothing else can connect.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
        )
        for attempt in range(3):
            self.port = free_port()
            with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(
                    f"\nport = {self.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.root}'\n"
                    # A test server's data is disposable; durability only costs time.
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")
                break
            except RuntimeError:
                # Another process may have taken the port between probe and bind.
                if attempt == 2:
                    raise
        self._create_database()

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                # The data is thrown away next, so there is nothing to shut down cleanly.
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")

    def _hand_over(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and there is no '{SYSTEM_USER}' user to run PostgreSQL "
                f"as; install the Debian package '{SERVER_PACKAGE}', which creates it"
            ) from None
        os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.binaries / program), *args]
        if os.geteuid() == 0:
            command = _as_system_user(command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )


def _as_system_user(command: list[str]) -> list[str]:
    if shutil.which("runuser"):
        return ["runuser", "-u", SYSTEM_USER, "--", *command]
    if shutil.which("setpriv"):
        user = pwd.getpwnam(SYSTEM_USER)
        ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
        return ["setpriv", *ids, *command]
    raise PostgresUnavailable(
        f"running as root, and neither runuser nor setpriv is there to become '{SYSTEM_USER}'"
    )
