"""A rebuild moves the tag to a new image and leaves nothing behind: the untagged
images of earlier builds are removed once no container uses them; one that a
container uses (a node made before the rebuild) or that another tag names stays."""

from __future__ import annotations

import contextlib
import secrets

import docker
import docker.errors
import pytest

from infra.backends.image import BuiltImage, build_image
from tests.integration.conftest import PROBE_MANIFEST

pytestmark = pytest.mark.integration


def _exists(engine: docker.DockerClient, image_id: str) -> bool:
    try:
        engine.images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_a_rebuild_removes_what_earlier_builds_left_once_nothing_uses_it(
    engine: docker.DockerClient,
) -> None:
    suffix = secrets.token_hex(3)
    reference, kept_tag = f"redis-infra/probe:rebuild-{suffix}", f"it-image-keep:{suffix}"
    holder = f"it-image-holder-{suffix}"
    built: list[BuiltImage] = []

    def build() -> BuiltImage:
        built.append(build_image(engine, reference, PROBE_MANIFEST))
        return built[-1]

    try:
        first, second = build(), build()
        assert first.replaced is None
        assert second.image_id != first.image_id  # a new import, not the same image
        assert second.replaced == first.image_id and first.image_id in second.removed
        assert not _exists(engine, first.image_id)

        # Another tag names the current one: a rebuild leaves it to that tag.
        engine.images.get(second.image_id).tag(kept_tag)
        third = build()
        assert third.replaced == second.image_id and second.image_id not in third.removed
        assert engine.images.get(kept_tag).id == second.image_id

        # A container made from the current one (never started, like a stopped node).
        engine.api.create_container(third.image_id, command=["true"], name=holder)
        fourth = build()
        assert third.image_id not in fourth.removed and _exists(engine, third.image_id)
        # Once that container is gone, the next build removes it too.
        engine.api.remove_container(holder)
        fifth = build()
        assert {third.image_id, fourth.image_id} <= set(fifth.removed)
        assert not _exists(engine, third.image_id) and not _exists(engine, fourth.image_id)
        assert engine.images.get(reference).id == fifth.image_id
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine.api.remove_container(holder, force=True)
        for image in (reference, kept_tag, *(b.image_id for b in reversed(built))):
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                engine.images.remove(image, force=True)
