"""The ClickHouse engine (chdb-core) behind the HTTP interface.

One process hosts one embedded engine bound to one data directory. `Engine` keeps
a connection open for the server's lifetime (the engine shuts down when its last
connection closes) and hands each HTTP request a `Session`: a fresh chdb
connection, which is its own ClickHouse session, so the request's settings
(`SET`) and database (`USE`) never leak into another request. chdb runs queries
of different connections in parallel and releases the GIL while it does; only
opening and closing connections is serialized here.
"""

import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import chdb

from .errors import ClickHouseError

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Streamed insert data is handed to the engine in pieces of at least this size.
_INSERT_BATCH = 1 << 20

# chdb's streaming inserter drops some engine errors (a violated constraint:
# `finish()` reports the rows written, and nothing is stored). The engine still
# counts them in system.errors, so inserts run one at a time and compare those
# counters before and after: an error counted meanwhile is the insert's own.
# (A query failing in another session during an insert would be blamed on it:
# the client retries, which an insert_deduplication_token makes harmless.)
_INSERT_LOCK = threading.Lock()


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Summary:
    """What `X-ClickHouse-Summary` reports about a finished query."""

    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_ns: int = 0

    def header(self) -> dict[str, str]:
        """The summary as ClickHouse writes it, every value a decimal string.

        `result_rows` and `result_bytes` are left out: the engine does not count the
        rows of a result it returns.
        """
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": str(self.written_rows),
            "written_bytes": str(self.written_bytes),
            "total_rows_to_read": str(self.read_rows),
            "elapsed_ns": str(self.elapsed_ns),
        }


class Session:
    """One request's connection to the engine, with its settings applied."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def _run(self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None):
        try:
            return self._conn.query(sql, fmt, params=params)
        except RuntimeError as err:
            raise ClickHouseError.from_engine(err) from None

    def configure(self, settings: Iterable[tuple[str, str]], database: str | None) -> None:
        """Apply URL settings in order (as `SET`), then select `database`."""
        for name, value in settings:
            if not _SETTING_NAME.match(name):
                raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            self._run(f"SET {name} = {_string_literal(value)}")
        if database:
            self._run(f"USE {_identifier(database)}")

    def query(self, sql: str, fmt: str, params: dict[str, str]) -> tuple[bytes, Summary]:
        """Run `sql`; its result in `fmt` unless the query names its own FORMAT."""
        result = self._run(sql, fmt, params)
        summary = Summary(
            read_rows=result.rows_read(),
            read_bytes=result.bytes_read(),
            written_rows=result.rows_written(),
            written_bytes=result.bytes_written(),
            elapsed_ns=int(result.elapsed() * 1e9),
        )
        return result.bytes(), summary

    def insert(self, statement: str, fmt: str, data: Iterable[bytes]) -> Summary:
        """Stream `data` (encoded in `fmt`) into `INSERT ... ` `statement` and commit it.

        The insert is cancelled, so nothing is committed, if `data` raises (a corrupt
        block, a client that went away) or the engine rejects the data.
        """
        with _INSERT_LOCK:
            before = self._error_counts()
            try:
                inserter = self._conn.send_insert(statement, fmt)
            except RuntimeError as err:
                raise ClickHouseError.from_engine(err) from None
            try:
                for batch in _batches(data):
                    inserter.append(batch)
                result = inserter.finish()
            except RuntimeError as err:
                inserter.cancel()
                raise ClickHouseError.from_engine(err) from None
            except BaseException:
                inserter.cancel()
                raise
            dropped = self._error_since(before)
            if dropped is not None:
                raise dropped
        return Summary(
            written_rows=result.rows_written,
            written_bytes=result.bytes_written,
            elapsed_ns=int(result.elapsed * 1e9),
        )

    def _error_counts(self) -> dict[int, int]:
        """The engine's error counters, by code."""
        rows = self._conn.query("SELECT code, sum(value) FROM system.errors GROUP BY code", "TSV").bytes().decode()
        return {int(code): int(value) for code, value in (line.split("\t") for line in rows.splitlines())}

    def _error_since(self, before: dict[int, int]) -> ClickHouseError | None:
        """The error the engine counted since `before`, as ClickHouse would have raised it."""
        after = self._error_counts()
        grew = [code for code, value in after.items() if value > before.get(code, 0)]
        if not grew:
            return None
        rows = self._conn.query(
            f"SELECT code, name, last_error_message FROM system.errors WHERE code = {grew[0]} "
            "ORDER BY last_error_time DESC LIMIT 1", "TSV"
        ).bytes().decode()
        code, name, message = rows.splitlines()[0].split("\t", 2)
        return ClickHouseError(int(code), name, message.replace("\\'", "'"))


def _batches(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        if len(pending) >= _INSERT_BATCH:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


class Engine:
    """The embedded engine on `data_dir`, open until `close`."""

    def __init__(self, data_dir: str) -> None:
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._anchor = chdb.connect(data_dir)
        version, timezone = self._anchor.query("SELECT version(), timezone()", "TSV").bytes().decode().split()
        self.version = version
        self.timezone = timezone

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A new session, closed when the block ends."""
        with self._lock:
            conn = chdb.connect(self._data_dir)
        try:
            yield Session(conn)
        finally:
            with self._lock:
                conn.close()

    def close(self) -> None:
        """Shut the engine down (flushes and releases the data directory)."""
        with self._lock:
            self._anchor.close()
