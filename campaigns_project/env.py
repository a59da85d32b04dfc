"""Strict environment parsing: a bad value stops start-up with a message naming the variable."""

import json
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_file_parse(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments allowed, no quoting): the checkout's own
    environment, as `make run` writes it. A malformed line stops start-up naming the line."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if match is None:
            raise ImproperlyConfigured(f"{path}, line {number}: expected KEY=VALUE, got {line!r}")
        values[match.group(1)] = match.group(2)
    return values


def env_file_load(path: Path) -> None:
    """Set every variable of `path` that the environment does not already set: a variable given
    on the command line always wins over the file."""
    if path.is_file():
        for name, value in env_file_parse(path).items():
            os.environ.setdefault(name, value)


IMAP_ACCOUNT_FIELDS = {"key", "host", "port", "username", "password", "ssl", "folder"}


def imap_accounts_parse(raw: str, *, name: str = "IMAP_ACCOUNTS") -> list[dict]:
    """IMAP_ACCOUNTS: a JSON list of {key, host, port?, username, password, ssl?, folder?}. Strict:
    an unknown field, a wrong type or a repeated key stops start-up naming the account and field.
    Defaults: ssl true, port 993 with ssl and 143 without, folder INBOX."""
    if not raw.strip():
        return []
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a JSON list of accounts: {exc}") from None
    if not isinstance(items, list):
        raise ImproperlyConfigured(f"{name} must be a JSON list of accounts")
    accounts, keys = [], set()
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            raise ImproperlyConfigured(f"{where} must be an object")
        unknown = set(item) - IMAP_ACCOUNT_FIELDS
        if unknown:
            raise ImproperlyConfigured(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
        for field in ("key", "host", "username", "password"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise ImproperlyConfigured(f"{where}.{field} is required (a non-empty string)")
        ssl = item.get("ssl", True)
        if not isinstance(ssl, bool):
            raise ImproperlyConfigured(f"{where}.ssl must be true or false")
        port = item.get("port", 993 if ssl else 143)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ImproperlyConfigured(f"{where}.port must be an integer from 1 to 65535")
        folder = item.get("folder", "INBOX")
        if not isinstance(folder, str) or not folder.strip():
            raise ImproperlyConfigured(f"{where}.folder must be a non-empty string")
        if item["key"] in keys:
            raise ImproperlyConfigured(f"{where}.key {item['key']!r} is used twice")
        if len(item["key"]) > 255:
            raise ImproperlyConfigured(f"{where}.key must be at most 255 characters")
        keys.add(item["key"])
        accounts.append({**item, "ssl": ssl, "port": port, "folder": folder})
    return accounts
