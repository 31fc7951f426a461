"""The data pool from the command line and from the reference's HTTP example.

Every CLI example of the Data API reference for list, create, info, move,
transfer and delete runs here as written, with `--host 127.0.0.1:PORT` added and
the reference's placeholders ("/path/to/data.bin", "chunk_abc123") replaced by a
real file and a real chunk id. Lines that ask for a GPU fail in one clear line
where there is none, and run again with a tier this machine has.
"""

import json
import os
import re
import subprocess
import time

import pytest
import requests

from test_cli import BINARY, COMMAND_TIMEOUT, Server, drawn_on_terminal, ok, one_error_line, run

CHUNK_ID = re.compile(r"chunk_[0-9a-f]{16}")


@pytest.fixture(scope="module")
def pool_node2(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool-node2")
    srv = Server(root / "disk", root / "server.log", "--node-name", "node2")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory, pool_node2, sources):
    root = tmp_path_factory.mktemp("pool-node1")
    srv = Server(root / "disk", root / "server.log", "--node-name", "node1",
                 "--source-root", str(sources), "--peer", f"node2={pool_node2.address}")
    yield srv
    assert srv.stop() == 0


def has_gpu(address):
    stats = json.loads(ok(run("stats", "--json", host=address)))
    return len(stats["stats"]["gpu_stats"]) > 0


def created_id(out):
    match = CHUNK_ID.search(out)
    assert match, out
    return match.group(0)


def test_spec_pool_examples(pool_server, pool_node2, sources):
    host = pool_server.address
    data = sources / "data.bin"
    data.write_bytes(os.urandom(1 << 20))
    gpu = has_gpu(host)

    # gswarm data list --device gpu --type input
    listed = ok(run("list", "--device", "gpu", "--type", "input", host=host))
    assert listed.strip() == "No chunks", listed

    # gswarm data create --source "/path/to/data.bin" --device gpu --type input --format tensor
    spec_create = ("create", "--source", str(data), "--device", "gpu", "--type", "input",
                   "--format", "tensor")
    if gpu:
        chunk = created_id(ok(run(*spec_create, host=host)))
    else:
        assert "no GPU" in one_error_line(run(*spec_create, host=host))
        out = ok(run("create", "--source", str(data), "--device", "dram", "--type", "input",
                     "--format", "tensor", host=host))
        assert re.match(r"Created chunk_[0-9a-f]{16} \(1\.0 MB, input, tensor\) on dram; "
                        r"checksum xxh3:[0-9a-f]{16}$", out.strip()), out
        chunk = created_id(out)
    listed = ok(run("list", host=host))
    assert re.search(rf"^{chunk} +input +tensor +1\.0 MB +\S+ +0 ", listed, re.M), listed
    assert listed.strip().endswith("1 chunk")

    # gswarm data info "chunk_abc123"
    info = ok(run("info", chunk, host=host))
    assert f"Chunk:        {chunk}" in info and "Checksum:     xxh3:" in info, info
    assert f"Source:       {data}" in info and "by node1" in info, info

    # gswarm data move "chunk_abc123" --to gpu --priority high
    if gpu:
        assert "Moved" in ok(run("move", chunk, "--to", "gpu", "--priority", "high", host=host))
    else:
        assert "no GPU" in one_error_line(run("move", chunk, "--to", "gpu", "--priority", "high",
                                              host=host))
    out = ok(run("move", chunk, "--to", "disk", "--priority", "high", host=host))
    assert re.match(rf"Moved {chunk} from \S+ to disk \(1\.0 MB in \d+\.\d+ s, priority high\)",
                    out), out
    assert ok(run("list", "-d", "disk", "-t", "input", host=host)).count(chunk) == 1

    # gswarm data transfer "chunk_abc123" --to "node2:gpu" --delete-source
    spec_transfer = ("transfer", chunk, "--to", "node2:gpu", "--delete-source")
    if gpu and has_gpu(pool_node2.address):
        ok(run(*spec_transfer, host=host))
    else:
        one_error_line(run(*spec_transfer, host=host))
        assert chunk in ok(run("list", host=host)), "a failed transfer keeps the source"
        out = ok(run("transfer", chunk, "--to", "node2:disk", "--delete-source", host=host))
        assert re.match(rf"Transferred {chunk} from disk to node2:disk .*; the source chunk was "
                        r"deleted$", out.strip()), out
    assert "no chunk" in one_error_line(run("info", chunk, host=host))
    there = json.loads(ok(run("info", chunk, "--json", host=pool_node2.address)))
    assert there["metadata"]["created_by"] == "node1"

    # gswarm data delete "chunk_abc123" --force
    assert ok(run("delete", chunk, "--force", host=pool_node2.address)).strip() == f"Deleted {chunk}"
    assert "no chunk" in one_error_line(run("info", chunk, host=pool_node2.address))


def test_short_flags_and_json(pool_server, sources):
    host = pool_server.address
    (sources / "short.bin").write_bytes(b"abc")
    answer = json.loads(ok(run("create", "-s", str(sources / "short.bin"), "-d", "disk", "-t",
                               "output", "-f", "npy", "--json", host=host)))
    assert answer["status"] == "success" and answer["size"] == 3
    chunk = answer["chunk_id"]
    listed = json.loads(ok(run("list", "-d", "disk", "-t", "output", "--json", host=host)))
    assert [c["chunk_id"] for c in listed["chunks"]] == [chunk]
    assert listed["chunks"][0]["format"] == "npy"
    ok(run("move", chunk, "-t", "dram", "-p", "low", host=host))
    assert json.loads(ok(run("info", chunk, "--json", host=host)))["locations"][0]["device"] == "dram"
    ok(run("delete", chunk, "-f", host=host))


def test_create_uploads_files_the_server_cannot_read(pool_server, tmp_path):
    host = pool_server.address
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 1000)
    out = ok(run("create", "--source", str(outside), host=host))
    assert "(uploaded)" in out, out
    chunk = created_id(out)
    info = json.loads(ok(run("info", chunk, "--json", host=host)))
    assert info["size"] == 1000 and info["source"] == str(outside)
    # A relative path is a local file too.
    rel = subprocess.run([BINARY, "data", "create", "-s", "outside.bin", "--host", host],
                         capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=tmp_path)
    assert rel.returncode == 0 and "(uploaded)" in rel.stdout, rel.stderr
    # Neither here nor there: one line that says so.
    line = one_error_line(run("create", "--source", str(tmp_path / "missing.bin"), host=host))
    assert "no file" in line and "missing.bin" in line, line
    ok(run("delete", chunk, host=host))
    ok(run("delete", created_id(rel.stdout), host=host))


def test_referenced_chunks_need_force(pool_server):
    host = pool_server.address
    chunk = json.loads(ok(run("create", "-s", "/etc/hostname", "--json", host=host)))["chunk_id"]
    requests.post(f"http://{host}/api/v1/data/{chunk}/references", json={"holder": "job-1"},
                  timeout=COMMAND_TIMEOUT).raise_for_status()
    line = one_error_line(run("delete", chunk, host=host))
    assert "job-1" in line and "--force" in line, line
    assert ok(run("info", chunk, host=host)).count("job-1") == 1
    ok(run("delete", chunk, "--force", host=host))


def test_pool_errors_are_one_clear_line(pool_server):
    host = pool_server.address
    assert "no chunk" in one_error_line(run("info", "chunk_abc123", host=host))
    assert "no chunk" in one_error_line(run("move", "chunk_abc123", "--to", "disk", host=host))
    assert "no chunk" in one_error_line(run("delete", "chunk_abc123", "--force", host=host))
    assert "unknown chunk type" in one_error_line(run("list", "--type", "weights", host=host))
    assert "unknown device" in one_error_line(run("create", "-s", "/etc/hostname", "-d", "moon",
                                                  host=host))
    usage = run("move", "chunk_abc123", "--to", "disk", "--priority", "urgent", host=host)
    assert usage.returncode == 2 and "urgent" in usage.stderr


def test_large_creates_and_moves_draw_progress_on_a_terminal(pool_server, sources, tmp_path):
    host = pool_server.address
    big = sources / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 256)
    drawn, out = drawn_on_terminal("create", "-s", str(big), "-d", "disk", "--host", host)
    assert re.search(rb"\r\[#* *\] +\d+%  \S+ \S+ / 256\.0 MB", drawn), drawn
    assert drawn.endswith(b"\r\x1b[K"), drawn[-40:]
    chunk = created_id(out)
    assert "256.0 MB" in out and "on disk" in out, out
    drawn, out = drawn_on_terminal("move", chunk, "--to", "dram", "--host", host)
    assert re.search(rb"\r\[#* *\] +\d+%  \S+ \S+ / 256\.0 MB", drawn), drawn
    assert out.startswith(f"Moved {chunk} from disk to dram"), out
    # An upload (a file the server may not read) draws how far it got.
    outside = tmp_path / "upload.bin"
    outside.write_bytes(os.urandom(1 << 20) * 96)
    drawn, out = drawn_on_terminal("create", "-s", str(outside), "--host", host)
    assert re.search(rb"\r\[#* *\] +\d+%  \S+ \S+ / 96\.0 MB uploading", drawn), drawn
    assert "(uploaded)" in out, out
    ok(run("delete", created_id(out), host=host))
    # Not on a terminal: nothing on stderr.
    result = run("move", chunk, "--to", "disk", host=host)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    ok(run("delete", chunk, host=host))
    big.unlink()


# The reference's "Data Pool Operations via HTTP", as written.
SPEC_HTTP_EXAMPLE = '''
import requests

base_url = "http://localhost:9015"

# List data chunks
response = requests.get(f"{base_url}/api/v1/data")
chunks = response.json()["chunks"]

# Create a data chunk
chunk_data = {
    "source": "/path/to/data.bin",
    "device": "gpu",
    "type": "input",
    "format": "tensor"
}
response = requests.post(f"{base_url}/api/v1/data", json=chunk_data)
chunk_id = response.json()["chunk_id"]

# Get chunk information
response = requests.get(f"{base_url}/api/v1/data/{chunk_id}")
chunk_info = response.json()

# Move chunk to different device
move_data = {"target_device": "dram", "priority": "high"}
response = requests.post(f"{base_url}/api/v1/data/{chunk_id}/move", json=move_data)

# Transfer chunk to another node
transfer_data = {
    "target_node": "node2",
    "target_device": "gpu",
    "delete_source": False
}
response = requests.post(f"{base_url}/api/v1/data/{chunk_id}/transfer", json=transfer_data)

# Delete chunk
response = requests.delete(f"{base_url}/api/v1/data/{chunk_id}")
'''


def test_spec_http_example_runs(pool_server, pool_node2, sources):
    host = pool_server.address
    data = sources / "example.bin"
    data.write_bytes(os.urandom(4096))
    code = (SPEC_HTTP_EXAMPLE.replace("localhost:9015", host)
            .replace("/path/to/data.bin", str(data)))
    if not has_gpu(host):
        # Without a GPU the create is a clear 400 ...
        refused = requests.post(f"http://{host}/api/v1/data",
                                json={"source": str(data), "device": "gpu"}, timeout=30)
        assert refused.status_code == 400 and refused.json()["code"] == "device_unavailable"
        # ... and the example runs with the tiers this machine has.
        code = code.replace('"device": "gpu"', '"device": "disk"')
    if not has_gpu(pool_node2.address):
        code = code.replace('"target_device": "gpu"', '"target_device": "disk"')
    scope = {}
    exec(compile(code, "spec-example", "exec"), scope)
    assert isinstance(scope["chunks"], list)
    assert scope["chunk_info"]["chunk_id"] == scope["chunk_id"]
    assert scope["chunk_info"]["size"] == 4096
    assert scope["response"].status_code == 200, scope["response"].text
    chunk_id = scope["chunk_id"]
    # The transfer ran (asynchronously) and left the chunk on node2; the delete removed it here.
    # Polled until it lands (or 60 s): a loaded machine may take a while.
    deadline = time.monotonic() + 60
    while True:
        there = requests.get(f"http://{pool_node2.address}/api/v1/data/{chunk_id}", timeout=30)
        if there.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert there.status_code == 200, (
        there.text, requests.get(f"http://{host}/operations", timeout=30).text)
    assert there.json()["checksum"] == scope["chunk_info"]["checksum"]
    assert requests.get(f"http://{host}/api/v1/data/{chunk_id}", timeout=30).status_code == 404
