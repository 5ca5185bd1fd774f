"""Pulumi program entry (Pulumi.yaml `main: stacks/`): `pulumi up -s <site>`."""

from aifactory.program import main

main()
