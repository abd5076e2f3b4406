"""The `redis-infra` command line (also `python -m infra.cli`): the argument tree and
how an error becomes an exit code. Each command group is its own module beside this
one (deployment, proving, files), over functions of `infra.operations` that return
data; `common` holds what they share."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import docker.errors

from infra.cli.common import EXIT_BAD_INPUT, EXIT_DIFFERS, EXIT_FAILED
from infra.cli.deployment import cmd_connection, cmd_down, cmd_scale, cmd_status, cmd_up, cmd_verify
from infra.cli.files import cmd_certs, cmd_fields, cmd_image_build, cmd_render
from infra.cli.proving import cmd_bench, cmd_drill, cmd_load, cmd_measure_scale, cmd_measure_up
from infra.core.errors import ConfigError, RedisInfraError
from infra.core.plan_specs import READY_TIMEOUT_S


def _add_topology_options(parser: argparse.ArgumentParser, *, name_required: bool) -> None:
    parser.add_argument(
        "--name",
        "-n",
        required=name_required,
        default="redis",
        help="deployment name: prefix of every container, network and volume",
    )
    _add_topology_source_options(parser)


def _add_topology_source_options(parser: argparse.ArgumentParser) -> None:
    """What a topology is made of: its file, the image, overrides."""
    parser.add_argument(
        "--topology",
        "-t",
        required=True,
        help="kind (single, sentinel, cluster) or a topology .yaml file",
    )
    parser.add_argument("--image", help="Redis image reference (overrides the topology's image)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a topology setting, e.g. --set memory.maxmemory=512mb",
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connection", type=Path, help="connection file (default: the one `up` wrote)"
    )
    parser.add_argument(
        "--operator",
        type=Path,
        help="operator credentials file (default: operator.json beside the connection file)",
    )


def build_parser() -> argparse.ArgumentParser:
    from infra.backends.image import DEFAULT_IMAGE

    parser = argparse.ArgumentParser(prog="redis-infra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("up", help="deploy a topology and wait until it answers")
    _add_topology_options(p, name_required=True)
    p.add_argument("--out", type=Path, help="connection file to write (default: in the state dir)")
    p.add_argument(
        "--timeout", type=float, default=READY_TIMEOUT_S, help="seconds to wait for readiness"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_up)

    p = commands.add_parser("down", help="remove a deployment")
    p.add_argument("--name", "-n", required=True)
    p.add_argument(
        "--keep-data", action="store_true", help="keep data volumes, secrets, certificates"
    )
    p.set_defaults(handler=cmd_down)

    p = commands.add_parser("status", help="show a deployment's containers")
    p.add_argument("--name", "-n", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = commands.add_parser("verify", help="prove a deployment works and is locked down")
    p.add_argument("--name", "-n", required=True)
    _add_connection_options(p)
    p.set_defaults(handler=cmd_verify)

    p = commands.add_parser("drill", help="inject a fault under writes and measure what happens")
    p.add_argument("--name", "-n", required=True)
    p.add_argument(
        "--scenario",
        "-s",
        required=True,
        help="sentinel: kill-master, pause-master, partition-master, kill-sentinels, "
        "restart-master; cluster: kill-master, pause-master, partition-master, "
        "restart-node, restart-all",
    )
    _add_connection_options(p)
    p.add_argument("--runs", type=int, default=1, help="repeat the drill; medians are reported")
    p.add_argument("--json", type=Path, help="write the report (or all runs and medians) as JSON")
    p.set_defaults(handler=cmd_drill)

    p = commands.add_parser("scale", help="add shards to a cluster and rebalance its slots")
    p.add_argument("--name", "-n", required=True)
    p.add_argument("--masters", type=int, required=True, help="the number of masters to reach")
    p.set_defaults(handler=cmd_scale)

    p = commands.add_parser("measure-up", help="time bring-up from scratch, N runs (median)")
    _add_topology_source_options(p)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--native",
        action="store_true",
        help="after each run, the same topology as native redis-server processes (same TLS, "
        "same readiness), docker run's own floor, and the deployment's own containers "
        "running a bare redis-server (Docker's cost of the hardening), for the ratios",
    )
    p.add_argument(
        "--backend",
        choices=["cli", "fixtures"],
        default="cli",
        help="bring up as `redis-infra up` does, or as the pytest fixtures do (testcontainers)",
    )
    p.add_argument("--json", type=Path, help="write the figures as JSON")
    p.set_defaults(handler=cmd_measure_up)

    p = commands.add_parser("measure-scale", help="fill a cluster with keys, scale it, check them")
    p.add_argument("--name", "-n", required=True)
    p.add_argument("--masters", type=int, required=True)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--json", type=Path, help="write the figures as JSON")
    p.set_defaults(handler=cmd_measure_scale)

    p = commands.add_parser("load", help="run the Locust scenarios against a deployment")
    p.add_argument("--name", "-n", required=True)
    _add_connection_options(p)
    p.add_argument(
        "--profile",
        default="mixed",
        help="mixed, session, cache, ratelimit, leaderboard, counters, pubsub, bench",
    )
    p.add_argument(
        "--users",
        type=int,
        default=50,
        help="capacity: concurrent virtual users; with --rate: connections (all processes)",
    )
    p.add_argument("--duration", type=int, default=30, help="seconds; the run stops by itself")
    p.add_argument("--processes", type=int, default=1, help="worker processes (one per core)")
    p.add_argument(
        "--rate",
        type=float,
        help="requests/s (all processes), open loop: an SLO run (default: the SLO file's "
        "rate; none: a capacity run)",
    )
    p.add_argument(
        "--slo",
        type=Path,
        help="SLO file, or the name of a shipped one (slo.yaml, slo-ci.yaml); a missed "
        "target exits 1, a run the generator could not keep exits 4",
    )
    p.add_argument("--drill", help="a drill scenario to run during the load (Sentinel, Cluster)")
    p.add_argument("--drill-after", type=float, default=10.0, help="seconds into the load")
    p.add_argument("--out", type=Path, help="directory for the reports (default reports/load/NAME)")
    p.add_argument("--json", type=Path, help="write summary, drill and fault window as JSON")
    p.set_defaults(handler=cmd_load)

    p = commands.add_parser("bench", help="redis-benchmark next to the Locust harness")
    p.add_argument("--name", "-n", required=True)
    _add_connection_options(p)
    p.add_argument("--clients", type=int, default=50, help="concurrency of both tools")
    p.add_argument("--duration", type=int, default=15, help="seconds of each Locust run")
    p.add_argument(
        "--rate", type=float, default=3000.0, help="requests/s of the fixed-rate comparison"
    )
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    p.set_defaults(handler=cmd_bench)

    p = commands.add_parser("render", help="write every rendered file for inspection")
    _add_topology_options(p, name_required=False)
    p.add_argument("--out", type=Path, required=True, help="directory to write into")
    p.set_defaults(handler=cmd_render)

    p = commands.add_parser(
        "fields", help="every topology setting: type, bounds, meaning, each kind's default"
    )
    p.set_defaults(handler=cmd_fields)

    p = commands.add_parser(
        "connection", help="write a Pulumi stack's connection files (run in the project folder)"
    )
    p.add_argument("--from-stack", required=True, metavar="STACK", help="the Pulumi stack")
    p.add_argument("--out", type=Path, required=True, help="folder for the files (made 0700)")
    p.add_argument(
        "--operator",
        action="store_true",
        help="also write operator.json and breakglass.json (the operator's folder, never "
        "an application's)",
    )
    p.set_defaults(handler=cmd_connection)

    p = commands.add_parser("certs", help="generate a CA, node and client certificates")
    _add_topology_options(p, name_required=True)
    p.add_argument("--out", type=Path, required=True, help="directory for the certificates")
    p.set_defaults(handler=cmd_certs)

    image = commands.add_parser("image", help="the local Redis image").add_subparsers(
        dest="image_command", required=True
    )
    p = image.add_parser("build", help="build the Redis image from Debian's packages")
    p.add_argument(
        "--tag", default=DEFAULT_IMAGE, help=f"image reference (default {DEFAULT_IMAGE})"
    )
    p.set_defaults(handler=cmd_image_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from infra.operations.deploy import DeploymentDiffersError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DeploymentDiffersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIFFERS
    except RedisInfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except docker.errors.DockerException as exc:
        print(f"error: the Docker engine refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`| head`): the work is done, nothing left to say. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # as a program killed by the signal: what shells expect
    return code
