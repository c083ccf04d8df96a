"""The ring ConfigMap: created once, then written with optimistic concurrency.

Who calls this: the reconciler, which reads the stored document through its
watch and writes the planner's result only when it changed. Two operator
replicas, or a leader that lost its Lease without knowing yet, can never
overwrite each other: every write carries the resourceVersion it was planned
from, and a stale one fails with kubeapi.Conflict (the round is simply redone
once the watch brings the newer document).

The encoding (compact, shared with the workers) is camstream/handoff_codec.py.
"""

from __future__ import annotations

from typing import Any

from camstream import kubeapi
from camstream.handoff import RingDoc
from camstream.handoff_codec import encode_doc

_LABELS = {"app.kubernetes.io/part-of": "camstream"}


class RingStore:
    def __init__(self, api: kubeapi.KubeApi, *, namespace: str, name: str) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def create(self, doc: RingDoc) -> None:
        """Create the ConfigMap holding `doc`; another replica having done it first is fine."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self._name, "namespace": self._namespace, "labels": _LABELS},
            "data": encode_doc(doc),
        }
        try:
            await self._api.create(kubeapi.configmap_path(self._namespace), body)
        except kubeapi.Conflict:
            pass

    async def write(self, doc: RingDoc, resource_version: str) -> str:
        """Replace the data if nobody wrote since `resource_version` (else Conflict).

        Returns the new resourceVersion.
        """
        # A merge patch carrying the resourceVersion: as safe as a PUT, and it
        # leaves the annotations (growth progress) alone.
        patch = {"metadata": {"resourceVersion": resource_version}, "data": encode_doc(doc)}
        written = await self._api.patch(kubeapi.configmap_path(self._namespace, self._name), patch)
        return str(written["metadata"]["resourceVersion"])

    async def annotate(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one annotation, e.g. the progress of a growth."""
        await self._api.patch(
            kubeapi.configmap_path(self._namespace, self._name),
            {"metadata": {"annotations": {key: value}}},
        )
