"""Standalone Secret lookup: environment, then a secrets folder, then manifests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from camstream.spec import SecretRef
from camstream_worker.errors import SecretError
from camstream_worker.secrets.static import StaticSecrets, env_name

MANIFEST = {
    "kind": "Secret",
    "metadata": {"name": "cam1", "namespace": "site"},
    "stringData": {"password": "from-manifest"},
    "data": {"username": "YWRtaW4="},
}


def get(secrets: StaticSecrets, key: str, namespace: str = "site") -> str:
    return asyncio.run(secrets.get(namespace, SecretRef("cam1", key)))


def test_manifest_values_string_and_base64() -> None:
    secrets = StaticSecrets([MANIFEST], environ={})
    assert get(secrets, "password") == "from-manifest"
    assert get(secrets, "username") == "admin"


def test_folder_overrides_manifest_and_environment_overrides_both(tmp_path: Path) -> None:
    (tmp_path / "site" / "cam1").mkdir(parents=True)
    (tmp_path / "site" / "cam1" / "password").write_text("from-file\n")
    secrets = StaticSecrets([MANIFEST], environ={}, secrets_dir=tmp_path)
    assert get(secrets, "password") == "from-file"
    variable = env_name("site", SecretRef("cam1", "password"))
    assert variable == "CAMSTREAM_SECRET_SITE_CAM1_PASSWORD"
    secrets = StaticSecrets([MANIFEST], environ={variable: "from-env"}, secrets_dir=tmp_path)
    assert get(secrets, "password") == "from-env"


def test_missing_key_names_the_secret_but_no_value() -> None:
    secrets = StaticSecrets([MANIFEST], environ={})
    with pytest.raises(SecretError) as caught:
        get(secrets, "token")
    message = str(caught.value)
    assert "site/cam1" in message and "'token'" in message
    assert "from-manifest" not in message
    with pytest.raises(SecretError):
        get(secrets, "password", namespace="other")  # Secrets are namespaced
