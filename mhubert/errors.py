"""Errors that entry points turn into clear messages (never tracebacks)."""


class MhubertError(Exception):
    """Base class of every error this project raises on purpose."""


class BadInput(MhubertError, ValueError):
    """The caller gave something unusable: a missing file, a malformed manifest, a bad parameter."""


class AudioError(BadInput):
    """Audio that cannot be decoded or is out of range; the message names the problem."""


class StorageUnavailable(MhubertError, OSError):
    """Object storage kept failing (refused, reset, timed out, 5xx) past the retry budget; the
    message names the URL and the endpoint."""
