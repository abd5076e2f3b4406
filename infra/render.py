"""Render every file a node needs (config, ACL, certificates) from `redis/templates/`.

Pure: no I/O beyond reading the templates, and secrets appear only as placeholders
(see `infra.secrets`), so rendered files can be written for inspection and hashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from infra.certs import CertificateSet
from infra.layout import Node, Role, master_node, nodes
from infra.model import Kind, Topology
from infra.secrets import password_ref, referenced, tls_key_ref
from infra.sizes import format_size

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "redis" / "templates"
CONF_DIR = "/etc/redis-infra"  # the node's config volume, mounted read-only
DATA_DIR = "/data"  # the node's data volume

# Modes inside the config volume (owned by the Redis uid): secrets owner-read-only.
PUBLIC_MODE = 0o444
SECRET_MODE = 0o400


@dataclass(frozen=True)
class RenderedFile:
    """One file of a node, relative to its config directory."""

    path: str
    content: str  # may hold secret placeholders, resolved by the backend
    mode: int

    @property
    def holds_secret(self) -> bool:
        return bool(referenced([self.content]))

    @property
    def volume(self) -> str:
        """`config` (read-only mount) or `data`: Sentinel must rewrite its file."""
        return "data" if self.path == "sentinel.conf" else "config"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Redis config files, not HTML
    )


def _render(template: str, **context: object) -> str:
    return _environment().get_template(template).render(**context)


def _password_hash(role: str) -> str:
    # ACL files store "#<sha256>" so the clear password never sits on the node.
    return "#" + password_ref(role).sha256_placeholder


def render_node(topology: Topology, node: Node, certificates: CertificateSet) -> list[RenderedFile]:
    """The files `node` reads at start, in a stable order."""
    context: dict[str, object] = {
        "node": node,
        "kind": topology.kind.value,
        "tls": topology.tls,
        "users": topology.users,
        "persistence": topology.persistence,
        "memory": topology.memory,
        "maxmemory": format_size(topology.memory.maxmemory_bytes),
        "sentinel": topology.sentinel,
        "cluster": topology.cluster,
        "replicated": topology.kind is not Kind.SINGLE,
        "conf_dir": CONF_DIR,
        "data_dir": DATA_DIR,
        "password_hash": _password_hash,
        "replication_password": password_ref("replication").placeholder,
        "sentinel_password": password_ref("sentinel").placeholder,
    }
    tls_files = [
        RenderedFile("tls/ca.crt", certificates.ca_pem, PUBLIC_MODE),
        RenderedFile("tls/server.crt", certificates.server_pems[node.name], PUBLIC_MODE),
        RenderedFile("tls/server.key", tls_key_ref(node.name).placeholder, SECRET_MODE),
    ]
    if node.role is Role.SENTINEL:
        context["master"] = master_node(topology)
        sentinel_conf = _render("sentinel.conf.j2", **context)
        return [RenderedFile("sentinel.conf", sentinel_conf, SECRET_MODE), *tls_files]
    conf = RenderedFile("redis.conf", _render("redis.conf.j2", **context), PUBLIC_MODE)
    if conf.holds_secret:  # masterauth: replicating kinds carry the replication password
        conf = RenderedFile(conf.path, conf.content, SECRET_MODE)
    acl = RenderedFile("users.acl", _render("users.acl.j2", **context), SECRET_MODE)
    return [conf, acl, *tls_files]


def render_topology(
    topology: Topology, certificates: CertificateSet
) -> dict[str, list[RenderedFile]]:
    """Files of every node, by node name."""
    return {node.name: render_node(topology, node, certificates) for node in nodes(topology)}
