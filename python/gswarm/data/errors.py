"""Exceptions of gswarm.data: one class per kind of failure, each carrying the
server's message and its machine code (``err.code``, e.g. ``"over_limit"``).

Every class derives from :class:`GswarmError` and, where one fits, from the
built-in exception a Python user would catch (``KeyError`` for a missing key,
``MemoryError`` for a full tier, ``ConnectionError`` when the server cannot be
reached, ...).
"""


class GswarmError(Exception):
    """Base class: ``message`` is the server's text, ``code`` its machine code."""

    code = "internal"

    def __init__(self, message=""):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class BadRequestError(GswarmError, ValueError):
    """The request was malformed: a bad key, size, body or argument."""

    code = "bad_request"


class InvalidLocationError(BadRequestError):
    """Not a location: use dram, pinned_dram, device:N or disk."""

    code = "invalid_location"


class DeviceUnavailableError(GswarmError):
    """The location names a device (a GPU) this server does not have."""

    code = "device_unavailable"


class NotFoundError(GswarmError, KeyError):
    """No such key (or chunk, node, operation)."""

    code = "not_found"


class WrongLocationError(GswarmError):
    """The key exists but not where the operation needs it (read serves DRAM only)."""

    code = "wrong_location"


class WrongFormatError(GswarmError):
    """The value's format does not fit the operation."""

    code = "wrong_format"


class PickleNotAllowedError(WrongFormatError):
    """The value is pickled, and unpickling runs whatever code its writer put in
    it: read it with ``allow_pickle=True`` only if you trust whoever wrote it."""

    code = "pickle_not_allowed"


class ConflictError(GswarmError):
    """The key changed or was moving while the operation ran."""

    code = "conflict"


class OverLimitError(GswarmError, MemoryError):
    """A limit would be passed: a tier's (--max-memory, --max-disk, ...) or a size limit."""

    code = "over_limit"


class UnauthorizedError(GswarmError, PermissionError):
    """The server needs a token (started with --token): pass DataServer(address,
    token=...) or set GSWARM_TOKEN."""

    code = "unauthorized"


class ForbiddenError(GswarmError, PermissionError):
    """The server refused: a source outside --source-root, another user's read
    pointer, a client on another machine while the server is in protected mode."""

    code = "forbidden"


class BusyError(GswarmError):
    """The server is busy or stopping: retry later."""

    code = "unavailable"


class GswarmTimeoutError(GswarmError, TimeoutError):
    """No answer in time (from the server, or from the target of a send)."""

    code = "timeout"


class OutcomeUnknownError(GswarmTimeoutError):
    """A send's target received every byte but did not say, in time, whether it
    stored the value: it may have. The source was kept; look at the target
    (``get_location``) before sending again or releasing the source."""

    code = "outcome_unknown"


class PeerError(GswarmError):
    """Another server (the target of a send) could not be reached or failed."""

    code = "peer_failed"


class GswarmConnectionError(GswarmError, ConnectionError):
    """The server cannot be reached (is it running? `gswarm data start`)."""

    code = "connection_failed"


class ProtocolError(GswarmError):
    """The server answered something that is not the documented shape."""

    code = "protocol_error"


class StorageIOError(GswarmError, OSError):
    """Disk or device I/O failed on the server; what was stored before is kept."""

    code = "io_error"


_CLASSES = {
    "bad_request": BadRequestError,
    "invalid_key": BadRequestError,
    "invalid_size": BadRequestError,
    "length_required": BadRequestError,
    "unsupported_media_type": BadRequestError,
    "method_not_allowed": BadRequestError,
    "no_route": BadRequestError,
    "invalid_location": InvalidLocationError,
    "device_unavailable": DeviceUnavailableError,
    "not_supported": DeviceUnavailableError,
    "not_found": NotFoundError,
    "wrong_location": WrongLocationError,
    "wrong_format": WrongFormatError,
    "pickle_not_allowed": PickleNotAllowedError,
    "conflict": ConflictError,
    "over_limit": OverLimitError,
    "too_large": OverLimitError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "too_many_requests": BusyError,
    "unavailable": BusyError,
    "timeout": GswarmTimeoutError,
    "peer_timeout": GswarmTimeoutError,
    "outcome_unknown": OutcomeUnknownError,
    "peer_failed": PeerError,
    "connection_failed": GswarmConnectionError,
    "protocol_error": ProtocolError,
    "io_error": StorageIOError,
}


def from_code(code, message):
    """The exception for a failure with machine code ``code``."""
    error = _CLASSES.get(code, GswarmError)(message)
    error.code = code
    return error


__all__ = [name for name, value in globals().items()
           if isinstance(value, type) and issubclass(value, GswarmError)] + ["from_code"]
