"""Pulumi mocks that answer as the providers would: pulumi_random returns a random
password, pulumi_tls real ECDSA keys, CSRs and certificates (made with `cryptography`
from the resource's own inputs), pulumi-docker job containers an exit code.

With these the program runs end to end without the Pulumi CLI, and what it declares
can be checked (unit tests) or applied to a Docker engine (integration tests).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.runtime import rpc

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"

_USES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
}


def plain(value: Any) -> Any:
    """`value` with every secret wrapper removed."""
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    signer: ec.EllipticCurvePrivateKey,
    inputs: dict[str, Any],
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    hours = int(inputs.get("validityPeriodHours") or 24)
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=hours))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    uses = set(inputs.get("allowedUses") or [])
    usages = [_USES[u] for u in sorted(uses) if u in _USES]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature="digital_signature" in uses,
            content_commitment=False,
            key_encipherment="key_encipherment" in uses,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign="cert_signing" in uses,
            crl_sign="crl_signing" in uses,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    if not is_ca or subject != issuer:  # what the provider adds to a signed certificate
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def provider_state(typ: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """What pulumi_random / pulumi_tls would return for a resource, or None."""
    inputs = plain(inputs)
    if typ == RANDOM_PASSWORD:
        length = int(inputs.get("length") or 16)
        return {"result": secrets.token_urlsafe(length)[:length]}
    if typ == PRIVATE_KEY:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # "EC PRIVATE KEY", as the provider
            serialization.NoEncryption(),
        )
        return {"privateKeyPem": pem.decode()}
    if typ == CERT_REQUEST:
        key = _key(inputs["privateKeyPem"])
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, inputs["subject"]["commonName"])])
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []]
        builder = x509.CertificateSigningRequestBuilder().subject_name(name)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        csr = builder.sign(key, hashes.SHA256())
        return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}
    if typ == SELF_SIGNED:
        key = _key(inputs["privateKeyPem"])
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, inputs["subject"]["commonName"])])
        return {"certPem": _pem(_cert(name, name, key.public_key(), key, inputs, []))}
    if typ == LOCALLY_SIGNED:
        csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        try:
            found = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = list(found.value)
        except x509.ExtensionNotFound:
            sans = []
        signer = _key(inputs["caPrivateKeyPem"])
        cert = _cert(csr.subject, ca.subject, csr.public_key(), signer, inputs, sans)
        return {"certPem": _pem(cert)}
    return None


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; answers for random and tls as the providers would; job
    containers 'exit' with `job_exit_code`."""

    def __init__(self, job_exit_code: int = 0) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.states: dict[str, dict[str, Any]] = {}  # what the fake providers made, by name
        self.job_exit_code = job_exit_code

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        state = dict(args.inputs)
        made = provider_state(args.typ, args.inputs) or {}
        self.states[args.name] = made
        state.update(made)
        if args.typ == CONTAINER and args.inputs.get("mustRun") is False:
            state["exitCode"] = self.job_exit_code
            state["containerLogs"] = "mock logs"
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, typ: str) -> dict[str, dict[str, Any]]:
        return {r.name: r.inputs for r in self.resources if r.typ == typ}


def run_program(
    mocks: pulumi.runtime.Mocks, stack: str, monkeypatch: Any
) -> tuple[dict[str, Any], dict[str, bool]]:
    """The program run under `mocks` as `pulumi up --stack STACK` (config set by the
    caller): what it exports, as `pulumi stack output --json --show-secrets` prints
    it, and which exports are secret."""
    from infra.backends.pulumi_program import deploy

    pulumi.runtime.set_mocks(mocks, project="redis-infra", stack=stack, preview=False)
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    values: dict[str, Any] = {}
    secret: dict[str, bool] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        deploy(pulumi.Config("redis-infra"), stack)
        names = sorted(exported)
        outputs = [pulumi.Output.from_input(exported[n]) for n in names]
        flags: list[pulumi.Output[bool]] = [pulumi.Output.from_input(o._is_secret) for o in outputs]

        def record(got: list[Any]) -> None:
            values.update(zip(names, got[: len(names)], strict=True))
            secret.update(zip(names, got[len(names) :], strict=True))

        return pulumi.Output.all(*outputs, *flags).apply(record)

    program()
    return values, secret
