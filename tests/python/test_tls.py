"""A server started with --tls-cert, from Python: DataServer(tls_ca=...),
GSWARM_TLS_CA and https:// addresses, a clear error for an untrusted server,
and start_server(tls_cert=..., tls_key=...)."""

import numpy as np
import pytest

from certificates import make_certificates
from conftest import embedded_server, start


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory, certs):
    srv = start(tmp_path_factory, "secure", *certs.server_args())
    yield srv
    assert srv.stop() == 0


def test_data_server_speaks_tls_with_the_ca(secure, certs, monkeypatch):
    from gswarm.data import DataServer

    monkeypatch.delenv("GSWARM_TLS_CA", raising=False)
    client = DataServer(secure.address, tls_ca=certs.ca)
    array = np.random.default_rng(3).integers(0, 255, size=5 << 20, dtype=np.uint8)
    client.write("array", array)
    assert np.array_equal(client.read("array"), array)
    client.write("json", {"a": [1, 2]})
    assert client.read("json") == {"a": [1, 2]}

    monkeypatch.setenv("GSWARM_TLS_CA", str(certs.ca))
    port = secure.address.rsplit(":", 1)[1]
    assert DataServer(f"https://localhost:{port}").read("json") == {"a": [1, 2]}


def test_an_untrusted_server_is_refused_with_the_reason(secure, monkeypatch):
    from gswarm.data import BadRequestError, DataServer, GswarmConnectionError

    monkeypatch.delenv("GSWARM_TLS_CA", raising=False)
    with pytest.raises(GswarmConnectionError) as refused:
        DataServer(f"https://{secure.address}").read("json")
    assert "not trusted" in str(refused.value)
    assert "--tls-ca" in str(refused.value)
    with pytest.raises(BadRequestError) as plain:
        DataServer(secure.address).read("json")  # plain HTTP to an HTTPS server
    assert "https://" in str(plain.value)


def test_start_server_serves_tls(tmp_path, certs, monkeypatch):
    from gswarm.data import DataServer

    monkeypatch.delenv("GSWARM_TLS_CA", raising=False)
    with embedded_server(tmp_path, tls_cert=certs.cert, tls_key=certs.key,
                         tls_ca=certs.ca) as address:
        client = DataServer(address, tls_ca=certs.ca)
        client.write("k", [1, 2, 3])
        assert client.read("k") == [1, 2, 3]
