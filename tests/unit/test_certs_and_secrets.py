"""Certificates, passwords and the local state directory."""

from __future__ import annotations

import datetime as dt
import stat
import tempfile
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.core.certs import (
    ensure_certificates,
    load_generated,
    required_names,
    throwaway_certificates,
)
from infra.core.errors import ConfigError
from infra.core.plan import fixed_addresses
from infra.core.private_files import write_private_bytes
from infra.core.secrets import generate_password, password_problem, resolve
from infra.core.topology import load_topology
from infra.operations.state import StateDir


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        *san.get_values_for_type(x509.DNSName),
        *map(str, san.get_values_for_type(x509.IPAddress)),
    }


def test_generated_certificates_cover_every_name_and_keys_are_private(tmp_path: Path) -> None:
    topology = load_topology("sentinel", "s", {"tls": {"extra_sans": ["redis.internal"]}})
    bundle = ensure_certificates(topology, tmp_path)
    for node, names in required_names(topology).items():
        sans = _sans(tmp_path / "nodes" / f"{node}.crt")
        assert {node, "localhost", "127.0.0.1", "redis.internal"} <= sans
        assert set(names) <= sans
    for key in [tmp_path / "ca.key", tmp_path / "client.key", *tmp_path.glob("nodes/*.key")]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate(bundle.certificates.server_pems["s-data-0"].encode())
    server.verify_directly_issued_by(ca)
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # Nodes also act as TLS clients of each other (replication, Sentinel, cluster bus).
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert "PRIVATE KEY" in bundle.private_keys["tls_key:s-data-0"]


def test_the_ca_is_kept_and_node_certificates_follow_the_topology(tmp_path: Path) -> None:
    ensure_certificates(load_topology("cluster", "c"), tmp_path)
    ca_before = (tmp_path / "ca.crt").read_bytes()
    node0_before = (tmp_path / "nodes" / "c-node-0.crt").read_bytes()
    ensure_certificates(load_topology("cluster", "c", {"cluster": {"masters": 4}}), tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    assert (tmp_path / "nodes" / "c-node-0.crt").read_bytes() == node0_before
    assert (tmp_path / "nodes" / "c-node-7.crt").exists()  # the new shard's nodes


def test_pulumi_path_never_generates_and_names_the_command(tmp_path: Path) -> None:
    topology = load_topology("single", "p")
    with pytest.raises(ConfigError) as caught:
        load_generated(topology, tmp_path, "run `redis-infra certs`")
    assert "run `redis-infra certs`" in str(caught.value)
    assert not any(tmp_path.iterdir())
    ensure_certificates(topology, tmp_path)
    assert load_generated(topology, tmp_path, "fix").certificates.server_pems["p-redis"]


@pytest.mark.parametrize(
    ("password", "words"),
    [
        (None, "missing"),
        ("", "missing"),
        ("short-pass-1", "at least 16"),
        ("with a space in the middle!", "whitespace"),
        ("aaaaaaaaaaaaaaaaaaaa", "guessable"),
        ("Password1234567890", "guessable"),
        ("secure_password_here", "guessable"),  # the seed's placeholder
    ],
)
def test_weak_or_missing_passwords_are_refused(password: str | None, words: str) -> None:
    problem = password_problem("adminPassword", password)
    assert problem is not None and words in problem.rule
    assert "token_urlsafe" in problem.fix


def test_generated_passwords_are_strong_and_unique() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(password_problem("p", p) is None for p in passwords)


def test_resolve_replaces_values_and_hashes() -> None:
    text = "masterauth <<secret:replication_password>>\nuser a on #<<secret-sha256:app_password>>"
    out = resolve(text, {"replication_password": "r" * 20, "app_password": "abc"})
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert out == f"masterauth {'r' * 20}\nuser a on #{sha}"
    with pytest.raises(KeyError, match="app_password"):
        resolve(text, {"replication_password": "x"})


def test_state_keeps_secrets_and_ports_across_runs(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "dep")
    first = state.secrets(["app_password", "admin_password"])
    assert StateDir(tmp_path / "dep").secrets(["app_password", "admin_password"]) == first
    assert stat.S_IMODE((tmp_path / "dep" / "secrets.json").stat().st_mode) == 0o600
    ports = state.host_ports({"a": None, "b": 24000}, "127.0.0.1")
    assert ports["b"] == 24000 and 21000 <= ports["a"] < 32000
    assert StateDir(tmp_path / "dep").host_ports({"a": None, "b": 24000}, "127.0.0.1") == ports
    taken = [
        IPv4Network("10.213.0.0/17"),
        IPv4Network("10.213.128.0/18"),
        IPv4Network("10.213.192.0/19"),
    ]
    subnet = state.subnet(taken)
    assert IPv4Network(subnet).subnet_of(IPv4Network("10.213.224.0/19"))  # the only free part
    assert StateDir(tmp_path / "dep").subnet([]) == subnet  # kept, not chosen again
    assert StateDir(tmp_path / "dep").host_ports({"a": None, "b": 24000}, "127.0.0.1") == ports


def test_state_refuses_a_weak_password_a_user_stored(tmp_path: Path) -> None:
    stored = tmp_path / "secrets.json"
    stored.write_text('{"app_password": "redis"}')
    stored.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        StateDir(tmp_path).secrets(["app_password"])
    assert "app_password" in str(caught.value)


def test_node_certificates_cover_the_fixed_addresses_sentinel_announces(tmp_path: Path) -> None:
    topology = load_topology("sentinel", "s")
    addresses = fixed_addresses(topology, "10.213.40.0/24")
    ensure_certificates(topology, tmp_path, addresses)
    for node, address in addresses.items():
        assert address in _sans(tmp_path / "nodes" / f"{node}.crt"), node


def test_a_cluster_issues_no_client_certificate(tmp_path: Path) -> None:
    bundle = ensure_certificates(load_topology("cluster", "c"), tmp_path)
    assert bundle.certificates.client_cert_file is None
    assert not (tmp_path / "client.key").exists()


def _ca_expiring_in(directory: Path, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private_bytes(
        directory / "ca.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def test_a_ca_is_never_replaced_behind_the_clients_back(tmp_path: Path) -> None:
    topology = load_topology("single", "p")
    _ca_expiring_in(tmp_path, 10)
    before = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(ConfigError, match=r"expires on .* within 30 days.*delete .*ca.crt"):
        ensure_certificates(topology, tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(ConfigError, match=r"ca.key is missing.*restore"):
        ensure_certificates(topology, tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before  # still the clients' CA
    assert not (tmp_path / "nodes").exists()


def test_keys_others_could_read_are_refused(tmp_path: Path) -> None:
    topology = load_topology("single", "p")
    ensure_certificates(topology, tmp_path)
    (tmp_path / "ca.key").chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable or writable by others.*chmod 600"):
        ensure_certificates(topology, tmp_path)
    (tmp_path / "ca.key").chmod(0o600)
    tmp_path.chmod(0o777)
    with pytest.raises(ConfigError, match=r"writable by others"):
        ensure_certificates(topology, tmp_path)


def test_throwaway_certificates_leave_no_key_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its scratch folder goes
    certificates = throwaway_certificates(load_topology("sentinel", "s"))
    assert set(certificates.server_pems) >= {"s-data-0", "s-sentinel-2"}
    assert list(tmp_path.iterdir()) == []  # the scratch folder and its keys are gone


def test_render_writes_no_private_key(tmp_path: Path) -> None:
    from infra.cli import main

    out = tmp_path / "rendered"
    assert main(["render", "--topology", "sentinel", "--name", "r", "--out", str(out)]) == 0
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "server.key" for path in written)
    for path in written:
        assert "PRIVATE KEY" not in path.read_text(), path
