"""The stack's secrets and certificates, made in the stack unless the user brings them.

Passwords: a value set with `pulumi config set --secret` wins (checked for strength);
otherwise `pulumi_random.RandomPassword` makes one, kept secret in the stack's state.

Certificates: brought files (`tls.*_file` in the topology) or a `tlsDir` of
`redis-infra certs` win; otherwise `pulumi_tls` makes an ECDSA P-256 CA, one
certificate per node covering every name and address peers and clients use (the
same `required_names` as `redis-infra certs`) and one client certificate. The plan
then refers to the certificates as it does to secrets (`tls_cert:<node>`), so it
stays pure: the component resolves them over the outputs, never inside an `apply`
that creates resources.

Either way the connection output names its TLS files relative to itself (`tls/...`)
and the `tlsFiles` output holds them, so `redis-infra connection --from-stack` can
write a folder every client reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_random
import pulumi_tls as tls
from pulumi.runtime.config import get_config, is_config_secret

from infra.core.certs import (
    CA_VALIDITY,
    CLIENT_COMMON_NAME,
    LEAF_VALIDITY,
    RENEW_BEFORE,
    CertificateSet,
    TlsBundle,
    load_generated,
    required_names,
)
from infra.core.certs_brought import load_brought_files
from infra.core.connection import STACK_TLS_DIR, TlsPaths
from infra.core.errors import ConfigError, Problem
from infra.core.fields import is_ip
from infra.core.model import Topology
from infra.core.secrets import CA_CERT, password_problem, tls_cert_ref, tls_key_ref

NAMESPACE = "redis-infra"
CA_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE = "ca.crt", "client.crt", "client.key"
PASSWORD_LENGTH = 32
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]


def secret_config_key(secret_name: str) -> str:
    """`app_password` -> `appPassword`: the stack config key holding that secret."""
    head, *rest = secret_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def stack_passwords(
    config: pulumi.Config, names: list[str], stack: str, prefix: str
) -> dict[str, pulumi.Output[str]]:
    """Each password as a secret Output: the stack's config value, else a RandomPassword.

    A configured value is read once, synchronously, so a weak one stops the program
    before Pulumi creates anything.
    """
    problems: list[Problem] = []
    outputs: dict[str, pulumi.Output[str]] = {}
    for name in names:
        key = secret_config_key(name)
        value = get_config(config.full_key(key))
        if value is not None and not is_config_secret(config.full_key(key)):
            problems.append(
                Problem(
                    f"{NAMESPACE}:{key}",
                    f"is in Pulumi.{stack}.yaml in plain text (set without --secret)",
                    f"pulumi config rm {NAMESPACE}:{key} --stack {stack}, then set it again with "
                    "--secret (or leave it unset to have the stack generate one)",
                )
            )
            continue
        if value is None:
            generated = pulumi_random.RandomPassword(
                f"{prefix}-{key}", length=PASSWORD_LENGTH, special=False
            )
            outputs[name] = pulumi.Output.secret(generated.result)
            continue
        problem = password_problem(f"{NAMESPACE}:{key}", str(value))
        if problem is not None:
            fix = (
                f"pulumi config set --secret {NAMESPACE}:{key} \"$(python3 -c 'import secrets; "
                f"print(secrets.token_urlsafe(32))')\" --stack {stack}, or `pulumi config rm "
                f"{NAMESPACE}:{key} --stack {stack}` to have the stack generate one"
            )
            problems.append(Problem(problem.field, problem.rule, fix))
            continue
        outputs[name] = pulumi.Output.secret(str(value))
    if problems:
        raise ConfigError(f"stack {stack}", problems)
    return outputs


@dataclass(frozen=True)
class StackTls:
    """What the plan and the component need from the stack's certificates."""

    certificates: CertificateSet  # for the plan: PEMs, or references to them
    secrets: dict[str, pulumi.Input[str]]  # tls_key:* (and tls_cert:* when made here)
    paths: TlsPaths  # in the connection output, relative to the file
    files: pulumi.Output[dict[str, str]]  # the `tlsFiles` output: name -> PEM, secret
    source: str  # "generated in the stack", "brought files", "tlsDir <path>"


def stack_tls(topology: Topology, addresses: Mapping[str, str], tls_dir: Path | None) -> StackTls:
    if topology.tls.files:
        return _from_bundle(topology, load_brought_files(topology, addresses), "brought files")
    if tls_dir is not None:
        fix = (
            f"run `redis-infra certs --topology {topology.kind.value} --name {topology.name} "
            f"--out {tls_dir}` (same overrides as the stack), or remove {NAMESPACE}:tlsDir "
            "to have the stack make its certificates"
        )
        bundle = load_generated(topology, tls_dir, fix, addresses)
        return _from_bundle(topology, bundle, f"tlsDir {tls_dir}")
    return _generated(topology, addresses)


def _paths(topology: Topology) -> TlsPaths:
    base = f"{STACK_TLS_DIR}/"
    if not topology.tls.client_certificates:
        return TlsPaths(base + CA_FILE)
    return TlsPaths(base + CA_FILE, base + CLIENT_CERT_FILE, base + CLIENT_KEY_FILE)


def _from_bundle(topology: Topology, bundle: TlsBundle, source: str) -> StackTls:
    certificates = bundle.certificates
    files: dict[str, str] = {CA_FILE: certificates.ca_pem}
    if certificates.client_cert_file and certificates.client_key_file:
        files[CLIENT_CERT_FILE] = certificates.client_cert_file.read_text(encoding="utf-8")
        files[CLIENT_KEY_FILE] = certificates.client_key_file.read_text(encoding="utf-8")
    secrets: dict[str, pulumi.Input[str]] = {
        name: pulumi.Output.secret(pem) for name, pem in bundle.private_keys.items()
    }
    return StackTls(certificates, secrets, _paths(topology), pulumi.Output.secret(files), source)


def _key(name: str) -> tls.PrivateKey:
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256")


def _signed(
    name: str,
    common_name: str,
    names: list[str],
    ca_key: tls.PrivateKey,
    ca: tls.SelfSignedCert,
    uses: list[str],
) -> tuple[tls.PrivateKey, tls.LocallySignedCert]:
    key = _key(f"{name}-key")
    request = tls.CertRequest(
        f"{name}-csr",
        private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name=common_name),
        dns_names=[n for n in names if not is_ip(n)] or None,
        ip_addresses=[n for n in names if is_ip(n)] or None,
    )
    cert = tls.LocallySignedCert(
        f"{name}-cert",
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=ca_key.private_key_pem,
        ca_cert_pem=ca.cert_pem,
        validity_period_hours=int(LEAF_VALIDITY.total_seconds() // 3600),
        # As `redis-infra up` does: a certificate this close to expiry is replaced at
        # the next `pulumi up` (and with it the nodes that present it).
        early_renewal_hours=int(RENEW_BEFORE.total_seconds() // 3600),
        set_subject_key_id=True,
        allowed_uses=uses,
    )
    return key, cert


def _generated(topology: Topology, addresses: Mapping[str, str]) -> StackTls:
    prefix = f"{topology.name}-tls"
    ca_key = _key(f"{prefix}-ca-key")
    ca = tls.SelfSignedCert(
        f"{prefix}-ca",
        private_key_pem=ca_key.private_key_pem,
        is_ca_certificate=True,
        subject=tls.SelfSignedCertSubjectArgs(common_name=f"{topology.name} redis-infra CA"),
        validity_period_hours=int(CA_VALIDITY.total_seconds() // 3600),
        set_subject_key_id=True,
        allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
    )
    secrets: dict[str, pulumi.Input[str]] = {tls_cert_ref(CA_CERT).name: ca.cert_pem}
    server_refs: dict[str, str] = {}
    for node, names in required_names(topology, addresses).items():
        key, cert = _signed(f"{prefix}-{node}", node, names, ca_key, ca, SERVER_USES)
        secrets[tls_key_ref(node).name] = pulumi.Output.secret(key.private_key_pem)
        secrets[tls_cert_ref(node).name] = cert.cert_pem
        server_refs[node] = tls_cert_ref(node).placeholder
    files: dict[str, pulumi.Input[str]] = {CA_FILE: ca.cert_pem}
    if topology.tls.client_certificates:
        key, cert = _signed(f"{prefix}-client", CLIENT_COMMON_NAME, [], ca_key, ca, CLIENT_USES)
        files[CLIENT_CERT_FILE] = cert.cert_pem
        files[CLIENT_KEY_FILE] = key.private_key_pem
    paths = _paths(topology)
    certificates = CertificateSet(
        ca_pem=tls_cert_ref(CA_CERT).placeholder,
        server_pems=server_refs,
        ca_file=Path(paths.ca_file),
        client_cert_file=Path(paths.cert_file) if paths.cert_file else None,
        client_key_file=Path(paths.key_file) if paths.key_file else None,
    )
    return StackTls(
        certificates,
        secrets,
        paths,
        pulumi.Output.secret(pulumi.Output.all(**files)),
        "generated in the stack",
    )
