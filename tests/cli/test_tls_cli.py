"""TLS, run the way a user runs it: `gswarm data start --tls-cert --tls-key`,
client commands with --tls-ca, GSWARM_TLS_CA or an https:// --host, the
messages for a plain client, an untrusted server, and certificate files that
do not load."""

import os
import subprocess

import pytest

from certificates import make_certificates
from gswarm_server import BINARY, Server

COMMAND_TIMEOUT = 60


def gswarm(*args, ca=None):
    env = dict(os.environ)
    env.pop("GSWARM_TLS_CA", None)
    env.pop("GSWARM_TOKEN", None)
    if ca is not None:
        env["GSWARM_TLS_CA"] = str(ca)
    return subprocess.run([BINARY, "data", *args], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, env=env)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory, certs):
    root = tmp_path_factory.mktemp("secure")
    srv = Server(root / "disk", root / "server.log", *certs.server_args())
    yield srv
    assert srv.stop() == 0


def test_client_commands_take_the_ca(secure, certs):
    host = secure.address
    wrote = gswarm("write", "greeting", "hello", "--host", host, "--tls-ca", str(certs.ca))
    assert wrote.returncode == 0, wrote.stderr
    read = gswarm("read", "greeting", "--host", host, ca=certs.ca)  # GSWARM_TLS_CA
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "hello"
    port = host.rsplit(":", 1)[1]
    listed = gswarm("list-locations", "--host", f"https://localhost:{port}", ca=certs.ca)
    assert listed.returncode == 0, listed.stderr
    assert "greeting" in listed.stdout


def test_plain_and_untrusted_clients_are_told_what_to_do(secure, certs):
    plain = gswarm("read", "greeting", "--host", secure.address)
    assert plain.returncode != 0
    assert "https://" in plain.stderr and "--tls-ca" in plain.stderr, plain.stderr
    untrusted = gswarm("read", "greeting", "--host", f"https://{secure.address}")
    assert untrusted.returncode != 0
    assert "not trusted" in untrusted.stderr and "--tls-ca" in untrusted.stderr, untrusted.stderr


def test_a_tls_client_to_a_plain_server_says_so(tmp_path, certs):
    srv = Server(tmp_path / "disk", tmp_path / "server.log")
    try:
        result = gswarm("stats", "--host", srv.address, "--tls-ca", str(certs.ca))
        assert result.returncode != 0
        assert "does not speak TLS" in result.stderr, result.stderr
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("files, says", [
    (("cert",), "go together"),
    (("cert", "missing"), "--tls-key"),
    (("key", "key"), "--tls-cert"),
])
def test_certificate_files_that_do_not_load_stop_the_start(tmp_path, certs, files, says):
    paths = {"cert": certs.cert, "key": certs.key, "missing": tmp_path / "missing.pem"}
    args = ["--tls-cert", str(paths[files[0]])]
    if len(files) > 1:
        args += ["--tls-key", str(paths[files[1]])]
    result = subprocess.run(
        [BINARY, "data", "start", "--host", "127.0.0.1", "--port", "0", "--disk-path",
         str(tmp_path / "disk"), *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode != 0
    assert says in result.stderr, result.stderr
    assert "listening" not in result.stdout
