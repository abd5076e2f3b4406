"""Entry point `pulumi up` runs (Pulumi.yaml: main: infra/program/)."""

from infra.pulumi_program import main

main()
