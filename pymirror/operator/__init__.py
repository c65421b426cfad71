"""The operator: drives SplitSessions from Pending to Ended (docs/how-it-works.md).

Modules, top to bottom: ``controller`` (the watch loops and `pymirror operator`'s
process), ``sessions`` / ``splits`` (the level-triggered reconcilers), ``planning``
(validation and what a session needs, before anything is created),
``worker_deployments`` (one worker Deployment per QueueSplit), ``settings``.
Kubernetes I/O goes through ``registry``; queue/topic I/O through ``splitter``.
"""
