"""What each `redis-infra` command does: read its arguments, call the operations,
print the outcome. The argument tree is in infra/cli.py."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from infra.core.connection import ConnectionInfo
from infra.core.errors import ConfigError
from infra.core.model import Kind, Topology
from infra.core.plan_specs import READY_MEANS
from infra.operations.reports import write_json

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIFFERS = 3


def _load(args: argparse.Namespace) -> Topology:
    from infra.core.topology import deep_merge, load_topology, parse_set_flags

    overrides = parse_set_flags(args.overrides)
    if args.image:
        overrides = deep_merge(overrides, {"image": args.image})
    return load_topology(args.topology, args.name, overrides, override_source="command-line flags")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- commands -------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.deploy import up

    topology = _load(args)
    if topology.publish.enabled and topology.publish.host_ip not in ("127.0.0.1", "::1"):
        print(
            f"warning: publishing on {topology.publish.host_ip}, beyond loopback, as asked",
            file=sys.stderr,
        )
    result = up(topology, docker_client(), connection_file=args.out, ready_timeout_s=args.timeout)
    info = result.info
    if args.json:
        _print_json(
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
        _print_json([row.__dict__ for row in rows])
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


def _connection(args: argparse.Namespace, *, breakglass: bool = False) -> ConnectionInfo:
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


def cmd_verify(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.core.errors import EngineError
    from infra.operations.verify import verify

    info = _connection(args)
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


def cmd_measure_up(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.core.topology import deep_merge, parse_set_flags
    from infra.operations.measure import measure_bring_up

    overrides = parse_set_flags(args.overrides)
    if args.image:
        overrides = deep_merge(overrides, {"image": args.image})
    report = measure_bring_up(docker_client(), args.topology, args.runs, overrides)
    if args.json:
        write_json(args.json, report)
    print(
        f"{args.topology}: bring-up median {report['median_seconds_total']:.2f} s total, "
        f"{report['median_seconds_start_to_ready']:.2f} s container start -> ready "
        f"({READY_MEANS[Kind(report['kind'])]}), "
        f"down {report['median_seconds_down']:.2f} s ({args.runs} runs)"
    )
    return EXIT_OK


def cmd_drill(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.drills.run import run_drill, summarize

    info = _connection(args)
    engine = docker_client()
    reports = []
    for run in range(1, args.runs + 1):
        report = run_drill(info, engine, args.scenario).to_json()
        reports.append(report)
        writes = report["writes"] or {}
        print(
            f"{args.scenario} on '{info.name}' (run {run}/{args.runs}): "
            f"failover={'yes' if report['failover'] else 'no'} "
            f"({report['old_master']} -> {report['new_master']}), "
            f"time to new master {report['time_to_new_master_s']} s, "
            f"write outage {writes.get('write_outage_s')} s, "
            f"acknowledged writes lost {writes.get('acknowledged_lost')} "
            f"of {writes.get('acknowledged')}, indeterminate {writes.get('indeterminate')}, "
            f"converged={report['converged']}"
        )
        for key, value in report["details"].items():
            print(f"  {key}: {value}")
        for note in report["notes"]:
            print(f"  note: {note}")
    summary = summarize(reports)
    if args.runs > 1:
        print("medians: " + ", ".join(f"{key} {value}" for key, value in summary["median"].items()))
    if args.json:
        data = reports[0] if args.runs == 1 else {"summary": summary, "runs": reports}
        write_json(args.json, data)
    return EXIT_OK if all(report["converged"] for report in reports) else EXIT_FAILED


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


def cmd_measure_scale(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.measure import measure_scale_out

    report = measure_scale_out(docker_client(), args.name, args.masters, args.keys)
    if args.json:
        write_json(args.json, report)
    print(
        f"scaled '{args.name}' {report['masters_before']} -> {report['masters_after']} masters "
        f"holding {report['keys']} keys in {report['seconds_scale_total']:.1f} s; "
        f"missing afterwards: {report['keys_missing_after']}"
    )
    return EXIT_OK if report["keys_missing_after"] == 0 else EXIT_FAILED


def cmd_load(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.load.report import describe_load
    from infra.load.runner import LoadPlan, run_load
    from infra.operations.deploy import connection_file_for
    from loadtests.slo import SloFileError, load_slo

    engine = docker_client()
    connection = args.connection or connection_file_for(args.name, engine)
    from infra.assets import shipped_slo_file

    if args.slo is not None:
        args.slo = shipped_slo_file(args.slo)
    rate = args.rate
    if rate is None and args.slo is not None and args.slo.is_file():
        try:
            rate = load_slo(args.slo).rate  # an SLO file states the rate it holds at
        except SloFileError as exc:
            raise ConfigError.single(str(args.slo), "<file>", str(exc), "fix the SLO file") from exc
    plan = LoadPlan(
        connection_file=connection,
        profile=args.profile,
        users=args.users,
        duration_s=args.duration,
        processes=args.processes,
        slo_file=args.slo,
        out_dir=args.out or Path("reports") / "load" / args.name,
        drill=args.drill,
        drill_after_s=args.drill_after,
        rate=rate,
        operator_file=args.operator,
    )
    result = run_load(plan, engine)
    if args.json:  # first: a reader that stops early (`| head`) must not lose it
        write_json(
            args.json,
            {
                "summary": result.summary,
                "drill": result.drill,
                "fault_window": result.fault_window,
                "notes": result.notes,
            },
        )
    for line in describe_load(args.name, plan, result):
        print(line)
    return result.exit_code


def cmd_bench(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.load.bench import bench
    from infra.operations.deploy import connection_file_for

    # The benchmark user is a temporary ACL user: only the break-glass user may make one.
    info = _connection(args, breakglass=True)
    connection = args.connection or connection_file_for(args.name, docker_client())
    out = args.out or Path("reports") / "bench" / args.name
    result = bench(info, connection, args.clients, args.duration, out, rate=args.rate)
    capacity = result.locust["request_types"]
    fixed = result.slo_run["request_types"]
    for command, native in result.redis_benchmark.items():
        ours = capacity.get(f"bench.{command}")
        if ours:
            print(
                f"{command.upper()} at {args.clients} in flight: redis-benchmark "
                f"{native['rps']:.0f}/s (its {command.upper()}s alone), ours {ours['rps']:.0f}/s "
                "(half of a GET/SET mix)"
            )
    cpu = max((w["max"] for w in result.slo_run.get("generator_cpu", {}).values()), default=0)
    for command, alone in result.floor.items():
        ours = fixed.get(f"bench.{command}")
        paced = result.official_at_rate.get(command)
        if ours:
            print(
                f"{command.upper()} at {args.rate:.0f}/s: ours service p50 "
                f"{ours['service']['p50_us']} us, from the intended start p50 "
                f"{ours['response']['p50_us']} us (generator CPU max {cpu:.0%}); "
                f"redis-benchmark -c 1 p50 {alone['p50_ms'] * 1000:.0f} us"
                + (f"; redis-py paced at the rate p50 {paced['p50_us']:.0f} us" if paced else "")
            )
    verdict = result.slo_run.get("verdict") or {}
    if verdict.get("status") == "inconclusive":  # then its figures include the generator
        print(f"the fixed-rate run was inconclusive: {'; '.join(verdict['reasons'])}")
    print(
        "ratios (ours / anchor): "
        + ", ".join(f"{key} {value}" for key, value in result.ratios.items())
    )
    if args.json:
        write_json(args.json, result.__dict__)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from infra.operations.inspection import render_for_inspection

    plan = render_for_inspection(_load(args), args.out)
    print(
        f"rendered {len(plan.containers)} node(s) of '{plan.name}' into {args.out} "
        "(secrets appear as <<secret:NAME>> placeholders)"
    )
    return EXIT_OK


def cmd_connection(args: argparse.Namespace) -> int:
    from infra.operations.stack_connection import write_stack_connection

    connection = write_stack_connection(args.from_stack, args.out)
    print(f"wrote {connection} and the operator files beside it (0600)")
    print(f"  redis-infra verify --name NAME --connection {connection}")
    return EXIT_OK


def cmd_certs(args: argparse.Namespace) -> int:
    from infra.core.certs import ensure_certificates
    from infra.core.plan import fixed_addresses

    topology = _load(args)
    bundle = ensure_certificates(topology, args.out, fixed_addresses(topology, topology.subnet))
    print(
        f"certificates for '{topology.name}' in {args.out}: ca.crt (+ ca.key), "
        f"nodes/<node>.crt|key for {len(bundle.certificates.server_pems)} node(s), "
        "client.crt|key; private keys are mode 0600"
    )
    return EXIT_OK


def cmd_image_build(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.backends.image import build_image

    built = build_image(docker_client(), args.tag)
    print(
        f"built {built.reference} (Redis {built.redis_version}, {built.size_bytes / 1e6:.1f} MB, "
        f"{built.image_id[:19]}) in {built.seconds:.2f} s"
    )
    return EXIT_OK


# -- parser ---------------------------------------------------------------------------
