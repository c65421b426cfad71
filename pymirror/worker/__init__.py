"""The split-worker runtime: one process for one original queue/topic, whatever its broker.

``pymirror worker sqs|kafka`` parse their flags and call the broker's process
module (:mod:`~pymirror.worker.sqs_process`, :mod:`~pymirror.worker.kafka_process`),
which connects, checks, builds the engine's worker and hands it to
:func:`~pymirror.worker.runtime.run_worker`. The runtime owns what both have in
common: signals (the first SIGTERM/SIGINT stops the worker gracefully, a second
forces the exit), the task group, the session source feeding ``set_routes``
(:mod:`~pymirror.worker.sources`), and the Prometheus exporter
(:mod:`~pymirror.worker.metrics`).
"""
