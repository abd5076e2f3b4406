"""The Pulumi program under Pulumi's own mocks: every plan item becomes a resource
with the same inputs, hardening included, and no secret reaches state in clear."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _ensure_event_loop

from infra.backends.pulumi_components import JobFailedError
from infra.backends.pulumi_program import deploy, load_stack_topology
from infra.backends.pulumi_stack_secrets import secret_config_key
from infra.core.certs import ensure_certificates as _generate
from infra.core.certs import load_generated, required_names, throwaway_certificates
from infra.core.connection import read_connection_file
from infra.core.errors import ConfigError, DeploymentError
from infra.core.fields import is_ip
from infra.core.model import Topology
from infra.core.plan import build_plan, fixed_addresses
from infra.core.topology import load_topology
from infra.operations.stack_connection import write_stack_connection
from tests.pulumi_fakes import (
    CERT_REQUEST,
    CONTAINER,
    LOCALLY_SIGNED,
    NETWORK,
    PRIVATE_KEY,
    RANDOM_PASSWORD,
    SELF_SIGNED,
    VOLUME,
    RecordingMocks,
    plain,
    run_program,
)

PASSWORDS = {
    "appPassword": "app-Secret-0123456789abcdef",
    "adminPassword": "admin-Secret-0123456789abcdef",
    "breakglassPassword": "breakglass-Secret-0123456789abcdef",
    "healthPassword": "health-Secret-0123456789abcdef",
    "replicationPassword": "repl-Secret-0123456789abcdef",
    "sentinelPassword": "sentinel-Secret-0123456789abcdef",
}


STACK_OVERRIDES = {"publish": {"base_port": 16379}, "network": {"subnet": "10.214.9.0/24"}}


def _configure(
    stack: str,
    topology: str,
    tls_dir: Path | None,
    passwords: dict[str, str],
    **extra: Any,
) -> None:
    """The stack's config; no tls_dir and no passwords is a bare `pulumi stack init`."""
    overrides = extra.pop("overrides", STACK_OVERRIDES)
    config = {
        "redis-infra:topology": topology,
        "redis-infra:name": f"t-{stack}",
        "redis-infra:overrides": json.dumps(overrides),
        **({"redis-infra:tlsDir": str(tls_dir)} if tls_dir is not None else {}),
        **{f"redis-infra:{key}": value for key, value in passwords.items()},
    }
    pulumi.runtime.set_all_config(config, secret_keys=[f"redis-infra:{k}" for k in passwords])


def ensure_certificates(topology: Topology, directory: Path) -> None:
    """What `redis-infra certs` writes for a stack: names and fixed addresses covered."""
    _generate(topology, directory, fixed_addresses(topology, topology.subnet))


@pytest.fixture
def certs_dir(tmp_path: Path) -> Path:
    return tmp_path / "certs"


def _run(mocks: RecordingMocks, stack: str) -> None:
    pulumi.runtime.set_mocks(mocks, project="redis-infra", stack=stack, preview=False)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        component = deploy(pulumi.Config("redis-infra"), stack)
        return component.connection

    program()


@pytest.fixture
def deployed(certs_dir: Path) -> Iterator[RecordingMocks]:
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
    _configure("dev", "single", certs_dir, PASSWORDS)
    mocks = RecordingMocks()
    _run(mocks, "dev")
    yield mocks


def _config_job(mocks: RecordingMocks, stack: str = "dev") -> dict[str, Any]:
    return mocks.of_type(CONTAINER)[f"t-{stack}-config"]


def _plan_for(certs_dir: Path, kind: str = "single", stack: str = "dev") -> Any:
    topology = load_topology(kind, f"t-{stack}", STACK_OVERRIDES)
    addresses = fixed_addresses(topology, topology.subnet)
    return build_plan(topology, load_generated(topology, certs_dir, "fix", addresses).certificates)


def test_every_plan_item_is_a_resource(deployed: RecordingMocks, certs_dir: Path) -> None:
    plan = _plan_for(certs_dir)
    assert set(deployed.of_type(NETWORK)) == {n.name for n in plan.networks}
    assert set(deployed.of_type(VOLUME)) == {v.name for v in plan.volumes}
    containers = deployed.of_type(CONTAINER)
    jobs = [plan.config_job, *plan.bootstrap_jobs]
    assert set(containers) == {*(j.name for j in jobs), *(c.name for c in plan.containers)}
    component = [r for r in deployed.resources if r.typ == "redis-infra:index:RedisSingle"]
    assert len(component) == 1 and component[0].name == "t-dev"


def test_container_inputs_match_the_plan_and_are_hardened(
    deployed: RecordingMocks, certs_dir: Path
) -> None:
    spec = _plan_for(certs_dir).containers[0]
    inputs = deployed.of_type(CONTAINER)[spec.name]
    assert inputs["name"] == spec.name and inputs["image"] == spec.image
    assert inputs["command"] == list(spec.command)
    assert inputs["user"] == "999:999"
    assert inputs["readOnly"] is True
    assert inputs["capabilities"] == {"drops": ["ALL"], "adds": []}
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    assert inputs["memory"] == 1265 and inputs["memorySwap"] == 1265  # MiB, auto: the worst case
    assert inputs["ulimits"] == [{"name": "nproc", "soft": 256, "hard": 256}]
    assert inputs["restart"] == "unless-stopped"
    assert inputs["ports"] == [{"internal": 6379, "external": 16379, "ip": "127.0.0.1"}]
    # no_copy: nothing of the image's folders lands on what the config job set up.
    no_copy = {"noCopy": True}
    assert inputs["mounts"] == [
        {"target": "/etc/redis-infra", "type": "volume", "source": "t-dev-redis-config",
         "readOnly": True, "volumeOptions": no_copy},
        {"target": "/data", "type": "volume", "source": "t-dev-redis-data",
         "readOnly": False, "volumeOptions": no_copy},
    ]  # fmt: skip
    assert "volumes" not in inputs
    assert [n["name"] for n in inputs["networksAdvanced"]] == ["t-dev-net", "t-dev-publish"]
    assert inputs["wait"] is True  # pulumi up waits for the TLS health check
    assert "uploads" not in inputs  # read-only rootfs: never uploads (Docker refuses them)
    labels = {entry["label"]: entry["value"] for entry in inputs["labels"]}
    assert labels["redis-infra.name"] == "t-dev"
    # Created only after the job succeeded, and carrying its id: a new job (new files,
    # a renewed certificate, a rotated password) replaces the node that reads them.
    assert labels["redis-infra.config-job"] == "t-dev-config-id"
    networks = deployed.of_type(NETWORK)
    assert networks["t-dev-net"]["internal"] is True


def test_config_job_delivers_files_as_uploads(deployed: RecordingMocks, certs_dir: Path) -> None:
    job = _plan_for(certs_dir).config_job
    inputs = deployed.of_type(CONTAINER)[job.name]
    assert inputs["mustRun"] is False and inputs["attach"] is True
    assert inputs.get("readOnly") in (None, False)  # uploads need a writable root
    assert inputs["networkMode"] == "none"
    uploaded = {u["file"] for u in plain(inputs["uploads"])}
    assert uploaded == {u.path for u in job.uploads}


def _leaks(value: Any, secrets: list[str], inside_secret: bool = False) -> list[str]:
    """Places where a secret value appears outside a Pulumi secret wrapper."""
    if rpc.is_rpc_secret(value):
        return _leaks(value["value"], secrets, True)
    if isinstance(value, dict):
        return [leak for item in value.values() for leak in _leaks(item, secrets, inside_secret)]
    if isinstance(value, list):
        return [leak for item in value for leak in _leaks(item, secrets, inside_secret)]
    if isinstance(value, str) and not inside_secret:
        return [s[:12] for s in secrets if s in value]
    return []


def test_no_secret_in_plain_text(deployed: RecordingMocks, certs_dir: Path) -> None:
    import hashlib

    keys = [p.read_text() for p in certs_dir.glob("**/*.key")]
    hashes = [hashlib.sha256(p.encode()).hexdigest() for p in PASSWORDS.values()]
    secrets = [*PASSWORDS.values(), *hashes, *(k.strip().splitlines()[1] for k in keys)]
    for resource in deployed.resources:
        assert _leaks(resource.inputs, secrets) == [], resource.name
    # ... and they are really there, wrapped: the ACL and the health check's password
    # file go to the config job; the health check itself holds no secret in any form.
    job = deployed.of_type(CONTAINER)["t-dev-config"]
    uploads = {u["file"]: u["content"] for u in plain(job["uploads"])}
    assert hashes[0] in uploads["/stage/t-dev-redis/users.acl"]
    assert uploads["/stage/t-dev-redis/health-password"] == PASSWORDS["healthPassword"]
    health = json.dumps(plain(deployed.of_type(CONTAINER)["t-dev-redis"]["healthcheck"]))
    assert not any(secret in health for secret in PASSWORDS.values())
    functions = deployed.of_type(CONTAINER)["t-dev-functions"]
    password = next(u for u in plain(functions["uploads"]) if u["file"] == "/stage/admin-password")
    assert password["content"] == PASSWORDS["adminPassword"]


def test_a_password_not_configured_is_generated_and_a_configured_one_wins(
    certs_dir: Path,
) -> None:
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
    _configure(
        "dev", "single", certs_dir, {k: v for k, v in PASSWORDS.items() if k != "adminPassword"}
    )
    mocks = RecordingMocks()
    _run(mocks, "dev")
    generated = mocks.of_type(RANDOM_PASSWORD)
    assert list(generated) == ["t-dev-adminPassword"]  # every other one was configured
    assert generated["t-dev-adminPassword"]["length"] >= 32
    uploads = {u["file"]: u["content"] for u in plain(_config_job(mocks)["uploads"])}
    # The configured health password reached the node as given.
    assert uploads["/stage/t-dev-redis/health-password"] == PASSWORDS["healthPassword"]


def test_missing_certificates_name_the_command(certs_dir: Path) -> None:
    _configure("dev", "single", certs_dir, PASSWORDS)
    with pytest.raises(ConfigError, match="redis-infra certs --topology single --name t-dev"):
        deploy(pulumi.Config("redis-infra"), "dev")


def test_stack_must_pin_published_ports(certs_dir: Path) -> None:
    _configure("dev", "single", certs_dir, PASSWORDS, overrides={})
    with pytest.raises(ConfigError, match="base_port"):
        load_stack_topology(pulumi.Config("redis-infra"), "dev")


def test_a_password_set_without_secret_is_refused(certs_dir: Path) -> None:
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
    _configure("dev", "single", certs_dir, PASSWORDS)
    config = {f"redis-infra:{key}": value for key, value in PASSWORDS.items()}
    plain_keys = [f"redis-infra:{k}" for k in PASSWORDS if k != "healthPassword"]
    pulumi.runtime.set_all_config(
        {
            **config,
            "redis-infra:topology": "single",
            "redis-infra:name": "t-dev",
            "redis-infra:tlsDir": str(certs_dir),
            "redis-infra:overrides": json.dumps(STACK_OVERRIDES),
        },
        secret_keys=plain_keys,
    )
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="redis-infra", stack="dev", preview=False)
    with pytest.raises(ConfigError, match=r"healthPassword: is in Pulumi.dev.yaml in plain text"):
        deploy(pulumi.Config("redis-infra"), "dev")
    assert mocks.resources == []


def test_weak_secret_stops_the_program_before_any_resource(certs_dir: Path) -> None:
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
    _configure("dev", "single", certs_dir, {**PASSWORDS, "appPassword": "changeme"})
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="redis-infra", stack="dev", preview=False)
    with pytest.raises(ConfigError, match=r"appPassword: is 8 characters") as caught:
        deploy(pulumi.Config("redis-infra"), "dev")
    assert "pulumi config set --secret redis-infra:appPassword" in str(caught.value)
    assert mocks.resources == []


def _quiet_job_failures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The exception handler of the event loop the failing run gets to itself.

    The job's failure reaches every output that depends on it; each that nobody awaits
    reports "Future exception was never retrieved" when it is collected, which is
    whenever Pulumi's runtime lets go of it, in some later test or at exit (312
    tracebacks on stderr). A future reports to the loop it was made on, so on a loop
    of its own the job's failures are let go quietly, at whatever time; anything else
    is reported as usual."""
    if not isinstance(context.get("exception"), JobFailedError):
        loop.default_exception_handler(context)


@contextlib.contextmanager
def _own_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    previous = _ensure_event_loop()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_quiet_job_failures)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        # The failed run's last tasks still wait; left pending, each would be reported
        # as "destroyed but it is pending" at exit. Its futures may still report later,
        # to the handler above.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(previous)


def test_a_failing_config_job_stops_the_deployment(certs_dir: Path) -> None:
    """The mocked provider reports the config job's exit code 2, as Docker would."""
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
    _configure("dev", "single", certs_dir, PASSWORDS)
    mocks = RecordingMocks(job_exit_code=2)
    with _own_event_loop(), pytest.raises(JobFailedError, match="exited 2"):
        _run(mocks, "dev")
    containers = mocks.of_type(CONTAINER)
    # The job ran; no Redis container was created over its failed output.
    assert [name for name, inputs in containers.items() if inputs.get("mustRun") is False]
    assert all(inputs.get("mustRun") is False for inputs in containers.values())


@pytest.mark.parametrize(
    ("kind", "stack", "component"),
    [
        ("sentinel", "staging", "redis-infra:index:RedisSentinel"),
        ("cluster", "prod", "redis-infra:index:RedisCluster"),
    ],
)
def test_other_kinds_map_to_their_component(
    certs_dir: Path, kind: str, stack: str, component: str
) -> None:
    topology = load_topology(kind, f"t-{stack}", STACK_OVERRIDES)
    ensure_certificates(topology, certs_dir)
    _configure(stack, kind, certs_dir, PASSWORDS)
    mocks = RecordingMocks()
    _run(mocks, stack)
    plan = _plan_for(certs_dir, kind, stack)
    assert [r.typ for r in mocks.resources].count(component) == 1
    containers = mocks.of_type(CONTAINER)
    assert {c.name for c in plan.containers} <= set(containers)
    assert {j.name for j in plan.bootstrap_jobs} <= set(containers)
    # Fixed addresses: the network's IPAM and each node's address on it.
    network = mocks.of_type(NETWORK)[f"t-{stack}-net"]
    assert network["ipamConfigs"] == [
        {"subnet": "10.214.9.0/24", "ipRange": "10.214.9.128/25", "gateway": "10.214.9.1"}
    ]
    addresses = [
        containers[spec.name]["networksAdvanced"][0]["ipv4Address"] for spec in plan.containers
    ]
    assert addresses == [f"10.214.9.{10 + i}" for i in range(len(plan.containers))]


def test_secret_config_keys_are_camel_case() -> None:
    assert secret_config_key("replication_password") == "replicationPassword"


def test_the_connection_output_names_the_application_user_only(certs_dir: Path) -> None:
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
    _configure("dev", "single", certs_dir, PASSWORDS)
    pulumi.runtime.set_mocks(RecordingMocks(), project="redis-infra", stack="dev", preview=False)
    seen: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        component = deploy(pulumi.Config("redis-infra"), "dev")
        return component.connection.apply(seen.update)

    program()
    # It is a connection file, the one `redis-infra up` writes: every client of the
    # project (verify, drill, load) and any other reads it as it is, its TLS files
    # beside it (written there by `redis-infra connection --from-stack`).
    written = certs_dir / "out" / "connection.json"
    written.parent.mkdir()
    written.write_text(json.dumps(seen))
    written.chmod(0o600)
    info = read_connection_file(written)
    assert set(seen["users"]) == {"app"}  # operators: the operatorFile output
    assert info.credentials("app").password == PASSWORDS["appPassword"]
    assert seen["tls"] == {
        "ca_file": "tls/ca.crt",
        "cert_file": "tls/client.crt",
        "key_file": "tls/client.key",
    }
    assert info.tls.ca_file == str(written.parent / "tls" / "ca.crt")
    (node,) = info.data_nodes()
    assert (node.host, node.port) == ("127.0.0.1", 16379)
    # Every address the node is known by on its network, mapped to where this host reaches it.
    here = {"host": "127.0.0.1", "port": 16379}
    assert seen["address_map"] == {"t-dev-redis:6379": here, "10.214.9.10:6379": here}


def test_a_relative_tls_dir_is_the_project_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pulumi runs the program in its `main` folder (infra/program/), and the package
    may be installed anywhere: `tlsDir: certs/dev` still means <project>/certs/dev."""
    ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), tmp_path / "certs/dev")
    (tmp_path / "Pulumi.yaml").write_text("name: redis-infra\nmain: infra/program/\n")
    (tmp_path / "infra/program").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "infra/program")
    _configure("dev", "single", Path("certs/dev"), PASSWORDS)
    mocks = RecordingMocks()
    _run(mocks, "dev")
    assert mocks.of_type("docker:index/container:Container")  # found, so it deployed


TLS_NAMES = ("tls/ca.crt", "tls/client.crt", "tls/client.key")


def _stack_outputs(
    certs_dir: Path, monkeypatch: pytest.MonkeyPatch, *, bare: bool = False
) -> dict[str, Any]:
    """What `deploy()` exports, as `pulumi stack output --json --show-secrets` prints it,
    and whether each export is a secret (under `secret:<name>`). `bare`: a stack with
    nothing configured but its topology (generated passwords and certificates)."""
    if bare:
        _configure("dev", "single", None, {})
    else:
        ensure_certificates(load_topology("single", "t-dev", STACK_OVERRIDES), certs_dir)
        _configure("dev", "single", certs_dir, PASSWORDS)
    values, secret = run_program(RecordingMocks(), "dev", monkeypatch)
    return {**values, **{f"secret:{name}": flag for name, flag in secret.items()}}


def test_connection_from_stack_writes_the_files_every_command_reads(
    certs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _stack_outputs(certs_dir, monkeypatch)
    for name in ("connection", "operatorFile", "breakglassFile", "appPassword", "tlsFiles"):
        assert seen[f"secret:{name}"] is True, name  # each holds a password or a key
    outputs = {k: v for k, v in seen.items() if not k.startswith("secret:")}
    fake = tmp_path / "pulumi"  # prints what the real CLI would, for that stack only
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$*" = "stack output --json --show-secrets --stack dev" ] || exit 3\n'
        f"cat <<'EOF'\n{json.dumps(outputs)}\nEOF\n"
    )
    fake.chmod(0o700)
    out = tmp_path / "dev-files"
    # For an application: its file and TLS files only, never the operator's.
    app_only = write_stack_connection("dev", tmp_path / "app-files", pulumi=str(fake))
    assert sorted(p.name for p in app_only.parent.iterdir()) == ["connection.json", "tls"]
    assert read_connection_file(app_only).users.keys() == {"app"}
    connection = write_stack_connection("dev", out, pulumi=str(fake), operator=True)
    assert (out.stat().st_mode & 0o777) == 0o700
    for name in ("connection.json", "operator.json", "breakglass.json", *TLS_NAMES):
        assert ((out / name).stat().st_mode & 0o777) == 0o600
    info = read_connection_file(
        connection, operator_file=out / "operator.json", breakglass_file=out / "breakglass.json"
    )
    # The TLS files beside it are the stack's (here, the tlsDir's) and the file names them.
    assert info.tls.ca_file == str(out.resolve() / "tls" / "ca.crt")
    assert json.loads(connection.read_text())["tls"]["ca_file"] == info.tls.ca_file  # absolute
    assert (out / "tls/ca.crt").read_text() == (certs_dir / "ca.crt").read_text()
    assert (out / "tls/client.key").read_text() == (certs_dir / "client.key").read_text()
    assert info.credentials("admin").password == PASSWORDS["adminPassword"]
    assert info.credentials("breakglass").password == PASSWORDS["breakglassPassword"]
    assert info.settings["publish"]["base_port"] == 16379  # verify compares against these
    assert "admin" not in json.loads(connection.read_text())["users"]
    with pytest.raises(DeploymentError, match="could not read the outputs of stack 'prod'"):
        write_stack_connection("prod", tmp_path / "prod-files", pulumi=str(fake))
    # Checked before anything is written: an application file holding the operator.
    leaky = {
        **outputs,
        "connection": {**outputs["connection"], "users": outputs["operatorFile"]["users"]},
    }
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(leaky)}\nEOF\n")
    with pytest.raises(DeploymentError, match="should hold the 'app' user only"):
        write_stack_connection("dev", tmp_path / "leaky", pulumi=str(fake))
    assert not (tmp_path / "leaky").exists()
    # An existing folder of ours is made owner-only; a file or a link is refused.
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(outputs)}\nEOF\n")
    write_stack_connection("dev", loose, pulumi=str(fake))
    assert (loose.stat().st_mode & 0o777) == 0o700
    (tmp_path / "link").symlink_to(loose)
    with pytest.raises(ConfigError, match="is not a folder"):
        write_stack_connection("dev", tmp_path / "link", pulumi=str(fake))
    # ... and so is a link planted where the client key goes.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    (planted / "tls").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="is not a folder"):
        write_stack_connection("dev", planted, pulumi=str(fake))
    assert list(elsewhere.iterdir()) == []


def test_connection_from_stack_without_the_pulumi_cli_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="install the Pulumi CLI"):
        write_stack_connection("dev", tmp_path / "x", pulumi="no-such-pulumi-here")


@pytest.mark.parametrize(
    ("kind", "stack"), [("single", "dev"), ("sentinel", "staging"), ("cluster", "prod")]
)
def test_a_bare_stack_makes_its_own_passwords_and_certificates(kind: str, stack: str) -> None:
    """`pulumi stack init && pulumi up`: no tlsDir, no secret set, nothing else to do."""
    _configure(stack, kind, None, {})
    mocks = RecordingMocks()
    _run(mocks, stack)
    topology = load_topology(kind, f"t-{stack}", STACK_OVERRIDES)
    addresses = fixed_addresses(topology, topology.subnet)
    plan = build_plan(topology, throwaway_certificates(topology, addresses))
    # One RandomPassword per password the plan and the credential files need.
    generated = mocks.of_type(RANDOM_PASSWORD)
    assert sorted(generated) == sorted(
        f"t-{stack}-{secret_config_key(name)}" for name in plan.password_names
    )
    # A CA, and per node a key, a request naming every name and address, a certificate.
    assert len(mocks.of_type(SELF_SIGNED)) == 1
    requests = mocks.of_type(CERT_REQUEST)
    for node, names in required_names(topology, addresses).items():
        request = plain(requests[f"t-{stack}-tls-{node}-csr"])
        assert sorted(request.get("dnsNames") or []) + sorted(request.get("ipAddresses") or []) == (
            sorted(n for n in names if not is_ip(n)) + sorted(n for n in names if is_ip(n))
        )
    clients = 1 if topology.tls.client_certificates else 0
    assert len(mocks.of_type(LOCALLY_SIGNED)) == len(requests) == len(plan.containers) + clients
    assert len(mocks.of_type(PRIVATE_KEY)) == len(requests) + 1
    # Each node's certificate reached the config job, signed by the stack's CA and
    # naming the node; its key went there too, and nowhere in plain text.
    uploads = {u["file"]: u["content"] for u in plain(_config_job(mocks, stack)["uploads"])}
    ca_pem = next(v for k, v in uploads.items() if k.endswith("/tls/ca.crt"))
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    for spec in plan.containers:
        pem = uploads[f"/stage/{spec.name}/tls/server.crt"]
        cert = x509.load_pem_x509_certificate(pem.encode())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert spec.node.name in sans.get_values_for_type(x509.DNSName)
        assert "PRIVATE KEY" in uploads[f"/stage/{spec.name}/tls/server.key"]
    values = _generated_values(mocks)
    assert values, "the mocks produced no secret"
    for resource in mocks.resources:
        if resource.typ in (PRIVATE_KEY, SELF_SIGNED, CERT_REQUEST, LOCALLY_SIGNED):
            continue  # the tls resources take keys as inputs; the provider keeps them secret
        assert _leaks(resource.inputs, values) == [], resource.name


def _generated_values(mocks: RecordingMocks) -> list[str]:
    """Every password and private key the fake providers produced for this run."""
    found: list[str] = []
    for resource in mocks.resources:
        state = mocks.states.get(resource.name, {})
        if resource.typ == RANDOM_PASSWORD:
            found.append(state["result"])
        if resource.typ == PRIVATE_KEY:
            found.append(state["privateKeyPem"].strip().splitlines()[1])
    return found


def test_a_bare_stacks_outputs_are_secret_and_a_connection_folder(
    certs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _stack_outputs(certs_dir, monkeypatch, bare=True)
    for name in ("connection", "operatorFile", "breakglassFile", "appPassword", "tlsFiles"):
        assert seen[f"secret:{name}"] is True, name
    assert seen["tlsSource"] == "generated in the stack"
    files = seen["tlsFiles"]
    assert set(files) == {"ca.crt", "client.crt", "client.key"}
    ca = x509.load_pem_x509_certificate(files["ca.crt"].encode())
    x509.load_pem_x509_certificate(files["client.crt"].encode()).verify_directly_issued_by(ca)
    assert seen["connection"]["users"]["app"]["password"] == seen["appPassword"]
