"""DataServer: the client of a gswarm server (its HTTP API, doc/http-api.md).

Each call is one request on a kept-alive connection, made by the C++ client with
the GIL released. A DataServer may be shared by threads: each thread gets its
own connection.
"""

import asyncio
import concurrent.futures
import json
import os
import threading
import warnings

from gswarm import _gswarm
from gswarm.data import values
from gswarm.data.errors import (GswarmConnectionError, GswarmError, NotFoundError,
                                WrongLocationError)

DEFAULT_ADDRESS = "localhost:9015"

# Moves awaited inside an event loop run on these threads, each with its own
# connection, so that several run on the server at once.
_move_threads = None
_move_threads_lock = threading.Lock()


def _move_executor():
    global _move_threads
    with _move_threads_lock:
        if _move_threads is None:
            _move_threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=32, thread_name_prefix="gswarm-move")
        return _move_threads


def _strip_scheme(address):
    for scheme in ("http://", "https://"):
        if address.startswith(scheme):
            return address[len(scheme):].rstrip("/")
    return address


def _with_default_port(address):
    """"host" -> "host:9015", "[v6]" and a bare v6 address -> "[v6]:9015"."""
    if address.startswith("["):
        return address if "]:" in address else address + ":9015"
    if address.count(":") > 1:
        return f"[{address}]:9015"
    return address if ":" in address else address + ":9015"


class DataServer:
    """A gswarm server at ``address`` ("host:port"; "http://" may be given).

    ``use_extended_api`` (default True) lets any Python value be written: JSON
    values go through ``/write``, everything else through ``/write_extended``
    (see :mod:`gswarm.data.values`). With False only JSON values are accepted.
    ``timeout`` limits each call, ``move_timeout`` a move, in seconds.
    ``token`` is what a server started with ``--token`` asks for (default: the
    GSWARM_TOKEN environment variable).
    ``tls_ca`` is a PEM file of the certificates to trust (default: the
    GSWARM_TLS_CA environment variable): given, or with an "https://" address,
    the client speaks TLS to a server started with ``--tls-cert`` and checks its
    certificate for the address's host (with no CA, against the system's).
    ``allow_pickle`` (default False) lets ``read`` unpickle values tagged
    ``pickle``. Unpickling runs whatever code the value's writer put in it, and
    anyone who may write to the server can write one: allow it only when you
    trust every writer (or per read, ``read(key, allow_pickle=True)``).
    """

    def __init__(self, address=DEFAULT_ADDRESS, use_extended_api=True, *, timeout=60.0,
                 move_timeout=600.0, token=None, tls_ca=None, allow_pickle=False):
        self.address = _with_default_port(_strip_scheme(address))
        self._token = token if token is not None else os.environ.get("GSWARM_TOKEN", "")
        self._tls_ca = os.fspath(tls_ca) if tls_ca is not None else os.environ.get(
            "GSWARM_TLS_CA", "")
        tls = address.startswith("https://") or bool(self._tls_ca)
        self._url = ("https://" if tls else "") + self.address
        self.use_extended_api = use_extended_api
        self.timeout = timeout
        self.move_timeout = move_timeout
        self.allow_pickle = allow_pickle
        self._local = threading.local()
        # (socket, pid, uid) of the server's local socket, once a read pointer
        # named it; forgotten whenever using it fails.
        self._read_server = None
        from gswarm.data import server

        server.wait_until_listening(self.address)

    def __repr__(self):
        return f"DataServer({self.address!r})"

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = _gswarm.Client(self._url, self.timeout, self.move_timeout, self._token,
                                    self._tls_ca)
            self._local.client = client
        return client

    # ---- KV storage -------------------------------------------------------

    def write(self, key, value, location="dram", persist=None):
        """Stores ``value`` under ``key`` in ``location`` (dram, pinned_dram,
        device:N, disk), replacing what the key held. Returns True.

        ``persist`` is the old API: True means location="disk", False "dram".
        """
        if persist is not None:
            warnings.warn(
                "write(..., persist=...) is deprecated: write location=\"disk\" to keep the "
                "value across restarts, or location=\"dram\"",
                DeprecationWarning, stacklevel=2)
            location = "disk" if persist else "dram"
        format, encoded = values.encode(value)
        client = self._client()
        if format == values.JSON and self.use_extended_api and values.may_hold_wide_ints(encoded):
            # /write's JSON body cannot carry integers beyond 64 bits; the raw
            # bytes, tagged json, can (read gives them back the same).
            client.write_parts(key, [encoded.encode()], location, format)
        elif format == values.JSON:
            client.write_json(key, encoded, location)
        elif not self.use_extended_api:
            raise TypeError(
                f"{type(value).__name__} is not JSON-compatible: create the DataServer with "
                "use_extended_api=True to store it")
        else:
            client.write_parts(key, encoded, location, format)
        return True

    def read(self, key, zero_copy=False, allow_pickle=None):
        """The value of ``key``, or None when there is no such key.

        Only DRAM values can be read (WrongLocationError otherwise: move the key
        to "dram" first). With ``zero_copy=True`` a server on this machine lends
        the value's memory itself: arrays and bytes come back as read-only views
        of it (a numpy array, or a memoryview), valid for as long as you hold
        them, even after the key changes; a torch tensor (torch has no read-only
        tensors) is a copy-on-write view: writing to it changes the tensor's own
        pages, never the stored value. Without it, the bytes travel over HTTP.

        A value tagged ``pickle`` is unpickled only when ``allow_pickle`` (default:
        the client's ``allow_pickle``) is true; otherwise PickleNotAllowedError,
        and the value stays stored.
        """
        allow = self.allow_pickle if allow_pickle is None else allow_pickle
        try:
            if zero_copy:
                return self._read_mapped(key, allow)
            data, format = self._client().read(key)
        except NotFoundError:
            return None
        except WrongLocationError as error:
            if zero_copy:
                raise  # its message already names the Python call
            raise _with_python_hint(error, key) from None
        return values.decode(data, format, allow_pickle=allow, key=key)

    def _read_mapped(self, key, allow_pickle):
        mapped = None
        cached = self._read_server
        if cached is not None:
            try:
                mapped = _gswarm.open_mapped(*cached, key, "dram", self._token)
            except GswarmError as error:
                # The server restarted, stopped or lost the key: whatever it was,
                # the socket is asked for again, from the server itself.
                self._read_server = None
                if isinstance(error, NotFoundError):
                    raise
        if mapped is None:
            where = json.loads(self._client().location(key))
            if where["location"] != "dram":
                raise WrongLocationError(
                    f"key '{key}' is in {where['location']}, and only dram can be read: "
                    f"move it first with client.move({key!r}, \"dram\")")
            pointer = next((r.get("read_pointer") for r in where["locations"]
                            if r["location"] == "dram"), None)
            if not pointer or "socket" not in pointer:
                raise WrongLocationError(
                    f"the server at {self.address} lends no read pointers (is it on another "
                    "machine?); read without zero_copy")
            server = (pointer["socket"], pointer.get("pid", -1), pointer.get("uid", -1))
            try:
                mapped = _gswarm.open_mapped(*server, key, "dram", self._token)
            except GswarmConnectionError as error:
                raise GswarmConnectionError(
                    f"zero_copy reads need the server on this machine: {self.address} lends its "
                    f"memory to local processes only ({error}); read without zero_copy") from None
            self._read_server = server
        if mapped.format == values.BYTES:
            return memoryview(mapped)
        return values.decode(mapped, mapped.format, allow_pickle=allow_pickle, key=key)

    def release(self, key):
        """Removes ``key`` from every location. Returns True; NotFoundError when
        there is no such key."""
        self._client().release(key)
        return True

    def move(self, key, destination):
        """Moves ``key`` to ``destination`` (copy, then switch, then free the
        source) and returns the server's answer (source, destination, size,
        seconds, read_pointer).

        Called inside a running event loop (an ``async def``), it starts the move
        at once and returns an awaitable, so that
        ``await asyncio.gather(client.move(a, ...), client.move(b, ...))`` runs
        the moves at the same time; elsewhere it returns when the move is done.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            return self._move(key, destination)
        return loop.run_in_executor(_move_executor(), self._move, key, destination)

    def _move(self, key, destination):
        return json.loads(self._client().move(key, destination))

    def get_location(self, key):
        """Where ``key`` is: {"key", "location" (its primary), "format",
        "locations": [{"location", "size", "last_accessed", "copy_status",
        "copy_progress", "read_pointer"}]}."""
        return json.loads(self._client().location(key))

    def list_locations(self):
        """Every key and its replicas: {key: [{"location", "size", ...}]}."""
        return json.loads(self._client().locations())["locations"]

    def get_stats(self):
        """The server's statistics (GET /stats): usage per tier, keys, moves,
        "gpu_stats" per device, ..."""
        return json.loads(self._client().stats())

    def set_max_memory(self, max_size):
        """Sets the server's DRAM limit: bytes (an int) or a size ("32GB").
        Returns True."""
        self._client().set_max_memory(str(max_size))
        return True

    def send(self, key, target, source_location=None, *, delete_source=False, streams=0):
        """Copies ``key`` to another server or device: ``target`` is "host:port",
        "host:port:LOCATION", a node name, or "node:LOCATION" ("node2:device:1").
        ``source_location`` picks the replica to send. Returns the server's
        answer (a non-empty dict: "method", "size", "seconds", ...)."""
        return json.loads(self._client().send(key, target, source_location or "", delete_source,
                                              streams))

    def health(self):
        """The server's version; raises GswarmConnectionError when it is down."""
        return self._client().health()


def _with_python_hint(error, key):
    error.message = (f"{error.message}; from Python: client.move({key!r}, \"dram\"), then "
                     "read again")
    error.args = (error.message,)
    return error
