"""The image's root filesystem, as built from this machine's Debian packages."""

from __future__ import annotations

import io
import tarfile

from infra.backends.image import REDIS_UID, build_rootfs


def test_rootfs_runs_redis_as_non_root_with_a_writable_data_dir() -> None:
    data, version = build_rootfs()
    assert version.startswith("7.0.")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {member.name: member for member in archive.getmembers()}
        passwd = archive.extractfile("etc/passwd")
        assert passwd is not None
        assert f"redis:x:{REDIS_UID}:{REDIS_UID}:" in passwd.read().decode()
    data_dir = members["data"]
    # Owned by the Redis uid in the layer itself, so a fresh volume inherits it.
    assert data_dir.isdir() and (data_dir.uid, data_dir.gid) == (REDIS_UID, REDIS_UID)
    assert data_dir.mode == 0o750
    for binary in ("usr/bin/redis-server", "usr/bin/redis-cli", "bin/busybox"):
        assert members[binary].isfile() and members[binary].mode & 0o111, binary
        assert members[binary].uid == 0  # binaries stay root-owned: the Redis uid cannot alter them
    assert members["usr/bin/redis-sentinel"].linkname == "redis-server"
    assert members["bin/sh"].linkname == "busybox"
    assert any("libssl.so" in name for name in members)  # TLS is built in
    assert members["etc/redis-infra"].uid == 0  # the config mount point is not Redis-writable


def test_rootfs_is_reproducible() -> None:
    assert build_rootfs()[0] == build_rootfs()[0]
