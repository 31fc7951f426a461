"""The `gswarm data` commands, run the way a user runs them.

Every CLI example of the Data API reference for write, read, release, move-data,
get-location, list-locations and stats runs here exactly as written, with only
`--host 127.0.0.1:PORT` added. GSWARM_BINARY names the binary under test.
"""

import http.client
import json
import os
import pty
import re
import socket
import subprocess

import pytest

from gswarm_server import BINARY, Server

COMMAND_TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("gswarm")
    (root / "disk").mkdir()
    srv = Server(root / "disk", root / "server.log")
    yield srv
    assert srv.stop() == 0, "the server should exit cleanly on SIGTERM"


def run(*args, host=None):
    """Runs `gswarm data ARGS... [--host HOST]`."""
    argv = [BINARY, "data", *args]
    if host is not None:
        argv += ["--host", host]
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def one_error_line(result):
    """Asserts a clean failure: exit status 1, one `error: ` line on stderr."""
    assert result.returncode == 1, f"exit {result.returncode}, stderr: {result.stderr!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def gpu_count(server):
    stats = json.loads(ok(run("stats", "--json", host=server.address)))
    return len(stats["stats"]["gpu_stats"])


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the reference's examples, as written ---------------------------------------

def test_spec_write_examples(server):
    host = server.address
    assert ok(run("write", "user:123", "john_doe", host=host)).strip() == "Wrote 'user:123' to dram"

    result = run("write", "model:weights", "large_tensor", "--location", "device:0", host=host)
    if gpu_count(server) > 0:
        assert ok(result).strip() == "Wrote 'model:weights' to device:0"
    else:
        line = one_error_line(result)
        assert "device:0" in line

    assert ok(run("write", "backup:data", "important_data", "--location", "disk",
                  host=host)).strip() == "Wrote 'backup:data' to disk"
    assert "disk" in ok(run("get-location", "backup:data", host=host))


def test_spec_read_example(server):
    ok(run("write", "user:123", "john_doe", host=server.address))
    assert ok(run("read", "user:123", host=server.address)) == "john_doe\n"


def test_spec_release_example(server):
    ok(run("write", "user:123", "john_doe", host=server.address))
    assert ok(run("release", "user:123", host=server.address)).strip() == "Released 'user:123'"
    one_error_line(run("read", "user:123", host=server.address))


def test_spec_move_data_examples(server):
    host = server.address
    gpus = gpu_count(server)
    weights_location = "device:0" if gpus > 0 else "dram"
    ok(run("write", "model:weights", "large_tensor", "--location", weights_location, host=host))
    ok(run("write", "input:batch", "batch_0", host=host))
    ok(run("write", "results:final", "done", host=host))

    # Without a GPU the value starts in DRAM: the move succeeds and changes nothing.
    ok(run("move-data", "model:weights", "dram", host=host))
    assert ok(run("read", "model:weights", host=host)) == "large_tensor\n"

    result = run("move-data", "input:batch", "device:1", host=host)
    if gpus >= 2:
        assert "device:1" in ok(result)
    else:
        assert "device:1" in one_error_line(result)
        assert ok(run("read", "input:batch", host=host)) == "batch_0\n", "a failed move keeps the value"

    out = ok(run("move-data", "results:final", "disk", host=host))
    assert out.startswith("Moved 'results:final' from dram to disk")
    location = ok(run("get-location", "results:final", host=host))
    assert "Primary:  disk" in location


def test_spec_get_location_example(server):
    ok(run("write", "user:123", "john_doe", host=server.address))
    out = ok(run("get-location", "user:123", host=server.address))
    assert "Key:      user:123" in out
    assert "Primary:  dram" in out
    assert re.search(r"dram\s+\d+ B\s+complete\s+100%", out), out


def test_spec_list_locations_example(server):
    ok(run("write", "list:a", "x", host=server.address))
    ok(run("write", "list:b", "y", "--location", "disk", host=server.address))
    out = ok(run("list-locations", host=server.address))
    lines = out.splitlines()
    assert re.match(r"KEY\s+LOCATION\s+SIZE\s+STATUS$", lines[0]), out
    assert any(re.match(r"list:a\s+dram\s+\d+ B\s+complete$", line) for line in lines), out
    assert any(re.match(r"list:b\s+disk\s+\d+ B\s+complete$", line) for line in lines), out
    assert re.match(r"\d+ keys?$", lines[-1]), out


def test_spec_stats_example(server):
    out = ok(run("stats", host=server.address))
    for label in ("DRAM:", "Pinned memory:", "GPU memory:", "Disk:", "Keys:", "Active moves:",
                  "System memory:"):
        assert label in out, out
    assert re.search(r"DRAM:\s+\S+ \S+ / \S+ \S+ \(\d+\.\d%\)", out), out
    if gpu_count(server) == 0:
        assert re.search(r"GPU memory:\s+none", out), out


@pytest.fixture(scope="module")
def node2(tmp_path_factory):
    """A second server, known to `cluster_source` as node2."""
    root = tmp_path_factory.mktemp("node2")
    srv = Server(root / "disk", root / "server.log", "--node-name", "node2")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def cluster_source(tmp_path_factory, node2):
    root = tmp_path_factory.mktemp("node1")
    srv = Server(root / "disk", root / "server.log", "--node-name", "node1",
                 "--peer", f"node2={node2.address}")
    yield srv
    assert srv.stop() == 0


def test_spec_send_examples(cluster_source, node2):
    host = cluster_source.address
    ok(run("write", "user:123", "hello", host=host))
    port = node2.address.rsplit(":", 1)[1]
    # The reference's `gswarm data send "user:123" "localhost:9016"`, with node2's port.
    out = ok(run("send", "user:123", f"localhost:{port}", host=host))
    assert re.match(rf"Sent 'user:123' from dram to localhost:{port}:dram via standard "
                    r"\(.* in \d+\.\d+ s, .*GB/s\)$", out.strip()), out
    assert ok(run("read", "user:123", host=node2.address)).strip() == "hello"
    assert ok(run("read", "user:123", host=host)).strip() == "hello", "the source stays"
    # GPU-to-GPU examples: without GPUs here, the source says so in one line.
    if gpu_count(cluster_source) == 0:
        ok(run("write", "model:weights", "w", host=host))
        for args in (("send", "model:weights", "node2:device:1", "--source", "device:0"),
                     ("send-gpu", "model:weights", "device:0", "node2", "device:1")):
            assert "device:0" in one_error_line(run(*args, host=host))


def test_send_by_node_name_deletes_the_source_when_asked(cluster_source, node2):
    host = cluster_source.address
    ok(run("write", "moving", "v", host=host))
    out = ok(run("send", "moving", "node2:disk", "--delete-source", host=host))
    assert "node2" in out and "released" in out, out
    assert "not found" in one_error_line(run("get-location", "moving", host=host))
    where = json.loads(ok(run("get-location", "moving", "--json", host=node2.address)))
    assert where["location"] == "disk"


def write_raw(address, key, data, location):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=COMMAND_TIMEOUT)
    conn.request("POST", f"/write_extended?key={key}&location={location}", body=data,
                 headers={"Content-Type": "application/octet-stream"})
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    conn.close()


def drawn_on_terminal(*args):
    """Runs `gswarm data ARGS...` with stderr on a pseudo-terminal: (what it drew, stdout)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([BINARY, "data", *args], stdout=subprocess.PIPE, stderr=terminal,
                            text=True)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            piece = os.read(controller, 4096)
        except OSError:
            break
        if not piece:
            break
        drawn += piece
    out = proc.stdout.read()
    assert proc.wait(timeout=COMMAND_TIMEOUT) == 0, drawn
    os.close(controller)
    return drawn, out


def test_large_send_draws_progress_on_a_terminal_only(cluster_source, node2):
    host = cluster_source.address
    write_raw(host, "progress:big", os.urandom(1 << 20) * 384, "disk")
    # On a terminal: a bar on stderr, redrawn in place, then the result on stdout.
    drawn, out = drawn_on_terminal("send", "progress:big", "node2:disk", "--streams", "1",
                                   "--host", host)
    assert re.search(rb"\r\[#* *\] +\d+%  \S+ \S+ / 384\.0 MB", drawn), drawn
    assert re.match(r"Sent 'progress:big' from disk to node2:disk at \S+ via standard", out), out
    # Not on a terminal: no bar.
    result = run("send", "progress:big", "node2:disk", host=host)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    ok(run("release", "progress:big", host=host))
    ok(run("release", "progress:big", host=node2.address))


def test_nodes_lists_this_server_and_its_peers(cluster_source, node2):
    lines = ok(run("nodes", host=cluster_source.address)).strip().splitlines()
    assert lines[0].split() == ["NODE", "ADDRESS", "ALIVE", "SOURCE"]
    assert lines[1].split() == ["node1", cluster_source.address, "yes", "self"]
    assert lines[2].split() == ["node2", node2.address, "yes", "static"]


def test_send_errors_are_one_clear_line(cluster_source):
    host = cluster_source.address
    ok(run("write", "e:k", "v", host=host))
    assert "not found" in one_error_line(run("send", "e:missing", "node2", host=host))
    assert "valid locations" in one_error_line(run("send", "e:k", "localhost:dramm", host=host))
    assert "known nodes are node1, node2" in one_error_line(run("send", "e:k", "node9", host=host))
    assert "cannot connect" in one_error_line(
        run("send", "e:k", f"127.0.0.1:{free_port()}", host=host))


def test_send_to_this_node_copies_and_shows_method_and_timing(server):
    host = server.address
    ok(run("write", "send:k", "payload", host=host))
    out = ok(run("send", "send:k", "localhost:disk", host=host))
    assert re.match(r"Sent 'send:k' from dram to localhost:disk via file \(.* in \d+\.\d+ s, .*GB/s\)$",
                    out.strip()), out
    where = json.loads(ok(run("get-location", "send:k", "--json", host=host)))
    assert [r["location"] for r in where["locations"]] == ["dram", "disk"]
    assert json.loads(ok(run("read", "send:k", "--json", host=host)))["value"] == "payload"
    disk_keys = json.loads(ok(run("stats", "--json", host=host)))["stats"]["disk_keys"]
    ok(run("release", "send:k", host=host))
    assert json.loads(ok(run("stats", "--json", host=host)))["stats"]["disk_keys"] == disk_keys - 1
    assert "not found" in one_error_line(run("get-location", "send:k", host=host))
    if gpu_count(server) == 0:
        ok(run("write", "send:g", "payload", host=host))
        line = one_error_line(run("send-gpu", "send:g", "device:0", "localhost", "device:1", host=host))
        assert "device:" in line and "not available" in line


# ---- output formats -----------------------------------------------------------------

def test_json_output_is_the_servers_answer(server):
    host = server.address
    written = json.loads(ok(run("write", "json:k", "\"v\"", "--json", host=host)))
    assert written == {"status": "success", "key": "json:k", "location": "dram"}
    read = json.loads(ok(run("read", "json:k", "--json", host=host)))
    assert read["value"] == "v" and read["found"] is True
    location = json.loads(ok(run("get-location", "json:k", "--json", host=host)))
    assert location["location"] == "dram"
    assert location["locations"][0]["copy_status"] == "complete"
    assert "json:k" in json.loads(ok(run("list-locations", "--json", host=host)))["locations"]
    assert "dram_usage_percent" in json.loads(ok(run("stats", "--json", host=host)))["stats"]
    moved = json.loads(ok(run("move-data", "json:k", "disk", "--json", host=host)))
    assert (moved["source"], moved["destination"]) == ("dram", "disk")
    released = json.loads(ok(run("release", "json:k", "--json", host=host)))
    assert released["status"] == "success"


def test_read_prints_strings_without_quotes(server):
    ok(run("write", "quote:k", 'say "hi"\nand bye', host=server.address))
    assert ok(run("read", "quote:k", host=server.address)) == 'say "hi"\nand bye\n'


def test_unicode_and_slash_keys(server):
    for key in ("a/b", "ключ 日本", "plus+sign", "100%"):
        ok(run("write", key, "v", host=server.address))
        assert ok(run("read", key, host=server.address)) == "v\n"
        assert key in ok(run("list-locations", host=server.address))
        ok(run("release", key, host=server.address))


# ---- help and usage -------------------------------------------------------------------

COMMAND_OPTIONS = {
    "write": ["KEY", "VALUE", "--location", "--host", "--json"],
    "read": ["KEY", "--host", "--json"],
    "release": ["KEY", "--host", "--json"],
    "move-data": ["KEY", "DESTINATION", "--host", "--json"],
    "get-location": ["KEY", "--host", "--json"],
    "list-locations": ["--host", "--json"],
    "stats": ["--host", "--json"],
    "send": ["KEY", "TARGET", "--source", "--host"],
    "send-gpu": ["KEY", "SOURCE_DEVICE", "TARGET_NODE", "TARGET_DEVICE", "--host"],
    "start": ["--host", "--port", "--max-memory"],
}


@pytest.mark.parametrize("command", sorted(COMMAND_OPTIONS))
def test_help(command):
    out = ok(run(command, "--help"))
    for option in COMMAND_OPTIONS[command]:
        assert option in out, f"{command} --help does not mention {option}:\n{out}"
    if command != "start":
        assert "localhost:9015" in out, "--host's default should be shown"


def test_data_help_lists_commands():
    out = ok(run("--help"))
    for command in COMMAND_OPTIONS:
        assert command in out


def test_usage_errors_exit_2():
    for args in (("read",), ("write", "only-key"), ("stats", "--no-such-option"), ("no-such-command",)):
        result = run(*args)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert result.stderr.strip().splitlines()[0].startswith("error: ")


# ---- failures -----------------------------------------------------------------------

def test_server_down_is_one_clear_line():
    host = f"127.0.0.1:{free_port()}"
    for args in (("read", "user:123"), ("write", "k", "v"), ("stats",), ("list-locations",)):
        line = one_error_line(run(*args, host=host))
        assert f"cannot connect to {host}" in line
        assert "gswarm data start" in line


def test_default_host_is_localhost_9015():
    result = run("stats")
    if result.returncode == 0:
        pytest.skip("a server is running on localhost:9015")
    assert "localhost:9015" in one_error_line(result)


def test_a_host_without_a_port_means_9015_and_says_so():
    for host in ("localhost", "127.0.0.1", "http://127.0.0.1/"):
        result = run("stats", host=host)
        if result.returncode == 0:
            pytest.skip("a server is running on port 9015")
        expected = "localhost:9015" if host == "localhost" else "127.0.0.1:9015"
        assert f"cannot connect to {expected}" in one_error_line(result)


def test_missing_key(server):
    for args in (("read", "no:such:key"), ("release", "no:such:key"), ("get-location", "no:such:key"),
                 ("move-data", "no:such:key", "disk")):
        assert "no:such:key" in one_error_line(run(*args, host=server.address))


def test_read_of_a_disk_key_says_to_move_it(server):
    ok(run("write", "archived", "v", "--location", "disk", host=server.address))
    line = one_error_line(run("read", "archived", host=server.address))
    assert "disk" in line
    assert "move-data" in line


def test_bad_location_is_refused_before_sending(server):
    for args in (("write", "k", "v", "--location", "moon"), ("move-data", "k", "gpu:x")):
        line = one_error_line(run(*args, host=server.address))
        assert "dram, pinned_dram, device:N, disk" in line
    # Refused client-side: no server needed.
    one_error_line(run("write", "k", "v", "-l", "moon", host=f"127.0.0.1:{free_port()}"))


def test_start_refuses_a_bad_max_memory(tmp_path):
    try:
        result = subprocess.run(
            [BINARY, "data", "start", "--host", "127.0.0.1", "--port", "0", "--disk-path",
             str(tmp_path), "--max-memory", "12XB"],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("gswarm data start accepted --max-memory 12XB and kept running")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "12XB" in lines[0]
    assert "listening" not in result.stdout
