"""Auth and protected mode, run the way a user runs them: `gswarm data start`
with --token / --token-file / GSWARM_TOKEN / --protected-mode, client commands
with --token / GSWARM_TOKEN, and raw HTTP from this machine's own non-loopback
address (a client "from another machine" as far as the server can tell)."""

import fcntl
import json
import os
import socket
import struct
import subprocess

import pytest
import requests

from gswarm_server import BINARY, Server

TOKEN = "cli-test-token-8d2f61"
COMMAND_TIMEOUT = 60


def outside_address():
    """An IPv4 address of this machine that is not loopback, or None."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            return address
    return None


def gswarm(*args, env_token=None):
    env = dict(os.environ)
    env.pop("GSWARM_TOKEN", None)
    if env_token is not None:
        env["GSWARM_TOKEN"] = env_token
    return subprocess.run([BINARY, "data", *args], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, env=env)


def server_env(token=None):
    env = dict(os.environ)
    env.pop("GSWARM_TOKEN", None)
    if token is not None:
        env["GSWARM_TOKEN"] = token
    return env


@pytest.fixture
def start(tmp_path):
    servers = []

    def _start(*extra, host="127.0.0.1", token_env=None):
        n = len(servers)
        srv = Server(tmp_path / f"disk{n}", tmp_path / f"server{n}.log", *extra, host=host,
                     env=server_env(token_env))
        servers.append(srv)
        return srv

    yield _start
    for srv in servers:
        assert srv.stop() == 0


def test_client_commands_take_the_token_from_the_flag_the_variable_or_a_file(start, tmp_path):
    srv = start("--token", TOKEN)
    refused = gswarm("write", "k", "v", "--host", srv.address)
    assert refused.returncode == 1
    assert "needs a token" in refused.stderr and "GSWARM_TOKEN" in refused.stderr
    wrong = gswarm("write", "k", "v", "--host", srv.address, "--token", "nope")
    assert wrong.returncode == 1 and "not this server's" in wrong.stderr

    assert gswarm("write", "k", "v", "--host", srv.address, "--token", TOKEN).returncode == 0
    read = gswarm("read", "k", "--host", srv.address, env_token=TOKEN)
    assert read.returncode == 0 and read.stdout.strip() == "v"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    listed = gswarm("list-locations", "--host", srv.address, "--token-file", str(token_file))
    assert listed.returncode == 0 and "k" in listed.stdout
    # A send names its target; the server's token goes with it.
    other = start("--token", TOKEN)
    sent = gswarm("send", "k", other.address, "--host", srv.address, env_token=TOKEN)
    assert sent.returncode == 0, sent.stderr
    assert gswarm("read", "k", "--host", other.address, env_token=TOKEN).stdout.strip() == "v"


def test_the_server_takes_its_token_from_the_variable_or_a_file(start, tmp_path):
    srv = start(token_env=TOKEN)
    url = f"http://{srv.address}"
    assert requests.get(f"{url}/stats", timeout=10).status_code == 401
    assert requests.get(f"{url}/stats", timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert requests.get(f"{url}/health", timeout=10).status_code == 200

    shared = tmp_path / "shared-token"
    shared.write_text("file-token-77\n")
    shared.chmod(0o644)
    srv2 = start("--token-file", str(shared))
    assert requests.get(f"http://{srv2.address}/stats", timeout=10,
                        headers={"Authorization": "Bearer file-token-77"}).status_code == 200
    assert "may be read by other users" in open(srv2.log_path).read()


@pytest.mark.parametrize("content,message", [
    ("", "first line is empty"),
    ("two words\n", "printable ASCII"),
])
def test_a_bad_token_is_refused_at_start(tmp_path, content, message):
    token_file = tmp_path / "token"
    token_file.write_text(content)
    token_file.chmod(0o600)
    result = subprocess.run(
        [BINARY, "data", "start", "--host", "127.0.0.1", "--port", "0", "--disk-path",
         str(tmp_path / "disk"), "--token-file", str(token_file)],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=server_env())
    assert result.returncode != 0
    assert message in result.stderr
    missing = subprocess.run(
        [BINARY, "data", "start", "--port", "0", "--token-file", str(tmp_path / "absent")],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=server_env())
    assert missing.returncode == 2 and "--token-file" in missing.stderr


def test_protected_mode_serves_this_machine_only(start):
    outside = outside_address()
    if outside is None:
        pytest.skip("this machine has no address beyond loopback to connect from")
    srv = start(host="0.0.0.0")
    log = open(srv.log_path).read()
    assert "protected mode" in log and "--protected-mode no" in log
    # From loopback: served.
    assert requests.get(f"http://127.0.0.1:{srv.port}/stats", timeout=10).status_code == 200
    # From the machine's other address: 403 with the reason and the fix.
    remote = requests.post(f"http://{outside}:{srv.port}/write", timeout=10,
                           json={"key": "k", "value": 1})
    assert remote.status_code == 403
    body = remote.json()
    assert body["code"] == "forbidden"
    assert "--token" in body["detail"] and "--protected-mode no" in body["detail"]
    assert requests.get(f"http://{outside}:{srv.port}/health", timeout=10).status_code == 403
    assert requests.get(f"http://127.0.0.1:{srv.port}/read/k", timeout=10).status_code == 404

    # With a token, other machines are let in (with the token).
    guarded = start("--token", TOKEN, host="0.0.0.0")
    assert requests.get(f"http://{outside}:{guarded.port}/stats", timeout=10).status_code == 401
    assert requests.get(f"http://{outside}:{guarded.port}/stats", timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert "protected mode" not in open(guarded.log_path).read()

    # Turned off explicitly: everyone is served, and the log says so.
    open_server = start("--protected-mode", "no", host="0.0.0.0")
    assert requests.get(f"http://{outside}:{open_server.port}/stats", timeout=10).status_code == 200
    assert "anyone who can reach" in open(open_server.log_path).read()

    # Bound to loopback only, protected mode has nothing to do.
    local = start()
    assert "protected mode" not in open(local.log_path).read()


def test_protected_mode_takes_yes_or_no_only(tmp_path):
    result = subprocess.run([BINARY, "data", "start", "--port", "0", "--protected-mode", "maybe"],
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode == 2 and "--protected-mode" in result.stderr
