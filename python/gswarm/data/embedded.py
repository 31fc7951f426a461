"""get_storage(): the gswarm engine (the C++ Store) inside this process, no
server. The same locations, limits, moves and answers as a server's; values
live only as long as the process (disk values stay in ``disk_path``)."""

import asyncio
import json
import os
import threading

from gswarm import _gswarm
from gswarm.data import values
from gswarm.data.errors import NotFoundError
from gswarm.data.server import DEFAULT_MAX_MEMORY, DEFAULT_MAX_PINNED

# Not the server's /tmp/gswarm_data: a disk path belongs to one process at a time.
DEFAULT_DISK_PATH = "/tmp/gswarm_embedded"

_storage = None
_max_memory = DEFAULT_MAX_MEMORY
_lock = threading.Lock()


class DataStorage:
    """The engine in this process. Thread-safe; blocking calls release the GIL."""

    def __init__(self, max_mem_size=DEFAULT_MAX_MEMORY, disk_path=DEFAULT_DISK_PATH, *,
                 max_pinned=DEFAULT_MAX_PINNED, move_threads=4, io_threads=4):
        self.disk_path = disk_path
        self._engine = _gswarm.Engine(max_mem_size, disk_path, max_pinned, move_threads,
                                      io_threads)

    def close(self):
        """Stops the engine: DRAM, pinned and GPU values are gone, disk values stay."""
        self._engine.close()

    def write(self, key, value, location="dram"):
        """Stores ``value`` under ``key`` in ``location``. Returns True."""
        format, encoded = values.encode(value)
        if format == values.JSON:
            encoded = [encoded.encode()]
        self._engine.write(key, encoded, location, format)
        return True

    def read(self, key, zero_copy=False):
        """The value of ``key`` (DRAM only), or None when there is no such key.
        Arrays are copies unless ``zero_copy``: then they are read-only views of
        the stored bytes, valid while held; a torch tensor (torch has no
        read-only tensors) is a copy-on-write view: writing to it changes the
        tensor's own pages, never the stored value."""
        try:
            data, format = self._engine.read(key)
            if zero_copy and format == values.TORCH:
                data = self._engine.read_mapped(key, format)
        except NotFoundError:
            return None
        if zero_copy and format == values.BYTES:
            return memoryview(data)
        # Only this process (and earlier ones of this user, through its own
        # disk_path) wrote what this engine holds: its pickles are its own.
        return values.decode(data, format, copy=not zero_copy, allow_pickle=True)

    def release(self, key):
        """Removes ``key`` from every location. Returns True."""
        self._engine.release(key)
        return True

    def move(self, key, destination):
        """Moves ``key`` to ``destination``; returns when done, with the answer
        {"source", "destination", "size", "seconds", ...}."""
        return json.loads(self._engine.move(key, destination))

    async def move_async(self, key, destination):
        """move() as a coroutine: the copy runs on another thread, so several
        moves awaited together run at the same time."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.move, key, destination)

    def get_location(self, key):
        """{"key", "location", "format", "locations": [...]} as DataServer gives it."""
        return json.loads(self._engine.location(key))

    def list_locations(self):
        """Every key and its replicas: {key: [{"location", "size", ...}]}."""
        return json.loads(self._engine.locations())["locations"]

    def get_stats(self):
        """The same statistics as a server's GET /stats."""
        return json.loads(self._engine.stats())["stats"]

    def set_max_memory(self, max_size):
        """Sets the DRAM limit (bytes, or a size like "16GB"). Returns True."""
        self._engine.set_max_memory(str(max_size))
        return True


def get_storage(disk_path=None, **options):
    """The process's DataStorage, made on the first call (with the limit of
    set_max_memory() when it came first; ``disk_path`` defaults to
    DEFAULT_DISK_PATH). A later call gets the same one: naming another
    ``disk_path`` or other options then raises ValueError (make a DataStorage
    of its own for a second directory)."""
    global _storage
    with _lock:
        if _storage is None:
            _storage = DataStorage(_max_memory, disk_path or DEFAULT_DISK_PATH, **options)
            _storage._options = options
            return _storage
        if disk_path is not None and os.path.realpath(disk_path) != os.path.realpath(_storage.disk_path):
            raise ValueError(f"get_storage() already made this process's storage on disk_path "
                             f"{_storage.disk_path!r}, not {disk_path!r}: use DataStorage(disk_path=...) "
                             f"for a storage of its own")
        if options and options != getattr(_storage, "_options", {}):
            raise ValueError(f"get_storage() already made this process's storage with options "
                             f"{getattr(_storage, '_options', {})!r}, not {options!r}")
        return _storage


def set_max_memory(max_mem_size):
    """Sets the DRAM limit of get_storage()'s engine, now or when it is made."""
    global _max_memory
    with _lock:
        _max_memory = int(max_mem_size)
        storage = _storage
    if storage is not None:
        storage.set_max_memory(max_mem_size)
