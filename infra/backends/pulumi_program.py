"""The Pulumi program: stack config -> topology -> plan -> one Redis component.

Stack config (Pulumi.<stack>.yaml), namespace `redis-infra`:
    topology      single | sentinel | cluster | path to a topology file (default single)
    name          deployment name (default redis-<stack>)
    tlsDir        certificates written by `redis-infra certs` (default certs/<stack>)
    overrides     an object merged over the topology file, e.g. {publish: {base_port: 16379}}
    appPassword, adminPassword, breakglassPassword, healthPassword, replicationPassword
    [, sentinelPassword]
                  secrets, set with `pulumi config set --secret`

Outputs, all secret: `connection`, the application's connection file exactly as
`redis-infra up` writes it (the application's credentials only); for operators,
`operatorFile` and `breakglassFile`, the operator.json and breakglass.json beside
it; `appPassword`. `redis-infra connection --from-stack STACK` writes the three
files, so verify, drill, load and status work on a Pulumi-made deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.config import get_config

from infra.backends.pulumi_components import COMPONENTS, RedisDeployment, RedisDeploymentArgs
from infra.core.certs import load_generated
from infra.core.certs_brought import load_brought_files
from infra.core.connection import (
    BREAKGLASS_OUTPUT,
    CONNECTION_OUTPUT,
    OPERATOR_OUTPUT,
    TlsPaths,
    pinned_role_info,
    tls_paths,
)
from infra.core.errors import ConfigError, Problem
from infra.core.layout import single_engine_only
from infra.core.model import APP_ROLE, BREAKGLASS_ROLE, OPERATOR_ROLE, Topology
from infra.core.plan import build_plan, fixed_addresses, needs_fixed_addresses
from infra.core.plan_specs import Plan
from infra.core.secrets import password_problem, password_ref
from infra.core.topology import load_topology

NAMESPACE = "redis-infra"


def secret_config_key(secret_name: str) -> str:
    """`app_password` -> `appPassword`: the stack config key holding that secret."""
    head, *rest = secret_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def set_secret_command(key: str, stack: str) -> str:
    return (
        f"pulumi config set --secret {NAMESPACE}:{key} "
        f"\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\" --stack {stack}"
    )


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
            f"add `network: {{subnet: 10.213.0.0/24}}` under {NAMESPACE}:overrides "
            "(a /24 no other network on the Docker host uses)",
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


def password_outputs(
    config: pulumi.Config, names: list[str], stack: str
) -> dict[str, pulumi.Output[str]]:
    """Each password as a secret Output, checked before any resource is declared.

    The value is read once, synchronously, so a missing or weak password stops the
    program before Pulumi creates anything; it is wrapped as a secret at once.
    """
    problems: list[Problem] = []
    outputs: dict[str, pulumi.Output[str]] = {}
    for name in names:
        key = secret_config_key(name)
        value = get_config(config.full_key(key))
        problem = password_problem(f"{NAMESPACE}:{key}", value if isinstance(value, str) else None)
        if problem is not None:
            problems.append(Problem(problem.field, problem.rule, set_secret_command(key, stack)))
            continue
        outputs[name] = pulumi.Output.secret(str(value))
    if problems:
        raise ConfigError(f"stack {stack}", problems)
    return outputs


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
    tls_dir = project_root() / (config.get("tlsDir") or f"certs/{stack}")
    certs_fix = (
        f"run `redis-infra certs --topology {config.get('topology') or 'single'} "
        f"--name {topology.name} --out {tls_dir}` (same --set overrides as the stack)"
    )
    addresses = fixed_addresses(topology, topology.subnet)
    bundle = (
        load_brought_files(topology, addresses)
        if topology.tls.files
        else load_generated(topology, tls_dir, certs_fix, addresses)
    )
    plan = build_plan(topology, bundle.certificates)
    secrets: dict[str, pulumi.Input[str]] = dict(
        password_outputs(config, plan.password_names, stack)
    )
    for name, pem in bundle.private_keys.items():
        secrets[name] = pulumi.Output.secret(pem)
    tls = tls_paths(bundle.certificates)
    component = COMPONENTS[topology.kind.value](
        topology.name, RedisDeploymentArgs(plan, secrets, tls)
    )
    pulumi.export(CONNECTION_OUTPUT, component.connection)
    pulumi.export("caFile", str(bundle.certificates.ca_file))
    if bundle.certificates.client_cert_file:
        pulumi.export("clientCertFile", str(bundle.certificates.client_cert_file))
        pulumi.export("clientKeyFile", str(bundle.certificates.client_key_file))
    pulumi.export("appPassword", secrets[password_ref(APP_ROLE).name])
    # Operator credentials are separate outputs: the application's never include them.
    for output, role in ((OPERATOR_OUTPUT, OPERATOR_ROLE), (BREAKGLASS_OUTPUT, BREAKGLASS_ROLE)):
        password = secrets[password_ref(role).name]
        pulumi.export(output, _role_file(plan, tls, role, password, topology.settings))
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
