"""Mirror a workload's inbound TCP to a local process, and replay captured traffic.

Dependencies are one-way: ``traffic`` may import ``registry`` (its Kubernetes
adapter, ``registry.objects.Kube``, used by ``traffic.kube_exec`` for the capture
tap and the tcpdump exec stream), never ``splitter`` or ``pymirror``; nothing in
``registry`` imports ``traffic``. ``traffic`` never imports ``kubernetes`` itself.
"""
