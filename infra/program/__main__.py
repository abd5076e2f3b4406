"""Entry point `pulumi up` runs (Pulumi.yaml: main: infra/program/)."""

from infra.backends.pulumi_program import main

main()
