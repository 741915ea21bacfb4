"""A throwaway certificate authority for the loopback RDAP servers (https only, like the real ones).

Generated once per test run with `cryptography`; the client trusts it through RDAP_CA_BUNDLE.
A second, untrusted authority issues certificates for the bad-certificate tests.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FOLDER = Path(tempfile.mkdtemp(prefix="rdap-tls-"))


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Authority:
    label: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def bundle(self) -> str:
        path = FOLDER / f"{self.label}-ca.pem"
        if not path.exists():
            path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server-side context with a certificate for the IP address `host`."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        cert_path = FOLDER / f"{self.label}-{host}.pem"
        key_path = FOLDER / f"{self.label}-{host}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


def _authority(label: str) -> Authority:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Test RDAP CA ({label})"))
        .issuer_name(_name(f"Test RDAP CA ({label})"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return Authority(label, key, cert)


@functools.lru_cache(maxsize=1)
def trusted() -> Authority:
    """The authority RDAP_CA_BUNDLE names in the attribution tests."""
    return _authority("trusted")


@functools.lru_cache(maxsize=1)
def untrusted() -> Authority:
    return _authority("untrusted")
