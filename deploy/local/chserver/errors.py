"""ClickHouse exceptions as the HTTP interface reports them.

An error response carries the exception code in `X-ClickHouse-Exception-Code`, the
text `Code: N. DB::Exception: ... (NAME)` in the body, and the HTTP status that
ClickHouse's `exceptionCodeToHTTPStatus` gives that code (src/Server/HTTP/
exceptionCodeToHTTPStatus.cpp), matched here by the exception's name.
"""

import re

_STATUS_BY_NAME = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        ["UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"], 403
    ),
    **dict.fromkeys(
        [
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ],
        400,
    ),
    **dict.fromkeys(
        [
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ],
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "CANNOT_SCHEDULE_TASK": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

_ENGINE_CODE = re.compile(r"Code: (\d+)\.")
# The exception's name closes its text, possibly followed by "(version ...)".
_ENGINE_NAME = re.compile(r"\(([A-Z][A-Z0-9_]*)\)")


class ClickHouseError(Exception):
    """An exception with ClickHouse's code and name, raised by the engine or this server."""

    def __init__(self, code: int, name: str, message: str, text: str | None = None) -> None:
        self.code = code
        self.name = name
        self.text = text if text is not None else f"Code: {code}. DB::Exception: {message}. ({name})"
        super().__init__(self.text)

    @classmethod
    def from_engine(cls, err: Exception) -> "ClickHouseError":
        """Wrap an error raised by chdb, keeping the engine's own text and code."""
        text = str(err).strip()
        # chdb's streaming-insert wrapper prefixes the engine's text with its own words.
        start = text.find("Code: ")
        if start > 0:
            text = text[start:]
        code = _ENGINE_CODE.match(text)
        if code is None:
            return cls(1001, "STD_EXCEPTION", text)
        names = _ENGINE_NAME.findall(text)
        return cls(int(code.group(1)), names[-1] if names else "", "", text=text)

    @property
    def http_status(self) -> int:
        """The HTTP status a ClickHouse server answers this exception with."""
        return _STATUS_BY_NAME.get(self.name, 500)
