"""What every command shares: exit codes, loading a topology or a connection file,
printing JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra.core.connection import ConnectionInfo
from infra.core.model import Topology

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIFFERS = 3


def load_args_topology(args: argparse.Namespace) -> Topology:
    from infra.core.topology import deep_merge, load_topology, parse_set_flags

    overrides = parse_set_flags(args.overrides)
    if args.image:
        overrides = deep_merge(overrides, {"image": args.image})
    return load_topology(args.topology, args.name, overrides, override_source="command-line flags")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def load_connection(args: argparse.Namespace, *, breakglass: bool = False) -> ConnectionInfo:
    """The application's connection file with the operator's credentials: from the
    deployment's state folder, or from --connection (operator.json beside it, or
    --operator)."""
    from infra.backends.docker_engine import docker_client
    from infra.core.connection import BREAKGLASS_FILE, OPERATOR_FILE, read_connection_file
    from infra.operations.deploy import deployment_info

    if args.connection is None:
        return deployment_info(args.name, docker_client(), breakglass=breakglass)
    directory = args.connection.parent
    operator = args.operator or directory / OPERATOR_FILE
    return read_connection_file(
        args.connection,
        operator_file=operator,
        breakglass_file=directory / BREAKGLASS_FILE if breakglass else None,
    )
