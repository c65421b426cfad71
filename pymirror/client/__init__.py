"""The developer's side of a split: ``pymirror exec``.

``config`` reads and checks mirrord's config file locally, ``identity`` names the
session's owner, ``session`` creates, watches, renews and ends one SplitSession,
``child`` runs the local command, ``run`` ties them together, ``progress`` shows the
Pending phase. Kubernetes I/O goes through ``registry.objects.Kube`` only.
"""
