"""``pymirror demo``: the whole product on one machine (see :mod:`pymirror.demo.run`).

The sandbox (API server, SQS, Kafka, local runtime, operator), a deployed workload, two
developers' ``pymirror exec`` sessions running real local consumers, a live view of
where each message goes, the sessions ending one by one, and a verdict line.
"""
