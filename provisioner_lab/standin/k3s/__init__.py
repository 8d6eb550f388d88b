"""k3s STAND-IN -- a TEST DOUBLE for the provisioner's lab. This is NOT real k3s.

The lab machine has no internet access, so the real k3s binary cannot be fetched.
These modules imitate the parts of k3s that the provisioner depends on:

  k3s server   -- certificates, join token, kubeconfig, a small Kubernetes API
                  (discovery, Namespaces, Nodes, Secrets, Pods, Events, Deployments,
                  ReplicaSets, DaemonSets, PodDisruptionBudgets; list/watch/get/create/
                  update/patch/delete, scale and pods/eviction, Tables for kubectl),
                  a controller manager and scheduler for them (pods are simulated:
                  Running/Ready at once, no containers) and the node registration
                  endpoints used by agents.
  k3s agent    -- joins a server with the token, keeps a node password, registers
                  its Node and heartbeats.
  k3s kubectl  -- execs the real /usr/bin/kubectl (Debian's kubernetes-client).

It runs no containers (pods are bookkeeping only), no kubelet, no CNI. It must never be used outside tests.

Only the Python standard library is needed for `k3s --version` and `k3s kubectl`;
`server` and `agent` also use python3-cryptography and python3-yaml, imported lazily.

Test-only knobs (never set these outside tests):
  K3S_STANDIN_ROOT=/dir                every absolute path read/written is prefixed by /dir
  K3S_STANDIN_NODE_GRACE_SECONDS=N     node-monitor grace period (default 40)
  K3S_STANDIN_HEARTBEAT_SECONDS=N      node heartbeat interval (default 10)
  K3S_STANDIN_RETRY_SECONDS=N          agent retry delay (default 5)
  K3S_STANDIN_KUBECTL=/path            kubectl to exec instead of /usr/bin/kubectl
"""
