"""Both images as built: the user they run as and how big they are.

The sizes are of the images built here, on the local Debian base
(debootstrap minbase + python3.11, 160 MB), not on python:3.11-slim-bookworm,
which real users build from and which cannot be pulled here. Measured
2026-12-03: operator 349 MB (189 MB of it camstream's venv, 126 MB of that the
`kubernetes` client), worker 456 MB (296 MB of venv, PyAV's wheel with its
FFmpeg included). The bounds leave about 15 % headroom; a dependency that
grows an image past them fails here rather than in a user's pull.
"""

from __future__ import annotations

import pytest

from tests.deploy.test_dockerfiles import DOCKERFILES, parse_dockerfile

from .conftest import Image

pytestmark = [pytest.mark.images, pytest.mark.timeout(300)]

MB = 1000 * 1000  # as buildah reports sizes
# component: (whole image, layers above the base), in MB
SIZE_BOUNDS = {"operator": (400, 220), "worker": (520, 340)}


def dockerfile_user(component: str) -> str:
    (user,) = parse_dockerfile(DOCKERFILES[component])[-1].all("USER")
    return user


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_runs_as_the_non_root_user_the_dockerfile_names(
    images: dict[str, Image], component: str
) -> None:
    image = images[component]
    user = dockerfile_user(component)
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    assert image.config()["User"] == user
    with image.container() as box:
        # No --user: what the image's configuration makes every process.
        result = box.run("id", "-u")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == uid
        result = box.run("id", "-g")
        assert result.stdout.strip() == (gid or uid)


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_image_size_is_within_its_bound(images: dict[str, Image], component: str) -> None:
    layers = images[component].layer_sizes()
    total = sum(layers) / MB
    # Dockerfile's final stage: the base's one layer (debootstrap) + RUN + COPY.
    own = sum(layers[1:]) / MB
    bound_total, bound_own = SIZE_BOUNDS[component]
    print(
        f"\n{component} image {images[component].ref}: {total:.0f} MB"
        f" ({own:.0f} MB above the base); bounds {bound_total} / {bound_own} MB"
    )
    assert total <= bound_total
    assert own <= bound_own
