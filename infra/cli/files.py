"""Commands that write files and need no deployment: render, certs, the image, fields."""

from __future__ import annotations

import argparse

from infra.cli.common import (
    EXIT_OK,
    load_args_topology,
)


def cmd_render(args: argparse.Namespace) -> int:
    from infra.operations.inspection import render_for_inspection

    plan = render_for_inspection(load_args_topology(args), args.out)
    print(
        f"rendered {len(plan.containers)} node(s) of '{plan.name}' into {args.out} "
        "(secrets appear as <<secret:NAME>> placeholders)"
    )
    return EXIT_OK


def cmd_certs(args: argparse.Namespace) -> int:
    from infra.core.certs import ensure_certificates
    from infra.core.plan import fixed_addresses

    topology = load_args_topology(args)
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
    if built.removed:
        print(
            f"removed {len(built.removed)} untagged image(s) of earlier builds that no "
            f"container uses ({', '.join(i[:19] for i in built.removed)})"
        )
    if built.replaced and built.replaced not in built.removed:
        print(
            f"kept the image it replaced ({built.replaced[:19]}): containers made before "
            "this build run it until `down` (the next build after that removes it), or "
            "another tag names it"
        )
    return EXIT_OK


def cmd_fields(args: argparse.Namespace) -> int:
    from infra.core.topology import fields_reference

    print(fields_reference(), end="")
    return EXIT_OK
