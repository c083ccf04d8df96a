"""The fleet benchmark's harness (issue #10): camstream's operator as a black box
against a real kube-apiserver + etcd, with thousands of streams and workers
that cost nothing.

Who uses it: bench/fleet_bench.py (the benchmark, per N = 1k, 10k, 100k) and
tests/cluster/test_fleet.py (a small configuration, with the issue's goals as
assertions). Both call `scenario.run(FleetConfig(...))` and read its result.

One job per module:

    config      FleetConfig: the knobs of one run, and the release's names
    plane       etcd + kube-apiserver with an audit log (tests/cluster/controlplane)
    chart       the Helm chart rendered: RBAC, accounts, worker StatefulSet, operator args
    accounts    ServiceAccount tokens (TokenRequest) and kubeconfigs
    api         a small async JSON client with many requests in flight
    members     fake worker pods (Running, Ready) and their heartbeat Leases
    streams     namespaces, key Secrets and the bulk create of CameraStreams
    predicates  what "assigned" means: legacy (label + status.worker) or labels
    tracker     when each stream first satisfied the predicate (watch + ring)
    operators   the real operator processes: start, SIGKILL, leader
    audit       the API server's audit log, counted by user, verb, resource, code
    sampler     RSS and CPU of the processes, sampled each second
    probes      one worker's LIST + WATCH, etcd size, a real worker process
    live        the live parts of a run (Run): set-up and teardown
    measure     a phase's window: waiting for a quiet operator, the figures inside
    phases      creation, steady, restart, leader change, growth, real worker
    scenario    the phases of one run, in order, on a fresh cluster
    report      the table printed per N
    goals       issue #10's goals, checked against a run's figures
"""
