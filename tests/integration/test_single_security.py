"""The single topology refuses everything it should, from the host and from its network."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from testcontainers.core.container import DockerContainer

import redis
from infra.operations.client import no_retry, node_client, tls_options
from tests.integration.conftest import DeployFactory, Deployment
from tests.integration.other_clients import assert_seed_operations_work

DANGEROUS_FOR_APP = [
    ("CONFIG", "SET", "maxmemory", "1mb"),
    ("CONFIG", "GET", "dir"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LIST"),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "SETUSER", "intruder", "on", ">intruder-password-123", "+@all"),
    ("REPLICAOF", "127.0.0.1", "7000"),
    ("SLAVEOF", "127.0.0.1", "7000"),
    ("KEYS", "*"),
    ("MIGRATE", "127.0.0.1", "7000", "canary", "0", "1000"),
    ("MONITOR",),
    ("BGSAVE",),
    ("SAVE",),
    ("BGREWRITEAOF",),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"),
    ("SWAPDB", "0", "1"),
    ("FAILOVER",),
]


@pytest.fixture(scope="module")
def single(deploy: DeployFactory) -> Deployment:
    return deploy("single", "sec")


@pytest.fixture
def app(single: Deployment) -> redis.Redis:
    return node_client(single.info, single.info.data_nodes()[0], decode_responses=True)


@pytest.fixture
def admin(single: Deployment) -> redis.Redis:
    return node_client(
        single.info, single.info.data_nodes()[0], role="admin", decode_responses=True
    )


def _address(single: Deployment) -> tuple[str, int]:
    node = single.info.data_nodes()[0]
    assert node.host is not None and node.port is not None
    return node.host, node.port


def test_plaintext_connection_is_refused(single: Deployment) -> None:
    # The engine runs without the userland proxy (scripts/ensure-docker.sh), so the
    # host reaches Redis's TLS listener itself, which resets a peer that speaks RESP.
    with socket.create_connection(_address(single), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        plain.settimeout(5)
        with pytest.raises(ConnectionResetError):
            plain.recv(64)


def test_plaintext_from_inside_the_network_is_refused(single: Deployment) -> None:
    node = single.info.data_nodes()[0]
    probe = (
        DockerContainer(single.topology.image)
        .with_command(["redis-cli", "-h", node.name, "-p", "6379", "ping"])
        .with_kwargs(network=single.info.network, user="999:999", read_only=True)
    )
    with probe:
        result = probe.get_wrapped_container().wait(timeout=30)
        out, err = probe.get_logs()
    # redis-cli got through to the node (no name or route error) and was reset.
    assert result["StatusCode"] == 1
    assert (out + err).decode().strip() == "Error: Connection reset by peer"


def test_tls_without_client_certificate_is_refused(single: Deployment) -> None:
    host, port = _address(single)
    client = redis.Redis(
        host=host,
        port=port,
        ssl=True,
        ssl_ca_certs=single.info.tls.ca_file,
        username="app",
        password=single.info.users["app"].password,
        socket_timeout=5,
        retry=no_retry(),
    )
    # The server ends the handshake: the client sees the alert, or (TLS 1.3, no proxy in
    # between) the connection closing under its first write.
    with pytest.raises(
        redis.ConnectionError, match=r"CERTIFICATE_REQUIRED|certificate|EOF occurred"
    ):
        client.ping()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_old_tls_versions_are_refused(single: Deployment) -> None:
    context = ssl.create_default_context(cafile=single.info.tls.ca_file)
    assert single.info.tls.cert_file and single.info.tls.key_file
    context.load_cert_chain(single.info.tls.cert_file, single.info.tls.key_file)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(_address(single), timeout=5) as raw, pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="localhost")


def test_unauthenticated_commands_are_refused(single: Deployment) -> None:
    host, port = _address(single)
    anonymous = redis.Redis(
        host=host, port=port, protocol=2, retry=no_retry(), **tls_options(single.info)
    )
    for command in (("PING",), ("GET", "k"), ("SET", "k", "v")):
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            anonymous.execute_command(*command)


@pytest.mark.parametrize("password", ["", "guess", "default"])
def test_default_user_is_off(single: Deployment, password: str) -> None:
    host, port = _address(single)
    anonymous = redis.Redis(
        host=host, port=port, protocol=2, retry=no_retry(), **tls_options(single.info)
    )
    with pytest.raises(redis.AuthenticationError, match=r"disabled|invalid"):
        anonymous.execute_command("AUTH", "default", password or "x")


def test_wrong_password_is_refused(single: Deployment) -> None:
    host, port = _address(single)
    client = redis.Redis(
        host=host,
        port=port,
        username="app",
        password="wrong-" + "x" * 20,
        retry=no_retry(),
        **tls_options(single.info),
    )
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_app_user_can_do_its_job(app: redis.Redis) -> None:
    assert app.set("session:1", "alice", ex=60)
    assert app.get("session:1") == "alice"
    app.hset("h:1", mapping={"user": "alice"})
    assert app.expire("h:1", 60)
    assert app.zincrby("board", 5, "alice") == 5.0
    assert app.fcall("token_bucket", 1, "rl:{alice}", 10, 1) == 1  # the shipped library
    assert app.publish("app:channel", "hello") == 0  # its own channels
    assert app.acl_whoami() == "app"


def test_app_info_shows_figures_but_no_secret(single: Deployment, app: redis.Redis) -> None:
    """INFO is allowed (ioredis's ready check); it must not reveal what CONFIG GET would."""
    info = app.info("everything")
    assert info["role"] == "master" and info["loading"] == 0
    text = json.dumps(info)
    secrets = json.loads((single.connection_file.parent / "secrets.json").read_text())
    passwords = [value for name, value in secrets.items() if name.endswith("_password")]
    assert len(passwords) >= 5  # app, admin, breakglass, health, replication
    assert [p[:4] for p in passwords if p in text] == []


def test_the_rate_limiters_limit_and_refuse_what_would_poison_them(app: redis.Redis) -> None:
    """The shipped library does what the seed's limiter did, and refuses arguments that
    would leave a bucket that never empties or a window that never closes: Lua's
    tonumber() reads 'nan' and 'inf', and NaN passes every range check written as a
    comparison."""
    bucket, window = "rl:{tb-test}", "rl:{sw-test}"
    assert [app.fcall("token_bucket", 1, bucket, 3, 0) for _ in range(4)] == [1, 1, 1, 0]
    assert [app.fcall("sliding_window", 1, window, 2, 60_000) for _ in range(3)] == [1, 1, 0]
    assert 0 < app.pttl(window) <= 60_000 and app.pttl(bucket) > 0
    for capacity, refill in [
        ("nan", "1"),
        ("inf", "1"),
        ("1", "nan"),
        ("1", "inf"),
        ("0", "1"),
        ("1", "-1"),
        ("1e10", "1"),
        ("abc", "1"),
    ]:
        with pytest.raises(redis.ResponseError, match="token_bucket needs"):
            app.fcall("token_bucket", 1, "rl:{poison}", capacity, refill)
    for limit, window_ms in [
        ("nan", "1000"),
        ("inf", "1000"),
        ("2", "nan"),
        ("2", "inf"),
        ("0", "1000"),
        ("2", "0"),
        ("2", "1e12"),
    ]:
        with pytest.raises(redis.ResponseError, match="sliding_window needs"):
            app.fcall("sliding_window", 1, "rl:{poison}", limit, window_ms)
    assert app.exists("rl:{poison}") == 0  # nothing was written for a refused call
    app.delete(bucket, window)


@pytest.mark.parametrize(
    "command", DANGEROUS_FOR_APP, ids=[" ".join(c[:2]) for c in DANGEROUS_FOR_APP]
)
def test_app_user_is_denied_dangerous_commands(
    app: redis.Redis, admin: redis.Redis, command: tuple[str, ...]
) -> None:
    app.set("canary", "alive")
    with pytest.raises(redis.ResponseError) as denied:
        app.execute_command(*command)
    # ACL denial, or the server-wide switch for DEBUG/MODULE that even admins hit.
    assert "no permissions" in str(denied.value) or "not allowed" in str(denied.value)
    # Nothing happened: the data is there, the server up, no new user, still a master.
    assert app.get("canary") == "alive"
    assert "intruder" not in admin.acl_users()
    assert admin.execute_command("ROLE")[0] == "master"
    assert admin.info("memory")["maxmemory"] == 256 * 1024**2


def test_protected_configs_are_refused_even_for_breakglass(single: Deployment) -> None:
    glass = node_client(
        single.info, single.info.data_nodes()[0], role="breakglass", decode_responses=True
    )
    with pytest.raises(redis.ResponseError, match="protected config"):
        glass.config_set("dir", "/tmp")
    with pytest.raises(redis.ResponseError, match="protected config"):
        glass.config_set("dbfilename", "x.so")
    with pytest.raises(redis.ResponseError, match="not allowed"):
        glass.execute_command("MODULE", "LOAD", "/tmp/evil.so")
    with pytest.raises(redis.ResponseError, match="not allowed"):
        glass.execute_command("DEBUG", "SLEEP", "0")
    assert glass.config_get("dir")["dir"] == "/data"
    glass.close()


def test_health_user_can_only_ping(single: Deployment) -> None:
    host, port = _address(single)
    # The health password lives in the node's config volume, read by the health check.
    secrets = Path(single.info.tls.ca_file).parents[1] / "secrets.json"
    password = json.loads(secrets.read_text())["health_password"]
    check = single.container().exec_run(["cat", "/etc/redis-infra/health-password"])
    assert check.exit_code == 0 and check.output.decode() == password
    health = redis.Redis(
        host=host,
        port=port,
        username="health",
        password=password,
        protocol=2,
        retry=no_retry(),
        **tls_options(single.info),
    )
    assert health.ping()
    with pytest.raises(redis.ResponseError, match="no permissions"):
        health.get("canary")
    with pytest.raises(redis.ResponseError, match="no permissions"):
        health.execute_command("CONFIG", "GET", "*")


def test_hardening_is_what_docker_runs(single: Deployment) -> None:
    container = single.container()
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert config["User"] == "999:999"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] == 1265 * 1024**2 and host["MemorySwap"] == 1265 * 1024**2
    assert host["PidsLimit"] == 256
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    for bindings in host["PortBindings"].values():
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings)  # never 0.0.0.0
    ports = container.attrs["NetworkSettings"]["Ports"]
    assert all(b["HostIp"] == "127.0.0.1" for bs in ports.values() if bs for b in bs)
    mounts = {m["Destination"]: m["RW"] for m in container.attrs["Mounts"]}
    assert mounts == {"/etc/redis-infra": False, "/data": True}
    internal = single.engine.networks.get(single.info.network)
    assert internal.attrs["Internal"] is True
    # Every process of the container runs as the Redis uid, not root.
    top = container.top(ps_args="-o pid,uid,comm")
    uid_column = top["Titles"].index("UID")
    assert {row[uid_column] for row in top["Processes"]} == {"999"}


def test_health_check_reports_healthy(single: Deployment) -> None:
    deadline = time.monotonic() + 45
    status = None
    while time.monotonic() < deadline:
        single.container().reload()
        status = single.container().attrs["State"]["Health"]["Status"]
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy"
    log = single.container().attrs["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 0  # redis-cli got PONG (grep -q matched it)


def test_tls12_offers_only_aead_ciphers_with_forward_secrecy(single: Deployment) -> None:
    def handshake(cipher: str) -> str:
        context = ssl.create_default_context(cafile=single.info.tls.ca_file)
        assert single.info.tls.cert_file and single.info.tls.key_file
        context.load_cert_chain(single.info.tls.cert_file, single.info.tls.key_file)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
        with (
            socket.create_connection(_address(single), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            negotiated = tls.cipher()
            assert negotiated is not None
            return negotiated[0]

    assert handshake("ECDHE-ECDSA-AES256-GCM-SHA384") == "ECDHE-ECDSA-AES256-GCM-SHA384"
    for weak in ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA"):  # CBC, not AEAD
        with pytest.raises(ssl.SSLError):
            handshake(weak)


def test_ioredis_runs_the_seed_operations_from_the_connection_file(single: Deployment) -> None:
    """Another ecosystem's mainstream client, configured from the file alone, no warning."""
    assert_seed_operations_work(single.connection_file)
