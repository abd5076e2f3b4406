"""Secret references: how the pure layers mention a secret without holding its value.

Rendered files and commands contain placeholders such as `<<secret:app_password>>`
or `<<secret-sha256:app_password>>` (an ACL password hash). Each backend resolves
them with its own store: the local backend with generated values kept beside the
connection file, the Pulumi backend inside an `apply` over secret config values.
"""

from __future__ import annotations

import hashlib
import re
import secrets as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infra.core.errors import Problem
from infra.core.model import FILE_ROLES

_PLACEHOLDER = re.compile(r"<<secret(?P<transform>-sha256)?:(?P<name>[a-z0-9_:.-]+)>>")


@dataclass(frozen=True)
class SecretRef:
    """A named secret; `placeholder` is what rendered text carries instead of the value."""

    name: str

    @property
    def placeholder(self) -> str:
        return f"<<secret:{self.name}>>"

    @property
    def sha256_placeholder(self) -> str:
        return f"<<secret-sha256:{self.name}>>"


def password_ref(role: str) -> SecretRef:
    """The password of the ACL user playing `role` (app, admin, health, replication...)."""
    return SecretRef(f"{role}_password")


TLS_KEY_PREFIX = "tls_key:"
# Certificates are public, but a backend may only know them once it has made them
# (the Pulumi stack's own CA): the plan then refers to them as it does to secrets.
TLS_CERT_PREFIX = "tls_cert:"
CA_CERT = "ca"


def tls_key_ref(node: str) -> SecretRef:
    return SecretRef(f"{TLS_KEY_PREFIX}{node}")


def tls_cert_ref(node: str) -> SecretRef:
    """A node's certificate, or the CA's (`CA_CERT`), where the plan refers to it."""
    return SecretRef(f"{TLS_CERT_PREFIX}{node}")


def is_tls_material(name: str) -> bool:
    return name.startswith((TLS_KEY_PREFIX, TLS_CERT_PREFIX))


def password_names(secret_names: Iterable[str]) -> list[str]:
    """The passwords a backend must provide for a plan referring to `secret_names`:
    every referenced one that is not a key or certificate, and those the credential files hold
    (even where no rendered file refers to them)."""
    passwords = {name for name in secret_names if not is_tls_material(name)}
    return sorted(passwords | {password_ref(role).name for role in FILE_ROLES})


def referenced(texts: Iterable[str]) -> set[str]:
    """Names of every secret the given texts refer to."""
    return {match.group("name") for text in texts for match in _PLACEHOLDER.finditer(text)}


def resolve(text: str, values: Mapping[str, str]) -> str:
    """`text` with every placeholder replaced by the secret (or its SHA-256 for ACL files)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in values:
            raise KeyError(f"secret '{name}' is referenced but was not provided")
        value = values[name]
        if match.group("transform"):
            return hashlib.sha256(value.encode()).hexdigest()
        return value

    return _PLACEHOLDER.sub(substitute, text)


# -- passwords ----------------------------------------------------------------------

MIN_PASSWORD_LENGTH = 16
# Letters-only forms: "Password123!" and "secure_password_here" (the seed's example) match.
_COMMON = {
    "password",
    "changeme",
    "redis",
    "secret",
    "admin",
    "letmein",
    "qwerty",
    "securepasswordhere",
    "default",
    "passw",
    "pass",
}


def generate_password() -> str:
    """256 bits from the OS's CSPRNG, URL-safe so it survives shells and URLs."""
    return _random.token_urlsafe(32)


def password_problem(field: str, value: str | None) -> Problem | None:
    """Why `value` is not acceptable as a Redis password, or None if it is."""
    fix = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not value:
        return Problem(field, "is missing", fix)
    if len(value) < MIN_PASSWORD_LENGTH:
        return Problem(
            field, f"is {len(value)} characters; at least {MIN_PASSWORD_LENGTH} are required", fix
        )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return Problem(field, "contains whitespace or control characters", fix)
    letters = "".join(ch for ch in value.lower() if ch.isalpha())
    if len(set(value)) < 6 or letters in _COMMON:
        return Problem(field, "is guessable (few distinct characters or a common word)", fix)
    return None
