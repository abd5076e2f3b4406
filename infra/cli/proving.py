"""Commands that prove a deployment: drills, bring-up and scale measurements, load."""

from __future__ import annotations

import argparse
from pathlib import Path

from infra.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    load_connection,
)
from infra.core.errors import ConfigError
from infra.core.model import Kind
from infra.core.plan_specs import READY_MEANS
from infra.operations.reports import write_json


def cmd_drill(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.operations.drills.run import run_drill, summarize

    info = load_connection(args)
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


def cmd_measure_up(args: argparse.Namespace) -> int:
    from infra.backends.docker_engine import docker_client
    from infra.core.topology import deep_merge, parse_set_flags
    from infra.operations.measure import cli_bring_up, measure_bring_up

    overrides = parse_set_flags(args.overrides)
    if args.image:
        overrides = deep_merge(overrides, {"image": args.image})
    bring_up = cli_bring_up
    if args.backend == "fixtures":
        from infra.testing.measure import fixture_bring_up

        bring_up = fixture_bring_up
    report = measure_bring_up(
        docker_client(), args.topology, args.runs, overrides, native=args.native, bring_up=bring_up
    )
    report["backend"] = args.backend
    if args.json:
        write_json(args.json, report)
    print(
        f"{args.topology} ({args.backend}): bring-up median "
        f"{report['median_seconds_total']:.2f} s total, "
        f"{report['median_seconds_start_to_ready']:.2f} s container start -> ready "
        f"({READY_MEANS[Kind(report['kind'])]}), "
        f"down {report['median_seconds_down']:.2f} s ({args.runs} runs)"
    )
    if args.native:
        native, ratio = report["median_seconds_native"], report["ratio_total_vs_native"]
        floor = report["median_seconds_docker_floor"]
        floor_all, nodes = report["median_seconds_docker_floor_all_nodes"], report["nodes"]
        same = report["median_seconds_docker_floor_same_containers"]
        print(
            f"  native redis-server, same TLS and readiness: {native:.2f} s (bring-up is "
            f"{ratio:.2f}x that); docker run to first PONG: {floor:.2f} s, "
            f"{nodes} at once: {floor_all:.2f} s; the deployment's own {nodes} "
            f"container(s) with a bare redis-server: {same:.2f} s"
        )
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
    info = load_connection(args, breakglass=True)
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
