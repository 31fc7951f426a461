"""DataServer against a real server: values of every kind round-trip, errors
are exception classes with the server's message, and the wire stays that of
the original gswarm client."""

import asyncio
import base64
import dataclasses
import json
import pickle
import socket
import threading
import time

import numpy as np
import pytest
import requests
import torch

from conftest import start
from gswarm.data import (BadRequestError, DataServer, DeviceUnavailableError, GswarmError,
                         GswarmConnectionError, InvalidLocationError, NotFoundError,
                         OverLimitError, WrongLocationError)


@dataclasses.dataclass
class Config:
    name: str
    layers: tuple


JSON_VALUES = [{"name": "john", "age": 30}, "john_doe", 42, 3.5, [1, "two", None], True,
               {"nested": {"list": [1, 2, {"deep": "ü"}]}}, "",
               # Integers beyond 64 bits, and digits that only look like one.
               2**70, -2**70, {"big": [2**200, 2**64 - 1]}, "12345678901234567890123"]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_json_values_round_trip_through_write(client, server, value):
    client.write("json:value", value)
    assert client.read("json:value") == value
    assert client.get_location("json:value")["format"] == "json"
    # Stored as JSON: the plain /read endpoint serves it too.
    answer = requests.get(f"http://{server.address}/read/json:value").json()
    assert answer["value"] == value and answer["found"] is True


ARRAYS = [
    np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    np.random.default_rng(1).random((100, 7), dtype=np.float32),
    np.array([[1, -2], [3, -4]], dtype=np.int8),
    np.arange(10, dtype=np.uint16),
    np.array([True, False, True]),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
    np.array(7.5),  # zero dimensions
    np.zeros((0, 3), dtype=np.int32),  # no elements
    np.array(["ab", "cde"]),  # unicode strings
    np.arange(12, dtype=">i4").reshape(3, 4),  # big-endian
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_numpy_arrays_round_trip_as_raw_bytes(client, array):
    client.write("np:value", array)
    back = client.read("np:value")
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    where = client.get_location("np:value")
    assert where["format"] == "npy"
    # Raw bytes plus a short header: no pickle, nothing base64'd.
    assert where["locations"][0]["size"] <= array.nbytes + 192


@pytest.mark.parametrize("make", [
    lambda a: a.T,  # Fortran order: sent as its own memory
    lambda a: a[:, ::2],  # strided: made contiguous first
    lambda a: a[::-1],  # negative strides
    lambda a: np.asfortranarray(a)[1:, :],
], ids=["transposed", "strided", "reversed", "fortran-slice"])
def test_non_contiguous_arrays_round_trip(client, make):
    array = make(np.arange(60, dtype=np.float32).reshape(6, 10))
    client.write("np:strided", array)
    np.testing.assert_array_equal(client.read("np:strided"), array)


def test_memory_mapped_arrays_are_stored_as_arrays(client, tmp_path):
    mapped = np.memmap(tmp_path / "weights.bin", dtype=np.float32, mode="w+", shape=(64, 8))
    mapped[:] = np.arange(512, dtype=np.float32).reshape(64, 8)
    client.write("np:memmap", mapped)
    assert client.get_location("np:memmap")["format"] == "npy"
    back = client.read("np:memmap")
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, mapped)


def test_npy_values_load_with_numpy(client, server):
    array = np.arange(6, dtype=np.int64).reshape(2, 3).T
    client.write("np:file", array)
    raw = requests.get(f"http://{server.address}/read_extended/np:file",
                       headers={"Accept": "application/octet-stream"}).content
    import io

    np.testing.assert_array_equal(np.load(io.BytesIO(raw)), array)


@pytest.mark.parametrize("tensor", [
    torch.randn(16, 8),
    torch.arange(10, dtype=torch.int64),
    torch.randn(4, 6).t(),  # non-contiguous
    torch.randn(3, 5).to(torch.bfloat16),  # no numpy dtype
    torch.tensor([True, False]),
], ids=["float32", "int64", "transposed", "bfloat16", "bool"])
def test_torch_cpu_tensors_round_trip(client, tensor):
    client.write("torch:value", tensor, location="dram")
    back = client.read("torch:value")
    assert isinstance(back, torch.Tensor)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert torch.equal(back, tensor)
    assert client.get_location("torch:value")["format"] == "torch"


@pytest.mark.parametrize("value", [
    b"\x00\xffraw bytes", bytearray(b"mutable"), b"",
])
def test_bytes_round_trip_as_bytes(client, value):
    client.write("raw:bytes", value)
    assert client.read("raw:bytes") == bytes(value)
    assert client.get_location("raw:bytes")["format"] == "bytes"


@pytest.mark.parametrize("value", [
    Config("llama-7b", (32, 4096)), {1, 2, 3}, float("nan"), {"t": (1, 2), 1: "int key", b"b": 2},
    [np.arange(3)],  # an array inside a list: pickled whole
    np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),  # more than bytes: the mask
    torch.eye(3).to_sparse(),  # not strided memory
], ids=["dataclass", "set", "nan", "non-json-keys", "list-of-arrays", "masked-array",
        "sparse-tensor"])
def test_other_objects_are_pickled_by_the_client(client, value):
    client.write("obj:value", value)
    back = client.read("obj:value", allow_pickle=True)
    assert client.get_location("obj:value")["format"] == "pickle"
    if isinstance(value, torch.Tensor):
        assert torch.equal(back.to_dense(), value.to_dense())
    elif isinstance(value, np.ma.MaskedArray):
        assert back.mask.tolist() == value.mask.tolist() and back.tolist() == value.tolist()
    else:
        assert pickle.dumps(back) == pickle.dumps(value)


def test_values_of_the_original_client_read_back_and_the_other_way_round(client, server):
    base = f"http://{server.address}"
    # Written the way the original gswarm client writes (serialized_value).
    obj = Config("from-original", (1, 2))
    requests.post(f"{base}/write_extended", json={
        "key": "orig:pickle", "location": "dram",
        "serialized_value": {"type": "pickle",
                             "data": base64.b64encode(pickle.dumps(obj)).decode()}},
    ).raise_for_status()
    requests.post(f"{base}/write_extended", json={
        "key": "orig:json", "location": "dram",
        "serialized_value": {"type": "json", "data": {"a": [1, 2]}}}).raise_for_status()
    requests.post(f"{base}/write", json={"key": "orig:plain", "value": "v"}).raise_for_status()
    assert client.read("orig:pickle", allow_pickle=True) == obj
    assert client.read("orig:json") == {"a": [1, 2]}
    assert client.read("orig:plain") == "v"

    # Written here, read the way the original client reads (/read_extended JSON).
    client.write("new:pickle", obj)
    client.write("new:json", {"b": 1})
    pickled = requests.get(f"{base}/read_extended/new:pickle").json()
    assert pickled["found"] is True and pickled["serialized_value"]["type"] == "pickle"
    assert pickle.loads(base64.b64decode(pickled["serialized_value"]["data"])) == obj
    as_json = requests.get(f"{base}/read_extended/new:json").json()
    assert as_json["serialized_value"] == {"type": "json", "data": {"b": 1}}


def test_read_of_a_missing_key_is_none(client):
    assert client.read("no:such:key") is None


def test_read_outside_dram_names_the_python_move(client):
    client.write("on:disk", "v", location="disk")
    with pytest.raises(WrongLocationError) as caught:
        client.read("on:disk")
    assert "disk" in str(caught.value)
    assert "client.move('on:disk', \"dram\")" in str(caught.value)
    assert caught.value.code == "wrong_location"
    client.move("on:disk", "dram")
    assert client.read("on:disk") == "v"


def test_failures_raise_classes_with_the_servers_message(client, server):
    with pytest.raises(InvalidLocationError, match="dramm") as caught:
        client.write("k", 1, location="dramm")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(DeviceUnavailableError, match="device:0"):
        client.write("k", 1, location="device:0")
    with pytest.raises(NotFoundError, match="never:written") as caught:
        client.release("never:written")
    assert isinstance(caught.value, KeyError)
    with pytest.raises(NotFoundError):
        client.move("never:written", "disk")
    with pytest.raises(NotFoundError):
        client.get_location("never:written")
    with pytest.raises(BadRequestError):
        client.write("", 1)
    with pytest.raises(BadRequestError):
        client.set_max_memory("12XB")
    # The server kept serving, and nothing stored was touched.
    client.write("after:errors", [1])
    assert client.read("after:errors") == [1]


def test_over_limit_is_a_memory_error_and_keeps_what_was_stored(tmp_path_factory):
    small = start(tmp_path_factory, "small", "--max-memory", "1MB")
    try:
        c = DataServer(small.address)
        c.write("keep", b"x" * 1000)
        with pytest.raises(OverLimitError, match="max-memory") as caught:
            c.write("big", np.zeros(2 * 1024 * 1024, dtype=np.uint8))
        assert isinstance(caught.value, MemoryError)
        assert c.read("keep") == b"x" * 1000
        assert c.read("big") is None
    finally:
        assert small.stop() == 0


def test_connection_failure_is_a_connection_error():
    c = DataServer("127.0.0.1:1")
    with pytest.raises(GswarmConnectionError) as caught:
        c.read("k")
    assert isinstance(caught.value, ConnectionError)
    assert "gswarm data start" in str(caught.value)


def test_an_address_without_a_port_means_9015():
    for address, meant in (("localhost", "localhost:9015"), ("http://127.0.0.1/", "127.0.0.1:9015"),
                           ("::1", "[::1]:9015"), ("[::1]", "[::1]:9015"), ("h:80", "h:80")):
        assert DataServer(address).address == meant
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 9015)) == 0:
            pytest.skip("a server is running on port 9015")
    with pytest.raises(GswarmConnectionError, match="127.0.0.1:9015"):
        DataServer("127.0.0.1").read("k")


def test_persist_still_works_and_says_what_to_write_instead(client):
    with pytest.warns(DeprecationWarning, match='location="disk"'):
        client.write("old:api", {"v": 1}, persist=True)
    assert client.get_location("old:api")["location"] == "disk"
    with pytest.warns(DeprecationWarning):
        client.write("old:api2", {"v": 1}, persist=False)
    assert client.get_location("old:api2")["location"] == "dram"


def test_without_extended_api_only_json_values_are_written(server):
    c = DataServer(server.address, use_extended_api=False)
    c.write("plain", {"a": 1})
    with pytest.raises(TypeError, match="use_extended_api=True"):
        c.write("plain", b"bytes")


def test_shapes_the_spec_indexes_into(client):
    client.write("shape:key", {"x": 1})
    where = client.get_location("shape:key")
    assert where["location"] == "dram" and where["key"] == "shape:key"
    assert "read_pointer" in where["locations"][0]
    everything = client.list_locations()
    assert [r["location"] for r in everything["shape:key"]] == ["dram"]
    stats = client.get_stats()
    for field in ("dram_usage_percent", "usage_percent", "current_size", "max_size",
                  "total_keys", "persistent_keys", "volatile_keys", "dram_keys", "disk_keys",
                  "disk_usage"):
        assert field in stats
    assert stats["gpu_stats"].get("device:0", {}).get("used", 0) == 0
    moved = client.move("shape:key", "disk")
    assert moved["source"] == "dram" and moved["destination"] == "disk"
    assert client.set_max_memory(64 * 1024**3) is True
    assert client.get_stats()["max_size"] == 64 * 1024**3


def test_send_to_another_server(tmp_path_factory, client):
    node2 = start(tmp_path_factory, "node2", "--node-name", "node2")
    try:
        arr = np.arange(1000, dtype=np.float64)
        client.write("to:send", arr)
        result = client.send("to:send", node2.address)
        assert result and result["method"] == "standard"
        np.testing.assert_array_equal(DataServer(node2.address).read("to:send"), arr)
        result = client.send("to:send", f"{node2.address}:disk")
        assert result.get("destination") == "disk"
        with pytest.raises(GswarmError):
            client.send("missing:key", node2.address)
    finally:
        assert node2.stop() == 0


def test_one_client_shared_by_threads(client):
    errors = []

    def work(n):
        try:
            for i in range(50):
                key = f"thread:{n}:{i}"
                value = np.full(100, n * 1000 + i, dtype=np.int32)
                client.write(key, value)
                np.testing.assert_array_equal(client.read(key), value)
        except Exception as error:  # noqa: BLE001 -- reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_zero_copy_read_maps_the_value_without_copying(client):
    array = np.random.default_rng(2).random((512, 256))
    client.write("zc:array", array)
    view = client.read("zc:array", zero_copy=True)
    np.testing.assert_array_equal(view, array)
    assert not view.flags.writeable and not view.flags.owndata
    # Valid while held, even once the key is gone: the mapping keeps the bytes.
    client.release("zc:array")
    np.testing.assert_array_equal(view, array)
    client.write("zc:bytes", b"shared bytes")
    mv = client.read("zc:bytes", zero_copy=True)
    assert isinstance(mv, memoryview) and mv.readonly and bytes(mv) == b"shared bytes"
    client.write("zc:json", {"j": 1})
    assert client.read("zc:json", zero_copy=True) == {"j": 1}
    assert client.read("zc:missing", zero_copy=True) is None
    client.write("zc:disk", b"d", location="disk")
    with pytest.raises(WrongLocationError) as caught:
        client.read("zc:disk", zero_copy=True)
    assert str(caught.value).count("client.move") == 1


def test_zero_copy_torch_tensors_are_copy_on_write_views_of_the_value(client, mapping_of):
    tensor = torch.arange(8 * 1024 * 1024, dtype=torch.float32)  # 32 MiB
    client.write("zc:torch", tensor)
    view = client.read("zc:torch", zero_copy=True)
    assert torch.equal(view, tensor)
    # The server's own memory (its value segment), not a copy in this process.
    assert "gswarm-value" in mapping_of(view.data_ptr()), mapping_of(view.data_ptr())
    # Writable, as torch tensors are, yet the stored value never changes.
    view[0] = -1.0
    assert view[0].item() == -1.0
    assert torch.equal(client.read("zc:torch"), tensor)
    assert torch.equal(client.read("zc:torch", zero_copy=True), tensor)


@pytest.fixture(scope="module")
def slow_mover(tmp_path_factory):
    # Moves copy at most 16 MB/s each: two 24 MB moves take over a second each.
    srv = start(tmp_path_factory, "slow", "--move-rate-limit", "16MB")
    yield srv
    assert srv.stop() == 0


def watch_active_moves(address, done):
    """The most moves the server ran at once while `done` was unset."""
    watcher = DataServer(address)
    most = 0
    while not done.is_set():
        most = max(most, watcher.get_stats()["active_moves"])
        time.sleep(0.005)
    return most


def test_awaited_moves_run_at_the_same_time(slow_mover):
    c = DataServer(slow_mover.address)
    for key in ("dataset1", "dataset2"):
        c.write(key, np.zeros(24 * 1024 * 1024, dtype=np.uint8))
    done = threading.Event()
    most = []
    watcher = threading.Thread(target=lambda: most.append(watch_active_moves(
        slow_mover.address, done)))
    watcher.start()

    async def move_both():
        return await asyncio.gather(c.move("dataset1", "disk"), c.move("dataset2", "disk"))

    try:
        results = asyncio.run(move_both())
    finally:
        done.set()
        watcher.join()
    assert [r["destination"] for r in results] == ["disk", "disk"]
    assert most[0] == 2, "both moves should have been running on the server at once"
    # Called plainly, move() blocks until the move is done.
    result = c.move("dataset1", "dram")
    assert result["destination"] == "dram"
    assert c.get_location("dataset1")["location"] == "dram"


def test_blocking_calls_release_the_gil(slow_mover):
    c = DataServer(slow_mover.address)
    c.write("gil:value", np.zeros(24 * 1024 * 1024, dtype=np.uint8))
    counted = 0
    mover = threading.Thread(target=c.move, args=("gil:value", "disk"))
    mover.start()
    while mover.is_alive():
        counted += 1  # runs only while the move's thread does not hold the GIL
    mover.join()
    assert c.get_location("gil:value")["location"] == "disk"
    assert counted > 10000


def test_large_values_are_received_whole(client):
    # Above 1 MiB arrays land in a mapping of their own; bytes in the bytes object.
    array = np.random.default_rng(3).random(3 * 1024 * 1024 // 8 + 5)
    client.write("large:array", array)
    back = client.read("large:array")
    np.testing.assert_array_equal(back, array)
    back[0] = -1.0  # writable, and not the server's memory
    np.testing.assert_array_equal(client.read("large:array")[1:], array[1:])
    data = np.random.default_rng(4).bytes(5 * 1024 * 1024 + 3)
    client.write("large:bytes", data)
    assert client.read("large:bytes") == data
    # The connection is still in step after large answers and errors.
    assert client.read("large:missing") is None
    assert client.read("large:bytes") == data
