"""Keep credentials out of log lines: a logging filter that masks secret values.

What counts as a secret: the values of the environment variables in :data:`SECRET_ENV` (S3 secret
key and session token, the API and admin keys, also those of ``MHUBERT_API_KEYS_FILE``), and whatever
follows an ``X-Amz-Security-Token`` header, a ``Signature=`` or a ``Bearer`` in a line (botocore's
DEBUG logging prints request headers). The console command installs the filter on the root logger's
handlers (:func:`install`), so DEBUG logs of every library are masked before they are written.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

MASK = "***"
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "MHUBERT_API_KEYS",
              "MHUBERT_ADMIN_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
KEYS_FILE_ENV = "MHUBERT_API_KEYS_FILE"
MIN_LEN = 6  # shorter values would mask ordinary words
_PATTERNS = [
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)([^'\"\s,}]+)"),
    re.compile(r"(?i)(signature=)([0-9a-f]{16,})"),
    re.compile(r"(?i)(bearer\s+)([^\s'\",}]+)"),
]


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values configured in ``env`` (default: the process environment), longest first."""
    env = os.environ if env is None else env
    out: set[str] = set()
    for name in SECRET_ENV:
        for part in (env.get(name) or "").split(","):
            if len(part.strip()) >= MIN_LEN:
                out.add(part.strip())
    path = env.get(KEYS_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                out.update(ln.strip() for ln in f if len(ln.strip()) >= MIN_LEN)
        except OSError:
            pass
    return sorted(out, key=len, reverse=True)


def redact(text: str, values: list[str] | None = None) -> str:
    """``text`` with every secret value and credential-looking header value masked."""
    for v in secret_values() if values is None else values:
        if v in text:
            text = text.replace(v, MASK)
    for rx in _PATTERNS:
        text = rx.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in each record's formatted message (the values are read once, at install)."""

    def __init__(self, values: list[str] | None = None) -> None:
        super().__init__()
        self.values = secret_values() if values is None else values

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        masked = redact(msg, self.values)
        if masked != msg:
            record.msg, record.args = masked, None
        return True


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger)."""
    logger = logger or logging.getLogger()
    filt = RedactingFilter()
    for h in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(filt)
    return filt
