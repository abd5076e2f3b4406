"""Fixtures for the pure layers: topologies and throwaway certificates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.core.certs import CertificateSet, ensure_certificates
from infra.core.model import Topology
from infra.core.topology import load_topology

TopologyFactory = Callable[..., Topology]


@pytest.fixture
def make_topology() -> TopologyFactory:
    def make(kind: str = "single", name: str = "unit", **overrides: Any) -> Topology:
        return load_topology(kind, name, overrides)

    return make


@pytest.fixture
def certificates_for(tmp_path: Path) -> Callable[[Topology], CertificateSet]:
    def make(topology: Topology) -> CertificateSet:
        return ensure_certificates(topology, tmp_path / f"tls-{topology.name}").certificates

    return make
