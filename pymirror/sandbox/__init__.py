"""The sandbox: a local stand-in cluster for pymirror, and its local runtime.

* ``control``: ``pymirror sandbox up|down`` (etcd + apiextensions-apiserver, moto, noida-db
  and the local runtime as background process groups);
* ``state``: the state directory (state.json, lock, ``env`` lines, cleaning);
* ``status``: ``pymirror sandbox status`` (each component probed);
* ``spawning``: one component started in its own group and waited for;
* ``provisioning``: the API server's binaries (built once) and the CRDs installed;
* ``probes``: free ports and the moto/Kafka readiness probes;
* ``progress``: the ``sandbox: [1.2s] ...`` lines;
* ``runtime``: the local runtime, a stand-in for the kubelet and the Deployment
  controller (one ``WorkloadController`` per Deployment/StatefulSet/Rollout);
* ``pods``: one pod as local processes (the kubelet's part: restarts, readiness, stop);
* ``workloads``: what the runtime reads from a workload object (pure);
* ``groups``: process groups identified across processes, stopped and reaped;
* ``kube_server``: certificates, kubeconfig, argv and probes of the API server pair;
* ``assets``: CRDs, stand-in kinds, binaries and the install script, from a wheel or
  a checkout.

See docs/sandbox.md.
"""
