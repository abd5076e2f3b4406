"""The Pulumi program: stack config -> topology -> plan -> one Redis component.

`pulumi stack init dev && pulumi up` is enough: everything secret is made in the
stack unless the user brings it (see `pulumi_stack_secrets`).

Stack config (Pulumi.<stack>.yaml), namespace `redis-infra`:
    topology      single | sentinel | cluster | path to a topology file (default single)
    name          deployment name (default redis-<stack>)
    overrides     an object merged over the topology file, e.g. {publish: {base_port: 16379}}
    tlsDir        optional: certificates written by `redis-infra certs`, used instead of
                  the stack's own CA
    appPassword, adminPassword, breakglassPassword, healthPassword, replicationPassword
    [, sentinelPassword]
                  optional secrets (`pulumi config set --secret`); each one not set is a
                  RandomPassword kept secret in the stack's state

Outputs, all secret: `connection`, the application's connection file exactly as
`redis-infra up` writes it (the application's credentials only; its TLS files named
relative to it, under tls/); `tlsFiles`, those files' contents; for operators,
`operatorFile` and `breakglassFile`, the operator.json and breakglass.json beside
it; `appPassword`. `redis-infra connection --from-stack STACK --out DIR` writes them
all, so verify, drill, load and status work on a Pulumi-made deployment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pulumi

from infra.backends.pulumi_components import COMPONENTS, RedisDeployment, RedisDeploymentArgs
from infra.backends.pulumi_stack_secrets import NAMESPACE, stack_passwords, stack_tls
from infra.core.connection import (
    BREAKGLASS_OUTPUT,
    CONNECTION_OUTPUT,
    OPERATOR_OUTPUT,
    TLS_FILES_OUTPUT,
    TlsPaths,
    pinned_role_info,
)
from infra.core.errors import ConfigError
from infra.core.layout import LOCAL_SUBNET_POOL, STACK_SUBNET_POOL, single_engine_only
from infra.core.model import APP_ROLE, BREAKGLASS_ROLE, OPERATOR_ROLE, Topology
from infra.core.plan import build_plan, fixed_addresses, needs_fixed_addresses
from infra.core.plan_specs import Plan
from infra.core.secrets import password_ref
from infra.core.topology import load_topology


def load_stack_topology(config: pulumi.Config, stack: str) -> Topology:
    source = f"Pulumi.{stack}.yaml"
    overrides: dict[str, Any] = config.get_object("overrides") or {}
    topology = load_topology(
        config.get("topology") or "single",
        config.get("name") or f"redis-{stack}",
        overrides,
        override_source=f"{source} ({NAMESPACE}:overrides)",
    )
    if needs_fixed_addresses(topology) and topology.subnet is None:
        raise ConfigError.single(
            source,
            f"{NAMESPACE}:overrides.network.subnet",
            f"is required for a {topology.kind.value} stack: nodes get fixed addresses there, "
            "so Sentinel and Cluster still reach a node whose container is down",
            f"add `network: {{subnet: 10.214.1.0/24}}` under {NAMESPACE}:overrides "
            f"(a /24 of {STACK_SUBNET_POOL} no other stack uses)",
        )
    if topology.subnet is not None and not _inside(topology.subnet, STACK_SUBNET_POOL):
        raise ConfigError.single(
            source,
            f"{NAMESPACE}:overrides.network.subnet",
            f"{topology.subnet} is outside {STACK_SUBNET_POOL}, the range kept for stacks: "
            f"`redis-infra up` picks local subnets from {LOCAL_SUBNET_POOL}, and any other "
            "network could take it before `pulumi up` does",
            f"use a /24 of {STACK_SUBNET_POOL} no other stack uses, e.g. 10.214.1.0/24",
        )
    if topology.publish.enabled and topology.publish.base_port is None:
        raise ConfigError.single(
            source,
            f"{NAMESPACE}:overrides.publish.base_port",
            "is required when ports are published from a Pulumi stack: host ports must be "
            "fixed in the program so clients' settings survive updates",
            f"add `publish: {{base_port: 16379}}` under {NAMESPACE}:overrides, "
            "or set publish.enabled: false",
        )
    return topology


def _inside(subnet: str, pool: ipaddress.IPv4Network) -> bool:
    network = ipaddress.ip_network(subnet)
    return isinstance(network, ipaddress.IPv4Network) and network.subnet_of(pool)


def project_root() -> Path:
    """The folder of Pulumi.yaml, where stack paths (tlsDir) are relative to. Pulumi runs
    the program in its `main` folder (infra/program/ here), not there, and this package
    may be installed anywhere: ask the engine, else look upwards for Pulumi.yaml."""
    root = pulumi.get_root_directory()  # not a real folder under mocks or older engines
    if root and (Path(root) / "Pulumi.yaml").is_file():
        return Path(root)
    here = Path.cwd()
    return next((d for d in (here, *here.parents) if (d / "Pulumi.yaml").is_file()), here)


def deploy(config: pulumi.Config, stack: str) -> RedisDeployment:
    """Build the stack's component and export what clients need."""
    topology = load_stack_topology(config, stack)
    single_engine_only(topology)  # one Docker provider for now, whatever the plan's domains
    tls_dir = config.get("tlsDir")
    addresses = fixed_addresses(topology, topology.subnet)
    stack_certs = stack_tls(topology, addresses, project_root() / tls_dir if tls_dir else None)
    plan = build_plan(topology, stack_certs.certificates)
    passwords = stack_passwords(config, plan.password_names, stack, topology.name)
    secrets: dict[str, pulumi.Input[str]] = {**passwords, **stack_certs.secrets}
    component = COMPONENTS[topology.kind.value](
        topology.name, RedisDeploymentArgs(plan, secrets, stack_certs.paths)
    )
    pulumi.export(CONNECTION_OUTPUT, component.connection)
    pulumi.export(TLS_FILES_OUTPUT, stack_certs.files)
    pulumi.export("tlsSource", stack_certs.source)
    pulumi.export("appPassword", secrets[password_ref(APP_ROLE).name])
    # Operator credentials are separate outputs: the application's never include them.
    for output, role in ((OPERATOR_OUTPUT, OPERATOR_ROLE), (BREAKGLASS_OUTPUT, BREAKGLASS_ROLE)):
        password = secrets[password_ref(role).name]
        pulumi.export(
            output, _role_file(plan, stack_certs.paths, role, password, topology.settings)
        )
    return component


def _role_file(
    plan: Plan, tls: TlsPaths, role: str, password: pulumi.Input[str], settings: dict[str, Any]
) -> pulumi.Output[dict[str, Any]]:
    """operator.json or breakglass.json, as `redis-infra up` writes them."""

    def role_file(value: str) -> dict[str, Any]:
        info = pinned_role_info(plan.outputs, tls, role, value, settings)
        return info.role_json(role, with_settings=role == OPERATOR_ROLE)

    return pulumi.Output.secret(pulumi.Output.from_input(password).apply(role_file))


def main() -> None:
    deploy(pulumi.Config(NAMESPACE), pulumi.get_stack())
