"""The developer's side of a split: ``pymirror exec``, ``status`` and ``session kill``.

``pymirror exec``: ``config`` reads and checks mirrord's config file locally,
``identity`` names the session's owner, ``session`` creates, watches, renews and ends one
SplitSession, ``child`` runs the local command, ``run`` ties them together, ``progress``
shows the Pending phase, ``main`` starts it from the options.

``pymirror status`` and ``session kill|kill-all``: ``admin`` starts them from the
options; ``listing`` reads sessions, splits and workers, ``overview`` turns them into the
status document (pure), ``status_view`` prints it (tables, JSON, YAML); ``killing``
annotates and deletes sessions; ``access`` turns RBAC refusals, missing CRDs and an
unreachable server into errors naming the fix. Kubernetes I/O goes through
``registry.objects.Kube`` only.
"""
