"""The command line as users of redis-cli, Ray and Mooncake expect it: the
version, suggestions for typos, grouped help, GSWARM_HOST and --port, real
files in and out (--file, -, --output, --raw), JSON values, listing with a
glob, a limit and a total, several keys at once, operations, set-max-memory,
--json for failures too, and bash completion. Each runs the binary."""

import filecmp
import json
import os
import re
import subprocess
import time

import pytest

from gswarm_server import BINARY, Server

COMMAND_TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("surface")
    srv = Server(root / "disk", root / "server.log")
    yield srv
    assert srv.stop() == 0


def gswarm(*args, env=None, stdin=None, text=True):
    full_env = dict(os.environ)
    for name in ("GSWARM_HOST", "GSWARM_TOKEN", "GSWARM_TLS_CA"):
        full_env.pop(name, None)
    full_env.update(env or {})
    return subprocess.run([BINARY, *args], capture_output=True, text=text, timeout=COMMAND_TIMEOUT,
                          env=full_env, input=stdin)


def data(server, *args, **kwargs):
    return gswarm("data", *args, "--host", server.address, **kwargs)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def test_version():
    for args in (("--version",), ("version",)):
        out = ok(gswarm(*args))
        assert re.fullmatch(r"gswarm \d+\.\d+\.\d+\n", out), out


@pytest.mark.parametrize("typed, meant", [
    (("data", "wrte", "k", "v"), "write"),
    (("data", "lst-locations"), "list-locations"),
    (("data", "relase", "k"), "release"),
    (("dta", "write"), "data"),
])
def test_a_mistyped_command_names_the_nearest(typed, meant):
    result = gswarm(*typed)
    assert result.returncode == 2
    wrong = typed[1] if typed[0] == "data" else typed[0]
    assert f"unknown command '{wrong}'; did you mean '{meant}'?" in result.stderr, result.stderr
    assert "A subcommand is required" not in result.stderr


def test_no_command_lists_them_grouped():
    result = gswarm("data")
    assert result.returncode == 2
    assert "A subcommand is required" not in result.stderr
    help_text = ok(gswarm("data", "--help"))
    for text in (result.stderr, help_text):
        for group in ("KV storage", "Data pool", "Cluster", "Server"):
            assert group in text, text
        for command in ("write", "read", "release", "move-data", "list-locations", "operations",
                        "set-max-memory", "create", "transfer", "send", "nodes", "start", "stats"):
            assert re.search(rf"^\s+{re.escape(command)}\s+\S", text, re.M), (command, text)


def test_gswarm_host_and_port_point_at_the_server(server):
    host, port = server.address.rsplit(":", 1)
    ok(gswarm("data", "write", "where", "here", env={"GSWARM_HOST": server.address}))
    assert ok(gswarm("data", "read", "where", "--host", host, "--port", port)) == "here\n"
    # --port replaces the port of GSWARM_HOST's address.
    assert ok(gswarm("data", "read", "where", "--port", port,
                     env={"GSWARM_HOST": f"{host}:1"})) == "here\n"
    # Flags before positional arguments.
    ok(gswarm("data", "write", "--location", "dram", "--host", server.address, "flags", "first"))
    assert ok(data(server, "read", "flags")) == "first\n"


def test_read_raw_streams_the_value_without_holding_it(server, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1 << 20) * 256)  # 256 MiB
    ok(data(server, "write", "stream:k", "--file", str(source)))
    target = tmp_path / "out.bin"
    # Run from a small process: a child's peak resident memory counts its
    # parent's at the fork (this test's own is large).
    measure = ("import resource, subprocess, sys\n"
               "with open(sys.argv[1], 'wb') as out:\n"
               "    code = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
               "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run(["/usr/bin/python3", "-c", measure, str(target), BINARY, "data", "read",
                             "stream:k", "--raw", "--host", server.address],
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    code, peak_kib = (int(n) for n in ok(result).split())
    assert code == 0, result.stderr
    assert filecmp.cmp(source, target, shallow=False)
    # Pieces of the value pass through; the whole is never held (the bound is
    # half the value: a sanitized build alone takes some 70 MiB).
    assert peak_kib * 1024 < 128 << 20, f"peak resident {peak_kib} KiB"


def test_files_in_and_out_byte_for_byte(server, tmp_path):
    payload = os.urandom(3 << 20) + bytes(range(256))
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    out = ok(data(server, "write", "file:k", "--file", str(source), "--format", "npy"))
    assert "file:k" in out and str(len(payload)) in out
    target = tmp_path / "out.bin"
    ok(data(server, "read", "file:k", "--output", str(target)))
    assert target.read_bytes() == payload
    raw = data(server, "read", "file:k", "--raw", text=False)
    assert raw.returncode == 0 and raw.stdout == payload
    # Standard input, from a pipe.
    ok(data(server, "write", "stdin:k", "--file", "-", stdin=payload, text=False))
    assert data(server, "read", "stdin:k", "--raw", text=False).stdout == payload
    # A JSON value's bytes are its JSON text.
    ok(data(server, "write", "text:k", "hello"))
    assert data(server, "read", "text:k", "--raw").stdout == '"hello"'
    # The plain read of raw bytes says how to get them.
    refused = data(server, "read", "file:k")
    assert refused.returncode == 1
    assert "--output" in refused.stderr and "--raw" in refused.stderr, refused.stderr
    assert "read_extended" not in refused.stderr
    # Nothing left behind by a read that fails.
    missing = tmp_path / "missing.bin"
    assert data(server, "read", "no-such-key", "--output", str(missing)).returncode == 1
    assert not missing.exists()


def test_write_and_file_usage_errors(server, tmp_path):
    for args in (("write", "k"), ("write", "k", "v", "--file", "x"),
                 ("write", "k", "--file", "x", "--json"), ("read", "k", "--raw", "--output", "x")):
        result = data(server, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ")
    result = data(server, "write", "k", "--file", str(tmp_path / "nope"))
    assert result.returncode == 1 and "nope" in result.stderr


def test_json_values_are_stored_as_json(server):
    ok(data(server, "write", "answer", "42", "--json"))
    ok(data(server, "write", "object", '{"a": [1, 2]}', "--json"))
    ok(data(server, "write", "text", "42"))
    assert json.loads(ok(data(server, "read", "answer", "--json")))["value"] == 42
    assert json.loads(ok(data(server, "read", "object", "--json")))["value"] == {"a": [1, 2]}
    assert json.loads(ok(data(server, "read", "text", "--json")))["value"] == "42"
    bad = data(server, "write", "bad", "{not json", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["code"] == "bad_request"


def test_failures_with_json_print_detail_and_code(server):
    missing = data(server, "read", "no:such:key", "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == {"detail": json.loads(missing.stdout)["detail"],
                                          "code": "not_found"}
    wrong = data(server, "move-data", "answer", "dramm", "--json")
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["code"] == "invalid_location"
    down = gswarm("data", "stats", "--json", "--host", "127.0.0.1:1")
    assert down.returncode == 1 and json.loads(down.stdout)["code"] == "connection_failed"


def test_list_locations_with_a_glob_a_limit_and_a_total(server):
    keys = ["batch:item2", "batch:item10", "batch:item1", "batch:other", "unrelated"]
    for key in keys:
        ok(data(server, "write", key, "v"))
    ok(data(server, "move-data", "batch:item10", "disk"))
    out = ok(data(server, "list-locations", "batch:item*"))
    lines = out.splitlines()
    assert re.match(r"KEY\s+LOCATION\s+SIZE\s+STATUS", lines[0]), out
    rows = [line.split()[0] for line in lines[1:-1]]
    assert rows == ["batch:item1", "batch:item2", "batch:item10"], out  # natural order
    assert re.match(r"batch:item10\s+disk\s+\d+ B\s+complete", lines[3]), out
    assert lines[-1] == "3 keys"
    limited = ok(data(server, "list-locations", "batch:*", "--limit", "2")).splitlines()
    assert len(limited) == 4 and "2 keys shown (--limit 2); more match" in limited[-1], limited
    assert ok(data(server, "list-locations", "zzz*")).strip() == "No keys match 'zzz*'"
    listed = json.loads(ok(data(server, "list-locations", "batch:item?", "--json")))
    assert sorted(listed["locations"]) == ["batch:item1", "batch:item2"] and listed["count"] == 2


def test_release_takes_several_keys(server):
    for key in ("r1", "r2", "r3"):
        ok(data(server, "write", key, "v"))
    out = ok(data(server, "release", "r1", "r2"))
    assert out.splitlines() == ["Released 'r1'", "Released 'r2'"]
    partial = data(server, "release", "r3", "r-missing")
    assert partial.returncode == 1
    assert "Released 'r3'" in partial.stdout and "r-missing" in partial.stderr
    assert data(server, "read", "r3").returncode == 1


def test_operations_and_set_max_memory(server):
    ok(data(server, "write", "op:k", "v"))
    ok(data(server, "move-data", "op:k", "disk"))
    out = ok(data(server, "operations"))
    assert re.search(r"^\s*\d+\s+move\s+done\s+100%\s+dram -> disk\s+op:k$", out, re.M), out
    assert "set to 3.0 GB" in ok(data(server, "set-max-memory", "3GB"))
    stats = json.loads(ok(data(server, "stats", "--json")))["stats"]
    assert stats["max_dram_size"] == 3 << 30
    assert data(server, "set-max-memory", "3XB").returncode == 1


def test_bash_completion_covers_commands_options_and_locations(tmp_path):
    script = ok(gswarm("completion", "bash"))
    path = tmp_path / "gswarm.bash"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0

    def complete(*words):
        line = " ".join(["gswarm", *words])
        probe = (f"source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _gswarm; "
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT).stdout.split()

    assert "data" in complete("d")
    assert "write" in complete("data", "wr")
    assert "--location" in complete("data", "write", "--lo")
    assert "pinned_dram" in complete("data", "write", "k", "v", "--location", "pin")
    assert "disk" in complete("data", "move-data", "k", "di")


# ---- cancelling moves ------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """A server whose moves copy 4 MB a second: a 64 MiB move takes 16 s."""
    root = tmp_path_factory.mktemp("slow")
    srv = Server(root / "disk", root / "server.log", "--move-rate-limit", "4MB")
    yield srv
    assert srv.stop() == 0


def put_file(server, key, tmp_path, size=64 << 20):
    payload = os.urandom(size)
    source = tmp_path / f"{abs(hash(key))}.bin"
    source.write_bytes(payload)
    ok(data(server, "write", key, "--file", str(source)))
    return payload


def replicas(server, key):
    located = json.loads(ok(data(server, "get-location", key, "--json")))
    return [(r["location"], r["copy_status"]) for r in located["locations"]]


def test_cancel_stops_a_move_and_keeps_the_source(slow, tmp_path):
    import requests

    payload = put_file(slow, "slow:k", tmp_path)
    started = requests.post(f"http://{slow.address}/move", timeout=COMMAND_TIMEOUT,
                            json={"key": "slow:k", "destination": "disk", "wait": False})
    assert started.status_code == 202, started.text
    op = started.json()["operation_id"]
    out = ok(data(slow, "cancel", str(op)))
    assert f"Cancelled operation {op}" in out, out
    assert re.search(rf"^\s*{op}\s+move\s+cancelled\s", ok(data(slow, "operations")), re.M)
    assert replicas(slow, "slow:k") == [("dram", "complete")]
    back = tmp_path / "back.bin"
    ok(data(slow, "read", "slow:k", "--output", str(back)))
    assert back.read_bytes() == payload
    again = requests.delete(f"http://{slow.address}/operations/{op}", timeout=COMMAND_TIMEOUT)
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    missing = requests.delete(f"http://{slow.address}/operations/987654", timeout=COMMAND_TIMEOUT)
    assert missing.status_code == 404


def read_until(fd, marker, seconds=COMMAND_TIMEOUT):
    import select

    seen = b""
    deadline = time.monotonic() + seconds
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"{marker!r} did not appear; the terminal showed {seen!r}")
        seen += os.read(fd, 4096)
    return seen


def test_ctrl_c_during_move_data_asks_whether_to_cancel(slow, tmp_path):
    import pty
    import signal

    put_file(slow, "slow:c", tmp_path)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([BINARY, "data", "move-data", "slow:c", "disk", "--host", slow.address],
                            stdin=terminal, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    try:
        drawn = read_until(controller, b"MB/s")  # the progress line, with its rate
        assert re.search(rb"\r\[#* *\] +\d+%  \S+ \S+ / 64\.0 MB", drawn), drawn
        proc.send_signal(signal.SIGINT)
        read_until(controller, b"Cancel the move on the server")
        os.write(controller, b"y\n")
        assert proc.wait(timeout=COMMAND_TIMEOUT) == 1
    finally:
        os.close(controller)
    assert replicas(slow, "slow:c") == [("dram", "complete")]

    # Without a terminal to ask on, Ctrl-C leaves the move running and says how to stop it.
    proc = subprocess.Popen([BINARY, "data", "move-data", "slow:c", "disk", "--host", slow.address],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    assert proc.returncode == 130, err
    assert "goes on on the server" in err, err
    op = re.search(r"gswarm data cancel (\d+)", err).group(1)
    assert f"Cancelled operation {op}" in ok(data(slow, "cancel", op))
    assert replicas(slow, "slow:c") == [("dram", "complete")]


def test_a_large_file_write_draws_progress_on_a_terminal(server, tmp_path):
    from test_cli import drawn_on_terminal

    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(1 << 20) * 96)
    drawn, out = drawn_on_terminal("write", "large:k", "--file", str(source),
                                   "--host", server.address)
    assert re.search(rb"\r\[#* *\] +\d+%  \S+ \S+ / 96\.0 MB.* writing\x1b\[K", drawn), drawn
    assert drawn.endswith(b"\r\x1b[K"), drawn[-40:]  # the line is cleared
    assert "Wrote 'large:k' to dram (96.0 MB" in out, out
