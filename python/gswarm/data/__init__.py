"""gswarm.data: KV storage and data pool of gswarm servers, from Python.

- ``DataServer("localhost:9015")``: a client of a running server.
- ``get_storage()``: the engine inside this process, no server.
- ``start_server(host, port, max_mem_size)``: a server inside this process.
- ``set_max_memory(n)``: the DRAM limit of ``get_storage()``'s engine.

Failures raise the classes of :mod:`gswarm.data.errors`; values are encoded as
:mod:`gswarm.data.values` says.
"""

from gswarm.data.client import DataServer
from gswarm.data.embedded import DataStorage, get_storage, set_max_memory
from gswarm.data.errors import (BadRequestError, BusyError, ConflictError,
                                DeviceUnavailableError, ForbiddenError,
                                UnauthorizedError,
                                GswarmConnectionError, GswarmError, GswarmTimeoutError,
                                InvalidLocationError, NotFoundError, OutcomeUnknownError,
                                OverLimitError, PeerError,
                                PickleNotAllowedError,
                                ProtocolError, StorageIOError, WrongFormatError,
                                WrongLocationError)
from gswarm.data.server import start_server

__all__ = [
    "DataServer", "DataStorage", "get_storage", "set_max_memory", "start_server",
    "GswarmError", "BadRequestError", "InvalidLocationError", "DeviceUnavailableError",
    "NotFoundError", "WrongLocationError", "WrongFormatError", "PickleNotAllowedError", "ConflictError",
    "OverLimitError", "ForbiddenError", "UnauthorizedError", "BusyError", "GswarmTimeoutError", "OutcomeUnknownError", "PeerError",
    "GswarmConnectionError", "ProtocolError", "StorageIOError",
]
