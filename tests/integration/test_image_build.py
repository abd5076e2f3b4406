"""A rebuild moves the tag to a new image and leaves nothing behind: the image it
replaced is removed, unless a container still uses it (the engine would refuse anyway;
a deployment's nodes made before the build keep theirs)."""

from __future__ import annotations

import contextlib
import secrets

import docker
import docker.errors
import pytest

from infra.backends.image import build_image
from tests.integration.conftest import PROBE_MANIFEST

pytestmark = pytest.mark.integration


def _exists(engine: docker.DockerClient, image_id: str) -> bool:
    try:
        engine.images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_a_rebuild_removes_the_image_it_replaced_unless_a_container_uses_it(
    engine: docker.DockerClient,
) -> None:
    reference = f"redis-infra/probe:rebuild-{secrets.token_hex(3)}"
    holder = f"it-image-holder-{secrets.token_hex(3)}"
    built: list[str] = []
    try:
        first = build_image(engine, reference, PROBE_MANIFEST)
        built.append(first.image_id)
        assert first.replaced is None
        second = build_image(engine, reference, PROBE_MANIFEST)
        built.append(second.image_id)
        assert second.image_id != first.image_id  # a new import, not the same image
        assert second.replaced == first.image_id and second.replaced_removed
        assert not _exists(engine, first.image_id)
        # A container made from the current image (never started, as a stopped node).
        engine.api.create_container(second.image_id, command=["true"], name=holder)
        third = build_image(engine, reference, PROBE_MANIFEST)
        built.append(third.image_id)
        assert third.replaced == second.image_id and not third.replaced_removed
        assert _exists(engine, second.image_id)
        assert engine.images.get(reference).id == third.image_id
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine.api.remove_container(holder, force=True)
        for image_id in reversed(built):
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                engine.images.remove(image_id, force=True)
