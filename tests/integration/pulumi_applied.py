"""Apply what the Pulumi program declares to the Docker engine, the way the providers
would, without the Pulumi CLI.

Pulumi's mocks hand every resource over once its inputs and dependencies resolved,
so resources arrive in dependency order. `ApplyingMocks` does for each what
pulumi-docker does for it — create the network or volume; for a container: create
it with its networks, mounts, limits and health check, copy its `uploads` in, start
it, and then either wait for it to exit (`attach`, a job: exit code and logs go back
to the program, which fails the deployment on non-zero) or wait for it to be healthy
(`wait`). pulumi_random and pulumi_tls answer through `tests.pulumi_fakes`.

This is a second, independent reading of the pulumi-docker inputs (it does not reuse
the local backend's translation), so a mapping the real provider would apply
differently from the plan shows up here as a failed bring-up or a failed verify.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pulumi
import pytest
import yaml
from docker.types import Healthcheck, IPAMConfig, IPAMPool, Mount, Ulimit

from tests.pulumi_fakes import CONTAINER, NETWORK, VOLUME, RecordingMocks, plain, run_program

NANOSECONDS = 1_000_000_000
REPO = Path(__file__).resolve().parents[2]


def _seconds(value: str | None, default: float) -> int:
    """pulumi-docker's durations ("1s", "500ms") in nanoseconds."""
    if not value:
        return int(default * NANOSECONDS)
    if value.endswith("ms"):
        return int(float(value[:-2]) * NANOSECONDS / 1000)
    return int(float(value.rstrip("s")) * NANOSECONDS)


def _tar(uploads: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for upload in uploads:
            data = str(upload["content"]).encode()
            info = tarfile.TarInfo(str(upload["file"]).lstrip("/"))
            info.size, info.mode = len(data), int(str(upload.get("permissions") or "0644"), 8)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ApplyingMocks(RecordingMocks):
    def __init__(self, engine: docker.DockerClient) -> None:
        super().__init__()
        self.engine = engine
        self.timings: dict[str, float] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        inputs = plain(args.inputs)
        started = time.monotonic()
        if args.typ == NETWORK:
            self._network(inputs)
        elif args.typ == VOLUME:
            self.engine.volumes.create(inputs["name"], labels=_labels(inputs))
        elif args.typ == CONTAINER:
            state.update(self._container(inputs))
        self.timings[args.name] = time.monotonic() - started
        return resource_id, state

    def _network(self, inputs: dict[str, Any]) -> None:
        pools = [
            IPAMPool(subnet=c["subnet"], iprange=c.get("ipRange"), gateway=c.get("gateway"))
            for c in inputs.get("ipamConfigs") or []
        ]
        self.engine.networks.create(
            inputs["name"],
            driver=inputs.get("driver") or "bridge",
            internal=bool(inputs.get("internal")),
            options=inputs.get("options") or None,
            ipam=IPAMConfig(pool_configs=pools) if pools else None,
            labels=_labels(inputs),
        )

    def _container(self, inputs: dict[str, Any]) -> dict[str, Any]:
        api = self.engine.api
        networks = inputs.get("networksAdvanced") or []
        health = inputs.get("healthcheck")
        memory = inputs.get("memory")
        host_config = api.create_host_config(
            mounts=[
                Mount(
                    v["containerPath"],
                    v["volumeName"],
                    type="volume",
                    read_only=bool(v.get("readOnly")),
                )
                for v in inputs.get("volumes") or []
            ]
            + [
                Mount(
                    m["target"],
                    m["source"],
                    type=m["type"],
                    read_only=bool(m.get("readOnly")),
                    no_copy=bool((m.get("volumeOptions") or {}).get("noCopy")),
                )
                for m in inputs.get("mounts") or []
            ],
            port_bindings={
                f"{int(p['internal'])}/tcp": (p.get("ip") or "0.0.0.0", int(p["external"]))  # noqa: S104
                for p in inputs.get("ports") or []
            }
            or None,
            read_only=bool(inputs.get("readOnly")),
            tmpfs=inputs.get("tmpfs") or None,
            cap_drop=(inputs.get("capabilities") or {}).get("drops"),
            cap_add=(inputs.get("capabilities") or {}).get("adds") or None,
            security_opt=inputs.get("securityOpts"),
            mem_limit=f"{int(memory)}m" if memory else None,
            memswap_limit=f"{int(inputs['memorySwap'])}m" if inputs.get("memorySwap") else None,
            ulimits=[
                Ulimit(name=u["name"], soft=int(u["soft"]), hard=int(u["hard"]))
                for u in inputs.get("ulimits") or []
            ]
            or None,
            nano_cpus=int(float(inputs["cpus"]) * NANOSECONDS) if inputs.get("cpus") else None,
            restart_policy={"Name": inputs.get("restart") or "no"},
            network_mode=networks[0]["name"] if networks else inputs.get("networkMode"),
        )
        networking = None
        if networks:
            first = networks[0]
            endpoint = api.create_endpoint_config(
                aliases=first.get("aliases"), ipv4_address=first.get("ipv4Address")
            )
            networking = api.create_networking_config({first["name"]: endpoint})  # type: ignore[arg-type]
        api.create_container(
            inputs["image"],
            command=inputs.get("command"),
            name=inputs["name"],
            hostname=inputs.get("hostname"),
            user=inputs.get("user"),
            labels=_labels(inputs),
            ports=[int(p["internal"]) for p in inputs.get("ports") or []] or None,
            host_config=host_config,
            networking_config=networking,
            healthcheck=Healthcheck(
                test=health["tests"],
                interval=_seconds(health.get("interval"), 30),
                timeout=_seconds(health.get("timeout"), 30),
                retries=int(health.get("retries") or 3),
                start_period=_seconds(health.get("startPeriod"), 0),
            )
            if health
            else None,
            stop_timeout=int(inputs["stopTimeout"]) if inputs.get("stopTimeout") else None,
        )
        for extra in networks[1:]:
            api.connect_container_to_network(
                inputs["name"],
                extra["name"],
                aliases=extra.get("aliases"),
                ipv4_address=extra.get("ipv4Address"),
            )
        container = self.engine.containers.get(inputs["name"])
        if inputs.get("uploads"):
            container.put_archive("/", _tar(inputs["uploads"]))
        container.start()
        if inputs.get("mustRun") is False and inputs.get("attach"):
            status = container.wait(timeout=300)
            return {
                "exitCode": int(status.get("StatusCode", -1)),
                "containerLogs": container.logs().decode(errors="replace"),
            }
        if inputs.get("wait"):
            _wait_healthy(container, float(inputs.get("waitTimeout") or 60))
        return {}


def _labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {str(item["label"]): str(item["value"]) for item in inputs.get("labels") or []}


def _wait_healthy(container: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        health = (container.attrs["State"].get("Health") or {}).get("Status")
        if health == "healthy":
            return
        if container.status not in ("created", "running"):
            break
        time.sleep(0.1)
    logs = container.logs(tail=30).decode(errors="replace")
    raise RuntimeError(f"{container.name} not healthy within {timeout_s} s:\n{logs}")


def stack_config(stack: str) -> dict[str, str]:
    """Pulumi.<stack>.yaml's config, as the engine hands it to the program."""
    data = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in (data.get("config") or {}).items()
    }


def apply_stack(
    stack: str,
    engine: docker.DockerClient,
    monkeypatch: Any,
    config: Callable[[dict[str, str]], dict[str, str]] = lambda c: c,
) -> tuple[dict[str, Any], ApplyingMocks]:
    """`pulumi up --stack STACK`, applied to `engine`: its outputs (as `pulumi stack
    output --json --show-secrets` prints them) and the mocks that applied it."""
    pulumi.runtime.set_all_config(config(stack_config(stack)), secret_keys=[])
    mocks = ApplyingMocks(engine)
    outputs, _ = run_program(mocks, stack, monkeypatch)
    return outputs, mocks


def main(argv: list[str]) -> int:
    """`python -m tests.integration.pulumi_applied STACK OUT.json`: one stack applied in
    its own process (Pulumi's mocks are per process, so stacks can go up side by side)."""
    stack, out = argv
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as monkeypatch:
        outputs, mocks = apply_stack(stack, docker.from_env(), monkeypatch)
    result = {
        "outputs": outputs,
        "resources": len(mocks.resources),
        "seconds": time.monotonic() - started,
    }
    Path(out).write_text(json.dumps(result))
    Path(out).chmod(0o600)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
