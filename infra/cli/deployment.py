"""Commands on a deployment's life: up, down, status, verify, scale, connection."""

from __future__ import annotations

import argparse
import contextlib
import sys

from infra.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    load_args_topology,
    load_connection,
    print_json,
)
from infra.core.model import Kind
from infra.core.plan_specs import READY_MEANS


def cmd_up(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.deploy import up

    topology = load_args_topology(args)
    if topology.publish.enabled and topology.publish.host_ip not in ("127.0.0.1", "::1"):
        print(
            f"warning: publishing on {topology.publish.host_ip}, beyond loopback, as asked",
            file=sys.stderr,
        )
    result = up(topology, docker_client(), connection_file=args.out, ready_timeout_s=args.timeout)
    info = result.info
    if args.json:
        print_json(
            {
                "connection_file": str(result.connection_file),
                "created": result.created,
                "seconds_total": round(result.seconds_total, 3),
                "seconds_start_to_ready": result.seconds_start_to_ready,
                "notes": result.notes,
            }
        )
        return EXIT_OK
    print(f"{info.topology} deployment '{info.name}' is {'up' if result.created else 'already up'}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"  {'container':<28} {'role':<9} {'from this host':<22} inside network {info.network}")
    for node in info.nodes:
        host = f"{node.host}:{node.port}" if node.host else "(not published)"
        print(f"  {node.container:<28} {node.role:<9} {host:<22} {node.internal}")
    print(
        f"  connection file: {result.connection_file} (mode 0600: the application's "
        "credentials only; the operator's are in operator.json in the state folder)"
    )
    timing = f"  bring-up: {result.seconds_total:.2f} s total"
    if result.seconds_start_to_ready is not None:
        ready = READY_MEANS[Kind(info.topology)]
        timing += f", {result.seconds_start_to_ready:.2f} s from container start to ready ({ready})"
    print(timing)
    first = info.data_nodes()[0]
    if first.host:
        print(
            "  try: redis-cli --tls --cacert {ca}{client} -h {h} -p {p} "
            "--user {u} --askpass ping".format(
                ca=info.tls.ca_file,
                client=f" --cert {info.tls.cert_file} --key {info.tls.key_file}"
                if info.tls.cert_file
                else "",
                h=first.host,
                p=first.port,
                u=info.credentials("app").username,
            )
        )
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.deploy import down

    result = down(args.name, docker_client(), keep_data=args.keep_data)
    removed = result.removed
    print(
        f"removed {len(removed.containers)} container(s), {len(removed.networks)} network(s), "
        f"{len(removed.volumes)} volume(s) of '{args.name}'"
    )
    if result.kept_volumes:
        print(
            f"kept data volume(s): {', '.join(sorted(result.kept_volumes))}; "
            f"secrets and certificates kept in {result.state_dir}"
        )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.deploy import status

    rows = status(args.name, docker_client())
    if args.json:
        print_json([row.__dict__ for row in rows])
        return EXIT_OK if rows else EXIT_FAILED
    if not rows:
        print(f"no deployment named '{args.name}' on this Docker engine")
        return EXIT_FAILED
    print(
        f"{'container':<28} {'deployed as':<12} {'role now':<12} {'state':<10} "
        f"{'health':<10} published"
    )
    for row in rows:
        print(
            f"{row.container:<28} {row.role:<12} {row.live_role:<12} {row.state:<10} "
            f"{row.health:<10} {row.published}"
        )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.core.errors import EngineError
    from infra.operations.verify import verify

    info = load_connection(args)
    engine = None
    with contextlib.suppress(EngineError):  # without an engine, what the nodes say only
        engine = docker_client()
    checks = verify(info, engine)
    for check in checks:
        mark = "note" if check.advisory else "ok" if check.passed else "FAILED"
        print(f"  [{mark}] {check.name}: {check.detail}")
    failed = [check for check in checks if not check.passed]
    made = [check for check in checks if not check.advisory]
    unmade = f"; {len(checks) - len(made)} not made from here" if len(made) < len(checks) else ""
    verdict = (
        f"all {len(made)} checks passed{unmade}"
        if not failed
        else f"{len(failed)} of {len(made)} checks failed{unmade}"
    )
    print(f"{info.topology} deployment '{info.name}': {verdict}")
    return EXIT_OK if not failed else EXIT_FAILED


def cmd_scale(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.scale import scale_cluster

    result = scale_cluster(args.name, args.masters, docker_client())
    print(
        f"cluster '{args.name}' scaled from {result.masters_before} to {result.masters_after} "
        f"masters in {result.seconds:.1f} s (adding shards and moving slots: "
        f"{result.seconds_rebalance:.1f} s); new nodes: {', '.join(result.new_nodes)}"
    )
    print(f"  later `up` runs need --set cluster.masters={result.masters_after}")
    return EXIT_OK


def cmd_connection(args: argparse.Namespace) -> int:
    from infra.operations.stack_connection import write_stack_connection

    connection = write_stack_connection(args.from_stack, args.out, operator=args.operator)
    if args.operator:
        print(f"wrote {connection}, tls/ and the operator files beside it (0600)")
        print(f"  redis-infra verify --name NAME --connection {connection}")
    else:
        print(f"wrote {connection} and tls/ (0600): the application's credentials only")
        print("  for verify, drill or load, add --operator (into the operator's own folder)")
    return EXIT_OK
