"""A private PostgreSQL server for the test session: initdb in a temporary folder, started on a
free port of 127.0.0.1, stopped and removed at the end. Nothing is shared with a system server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "openpex"
PASSWORD = "openpex-test"
DATABASE = "openpex_test"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def env(self) -> dict[str, str]:
        """eventsourcing settings for this server."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
        }

    def reset(self) -> None:
        """Drop everything the previous test stored."""
        with psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname=self.dbname, autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed: run ./scripts/setup.sh (it installs Debian's postgresql)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateCluster:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="openpex-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        # As root the server must run as another user; Debian's package creates `postgres`.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.as_user, *command], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + "\n".join(self.log.read_text().splitlines()[-30:])
        except OSError:
            return "(no server log)"

    def start(self) -> PostgresServer:
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "start")
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            connection.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        server = PostgresServer("127.0.0.1", self.port, USER, PASSWORD, DATABASE)
        with psycopg.connect(host=server.host, port=server.port, user=USER, password=PASSWORD,
                             dbname=DATABASE, autocommit=True) as connection:
            connection.execute(f"ALTER SCHEMA public OWNER TO {USER}")
        return server

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                            "-w", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_server_url() -> Iterator[str]:
    """A private server for one run (a benchmark's): its database's URL; stopped and removed after."""
    cluster = PrivateCluster()
    try:
        server = cluster.start()
        yield f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{server.dbname}"
    finally:
        cluster.stop()
