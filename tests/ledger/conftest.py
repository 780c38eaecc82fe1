"""Ledger test fixtures: a SQLite file per test, and a throwaway PostgreSQL server on 127.0.0.1.

The server is Debian's ``postgresql`` (``initdb`` + ``pg_ctl`` from /usr/lib/postgresql/<ver>/bin),
a fresh cluster with trust authentication on a free port, listening on 127.0.0.1 only. initdb
refuses to run as root, so under root the cluster is run by the ``postgres`` system user (through
``runuser``) in a folder of its own under the system's temporary folder (pytest's ``tmp_path`` is
private to root). Without the package the PostgreSQL tests skip locally and fail under CI.
``PostgresServer(hba_lines=..., tls=True)`` adds authentication rules ahead of the trust ones and
turns TLS on with a throwaway self-signed certificate (tests of password and token logins).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path

import pytest

from realtalk.ledger import Ledger, ResponseRecord, SessionRecord, upgrade

from ..conftest import require_binary

_NEEDS = "needs system package 'postgresql': apt-get install postgresql"
_database_numbers = count(1)


def _postgres_bin_dir() -> Path:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if versions:
        return versions[-1].parent
    return Path(require_binary("initdb", "postgresql")).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL cluster of our own: ``start()``, ``stop()``, ``create_database()``, ``remove()``."""

    def __init__(self, *, hba_lines: Sequence[str] = (), tls: bool = False) -> None:
        """``hba_lines``: pg_hba.conf lines checked before the default trust ones (the first line
        that matches decides). ``tls``: the server accepts TLS, with a self-signed certificate."""
        self.bin_dir = _postgres_bin_dir()
        self.tls = tls
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="realtalk-ledger-pg-"))
        self.data_dir = self.root / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("initdb refuses root and runuser is missing (util-linux)")
            try:
                shutil.chown(self.root, user="postgres")
            except LookupError:
                pytest.skip("initdb refuses root and there is no 'postgres' user to run it")
            self._as_user = [runuser, "-u", "postgres", "--"]
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        if hba_lines:
            hba = self.data_dir / "pg_hba.conf"
            hba.write_text("\n".join([*hba_lines, hba.read_text()]))
        if tls:
            self._write_certificate()

    def _write_certificate(self) -> None:
        # Imported here: only TLS tests need it (a dependency of azure-identity, so always there).
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        key_file, certificate_file = self.data_dir / "server.key", self.data_dir / "server.crt"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        # The server refuses a key that others can read, or (run as postgres) that it does not own.
        key_file.chmod(0o600)
        if self._as_user:
            for path in (key_file, certificate_file):
                shutil.chown(path, user="postgres")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, str(self.bin_dir / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
        )

    def start(self) -> None:
        # Loopback only, its socket in its own folder; fsync off: a test cluster, thrown away.
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        if self.tls:
            options += " -c ssl=on"  # server.crt and server.key in the data folder
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; its ``postgresql+asyncpg://`` URL."""
        name = f"ledger_{os.getpid()}_{next(_database_numbers)}"
        self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-qc",
            f"CREATE DATABASE {name}",
        )
        return self.url(name)

    def url(self, database: str, password: str | None = None) -> str:
        credentials = f"postgres:{password}" if password else "postgres"
        return f"postgresql+asyncpg://{credentials}@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except FileNotFoundError:
        pytest.skip(_NEEDS)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test takes a database of its own."""
    yield from _postgres_server()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for one test, which may stop and start it."""
    yield from _postgres_server()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.system_package("postgresql"))])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
async def ledger(empty_db_url: str) -> AsyncIterator[Ledger]:
    """An open ledger on an empty, migrated database (SQLite and PostgreSQL)."""
    await upgrade(empty_db_url)
    opened = await Ledger.open(empty_db_url)
    yield opened
    await opened.aclose()


T0 = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)


def session(
    session_id: str = "sess_1",
    *,
    user: str | None = "alice",
    deployment: str = "voice-eu",
    started_at: datetime = T0,
) -> SessionRecord:
    return SessionRecord(session_id, user, deployment, "gpt-realtime-1.5", "websocket", "ui", started_at)


def response(
    session_id: str = "sess_1",
    response_id: str | None = "resp_1",
    *,
    user: str | None = "alice",
    deployment: str = "voice-eu",
    created_at: datetime = T0,
    cost_usd: str = "0.25",
) -> ResponseRecord:
    return ResponseRecord(
        session_id=session_id,
        response_id=response_id,
        user=user,
        deployment=deployment,
        pricing_model="gpt-realtime-1.5",
        status="completed",
        created_at=created_at,
        audio_out=100,
        cost_usd=Decimal(cost_usd),
        audio_out_usd=Decimal(cost_usd),
        audio_generated_ms=1200,
    )
