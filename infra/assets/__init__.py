"""Where the files the code reads live, in a checkout and in an installed wheel alike.

The topology defaults (`topologies/`), the templates, function library and image
manifest (`redis/`) stay at the repository's top level, where a reader looks for
them; this package links to them (`infra/assets/topologies -> ../../topologies`),
so the wheel carries them inside `infra` and `importlib.resources` finds them
wherever the package is installed. The SLO files ship inside `loadtests`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# Installed wheels are unpacked directories, so a resource is a real path; the
# consumers (Jinja's loader, `open`) want one.
ROOT = Path(str(files(__name__)))
TOPOLOGIES_DIR = ROOT / "topologies"
TEMPLATES_DIR = ROOT / "redis" / "templates"
FUNCTIONS_LIBRARY = ROOT / "redis" / "functions" / "ratelimit.lua"
IMAGE_MANIFEST = ROOT / "redis" / "image" / "rootfs.yaml"
JOBS_DIR = ROOT / "redis" / "jobs"  # the jobs' shell functions
LOADTESTS_DIR = Path(str(files("loadtests")))
LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"


def shipped_slo_file(argument: Path) -> Path:
    """An `--slo` argument as a file: a path that exists, else the SLO file of that name
    shipped with the package (`slo.yaml`, `slo-ci.yaml`, or `loadtests/slo.yaml` as
    the README writes it from a checkout)."""
    if argument.exists() or argument.parent not in (Path(), Path("loadtests")):
        return argument  # a path elsewhere is the user's: a typo must not pick ours
    shipped = LOADTESTS_DIR / argument.name
    return shipped if shipped.is_file() and argument.suffix == ".yaml" else argument
