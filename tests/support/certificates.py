"""Certificates for TLS tests, made with Debian's openssl command: a private CA
and a server certificate it signed for this machine's loopback names
(localhost, 127.0.0.1)."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_args(self):
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory):
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *EC, "-days", "2", "-subj", "/CN=gswarm-test-ca",
             "-keyout", d / "ca.key", "-out", d / "ca.pem")
    _openssl("req", *EC, "-subj", "/CN=localhost", "-keyout", d / "server.key",
             "-out", d / "server.csr")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-days", "2", "-in", d / "server.csr", "-CA", d / "ca.pem",
             "-CAkey", d / "ca.key", "-CAcreateserial", "-extfile", d / "server.ext",
             "-out", d / "server.pem")
    return Certificates(d / "ca.pem", d / "server.pem", d / "server.key")
