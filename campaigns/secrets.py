"""Mailbox passwords at rest: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with the key
MAILBOX_SECRET_KEY; older keys in MAILBOX_SECRET_KEY_PREVIOUS still decrypt (rotation). Without a
key (DEBUG and tests only: settings refuse that in production) the key is derived from SECRET_KEY."""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks


@cache
def _fernet(primary: str, previous: tuple[str, ...], secret_key: str) -> MultiFernet:
    keys = [primary] if primary else [base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()).decode()]
    return MultiFernet([Fernet(key.encode()) for key in [*keys, *previous]])


def _current() -> MultiFernet:
    return _fernet(settings.MAILBOX_SECRET_KEY, tuple(settings.MAILBOX_SECRET_KEY_PREVIOUS), settings.SECRET_KEY)


def secret_encrypt(plaintext: str) -> str:
    """The token to store; an empty secret stays empty (no password)."""
    return _current().encrypt(plaintext.encode()).decode() if plaintext else ""


def secret_decrypt(token: str) -> str:
    """The password, for the SMTP or IMAP login only. A token no key opens raises ValueError."""
    if not token:
        return ""
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("The stored secret cannot be decrypted with MAILBOX_SECRET_KEY (or a previous key).") from None


@checks.register(checks.Tags.security, deploy=True)
def check_mailbox_secret_key(app_configs=None, **kwargs) -> list:
    """`manage.py check --deploy`: say so when the mailbox passwords hang on SECRET_KEY."""
    if settings.MAILBOX_SECRET_KEY or settings.DEBUG:
        return []
    return [
        checks.Warning(
            "MAILBOX_SECRET_KEY is not set: mailbox passwords are encrypted with a key derived from SECRET_KEY, "
            "so rotating SECRET_KEY would make them unreadable.",
            hint="Set MAILBOX_SECRET_KEY to a Fernet key (Fernet.generate_key()).",
            id="campaigns.W001",
        )
    ]
