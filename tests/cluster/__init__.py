"""The local Kubernetes control plane test bed and the cluster test suite.

A package so its helper modules import each other relatively, both under
pytest and as `python -m tests.cluster.controlplane up` for developers.
"""
