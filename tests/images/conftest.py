"""Fixtures for tests/images: the operator and worker images, built and started.

Who uses this: the tests beside it. The images are the ones
scripts/build-images.sh builds with buildah from Dockerfile.operator and
Dockerfile.worker on a Debian bookworm base made with debootstrap. `scripts/
bootstrap.sh test` builds them before pytest starts; the session fixture here
runs the script again, which answers in seconds when nothing changed and
rebuilds an image whose inputs did (so `pytest tests/images` alone works too).

An image runs with `buildah run --isolation chroot` (there is no Docker
engine, and podman's OCI runtime cannot start containers in this sandbox):
the image's filesystem, environment and configured user, in the host's
network and process namespaces. A server inside therefore listens on the
host's loopback, and its process is visible (and signalled) from here.
Nothing else uses these images' filesystems: the cluster tests run pods as
processes of the test venv.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGES = REPO / "scripts" / "build-images.sh"
BUILDAH = REPO / "scripts" / "buildah.sh"


def buildah(*args: str, timeout: float = 120) -> str:
    """scripts/buildah.sh (the project's image storage); stdout, or the failure."""
    result = subprocess.run(
        [str(BUILDAH), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass(frozen=True)
class Container:
    """A working container of an image; commands run in it with chroot isolation."""

    name: str

    def argv(self, command: Sequence[str], volumes: Sequence[str] = ()) -> list[str]:
        mounts = [arg for volume in volumes for arg in ("--volume", volume)]
        return [str(BUILDAH), "run", "--isolation", "chroot", *mounts, self.name, "--", *command]

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )


@dataclass(frozen=True)
class Image:
    component: str
    ref: str

    def inspect(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", self.ref))
        return data

    def config(self) -> dict[str, Any]:
        """The OCI image config: User, Entrypoint, Cmd, Env, ..."""
        config: dict[str, Any] = self.inspect()["OCIv1"]["config"]
        return config

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD: what a container runtime starts with no arguments."""
        config = self.config()
        return [*config.get("Entrypoint", []), *config.get("Cmd", [])]

    def layer_sizes(self) -> list[int]:
        """Bytes of each layer as stored (uncompressed tar), base layers first."""
        manifest = json.loads(self.inspect()["Manifest"])
        return [int(layer["size"]) for layer in manifest["layers"]]

    @contextmanager
    def container(self) -> Iterator[Container]:
        name = buildah("from", "--pull=never", self.ref).strip()
        try:
            yield Container(name)
        finally:
            buildah("rm", name)


@pytest.fixture(scope="session")
def images() -> dict[str, Image]:
    if os.geteuid() != 0:
        pytest.fail("tests/images build and run images as root (buildah --isolation chroot)")
    result = subprocess.run(
        [str(BUILD_IMAGES)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert result.returncode == 0, f"scripts/build-images.sh failed:\n{result.stderr[-5000:]}"
    refs = dict(line.split("=", 1) for line in result.stdout.split())
    return {component: Image(component, ref) for component, ref in refs.items()}


@pytest.fixture(scope="session")
def operator_image(images: dict[str, Image]) -> Image:
    return images["operator"]


@pytest.fixture(scope="session")
def worker_image(images: dict[str, Image]) -> Image:
    return images["worker"]
