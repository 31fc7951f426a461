"""start_server(): the real gswarm server in this Python process."""

import sys
import threading

from gswarm import _gswarm

DEFAULT_MAX_MEMORY = 16 * 1024**3
DEFAULT_DISK_PATH = "/tmp/gswarm_data"

# Ports of servers this process is starting, and the event set once each
# listens (or failed): a DataServer made right after start_server() began in a
# thread waits for it instead of finding nothing there.
_starting = {}
_starting_lock = threading.Lock()
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]")


def wait_until_listening(address, timeout=60.0):
    host, _, port = address.rpartition(":")
    if host not in _LOCAL_HOSTS or not port.isdigit():
        return
    with _starting_lock:
        event = _starting.get(int(port))
    if event is not None:
        event.wait(timeout)


def start_server(host="0.0.0.0", port=9015, max_mem_size=DEFAULT_MAX_MEMORY,
                 disk_path=DEFAULT_DISK_PATH, *, max_pinned=4 * 1024**3, move_threads=4,
                 io_threads=4, threads=0, source_roots=(), peers=(), node_name="",
                 log_level="info", ready=None):
    """Runs a gswarm server (KV storage and data pool, the same as
    ``gswarm data start``) in this process until it is stopped; blocks.

    Run it in a thread to go on meanwhile (a DataServer made for its address
    waits until it listens). In the main thread, Ctrl-C stops it. ``ready``, when
    given, is called with the server (``.port``, ``.stop()``) once it listens;
    ``port=0`` picks a free port.
    """
    event = threading.Event()
    if port:
        with _starting_lock:
            _starting[port] = event
    try:
        server = _gswarm.Server(host, port, max_mem_size, disk_path, max_pinned, move_threads,
                                io_threads, threads, list(source_roots), list(peers), node_name,
                                log_level)
        bound = server.listen()
    finally:
        event.set()
        with _starting_lock:
            _starting.pop(port, None)
    print(f"gswarm listening on {host}:{bound}", file=sys.stderr, flush=True)
    if ready is not None:
        ready(server)
    if threading.current_thread() is not threading.main_thread():
        server.run()
        return
    # In the main thread the server runs in another one, so that Python still
    # sees Ctrl-C (its signal handlers run in the main thread only).
    runner = threading.Thread(target=server.run, name="gswarm-server")
    runner.start()
    try:
        while runner.is_alive():
            runner.join(0.5)
    except KeyboardInterrupt:
        server.stop()
        runner.join()
