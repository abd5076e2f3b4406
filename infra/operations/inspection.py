"""`redis-infra render`: every file a deployment would get, for a reader, with no
secret in it (passwords as placeholders, throwaway certificates whose keys never
touch the disk, unless the topology brings its own)."""

from __future__ import annotations

from pathlib import Path

from infra.core.certs import throwaway_certificates
from infra.core.certs_brought import load_brought_files
from infra.core.model import Topology
from infra.core.plan import build_plan, fixed_addresses
from infra.core.plan_specs import Plan
from infra.operations.reports import write_json

# `up` picks a free subnet when the topology names none; a stand-in shows the shape.
EXAMPLE_SUBNET = "10.213.0.0/24"


def render_for_inspection(topology: Topology, out: Path) -> Plan:
    """Write each node's rendered files under `out/<container>/` and `out/plan.json`."""
    example_subnet = None if topology.subnet else EXAMPLE_SUBNET
    addresses = fixed_addresses(topology, example_subnet)
    certificates = (
        load_brought_files(topology, addresses).certificates
        if topology.tls.files
        else throwaway_certificates(topology, addresses)
    )
    plan = build_plan(topology, certificates, example_subnet)
    for spec in plan.containers:
        for rendered in spec.files:
            target = out / spec.name / rendered.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rendered.content)  # secrets stay <<secret:...>> placeholders
    write_json(
        out / "plan.json",
        {
            "name": plan.name,
            "kind": plan.kind.value,
            "networks": [n.name for n in plan.networks],
            "volumes": [v.name for v in plan.volumes],
            "containers": {spec.name: spec.summary() for spec in plan.containers},
            # The functions job is what Pulumi runs; `up` and the fixtures load the
            # library from the host instead when every node is published.
            "jobs": [plan.config_job.name, *(job.name for job in plan.bootstrap_jobs)],
            "secrets": plan.secret_names,
        },
    )
    return plan
