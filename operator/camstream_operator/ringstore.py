"""The ring ConfigMap: read and written with optimistic concurrency.

Who calls this: the reconciler, which reads the stored document at the start
of each round and writes the planner's result only when it changed. Two
operator replicas, or a leader that lost its Lease without knowing yet, can
never overwrite each other: every write carries the resourceVersion it read,
and a stale one fails with kubeapi.Conflict (the round is simply redone).

The encoding (compact, shared with the workers) is camstream/handoff_codec.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from camstream import handoff, kubeapi
from camstream.handoff import RingDoc
from camstream.handoff_codec import decode_doc, encode_doc


@dataclass(frozen=True, slots=True)
class Stored:
    doc: RingDoc
    resource_version: str


class RingStore:
    def __init__(self, api: kubeapi.KubeApi, *, namespace: str, name: str, partitions: int):
        self._api = api
        self._namespace = namespace
        self._name = name
        self._partitions = partitions

    @property
    def name(self) -> str:
        return self._name

    async def read(self) -> Stored:
        """The stored document; an empty ring is created on first use."""
        path = kubeapi.configmap_path(self._namespace, self._name)
        try:
            body = await self._api.get(path)
        except kubeapi.NotFound:
            body = await self._create()
        doc = decode_doc(body.get("data") or {})
        return Stored(doc=doc, resource_version=body["metadata"]["resourceVersion"])

    async def write(self, doc: RingDoc, resource_version: str) -> Stored:
        """Replace the data if nobody wrote since `resource_version` (else Conflict)."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "resourceVersion": resource_version,
                "labels": {"app.kubernetes.io/part-of": "camstream"},
            },
            "data": encode_doc(doc),
        }
        written = await self._api.replace(kubeapi.configmap_path(self._namespace, self._name), body)
        return Stored(doc=doc, resource_version=written["metadata"]["resourceVersion"])

    async def _create(self) -> dict:  # type: ignore[type-arg]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "labels": {"app.kubernetes.io/part-of": "camstream"},
            },
            "data": encode_doc(handoff.empty_doc(self._partitions)),
        }
        try:
            return await self._api.create(kubeapi.configmap_path(self._namespace), body)
        except kubeapi.Conflict:  # another replica created it first
            return await self._api.get(kubeapi.configmap_path(self._namespace, self._name))
