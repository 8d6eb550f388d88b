"""kubelet STAND-IN -- a TEST DOUBLE for the provisioner's lab. This is NOT the real kubelet.

The lab has no internet access, so real Kubernetes packages cannot be fetched. The lab's
local package repository ships it as /usr/bin/kubelet (package `kubelet`, a stand-in
built by provisioner_lab/debs.py; one zipapp built by provisioner_lab/zipapps.py). It imitates what kubeadm and the provisioner see of a
kubelet; it runs no containers and no pods.

  - flags like the real kubelet (unknown flags are fatal, as in the real one), --version;
  - refuses to start (exit 1, so systemd restarts it every RestartSec) while
    /var/lib/kubelet/config.yaml or the kubeconfig is missing -- the "crash loop" a real
    kubelet shows before `kubeadm init`/`kubeadm join`; also with swap on and failSwapOn,
    and when the container runtime socket is missing;
  - static pods: when /etc/kubernetes/manifests/kube-apiserver.yaml exists (written by
    `kubeadm init`), runs the stand-in Kubernetes API server of the k3s stand-in (its modules,
    imported from the sibling package standin.k3s) with the PKI named in that manifest, in kubeadm mode,
    on a replica of the stand-in etcd (k3s/etcd.py) whose member the etcd manifest names (a
    stacked control plane: the API answers only while a majority of the members is up);
  - registers its Node with the client certificate of its kubeconfig, honours
    --hostname-override, --node-ip, --node-labels, --register-with-taints, heartbeats.

Shared by the kubeadm stand-in (which imports these modules): kubeconfig reading and
writing, bootstrap tokens, JWS signatures of cluster-info, the CA public-key hash, a small
HTTPS client, and the kubeadm-mode API server additions (KubeadmApiApp).

Test-only knobs (never set these outside tests):
  K3S_STANDIN_ROOT=/dir             every absolute path read/written is prefixed by /dir
  K3S_STANDIN_HEARTBEAT_SECONDS=N   node heartbeat interval (default 10)
  K3S_STANDIN_NODE_GRACE_SECONDS=N  NotReady after N s without heartbeats (default 40)
  K3S_STANDIN_RETRY_SECONDS=N       retry delay (default 5)
"""
