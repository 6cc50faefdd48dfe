"""What an HTTP request asks of ClickHouse: credentials, settings, query and data.

Pure functions over the URL parameters, headers and body text, following
ClickHouse's HTTPHandler: the parameters it reserves for itself, `param_*` query
parameters, every other parameter a setting, and the split of
`INSERT ... FORMAT <name>` from the data that follows it.
"""

import base64
import email.parser
import email.policy
import uuid
from dataclasses import dataclass

from .errors import ClickHouseError

# URL parameters that are not settings (ClickHouse's HTTPHandler reserved_param_names).
RESERVED_PARAMS = frozenset(
    {
        "query",
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "client_protocol_version",
        "close_session",
        "database",
        "default_format",
    }
)


@dataclass
class Request:
    """A ClickHouse HTTP request, its body not yet read."""

    user: str
    password: str
    query_id: str
    settings: list[tuple[str, str]]
    params: dict[str, str]
    database: str | None
    default_format: str
    compress: bool
    decompress: bool
    query: str | None
    multipart: bool = False


def credentials(params: dict[str, str], headers) -> tuple[str, str]:
    """User and password, from X-ClickHouse-User/Key, basic auth, or user=/password=."""
    header_user = headers.get("X-ClickHouse-User")
    header_key = headers.get("X-ClickHouse-Key")
    authorization = headers.get("Authorization")
    url_user = params.get("user")
    url_password = params.get("password")
    if header_user is not None or header_key is not None:
        if authorization is not None or url_user is not None or url_password is not None:
            raise ClickHouseError(
                194,
                "REQUIRED_PASSWORD",
                "Invalid authentication: it is not allowed to use X-ClickHouse HTTP headers "
                "and other authentication methods simultaneously",
            )
        return header_user or "default", header_key or ""
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise ClickHouseError(
                516, "AUTHENTICATION_FAILED", f"Authentication scheme {scheme} is not supported by this server"
            )
        try:
            user, _, password = base64.b64decode(token.strip()).decode().partition(":")
        except ValueError as err:
            raise ClickHouseError(516, "AUTHENTICATION_FAILED", "Malformed basic authorization header") from err
        return user or "default", password
    return url_user or "default", url_password or ""


def parse_multipart(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body (the `clickhouse` crate's `query` and
    `param_*`); a field carrying a file (external data) is not supported."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ClickHouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "Malformed multipart/form-data body")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            raise ClickHouseError(
                48, "NOT_IMPLEMENTED", "External data (files in multipart/form-data) is not supported by this server"
            )
        if name:
            fields[name] = part.get_payload(decode=True).decode()
    return fields


def build(method: str, pairs: list[tuple[str, str]], headers) -> Request:
    """The request that URL parameters `pairs` and `headers` describe (last value wins)."""
    params = dict(pairs)
    user, password = credentials(params, headers)
    if params.get("session_id"):
        raise ClickHouseError(
            48, "NOT_IMPLEMENTED", "Sessions (session_id) are not supported by this server: each request is its own session"
        )
    settings = [(name, value) for name, value in pairs if name and name not in RESERVED_PARAMS and not name.startswith("param_")]
    if method in ("GET", "HEAD"):
        # ClickHouse runs anything but POST read-only (setReadOnlyIfHTTPMethodIdempotent).
        settings.insert(0, ("readonly", "2"))
    return Request(
        user=user,
        password=password,
        query_id=params.get("query_id") or str(uuid.uuid4()),
        settings=settings,
        params={name[len("param_") :]: value for name, value in pairs if name.startswith("param_")},
        database=params.get("database") or None,
        default_format=params.get("default_format") or "TabSeparated",
        compress=params.get("compress") == "1",
        decompress=params.get("decompress") == "1",
        query=params.get("query"),
    )


def apply_form_fields(request: Request, fields: dict[str, str]) -> None:
    """Take the query, `param_*` and settings from multipart/form-data `fields`."""
    request.multipart = True
    for name, value in fields.items():
        if name == "query":
            request.query = value
        elif name.startswith("param_"):
            request.params[name[len("param_") :]] = value
        elif name not in RESERVED_PARAMS:
            request.settings.append((name, value))


def _skip_quoted(text: str, i: int) -> int:
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return i


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def split_insert(query: str) -> tuple[str, str, str] | None:
    """For `INSERT ... FORMAT <name> [data]`: the statement before FORMAT, the format
    name and the inline data after it; None for any other query.

    The data starts after the format name and the blanks that follow it, including
    at most one newline, as ClickHouse's parser has it.
    """
    stripped = query.lstrip()
    if not stripped[:6].upper() == "INSERT" or (len(stripped) > 6 and _is_word_char(stripped[6])):
        return None
    i = 0
    while i < len(query):
        char = query[i]
        if char in "'\"`":
            i = _skip_quoted(query, i)
            continue
        if (
            query[i : i + 6].upper() == "FORMAT"
            and (i == 0 or not _is_word_char(query[i - 1]))
            and i + 6 < len(query)
            and query[i + 6].isspace()
        ):
            j = i + 6
            while j < len(query) and query[j].isspace():
                j += 1
            start = j
            while j < len(query) and _is_word_char(query[j]):
                j += 1
            if j == start:
                return None
            name = query[start:j]
            while j < len(query) and query[j] in " \t":
                j += 1
            if query.startswith("\r\n", j):
                j += 2
            elif query.startswith("\n", j):
                j += 1
            return query[:i].rstrip(), name, query[j:]
        i += 1
    return None


def output_format(query: str, default_format: str) -> str:
    """The format a query's result comes in: its trailing FORMAT clause, else the default."""
    words = query.rstrip().rstrip(";").split()
    if len(words) >= 2 and words[-2].upper() == "FORMAT" and all(_is_word_char(c) for c in words[-1]):
        return words[-1]
    return default_format


_BINARY_FORMATS = ("RowBinary", "Native", "Parquet", "Arrow", "ORC", "Avro", "Protobuf", "MsgPack", "CapnProto", "BSONEachRow", "Npy")


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends with a result in `fmt`."""
    if fmt.startswith(_BINARY_FORMATS):
        return "application/octet-stream"
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("CSV"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "WithNames" in fmt else "absent")
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    return "text/plain; charset=UTF-8"
