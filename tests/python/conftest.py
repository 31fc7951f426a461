"""Fixtures of the Python package's tests: real servers on ephemeral ports, and
the installed gswarm package (as users import it), checked to be the one just
built when GSWARM_BUILT_MODULE names the build's native module."""

import contextlib
import filecmp
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))

from gswarm_server import Server  # noqa: E402


@pytest.fixture
def mapping_of():
    """The /proc/self/maps line of the mapping that holds an address ("" if none)."""
    def find(address):
        with open("/proc/self/maps") as maps:
            for line in maps:
                start, end = (int(n, 16) for n in line.split()[0].split("-"))
                if start <= address < end:
                    return line
        return ""
    return find


def pytest_configure(config):
    built = os.environ.get("GSWARM_BUILT_MODULE")
    if not built:
        return
    try:
        import gswarm._gswarm as native
    except ImportError as error:
        pytest.exit(f"the gswarm package is not installed ({error}): run ./scripts/install.sh",
                    returncode=2)
    if not filecmp.cmp(native.__file__, built, shallow=False):
        pytest.exit(f"the installed gswarm package ({native.__file__}) is not the one in the "
                    "build: run ./scripts/install.sh (./scripts/test.sh does)", returncode=2)


def start(tmp_path_factory, name, *extra):
    root = tmp_path_factory.mktemp(name)
    return Server(root / "disk", root / "server.log", *extra)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start(tmp_path_factory, "gswarm")
    yield srv
    assert srv.stop() == 0, "the server should exit cleanly on SIGTERM"


@pytest.fixture
def client(server):
    from gswarm.data import DataServer

    return DataServer(server.address)


@contextlib.contextmanager
def embedded_server(tmp_path, **options):
    """start_server() on a thread of this process, on a free loopback port;
    yields its address and stops it on the way out."""
    from gswarm.data import start_server

    started = {}
    ready = threading.Event()

    def on_ready(server):
        started["server"] = server
        ready.set()

    thread = threading.Thread(
        target=start_server,
        kwargs=dict(host="127.0.0.1", port=0, max_mem_size=1 << 26,
                    disk_path=str(tmp_path / "disk"), ready=on_ready, **options),
        daemon=True)
    thread.start()
    assert ready.wait(30), "start_server did not start listening"
    try:
        yield f"127.0.0.1:{started['server'].port}"
    finally:
        started["server"].stop()
        thread.join(30)
