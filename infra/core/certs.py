"""TLS material: a CA, one server certificate per node, one client certificate.

Generated with `cryptography` (ECDSA P-256); certificates the user brings are
checked and loaded in `certs_brought`, with the inspection helpers defined here.
Private keys are written 0600 and only ever handed to backends as secrets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.core.errors import ConfigError, Problem
from infra.core.layout import nodes
from infra.core.model import Topology
from infra.core.private_files import check_private_file, ensure_private_dir, write_private_bytes
from infra.core.secrets import tls_key_ref

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)
CLIENT_COMMON_NAME = "redis-infra-client"


@dataclass(frozen=True)
class CertificateSet:
    """Public certificates for a deployment; private keys travel separately as secrets."""

    ca_pem: str
    server_pems: dict[str, str]  # node name -> its certificate
    ca_file: Path  # files on the deploying machine, for the connection file
    client_cert_file: Path | None  # None: clients present no certificate (Cluster)
    client_key_file: Path | None


@dataclass(frozen=True)
class TlsBundle:
    certificates: CertificateSet
    private_keys: dict[str, str]  # secret name (tls_key:<node>, tls_key:client) -> PEM


def required_names(
    topology: Topology, addresses: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Per node: every DNS name and IP its certificate must cover.

    `addresses` are the nodes' fixed IPs (Sentinel, Cluster): Sentinel announces
    masters by IP, so a client on the network verifies the certificate against it.
    """
    shared = ["localhost", "127.0.0.1", *topology.tls.extra_sans]
    host_ip = topology.publish.host_ip
    if topology.publish.enabled and host_ip and not ipaddress.ip_address(host_ip).is_unspecified:
        shared.append(host_ip)
    fixed = addresses or {}
    return {
        node.name: unique([node.name, *([fixed[node.name]] if node.name in fixed else []), *shared])
        for node in nodes(topology)
    }


def unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# -- generation -------------------------------------------------------------------


def ensure_certificates(
    topology: Topology, directory: Path, addresses: Mapping[str, str] | None = None
) -> TlsBundle:
    """Certificates for `topology` under `directory`, generating what is missing or stale.

    The CA is created once and kept, so clients that trust it keep working; it is
    never replaced behind the user's back (see `_load_or_create_ca`). A node
    certificate is re-issued when it no longer covers the node's names or is close
    to expiry.
    """
    ensure_private_dir(directory)
    ca_cert, ca_key = _load_or_create_ca(directory, topology.name)
    nodes_dir = ensure_private_dir(directory / "nodes")
    server_pems: dict[str, str] = {}
    keys: dict[str, str] = {}
    for node, names in required_names(topology, addresses).items():
        cert_path, key_path = nodes_dir / f"{node}.crt", nodes_dir / f"{node}.key"
        if not _usable_leaf(cert_path, key_path, ca_cert, names):
            _issue(
                ca_cert, ca_key, node, names, server=True, cert_path=cert_path, key_path=key_path
            )
        server_pems[node] = cert_path.read_text()
        keys[tls_key_ref(node).name] = key_path.read_text()
    client_cert, client_key = directory / "client.crt", directory / "client.key"
    wanted = topology.tls.client_certificates
    if wanted and not _usable_leaf(client_cert, client_key, ca_cert, []):
        _issue(
            ca_cert,
            ca_key,
            CLIENT_COMMON_NAME,
            [],
            server=False,
            cert_path=client_cert,
            key_path=client_key,
        )
    certificates = CertificateSet(
        ca_pem=(directory / "ca.crt").read_text(),
        server_pems=server_pems,
        ca_file=(directory / "ca.crt").resolve(),
        client_cert_file=client_cert.resolve() if wanted else None,
        client_key_file=client_key.resolve() if wanted else None,
    )
    return TlsBundle(certificates, keys)


def _load_or_create_ca(
    directory: Path, name: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The deployment's CA: made once, then only ever loaded.

    Every client trusts this CA, so replacing it would break them all at once: a CA
    that lost its key, expires soon or cannot be read stops the run with the fix.
    """
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() or key_path.exists():
        return _load_ca(cert_path, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "redis-infra"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"redis-infra CA ({name})"),
        ]
    )
    now = now_utc()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    replace = (
        f"if you mean to replace the CA, delete {cert_path} and {key_path}: the next run makes a "
        "new one, and every client must then be given the new ca.crt"
    )
    if not key_path.exists():
        raise ConfigError.single(
            str(cert_path),
            "ca.key",
            f"{key_path} is missing, so no certificate can be issued",
            f"restore {key_path} from your backup; {replace}",
        )
    if not cert_path.exists():
        raise ConfigError.single(
            str(key_path),
            "ca.crt",
            f"{cert_path} is missing next to its key",
            f"restore {cert_path} from your backup; {replace}",
        )
    check_private_file(key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError.single(
            str(cert_path),
            "ca",
            f"cannot be read ({exc})",
            f"restore it from your backup; {replace}",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not same_key(cert, key):
        raise ConfigError.single(
            str(key_path), "ca.key", f"does not belong to {cert_path}", replace
        )
    if remaining(cert) <= RENEW_BEFORE:
        raise ConfigError.single(
            str(cert_path),
            "ca.crt",
            f"expires on {cert.not_valid_after_utc:%Y-%m-%d}, within {RENEW_BEFORE.days} days",
            f"plan the change of CA with your clients; {replace}",
        )
    return cert, key


def throwaway_certificates(
    topology: Topology, addresses: Mapping[str, str] | None = None
) -> CertificateSet:
    """Public certificates to render files with; the keys never leave this call."""
    with tempfile.TemporaryDirectory(prefix="redis-infra-render-") as scratch:
        bundle = ensure_certificates(topology, Path(scratch), addresses)
        placeholder = Path("<generated-at-deploy-time>")
        certificates = bundle.certificates
        return CertificateSet(
            ca_pem=certificates.ca_pem,
            server_pems=certificates.server_pems,
            ca_file=placeholder / "ca.crt",
            client_cert_file=None,
            client_key_file=None,
        )


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: list[str],
    *,
    server: bool,
    cert_path: Path,
    key_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = now_utc()
    # Server certificates are also client certificates: nodes present them to each
    # other for replication, the Sentinel links and the cluster bus.
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(names)), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # 0600 from the start: no window where the key is readable by others.
    write_private_bytes(path, data)


def _usable_leaf(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate, names: list[str]
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    check_private_file(key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return False
    return (
        same_key(cert, key)
        and signed_by(cert, ca_cert)
        and remaining(cert) > RENEW_BEFORE
        and not missing_names(cert, names)
    )


# -- checks (generated and brought files alike) ----------------------------------------


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def remaining(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - now_utc()


def same_key(cert: x509.Certificate, key: object) -> bool:
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(public().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt))


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def missing_names(cert: x509.Certificate, names: list[str]) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(names)
    dns = {value.lower() for value in san.get_values_for_type(x509.DNSName)}
    ips = {str(value) for value in san.get_values_for_type(x509.IPAddress)}
    missing = []
    for name in names:
        try:
            covered = str(ipaddress.ip_address(name)) in ips
        except ValueError:
            covered = name.lower() in dns or wildcard_covers(dns, name.lower())
        if not covered:
            missing.append(name)
    return missing


def wildcard_covers(dns: set[str], name: str) -> bool:
    _, _, rest = name.partition(".")
    return bool(rest) and f"*.{rest}" in dns


def load_generated(
    topology: Topology, directory: Path, fix: str, addresses: Mapping[str, str] | None = None
) -> TlsBundle:
    """Certificates `redis-infra certs` wrote for `topology`, without generating any.

    Used by the Pulumi program: a deployment must not mint a new CA behind the
    user's back. `fix` is the command that creates or renews them.
    """
    problems: list[Problem] = []
    ca_path = directory / "ca.crt"
    if not ca_path.is_file():
        raise ConfigError.single(str(directory), "tls", f"no certificates in {directory}", fix)
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    leaves = {
        node: (directory / "nodes" / f"{node}.crt", directory / "nodes" / f"{node}.key", names)
        for node, names in required_names(topology, addresses).items()
    }
    wanted = topology.tls.client_certificates
    if wanted:
        leaves["client"] = (directory / "client.crt", directory / "client.key", [])
    for node, (cert_path, key_path, names) in leaves.items():
        if not _usable_leaf(cert_path, key_path, ca_cert, names):
            problems.append(
                Problem(
                    f"tls ({node})",
                    f"{cert_path} is missing, expiring, not signed "
                    "by ca.crt or does not cover the node's names",
                    fix,
                )
            )
    if problems:
        raise ConfigError(str(directory), problems)
    server_pems = {node: leaves[node][0].read_text() for node in required_names(topology)}
    keys = {tls_key_ref(node).name: leaves[node][1].read_text() for node in server_pems}
    certificates = CertificateSet(
        ca_pem=ca_path.read_text(),
        server_pems=server_pems,
        ca_file=ca_path.resolve(),
        client_cert_file=(directory / "client.crt").resolve() if wanted else None,
        client_key_file=(directory / "client.key").resolve() if wanted else None,
    )
    return TlsBundle(certificates, keys)
