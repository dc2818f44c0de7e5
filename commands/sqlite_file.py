"""Opening the product's SQLite files: schema migrations, damaged files moved aside, a busy file reported.

Each store lists its migrations in order; migration N takes a file from schema version N-1 to N, and
`PRAGMA user_version` records how far a file has come. Opening a file runs the steps it lacks, each in
its own write transaction, so two processes opening the same file at once upgrade it once. A file from
newer code is refused (it may hold data this code would misread). A file SQLite cannot read is moved
aside, never deleted, and a fresh one takes its place: the bot starts instead of crash-looping.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]
BUSY_TIMEOUT_S = 5.0
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_COMPANIONS = ("-wal", "-shm")  # SQLite's side files, which belong to the main file


class SchemaTooNew(Exception):
    """The file was written by newer code: the operator upgrades the bot or restores an older file."""

    def __init__(self, path: Path, found: int, supported: int) -> None:
        super().__init__(
            f"{path} has schema version {found}, but this version of the bot knows versions up to {supported}. "
            "Run the newer bot, or restore a backup of the file made by this version."
        )
        self.path, self.found, self.supported = path, found, supported


class StorageBusy(Exception):
    """Another connection held the file's lock for longer than the busy timeout."""

    message = "The bot's records are busy right now; please try again in a minute."

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} stayed locked by another connection")
        self.path = path


class _FailedCheck(sqlite3.DatabaseError):
    """SQLite's own integrity check found damage that reading the header did not."""


def is_corrupt(error: sqlite3.Error) -> bool:
    return isinstance(error, _FailedCheck) or _primary_code(error) in _CORRUPT_CODES


def is_busy(error: sqlite3.Error) -> bool:
    return _primary_code(error) in _BUSY_CODES


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def create_statements(script: str) -> Migration:
    """A migration that runs each `;`-separated statement of a plain DDL script (no triggers)."""
    statements = [statement.strip() for statement in script.split(";") if statement.strip()]

    def migrate(connection: sqlite3.Connection) -> None:
        for statement in statements:
            connection.execute(statement)

    return migrate


def open_database(
    path: Path, migrations: Sequence[Migration], *, busy_timeout_s: float = BUSY_TIMEOUT_S,
) -> sqlite3.Connection:
    """A connection to `path` at the latest schema, in WAL mode and autocommit (isolation_level None).

    Raises SchemaTooNew for a file from newer code, StorageBusy when another connection keeps it locked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open_checked(path, migrations, busy_timeout_s)
    except sqlite3.DatabaseError as error:
        if is_busy(error):
            raise StorageBusy(path) from error
        if not is_corrupt(error):
            raise
        move_aside(path, error)
    return _open_checked(path, migrations, busy_timeout_s)


def _open_checked(path: Path, migrations: Sequence[Migration], busy_timeout_s: float) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    try:
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        _version(connection, path, len(migrations))  # a file from newer code is left exactly as it is
        _check_integrity(connection)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it safe across crashes
        migrate(connection, migrations, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_integrity(connection: sqlite3.Connection) -> None:
    """Damage that the header check misses (a torn page) shows here, at start, not in the middle of a job."""
    problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise _FailedCheck(f"database disk image is malformed: {problems[0][:200]}")


def migrate(connection: sqlite3.Connection, migrations: Sequence[Migration], path: Path) -> int:
    """Run the steps this file lacks, one transaction each; returns the file's version afterwards."""
    latest = len(migrations)
    while (version := _version(connection, path, latest)) < latest:
        connection.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process may upgrade
        try:
            version = _version(connection, path, latest)
            if version == latest:
                connection.execute("COMMIT")
                break
            migrations[version](connection)
            connection.execute(f"PRAGMA user_version={version + 1}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        if version > 0:
            log.info("%s: schema upgraded from version %d to %d", path.name, version, version + 1)
    return latest


def _version(connection: sqlite3.Connection, path: Path, latest: int) -> int:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > latest:
        raise SchemaTooNew(path, version, latest)
    return version


def move_aside(path: Path, error: BaseException) -> Path:
    """Rename a damaged file (and its side files) to `<name>.corrupt-<time>` and say so once."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}")
    path.rename(target)
    for side in _COMPANIONS:
        companion = path.with_name(path.name + side)
        if companion.exists():
            companion.rename(target.with_name(target.name + side))
    log.error("%s is damaged (%s); moved it to %s and started an empty one", path, error, target.name)
    return target
