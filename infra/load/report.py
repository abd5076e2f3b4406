"""What `redis-infra load` prints: the run, its verdict, per request type, Redis's view."""

from __future__ import annotations

from typing import Any

from infra.load.runner import LoadPlan, LoadResult


def _us(value: Any) -> str:
    return "-" if value is None else f"{value}"


def describe_load(name: str, plan: LoadPlan, result: LoadResult) -> list[str]:
    summary = result.summary
    total = summary["total"]
    workers = summary["workers"]
    lines = []
    if summary.get("mode") == "slo":
        lag = summary.get("start_lag") or {}
        lines.append(
            f"SLO run, {plan.profile} on '{name}': {total['requests_per_s']:.0f} of "
            f"{summary['target_rate']:.0f} requests/s asked, over {plan.users} connections "
            f"and {workers} process(es); {total['errors']} errors; start lag p50 "
            f"{_us(lag.get('p50_us'))} us, p99 {_us(lag.get('p99_us'))} us"
        )
        lines.append(
            f"  response (from the intended start) p50 {_us(total['response']['p50_us'])} us, "
            f"p99 {_us(total['response']['p99_us'])} us; service (from the send) p50 "
            f"{_us(total['service']['p50_us'])} us, p99 {_us(total['service']['p99_us'])} us"
        )
    else:
        lines.append(
            f"capacity run, {plan.profile} on '{name}': {total['requests_per_s']:.0f} requests/s "
            f"({total['requests_per_s_per_worker']:.0f} per worker process x {workers}), "
            f"{total['errors']} errors; latency p50 {_us(total['response']['p50_us'])} us, p99 "
            f"{_us(total['response']['p99_us'])} us (closed loop: includes the generator's "
            "queueing, never judged)"
        )
    for worker, cpu in (summary.get("generator_cpu") or {}).items():
        lines.append(
            f"  generator {worker}: CPU max {cpu['max']:.0%} of a core, mean {cpu['mean']:.0%}"
        )
    for type_name, figures in summary["request_types"].items():
        lines.append(
            f"  {type_name:<22} {figures['count']:>9} req {figures['rps']:>9.0f}/s  "
            f"service p50 {_us(figures['service']['p50_us'])} p99 "
            f"{_us(figures['service']['p99_us'])} us  response p50 "
            f"{_us(figures['response']['p50_us'])} p99 {_us(figures['response']['p99_us'])} "
            f"p99.9 {_us(figures['response']['p999_us'])} us  errors {figures['errors']}"
        )
    server = summary.get("server")
    if server:
        lines.append(f"  Redis's own view ({', '.join(server['nodes'])}):")
        for command, figures in server["commands"].items():
            lines.append(
                f"    {command:<20} {figures['calls']:>9} calls  {figures['usec_per_call']:>7} us "
                f"each  p99 <= {_us(figures['p99_us_at_most'])} us"
            )
    verdict = summary.get("verdict") or {}
    if verdict:
        lines.append(f"  verdict: {verdict['status']} (exit {verdict['exit_code']})")
        lines += [f"    - {reason}" for reason in verdict.get("reasons", [])]
    lines += [f"  note: {note}" for note in result.notes]
    lines.append(f"  exact summary: {result.summary_file}; Locust report: {result.html_report}")
    if result.fault_window is not None and result.drill is not None:
        window = result.fault_window
        lines.append(
            f"  {result.drill['scenario']}: baseline {window['baseline_requests_per_s']} req/s, "
            f"p99 {window['baseline_p99_us']} us; after the fault: worst p99 "
            f"{window['worst_p99_us_after_fault']} us, {window['errors_after_fault']} errors, "
            f"{window['seconds_below_half_throughput']} s below half throughput; "
            f"plot: {result.plot}"
        )
    return lines
