"""A server started with --token, from Python: DataServer(token=...) and
GSWARM_TOKEN, zero-copy reads carrying the token, UnauthorizedError without it,
and start_server(token=...)."""

import base64
import os
import pickle

import numpy as np
import pytest

from conftest import embedded_server, start

TOKEN = "python-test-token-5e0b"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    srv = start(tmp_path_factory, "guarded", "--token", TOKEN)
    yield srv
    assert srv.stop() == 0


def test_the_token_is_given_or_taken_from_gswarm_token(guarded, monkeypatch):
    from gswarm.data import DataServer, UnauthorizedError

    monkeypatch.delenv("GSWARM_TOKEN", raising=False)
    with pytest.raises(UnauthorizedError) as refused:
        DataServer(guarded.address).write("k", 1)
    assert isinstance(refused.value, PermissionError)
    assert "token" in str(refused.value)
    with pytest.raises(UnauthorizedError):
        DataServer(guarded.address, token="wrong").read("k")

    client = DataServer(guarded.address, token=TOKEN)
    client.write("k", {"a": 1})
    assert client.read("k") == {"a": 1}
    monkeypatch.setenv("GSWARM_TOKEN", TOKEN)
    assert DataServer(guarded.address).read("k") == {"a": 1}


def test_zero_copy_reads_carry_the_token(guarded, monkeypatch):
    from gswarm.data import DataServer

    monkeypatch.delenv("GSWARM_TOKEN", raising=False)
    client = DataServer(guarded.address, token=TOKEN)
    array = np.arange(100000, dtype=np.float32)
    client.write("arr", array)
    view = client.read("arr", zero_copy=True)
    assert np.array_equal(view, array)


def test_start_server_takes_a_token(monkeypatch, tmp_path):
    from gswarm.data import DataServer, UnauthorizedError

    monkeypatch.delenv("GSWARM_TOKEN", raising=False)
    with embedded_server(tmp_path, token=TOKEN) as address:
        with pytest.raises(UnauthorizedError):
            DataServer(address).write("x", 1)
        client = DataServer(address, token=TOKEN)
        client.write("x", 2)
        assert client.read("x") == 2


# Pickle runs code of its writer's choosing in the reader. A pickle that the
# original gswarm client's wire format lets anyone write: it would create this
# file when unpickled.
class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_as_nobody(address, key, value_b64):
    """POSTs a pickled value as the original client does, from a process of
    user nobody (another local user)."""
    import subprocess

    script = (
        "import json, sys, urllib.request\n"
        f"body = json.dumps({{'key': {key!r}, 'location': 'dram', 'serialized_value': "
        f"{{'type': 'pickle', 'data': {value_b64!r}}}}}).encode()\n"
        f"req = urllib.request.Request('http://{address}/write_extended', data=body, "
        "headers={'Content-Type': 'application/json'})\n"
        "sys.exit(0 if urllib.request.urlopen(req).status == 200 else 1)\n")
    done = subprocess.run(["/usr/bin/python3", "-c", script], user=65534, group=65534,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_pickle_written_by_another_user_runs_nothing_when_read(server, tmp_path):
    from gswarm.data import DataServer, PickleNotAllowedError, WrongFormatError

    marker = tmp_path / "ran"
    payload = base64.b64encode(pickle.dumps(_Planted(str(marker)))).decode()
    _write_as_nobody(server.address, "planted", payload)
    client = DataServer(server.address)
    for zero_copy in (False, True):
        with pytest.raises(PickleNotAllowedError) as refused:
            client.read("planted", zero_copy=zero_copy)
        assert isinstance(refused.value, WrongFormatError)
        assert "allow_pickle=True" in str(refused.value) and "planted" in str(refused.value)
        assert not marker.exists(), "reading ran the writer's code"
    # The value stays stored; a reader who trusts every writer may ask for it.
    assert client.get_location("planted")["format"] == "pickle"
    client.read("planted", allow_pickle=True)
    assert marker.exists()


def test_pickled_values_are_read_only_when_allowed(server):
    from gswarm.data import DataServer, PickleNotAllowedError

    client = DataServer(server.address)
    client.write("mine:set", {1, 2, 3})  # not JSON: pickled by the client
    with pytest.raises(PickleNotAllowedError):
        client.read("mine:set")
    assert client.read("mine:set", allow_pickle=True) == {1, 2, 3}
    trusting = DataServer(server.address, allow_pickle=True)
    assert trusting.read("mine:set") == {1, 2, 3}
    assert trusting.read("mine:set", zero_copy=True) == {1, 2, 3}
    with pytest.raises(PickleNotAllowedError):
        trusting.read("mine:set", allow_pickle=False)
    # Values that are not pickled read as ever.
    client.write("mine:json", {"a": 1})
    client.write("mine:array", np.arange(4))
    assert client.read("mine:json") == {"a": 1}
    assert client.read("mine:array").tolist() == [0, 1, 2, 3]
