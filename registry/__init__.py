"""The registry kinds (mirrord CRDs) and Kubernetes access.

* ``registry.models`` - pydantic models of MirrordWorkloadQueueRegistry,
  MirrordKafkaTopicsConsumer and MirrordKafkaClientConfig (crds/*.yaml);
* ``registry.session_models`` - pydantic models of SplitSession and QueueSplit;
* ``registry.kafka_client_configs`` - resolving a client config chain (pure core + async loader);
* ``registry.workloads`` - workload kinds (API group per kind configurable) and pod templates;
* ``registry.config_sources`` - ConfigMaps and Secrets behind one interface;
* ``registry.env_refs`` - what to look for in a pod template and what was found (pure data);
* ``registry.container_envs`` - a container's effective environment (env, envFrom; pure);
* ``registry.env_reading`` - queue names, topics and group ids from pod templates (pure core);
* ``registry.workload_queues`` - the same, read from a registry object's workload (async);
* ``registry.env_patch`` - pointing a workload's env vars elsewhere (one guarded JSON
  patch, originals kept in the ``pymirror.dev/original-env`` annotation), the exact
  restore, and waiting for the rollout;
* ``registry.objects`` - the async API: ``Kube`` (one cluster, a bounded thread
  pool) and ``Objects`` (get, list, watch, create, apply, patches, delete,
  optimistic ``update``, finalizers) of one resource in one namespace;
* ``registry.watching`` - the resuming, re-listing ``Watch``;
* ``registry.kube`` - the synchronous seam, the only module importing ``kubernetes``;
  vendor exceptions become ``registry.errors`` there;
* ``registry.resources`` / ``registry.api_status`` - resource paths, Status bodies (pure);
* ``registry.errors`` - ``RegistryError`` and its tree.

``registry`` imports neither ``splitter``, ``traffic`` nor ``pymirror``; ``traffic``
uses it for the capture tap (``traffic.kube_exec``), ``pymirror.operator`` and the
split workers' ``QueueSplit`` source (``pymirror.worker.split_source``) for everything
they read and write in the cluster.
"""
