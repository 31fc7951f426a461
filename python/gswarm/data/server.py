"""start_server(): the real gswarm server in this Python process."""

import atexit
import os
import sys
import threading

from gswarm import _gswarm

# The defaults of `gswarm data start`; get_storage() shares the limits.
DEFAULT_MAX_MEMORY = 16 * 1024**3
DEFAULT_MAX_PINNED = 4 * 1024**3
DEFAULT_DISK_PATH = "/tmp/gswarm_data"

# Ports of servers this process is starting, and the event set once each
# listens (or failed): a DataServer made right after start_server() began in a
# thread waits for it instead of finding nothing there. `_starts` holds the
# events of every start still under way, port or not.
_starting = {}
_starts = set()
_starting_lock = threading.Lock()
_exiting = False
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
                 disk_path=DEFAULT_DISK_PATH, *, max_pinned=DEFAULT_MAX_PINNED, move_threads=4,
                 io_threads=4, threads=0, source_roots=(), peers=(), node_name="",
                 log_level="info", ready=None, token=None, protected_mode=True,
                 tls_cert=None, tls_key=None, tls_ca=None, allow_origins=(), allow_hosts=()):
    """Runs a gswarm server (KV storage and data pool, the same as
    ``gswarm data start``) in this process until it is stopped; blocks.

    Run it in a thread to go on meanwhile (a DataServer made for its address
    waits until it listens). In the main thread, Ctrl-C stops it. ``ready``, when
    given, is called with the server (``.port``, ``.stop()``) once it listens;
    ``port=0`` picks a free port.

    ``token`` (default: the GSWARM_TOKEN environment variable) is then asked of
    every client, as ``--token`` does. Without one a server on a non-loopback
    address serves this machine only, unless ``protected_mode=False``.

    ``tls_cert`` and ``tls_key`` (PEM files) make it serve HTTPS only, as
    ``--tls-cert`` and ``--tls-key`` do; ``tls_ca`` is what other servers'
    certificates are checked against when it sends to them.

    ``allow_origins`` are the web pages (``"http://localhost:3000"``, or
    ``"*"``) whose requests it serves, as ``--allow-origin`` does: requests
    that carry another Origin are refused. ``allow_hosts`` are names it answers
    to without a token besides IP addresses, localhost and its own names, as
    ``--allow-host`` does.
    """
    if token is None:
        token = os.environ.get("GSWARM_TOKEN", "")
    event = threading.Event()
    with _starting_lock:
        if port:
            _starting[port] = event
        _starts.add(event)
    try:
        server = _gswarm.Server(host, port, max_mem_size, disk_path, max_pinned, move_threads,
                                io_threads, threads, list(source_roots), list(peers), node_name,
                                log_level, token, protected_mode,
                                os.fspath(tls_cert) if tls_cert else "",
                                os.fspath(tls_key) if tls_key else "",
                                os.fspath(tls_ca) if tls_ca else "",
                                list(allow_origins), list(allow_hosts))
        bound = server.listen()
        done = threading.Event()
        with _running_lock:
            # Known before the start counts as finished, so that an exit that
            # waited for it stops it.
            _running[id(server)] = (server, done)
    finally:
        with _starting_lock:
            _starting.pop(port, None)
            _starts.discard(event)
        event.set()
    print(f"gswarm listening on {host}:{bound}", file=sys.stderr, flush=True)
    # The server runs on a thread of its own; this one waits, so that in the main
    # thread Python still sees Ctrl-C (its signal handlers run there only).
    def run():
        try:
            server.run()
        finally:
            done.set()

    if _exiting:
        server.stop()  # the process began to exit while this server started
    threading.Thread(target=run, name="gswarm-server", daemon=True).start()
    try:
        if ready is not None:
            ready(server)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        server.stop()  # Ctrl-C: stop, and return once stopped
        done.wait()
    except BaseException:
        server.stop()
        done.wait()
        raise
    finally:
        with _running_lock:
            _running.pop(id(server), None)


# Servers running in this process, stopped before the interpreter goes away
# (a server left running in a daemon thread would otherwise outlive it).
_running = {}
_running_lock = threading.Lock()


@atexit.register
def _stop_running_servers():
    # A start under way on another thread is let finish first (opening the store
    # and binding take moments): the interpreter ends threads that come back to
    # Python once it is finalizing, and one ended inside the native start would
    # take the process down with it.
    global _exiting
    _exiting = True
    with _starting_lock:
        starts = list(_starts)
    for event in starts:
        event.wait(30)
    with _running_lock:
        running = list(_running.values())
    for server, _ in running:
        server.stop()
    for _, done in running:
        done.wait(30)
