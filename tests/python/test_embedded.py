"""get_storage() (the engine in this process) and start_server() (a server in
this process)."""

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from gswarm.data import (DataServer, DataStorage, DeviceUnavailableError, NotFoundError,
                         OverLimitError, WrongLocationError, start_server)


@pytest.fixture
def storage(tmp_path):
    s = DataStorage(64 * 1024**2, str(tmp_path / "disk"))
    yield s
    s.close()


def run_python(code, timeout=120, cwd=None):
    """Runs `code` in a new python3 from another folder, as a user would."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or "/")


def test_the_installed_package_imports_from_any_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(["/usr/bin/python3", "-c",
                             "from gswarm.data import DataServer, get_storage, start_server, "
                             "set_max_memory; import gswarm; print(gswarm.__file__, "
                             "gswarm.__version__)"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dist-packages" in result.stdout or "site-packages" in result.stdout


def test_values_round_trip_in_process(storage):
    values = {"k:json": {"a": [1, 2]}, "k:str": "value1", "k:bytes": b"\x00\x01",
              "k:np": np.arange(12, dtype=np.int16).reshape(3, 4).T,
              "k:torch": torch.randn(3, 3), "k:obj": {1, 2}}
    for key, value in values.items():
        assert storage.write(key, value) is True
    for key, value in values.items():
        back = storage.read(key)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back, value)
            assert back.flags.writeable  # a copy unless zero_copy
        elif isinstance(value, torch.Tensor):
            assert torch.equal(back, value)
        else:
            assert back == value
    view = storage.read("k:np", zero_copy=True)
    assert not view.flags.writeable
    np.testing.assert_array_equal(view, values["k:np"])
    assert storage.read("missing") is None


def test_zero_copy_torch_reads_map_the_stored_bytes_copy_on_write(storage, mapping_of):
    tensor = torch.arange(1 << 20, dtype=torch.int32)
    storage.write("k:t", tensor)
    view = storage.read("k:t", zero_copy=True)
    assert "gswarm-value" in mapping_of(view.data_ptr()), mapping_of(view.data_ptr())
    view[0] = 7
    assert storage.read("k:t")[0].item() == 0 and torch.equal(storage.read("k:t"), tensor)


def test_locations_moves_and_stats_have_the_servers_shapes(storage):
    storage.write("key1", "value1", location="dram")
    storage.write("key3", np.zeros(1000), location="disk")
    with pytest.raises(WrongLocationError, match="only dram can be read"):
        storage.read("key3")
    moved = asyncio.run(storage.move_async("key3", "dram"))
    assert moved["source"] == "disk" and moved["destination"] == "dram"
    np.testing.assert_array_equal(storage.read("key3"), np.zeros(1000))
    assert storage.move("key3", "pinned_dram")["destination"] == "pinned_dram"
    where = storage.get_location("key3")
    assert where["location"] == "pinned_dram" and where["locations"][0]["size"] > 8000
    everything = storage.list_locations()
    assert set(everything) == {"key1", "key3"}
    stats = storage.get_stats()
    assert stats["dram_keys"] == 1 and stats["pinned_keys"] == 1
    assert stats["gpu_stats"] == {} and "dram_usage_percent" in stats
    assert storage.release("key1") is True
    with pytest.raises(NotFoundError):
        storage.release("key1")
    with pytest.raises(DeviceUnavailableError):
        storage.write("key2", np.zeros(3), location="device:0")


def test_moves_awaited_together_all_finish(storage):
    for i in range(4):
        storage.write(f"d{i}", np.full(100_000, i, dtype=np.int32))

    async def move_all():
        return await asyncio.gather(*(storage.move_async(f"d{i}", "disk") for i in range(4)))

    results = asyncio.run(move_all())
    assert [r["destination"] for r in results] == ["disk"] * 4
    assert all(storage.get_location(f"d{i}")["location"] == "disk" for i in range(4))


def test_set_max_memory_applies_to_the_engine(storage):
    storage.set_max_memory(1024 * 1024)
    storage.write("small", b"x" * 1000)
    with pytest.raises(OverLimitError):
        storage.write("big", b"x" * (2 * 1024 * 1024))
    assert storage.read("small") == b"x" * 1000
    assert storage.get_stats()["max_dram_size"] == 1024 * 1024


def test_a_disk_path_serves_one_process_at_a_time(tmp_path):
    first = DataStorage(1024**2, str(tmp_path / "shared"))
    try:
        with pytest.raises(Exception, match="in use by another gswarm process"):
            DataStorage(1024**2, str(tmp_path / "shared"))
    finally:
        first.close()
    DataStorage(1024**2, str(tmp_path / "shared")).close()  # free again once closed


def test_module_level_set_max_memory_then_get_storage(tmp_path):
    result = run_python(f"""
        from gswarm.data import get_storage, set_max_memory
        set_max_memory(2 * 1024 * 1024)
        storage = get_storage(disk_path={str(tmp_path / 'disk')!r})
        assert storage is get_storage()
        assert storage.get_stats()["max_dram_size"] == 2 * 1024 * 1024
        set_max_memory(3 * 1024 * 1024)
        assert storage.get_stats()["max_dram_size"] == 3 * 1024 * 1024
        print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_get_storage_refuses_a_second_disk_path(tmp_path):
    result = run_python(f"""
        from gswarm.data import get_storage
        first = get_storage(disk_path={str(tmp_path / 'a')!r})
        assert get_storage(disk_path={str(tmp_path / 'a') + '/'!r}) is first  # the same directory
        try:
            get_storage(disk_path={str(tmp_path / 'b')!r})
        except ValueError as e:
            assert {str(tmp_path / 'a')!r} in str(e) and {str(tmp_path / 'b')!r} in str(e), e
            print("refused")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "refused", result.stderr


def test_start_server_in_a_thread_serves_clients(tmp_path):
    started = []
    thread = threading.Thread(target=start_server, kwargs=dict(
        host="127.0.0.1", port=0, max_mem_size=64 * 1024**2, disk_path=str(tmp_path / "disk"),
        ready=started.append), daemon=True)
    thread.start()
    while not started and thread.is_alive():
        thread.join(0.01)
    server = started[0]
    client = DataServer(f"127.0.0.1:{server.port}")
    client.write("test", "Hello, World!")
    assert client.read("test") == "Hello, World!"
    assert client.get_stats()["max_size"] == 64 * 1024**2
    server.stop()
    thread.join(30)
    assert not thread.is_alive()


@pytest.mark.parametrize("moment", ["at once", "1 ms in", "5 ms in", "20 ms in", "serving",
                                    "while a client reads"])
def test_a_process_may_exit_at_any_moment_of_a_daemon_threads_start_server(tmp_path, moment):
    # The spec's thread example, with the process ending during start-up (the
    # store opening, the port binding) or while serving.
    wait = {"at once": "pass", "1 ms in": "time.sleep(0.001)", "5 ms in": "time.sleep(0.005)",
            "20 ms in": "time.sleep(0.02)", "serving": "started.wait(30)",
            "while a client reads": "started.wait(30); reading.wait(30)"}[moment]
    code = f"""
        import threading, time
        from gswarm.data import DataServer, start_server
        started, reading = threading.Event(), threading.Event()
        def reader(server):
            client = DataServer(f"127.0.0.1:{{server.port}}")
            client.write("k", b"x" * (1 << 20))
            while True:
                client.read("k")
                reading.set()
        def ready(server):
            started.set()
            threading.Thread(target=reader, args=(server,), daemon=True).start()
        threading.Thread(target=start_server, kwargs=dict(
            host="127.0.0.1", port=0, max_mem_size=1 << 26,
            disk_path={str(tmp_path / 'disk')!r}, ready=ready), daemon=True).start()
        {wait}
        print("exiting", flush=True)
    """
    for _ in range(3):
        result = run_python(code, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "terminate" not in result.stderr, result.stderr
        assert result.stdout.strip() == "exiting"


def test_start_server_in_the_main_thread_stops_on_ctrl_c(tmp_path):
    code = f"""
        import os, signal, threading
        from gswarm.data import start_server, DataServer
        def ready(server):
            DataServer(f"127.0.0.1:{{server.port}}").write("k", 1)
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        start_server("127.0.0.1", 0, 1 << 26, {str(tmp_path / 'disk')!r}, ready=ready)
        print("stopped")
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stopped"
    assert "gswarm listening on 127.0.0.1:" in result.stderr
