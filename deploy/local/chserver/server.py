"""The HTTP side: one thread per connection, keep-alive, ClickHouse's answers.

Each request is parsed (`request`), authenticated against the configured user,
run in its own engine session (`engine`) and answered the way clickhouse-server
answers: the result with `X-ClickHouse-*` headers, compressed as asked, or the
exception text with `X-ClickHouse-Exception-Code` and its HTTP status.
"""

import gzip
import json
import logging
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.frame
import zstandard

from . import framing, request
from .engine import Engine, Summary
from .errors import ClickHouseError

log = logging.getLogger("chserver")

_READ_SIZE = 1 << 20
# After an early error, up to this much of the rest of the body is read and dropped
# so that the client, still sending, gets the answer (and keeps the connection).
_DRAIN_LIMIT = 1 << 30
# Content-Encodings this server can answer with when `enable_http_compression=1`.
_ENCODERS = {
    "zstd": lambda data: zstandard.ZstdCompressor(level=3).compress(data),
    "lz4": lz4.frame.compress,
    "gzip": lambda data: gzip.compress(data, compresslevel=3),
    "deflate": lambda data: zlib.compress(data, 3),
}


class RequestBody:
    """The request body as a stream, framed by Content-Length or chunked encoding."""

    def __init__(self, rfile, headers) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._remaining = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        self.finished = not self._chunked and self._remaining == 0

    def _read_exactly(self, size: int) -> bytes:
        data = self._rfile.read(size)
        if len(data) != size:
            raise ConnectionError("client closed the connection inside the request body")
        return data

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes, piece by piece, as they arrive."""
        while not self.finished:
            if self._chunked:
                line = self._rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise ConnectionError("malformed chunk header")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self._rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass
                    self.finished = True
                    return
                data = self._read_exactly(size)
                self._read_exactly(2)
                yield data
            else:
                data = self._read_exactly(min(self._remaining, _READ_SIZE))
                self._remaining -= len(data)
                self.finished = self._remaining == 0
                yield data

    def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to `limit` bytes; True if it ended."""
        for chunk in self.chunks():
            limit -= len(chunk)
            if limit < 0:
                return False
        return True

    def decoded(self, decompress: bool) -> Iterator[bytes]:
        """The body's contents: with `decompress`, its compressed blocks unpacked."""
        if not decompress:
            yield from self.chunks()
            return
        decoder = framing.BlockDecoder()
        for chunk in self.chunks():
            yield from decoder.feed(chunk)
        decoder.finish()


class Server(ThreadingHTTPServer):
    """The HTTP server around one engine; counts requests in flight for shutdown."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, user: str, password: str) -> None:
        super().__init__(address, Handler)
        self.engine = engine
        self.user = user
        self.password = password
        self.display_name = socket.gethostname()
        self._in_flight = 0
        self._idle = threading.Condition()

    def request_started(self) -> None:
        """Count one more request in flight."""
        with self._idle:
            self._in_flight += 1

    def request_finished(self) -> None:
        """Count one request less in flight."""
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


class Handler(BaseHTTPRequestHandler):
    """One ClickHouse HTTP request per call of `_handle`."""

    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: with Nagle on, the body waited
    # for the client's delayed ACK of the headers (up to 40 ms per answer).
    disable_nagle_algorithm = True
    server: Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """GET: /ping, / and read-only queries."""
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        """POST: any query, inserts with their data in the body."""
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        """HEAD: health checks."""
        self._handle()

    def log_request(self, code="-", size="-") -> None:
        """Requests are logged by `_handle`, with their query and timing."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (overrides http.server)
        """Route http.server's own messages (malformed requests) to the log."""
        log.warning("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        body = self._body = RequestBody(self.rfile, self.headers)
        self.server.request_started()
        status, summary = 200, None
        self._query = ""
        try:
            health_check = url.path == "/" and self.command != "POST" and all(k != "query" for k, _ in pairs)
            if url.path in ("/ping", "/replicas_status") or health_check:
                self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if url.path != "/":
                status = 404
                text = f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n"
                self._reply(404, text.encode(), {"Content-Type": "text/plain; charset=UTF-8"})
                return
            req = request.build(self.command, pairs, self.headers)
            if req.user != self.server.user or req.password != self.server.password:
                raise ClickHouseError(
                    516,
                    "AUTHENTICATION_FAILED",
                    f"{req.user}: Authentication failed: password is incorrect, or there is no user with such name",
                )
            content_type = self.headers.get("Content-Type", "")
            if self.command == "POST" and content_type.startswith("multipart/form-data"):
                request.apply_form_fields(req, request.parse_multipart(content_type, b"".join(body.chunks())))
            summary = self._execute(req, body)
        except ClickHouseError as err:
            status = err.http_status
            self._reply_error(err)
        except ConnectionError as err:
            status = 499
            self.close_connection = True
            log.warning("%s client went away: %s", self.address_string(), err)
        except Exception as err:  # a bug here must not kill the connection thread silently
            log.exception("internal error")
            status = 500
            self._reply_error(ClickHouseError(1001, "STD_EXCEPTION", f"Internal error in the local server: {err}"))
        finally:
            self.server.request_finished()
            elapsed = (time.monotonic() - started) * 1000
            if self._query or status != 200:
                rows = f" written_rows={summary.written_rows}" if summary and summary.written_rows else ""
                query = " ".join(self._query.split())[:300]
                log.info("%s %s %d %.1fms%s %s", self.command, url.path, status, elapsed, rows, query)

    def _execute(self, req: request.Request, body: RequestBody) -> Summary:
        insert = None
        if req.query is not None and not req.multipart and self.command == "POST":
            insert = request.split_insert(req.query)
        self._query = req.query or ""
        with self.server.engine.session() as session:
            session.configure(req.settings, req.database)
            if insert is not None:
                statement, fmt, inline = insert
                data = self._insert_data(inline.encode(), body.decoded(req.decompress))
                summary = session.insert(statement, fmt, data)
                self._reply(200, b"", self._headers(req, summary))
                return summary
            if self.command == "POST" and not req.multipart:
                text = b"".join(body.decoded(req.decompress)).decode()
                sql = (req.query or "") + text
            else:
                sql = req.query or ""
            self._query = sql
            if not sql.strip():
                raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")
            fmt = request.output_format(sql, req.default_format)
            result, summary = session.query(sql, req.default_format, req.params)
            headers = self._headers(req, summary)
            headers["Content-Type"] = request.content_type(fmt)
            headers["X-ClickHouse-Format"] = fmt
            if req.compress:
                result = framing.encode_stream(result)
            else:
                result = self._encode_http(req, result, headers)
            self._reply(200, result, headers)
            return summary

    @staticmethod
    def _insert_data(inline: bytes, body: Iterator[bytes]) -> Iterator[bytes]:
        if inline:
            yield inline
        yield from body

    def _encode_http(self, req: request.Request, result: bytes, headers: dict[str, str]) -> bytes:
        enabled = dict(req.settings).get("enable_http_compression", "0").lower() in ("1", "true")
        if not enabled or not result:
            return result
        accepted = [part.split(";")[0].strip().lower() for part in self.headers.get("Accept-Encoding", "").split(",")]
        for encoding in accepted:
            if encoding in _ENCODERS:
                headers["Content-Encoding"] = encoding
                return _ENCODERS[encoding](result)
        return result

    def _headers(self, req: request.Request, summary: Summary) -> dict[str, str]:
        return {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": req.query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Server-Display-Name": self.server.display_name,
            "X-ClickHouse-Summary": json.dumps(summary.header(), separators=(",", ":")),
        }

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        # A body left unread (an early error, a GET with a body) would be taken for
        # the next request: drop it, or close the connection if it is too long.
        if not self._body.finished:
            try:
                self.close_connection = not self._body.drain(_DRAIN_LIMIT)
            except (ConnectionError, ValueError):
                self.close_connection = True
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _reply_error(self, err: ClickHouseError) -> None:
        text = err.text
        if "(version " not in text:
            text += f" (version {self.server.engine.version})"
        self._reply(
            err.http_status,
            (text + "\n").encode(),
            {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(err.code),
                "X-ClickHouse-Server-Display-Name": self.server.display_name,
            },
        )
