"""Build the local Redis image from Debian's packages, with no registry.

The root filesystem is assembled as a tar archive (binaries, the shared libraries
ldd names, a few busybox applets for the one-shot jobs, passwd/group for the
non-root user) and imported with `docker import`. Building the tar ourselves sets
ownership exactly: `/data` belongs to the Redis uid, so a fresh named volume
copies that ownership and a non-root Redis can write to it, which `COPY --chown`
in a `FROM scratch` image cannot do for directories.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import yaml

from infra.assets import IMAGE_MANIFEST
from infra.core.errors import EngineError

MANIFEST = IMAGE_MANIFEST
DEFAULT_IMAGE = "redis-infra/redis:7.0.15"
LOCAL_NAMESPACE = "redis-infra/"  # images only ever built here, never pulled
# On every image build_image makes: how its untagged leftovers are found.
BUILT_LABEL_KEY, BUILT_LABEL_VALUE = "redis-infra.source", "debian-packages"
REDIS_UID = 999
_EPOCH = 0  # fixed mtimes: the same packages give the same layer
_LDD_PATH = re.compile(r"(/[^\s)]+)")


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    image_id: str
    redis_version: str
    seconds: float
    size_bytes: int
    replaced: str | None = None  # what the tag named before, if the build moved it
    removed: tuple[str, ...] = ()  # untagged images of earlier builds nothing uses


def _package_version(package: str) -> str | None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.startswith("install ok installed"):
        return None
    return result.stdout.split()[-1]


def _shared_libraries(binary: Path) -> list[str]:
    output = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=False
    ).stdout
    if "not a dynamic executable" in output or "statically linked" in output:
        return []
    return _LDD_PATH.findall(output)


class _RootfsArchive:
    """A tar archive written entry by entry with explicit owners, modes and mtimes."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(  # noqa: SIM115 - closed by close(), which returns the bytes
            fileobj=self.buffer, mode="w", format=tarfile.GNU_FORMAT
        )
        self.seen: set[str] = set()

    def _info(self, path: str, kind: bytes, mode: int, owner: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.mtime = kind, mode, _EPOCH
        info.uid = info.gid = owner
        return info

    def directory(self, path: str, mode: int = 0o755, owner: int = 0) -> None:
        parts = Path(path).parts
        for depth in range(2, len(parts) + 1):  # parents first, each once
            current = str(Path(*parts[:depth]))
            if current not in self.seen:
                self.seen.add(current)
                last = depth == len(parts)
                info = self._info(
                    current, tarfile.DIRTYPE, mode if last else 0o755, owner if last else 0
                )
                self.tar.addfile(info)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.directory(str(Path(path).parent))
        info = self._info(path, tarfile.REGTYPE, mode, 0)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        self.seen.add(path)

    def link(self, path: str, target: str) -> None:
        self.directory(str(Path(path).parent))
        info = self._info(path, tarfile.SYMTYPE, 0o777, 0)
        info.linkname = target
        self.tar.addfile(info)
        self.seen.add(path)

    def close(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def build_rootfs(manifest_path: Path = MANIFEST) -> tuple[bytes, str]:
    """The image's root filesystem as a tar archive, and the packaged Redis version."""
    manifest = yaml.safe_load(manifest_path.read_text())
    versions = {package: _package_version(package) for package in manifest["packages"]}
    missing = [package for package, version in versions.items() if version is None]
    if missing:
        raise EngineError(
            f"image build needs the Debian packages {', '.join(missing)}, which are not installed. "
            f"Fix: apt-get install -y {' '.join(manifest['packages'])} (or run scripts/setup.sh)"
        )
    archive = _RootfsArchive()
    archive.directory("/tmp", mode=0o1777)  # noqa: S108 - the image's own /tmp
    archive.directory("/etc/redis-infra", mode=0o755)
    archive.directory("/data", mode=0o750, owner=REDIS_UID)
    libraries: set[str] = set()
    for target, source in sorted(manifest["binaries"].items()):
        source_path = Path(source)
        archive.file(target, source_path.read_bytes(), mode=0o755)
        libraries.update(_shared_libraries(source_path))
    for library in sorted(libraries):
        # Keep the path the loader asks for; store the file it resolves to.
        archive.file(library, Path(library).resolve().read_bytes(), mode=0o755)
    for link, target in sorted(manifest["links"].items()):
        archive.link(link, target)
    for applet in manifest["applets"]:
        archive.link(f"/bin/{applet}", "busybox")
    archive.file(
        "/etc/passwd",
        (
            "root:x:0:0:root:/root:/sbin/nologin\n"
            f"redis:x:{REDIS_UID}:{REDIS_UID}:Redis:/data:/sbin/nologin\n"
        ).encode(),
    )
    archive.file("/etc/group", f"root:x:0:\nredis:x:{REDIS_UID}:\n".encode())
    archive.file("/etc/nsswitch.conf", b"hosts: files dns\n")
    for target, source in sorted((manifest.get("files") or {}).items()):
        # Relative to the manifest, wherever it is installed, not to the current folder.
        archive.file(target, (manifest_path.parent / source).read_bytes())
    redis_version = (versions.get("redis-tools") or "").split(":")[-1]
    return archive.close(), redis_version


def build_image(
    client: docker.DockerClient, reference: str = DEFAULT_IMAGE, manifest: Path = MANIFEST
) -> BuiltImage:
    """Build and tag the image from this machine's Debian packages."""
    started = time.monotonic()
    rootfs, redis_version = build_rootfs(manifest)
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = reference, "latest"
    changes = [
        f"USER {REDIS_UID}:{REDIS_UID}",
        "WORKDIR /data",
        "ENV PATH=/usr/bin:/bin",
        "EXPOSE 6379",
        'CMD ["redis-server", "/etc/redis-infra/redis.conf"]',
        f'LABEL org.opencontainers.image.title="redis-infra Redis" '
        f'org.opencontainers.image.version="{redis_version}" '
        f'{BUILT_LABEL_KEY}="{BUILT_LABEL_VALUE}"',
    ]
    previous = _image_id(client, reference)
    result = client.api.import_image_from_data(
        rootfs, repository=repository, tag=tag, changes=changes
    )
    if "error" in str(result).lower():
        raise EngineError(f"docker import failed: {result}")
    image = client.images.get(reference)
    return BuiltImage(
        reference=reference,
        image_id=image.id or "",
        redis_version=redis_version,
        seconds=time.monotonic() - started,
        size_bytes=int(image.attrs.get("Size", 0)),
        replaced=previous if previous and previous != image.id else None,
        removed=_remove_unused_builds(client),
    )


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        return client.images.get(reference).id
    return None


def _remove_unused_builds(client: docker.DockerClient) -> tuple[str, ...]:
    """Each import is a new image (its creation time differs), ~20 MB: the one a build
    moved the tag from stays behind untagged, one per build. Removed here are the
    untagged images of our builds (by their label) that no container uses. One that a
    container still uses (a node made before the rebuild, even stopped) is kept and
    goes at the first build after its last `down`; one another tag names is not
    untagged, and stays."""
    ours = f"{BUILT_LABEL_KEY}={BUILT_LABEL_VALUE}"
    pruned = client.images.prune(filters={"dangling": True, "label": ours})
    deleted = pruned.get("ImagesDeleted") or ()
    return tuple(entry["Deleted"] for entry in deleted if "Deleted" in entry)


def ensure_image_available(client: docker.DockerClient, reference: str) -> str:
    """The id of `reference` on the engine (pulled if it can be); else stop with the fix."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        return str(client.images.get(reference).id)
    build_fix = "run `redis-infra image build`"
    if reference != DEFAULT_IMAGE:
        build_fix += f" --tag {reference}"
    if reference.startswith(LOCAL_NAMESPACE):
        raise EngineError(
            f"image {reference} is not on this Docker engine; it is built locally, never pulled. "
            f"Fix: {build_fix}"
        )
    try:
        pulled = client.images.pull(reference)
    except docker.errors.APIError as exc:
        raise EngineError(
            f"image {reference} is not on this Docker engine and cannot be pulled "
            f"({exc.explanation or exc}). Fix: {build_fix} and deploy with "
            f"--image {DEFAULT_IMAGE}, or pick a tag your registry serves"
        ) from exc
    return str(pulled.id)
