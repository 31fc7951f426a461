"""A server started with --token, from Python: DataServer(token=...) and
GSWARM_TOKEN, zero-copy reads carrying the token, UnauthorizedError without it,
and start_server(token=...)."""

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
