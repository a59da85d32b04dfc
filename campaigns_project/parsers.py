"""JSON the API accepts: strict about what PostgreSQL and Python can take, so bad input is a 400
naming the field, never a 500 further down.

Every JSON body (the API's parser and the webhooks, which read their raw body for the signature)
goes through `json_loads`. It refuses:

- NaN, Infinity and numbers too large for a float (`1e999` parses as infinity): jsonb and the
  numeric columns cannot store them, and JSON has no such values;
- NUL characters and lone surrogates in any string or key: PostgreSQL text and jsonb cannot hold
  a NUL, and a lone surrogate cannot be encoded as UTF-8;
- documents nested deeper than MAX_DEPTH: the stdlib decoder recurses, so a body of a thousand
  brackets raises RecursionError; the renderer and jsonb would fail on far less.
"""

import json
import math
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

MAX_DEPTH = 32
NUL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters are not allowed."


class JSONInputError(ValueError):
    """Bad JSON input: `field` is the dotted path of the offending value ('' for the document)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


def _refuse_constant(name: str):
    raise JSONInputError(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"The number {text[:40]} is too large.")
    return value


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def _path(parent: str, key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _check(document: Any) -> None:
    """Walk the parsed document without recursion: depth, NULs and surrogates."""
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = _string_problem(value)
            if problem:
                raise JSONInputError(problem, path)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise JSONInputError(f"Nested deeper than {MAX_DEPTH} levels.", path)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    problem = _string_problem(key)
                    if problem:
                        raise JSONInputError(f"Key: {problem}", path)
                stack.append((item, _path(path, key), depth + 1))


def json_loads(raw: bytes | str) -> Any:
    """Parse a JSON document under the rules above; raises JSONInputError."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JSONInputError("The body is not valid UTF-8.") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JSONInputError:
        raise
    except RecursionError:
        raise JSONInputError(f"Nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:  # JSONDecodeError, and ints beyond Python's digit limit
        raise JSONInputError(f"Not valid JSON: {exc}") from None
    _check(document)
    return document


def as_api_error(exc: JSONInputError) -> Exception:
    """A field-level problem names the field (400 {"name": [...]}); a document-level one is a
    ParseError (400 {"detail": ...})."""
    if exc.field:
        return ValidationError({exc.field: [exc.message]})
    return ParseError(f"JSON parse error - {exc.message}")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with json_loads' rules. Only UTF-8 is read (RFC 8259 §8.1)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]  # newer than the stubs
        if encoding.lower().replace("-", "").replace("_", "") != "utf8":
            raise ParseError(f'Unsupported charset "{encoding}": JSON bodies must be UTF-8.')
        try:
            return json_loads(stream.read())
        except JSONInputError as exc:
            raise as_api_error(exc) from None
