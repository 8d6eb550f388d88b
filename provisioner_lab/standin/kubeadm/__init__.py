"""kubeadm STAND-IN -- a TEST DOUBLE for the provisioner's lab. This is NOT the real kubeadm.

Shipped by the lab's local package repository as /usr/bin/kubeadm (package `kubeadm`, a
stand-in). It honours the command lines, files and outputs the provisioner relies on:

  kubeadm version [-o short|json|yaml]
  kubeadm init --config FILE [--upload-certs] [--ignore-preflight-errors=...]   (or the common flags)
  kubeadm init phase upload-certs --upload-certs --config FILE
  kubeadm certs certificate-key
  kubeadm token create [--ttl D] [--print-join-command] [--description ...]
  kubeadm token list
  kubeadm join --config FILE [--ignore-preflight-errors=...]   (or host:port --token ... [--control-plane])
  kubeadm reset [-f]

`init` runs preflight checks like the real one (NumCPU, Mem, swap, sysctls, the CRI socket,
ports and files, kubelet version), writes the PKI under /etc/kubernetes/pki (ECDSA P-256), the
kubeconfigs (admin.conf, super-admin.conf, kubelet.conf, controller-manager.conf,
scheduler.conf), static pod manifests, the kubelet's config.yaml and kubeadm-flags.env,
restarts the kubelet (which runs the stand-in API server for the kube-apiserver manifest),
waits for the API, uploads kubeadm-config/kubelet-config, marks the control plane, creates a
bootstrap token and the cluster-info ConfigMap, and prints the join command.

`join` checks the token's JWS signature in cluster-info and the CA public-key pin like the
real one, refuses an unknown/expired token or an unpinned CA, obtains a node client
certificate with the bootstrap token (a stand-in endpoint instead of the CSR API), writes
kubelet.conf, pki/ca.crt, config.yaml and kubeadm-flags.env, restarts the kubelet and waits
for its Node. `join` with controlPlane joins a stacked control plane: the certificates from the
kubeadm-certs Secret (`init --upload-certs`, `certs certificate-key`), an etcd member of the
stand-in etcd (k3s/etcd.py) run by the kubelet's API server; `reset` removes the member. No
real etcd, no addons (CoreDNS, kube-proxy).

Test-only knobs: K3S_STANDIN_ROOT (path prefix, as for the k3s stand-in),
KUBEADM_STANDIN_WAIT_SECONDS (the 4m0s waits).
"""
