"""Secrets never leave gwpe in clear: credentials in URLs and values of secret-named keys are masked.

``redact(text)`` masks the password of every ``scheme://user:password@host`` URL (``postgresql://gw:***@db``)
and the value of ``password=``, ``token=``, ``secret=``, ``api_key=``, ... query or ``key: value`` pairs;
``redact_value(key, value)`` also masks a whole value whose key names a secret (``tracking.password``).
gwpe applies them wherever it logs or prints configuration: MLflow params and tags, the one-line errors, the
``gwpe ui`` / ``gwpe models serve`` banners. The user name and host stay visible (they say *which* store).
"""

from __future__ import annotations

import re

MASK = "***"
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_key", "private_key")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@'\"]*):(?P<secret>[^@\s/'\"]+)@")
_PAIR = re.compile(
    rf"(?P<head>\b(?:[\w.\-]*?)(?:{'|'.join(SECRET_WORDS)})[\w\-]*\s*[=:]\s*)(?P<secret>[^\s&,;'\"]+)", re.IGNORECASE
)


def redact(text: str) -> str:
    """``text`` with URL passwords and ``secret=value`` pairs masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _PAIR.sub(lambda m: f"{m['head']}{MASK}", text)


def is_secret_key(key: str) -> bool:
    """Whether the last part of a dotted key names a secret (``tracking.db_password``)."""
    last = key.rsplit(".", 1)[-1].lower()
    return any(word in last for word in SECRET_WORDS)


def redact_value(key: str, value):
    """``value`` masked when ``key`` names a secret, URL passwords masked in strings, else unchanged."""
    if is_secret_key(key) and value not in (None, ""):
        return MASK
    return redact(value) if isinstance(value, str) else value
