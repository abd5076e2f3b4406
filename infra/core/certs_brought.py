"""Certificates the user brings (`tls.*_file`): checked before any container exists
(files exist, each key matches its certificate, certificates chain to the CA and
cover every name and address clients and peers use) and loaded as a bundle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.core.certs import (
    CertificateSet,
    TlsBundle,
    ensure_certificates,
    missing_names,
    remaining,
    required_names,
    same_key,
    signed_by,
)
from infra.core.errors import ConfigError, Problem
from infra.core.layout import nodes
from infra.core.model import Topology
from infra.core.secrets import tls_key_ref


def check_brought_files(
    topology: Topology, addresses: Mapping[str, str] | None = None
) -> list[Problem]:
    """Problems with user-supplied TLS files: unreadable, mismatched, untrusted or too narrow."""
    files = topology.tls.files
    if files is None:
        return []
    problems: list[Problem] = []
    loaded: dict[str, object] = {}
    clients = files.client_cert_file is not None
    for field in ("ca_file", "cert_file", *(("client_cert_file",) if clients else ())):
        path = getattr(files, field)
        try:
            loaded[field] = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            problems.append(
                Problem(
                    f"tls.{field}",
                    f"{path} is not a PEM certificate ({exc})",
                    "point it at a PEM-encoded X.509 certificate",
                )
            )
    for field in ("key_file", *(("client_key_file",) if clients else ())):
        path = getattr(files, field)
        try:
            loaded[field] = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            problems.append(
                Problem(
                    f"tls.{field}",
                    f"{path} is not an unencrypted PEM private key ({exc})",
                    "point it at the PEM key (Redis cannot read passphrase-protected keys)",
                )
            )
    if problems:
        return problems
    ca = loaded["ca_file"]
    server = loaded["cert_file"]
    assert isinstance(ca, x509.Certificate) and isinstance(server, x509.Certificate)
    pairs: list[tuple[str, x509.Certificate, str]] = [("cert_file", server, "key_file")]
    if clients:
        client = loaded["client_cert_file"]
        assert isinstance(client, x509.Certificate)
        pairs.append(("client_cert_file", client, "client_key_file"))
    for cert_field, cert, key_field in pairs:
        if not same_key(cert, loaded[key_field]):
            problems.append(
                Problem(
                    f"tls.{key_field}",
                    f"does not belong to tls.{cert_field}",
                    f"use the key generated together with {getattr(files, cert_field)}",
                )
            )
        if not signed_by(cert, ca):
            problems.append(
                Problem(
                    f"tls.{cert_field}",
                    "is not signed by tls.ca_file",
                    "issue it from that CA, or set ca_file to the CA that issued it",
                )
            )
        if remaining(cert) <= dt.timedelta(0):
            problems.append(Problem(f"tls.{cert_field}", "has expired", "issue a new certificate"))
    wanted = sorted(
        {name for names in required_names(topology, addresses).values() for name in names}
    )
    missing = missing_names(server, wanted)
    if missing:
        problems.append(
            Problem(
                "tls.cert_file",
                f"its subject alternative names do not cover {', '.join(missing)}, which clients "
                "and peers use to reach the nodes",
                "re-issue it with those names, or drop the tls.*_file settings "
                "to have certificates generated",
            )
        )
    return problems


def load_brought_files(topology: Topology, addresses: Mapping[str, str] | None = None) -> TlsBundle:
    """The user's TLS files as a bundle, after `check_brought_files` found no problem
    (now also with the nodes' fixed addresses, known once the subnet is chosen)."""
    files = topology.tls.files
    assert files is not None
    problems = check_brought_files(topology, addresses)
    if problems:
        raise ConfigError(topology.source, problems)
    server_pem = files.cert_file.read_text()
    key_pem = files.key_file.read_text()
    node_names = [node.name for node in nodes(topology)]
    keys = {tls_key_ref(node).name: key_pem for node in node_names}
    certificates = CertificateSet(
        ca_pem=files.ca_file.read_text(),
        server_pems=dict.fromkeys(node_names, server_pem),
        ca_file=files.ca_file,
        client_cert_file=files.client_cert_file,
        client_key_file=files.client_key_file,
    )
    return TlsBundle(certificates, keys)


def tls_bundle(
    topology: Topology, directory: Path, addresses: Mapping[str, str] | None = None
) -> TlsBundle:
    """The user's files when the topology names them, else generated ones under `directory`."""
    if topology.tls.files is not None:
        return load_brought_files(topology, addresses)
    return ensure_certificates(topology, directory, addresses)
