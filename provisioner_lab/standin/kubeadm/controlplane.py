"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm join --control-plane` (after discovery): the preflight conditions for another control
plane, the shared certificates downloaded from the kubeadm-certs Secret, this control plane's
own certificates and kubeconfigs, a new member of the stand-in etcd (added through a running
member on its peer port, as kubeadm adds one with the etcd client), the static pod manifests
(the kubelet then serves the API here, from its own etcd replica), the kubelet, and the
control-plane label and taint. `kubeadm reset` on a control plane removes its etcd member.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/phases/join/preflight.go
(notReadyToJoinControlPlaneTemp, checkIfReadyForAdditionalControlPlane),
cmd/kubeadm/app/cmd/phases/join/controlplaneprepare.go, controlplanejoin.go,
cmd/kubeadm/app/phases/etcd/local.go (CreateStackedEtcdStaticPodManifestFile: member add, then
the manifest with initial-cluster-state existing), cmd/kubeadm/app/cmd/phases/reset/removeetcdmember.go
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.parse

from ..k3s.certs import url_host
from ..k3s.etcd import PeerClient
from ..k3s.util import hp, read_file
from ..kubelet.apiserver import etcd_auth, manifest_command
from ..kubelet.client import ApiClient
from ..kubelet.kubeconfig import Kubeconfig
from ..kubelet.paths import ETCD_MANIFEST, ETCD_MEMBER_DIR
from .base import ADMIN_CONF, CONTROL_PLANE_LABEL, PKI, KubeadmError, say, wait_seconds
from .cluster import admin_client, wait_for
from .cmd_init import (
    control_plane_certs,
    mark_control_plane,
    restart_kubelet,
    write_kubeconfigs,
    write_kubelet_files,
    write_node_credentials,
)
from .config import InitConfig, join_hostport
from .copycerts import SHARED, download_certs
from .manifests import peer_port, peer_url, write_manifests
from .pki import Certs

NOT_READY = """
One or more conditions for hosting a new control plane instance is not satisfied.

%s

Please ensure that:
* The cluster has a stable controlPlaneEndpoint address.
* The certificates that must be shared among control plane instances are provided.
"""


def check_ready_for_control_plane(cluster_doc, has_key):
    """kubeadm refuses a control-plane join into a cluster without a controlPlaneEndpoint, and
    without a certificate key when the shared certificates are not on disk already."""
    if not cluster_doc.get("controlPlaneEndpoint"):
        raise KubeadmError(
            NOT_READY % "unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address",
            "preflight",
        )
    if has_key:
        return
    missing = [
        "failure loading %s: couldn't load the file %s/%s: open %s/%s: no such file or directory" % (name, PKI, rel, PKI, rel)
        for name, rel in SHARED.items()
        if not name.startswith("etcd") and not os.path.exists(hp(PKI + "/" + rel))
    ]
    if missing:
        raise KubeadmError(NOT_READY % ("[" + ", ".join(missing) + "]"), "preflight")


def control_plane_config(cfg, cluster_doc, cluster_version):
    """This control plane's InitConfiguration-like view: its registration and API endpoint
    from the JoinConfiguration, everything else from the cluster's ClusterConfiguration."""
    init = {"nodeRegistration": cfg.node_registration, "localAPIEndpoint": cfg.local_api_endpoint}
    docs = {"InitConfiguration": (cfg.version, init), "ClusterConfiguration": (cluster_version, cluster_doc)}
    return InitConfig(docs, {"ignore-preflight-errors": ",".join(cfg.reg.ignore)})


def add_etcd_member(icfg, auth, ctx):
    """Add this control plane as an etcd member through a running one (at the other
    control-plane nodes' InternalIPs from the API, then at the controlPlaneEndpoint's host):
    the member list to start with."""
    client, _ = admin_client()
    status, nodes = client.call("GET", "/api/v1/nodes?labelSelector=" + urllib.parse.quote(CONTROL_PLANE_LABEL))
    if status != 200:
        raise KubeadmError(
            "error creating local etcd static pod manifest file: cannot list the control-plane nodes: %d" % status,
            "control-plane-join/etcd",
        )
    peers = []
    for node in nodes.get("items") or []:
        if node["metadata"]["name"] == icfg.reg.name:
            continue
        for addr in (node.get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP":
                peers.append("https://%s:%d" % (url_host(addr["address"]), peer_port()))
    endpoint_host = urllib.parse.urlsplit("https://" + icfg.endpoint).hostname
    peers.append("https://%s:%d" % (url_host(endpoint_host), peer_port()))  # the endpoint, when it is a control plane's own address
    peers = list(dict.fromkeys(p for p in peers if p != peer_url(icfg)))
    if not peers:
        raise KubeadmError("error creating local etcd static pod manifest file: no etcd member found to join", "control-plane-join/etcd")
    mine = peer_url(icfg)
    last = None
    deadline = time.monotonic() + min(40.0, wait_seconds())
    while time.monotonic() < deadline:
        for url in peers:
            try:
                code, body = PeerClient(url, ctx, auth).call("POST", "/members", {"name": icfg.reg.name, "peerURL": mine}, timeout=10)
            except (OSError, ValueError) as e:
                last = "%s: %s" % (url, e)
                continue
            if code == 200 and isinstance(body, dict) and body.get("members"):
                say("[etcd] Announced new etcd member joining to the existing etcd cluster")
                return dict(body["members"])
            last = "%s: %s" % (url, (body or {}).get("message", code) if isinstance(body, dict) else code)
        time.sleep(1.0)
    raise KubeadmError(
        "error creating local etcd static pod manifest file: etcdserver: member add failed: %s" % last, "control-plane-join/etcd"
    )


def join_control_plane(cfg, boot, ca_pem, cluster_doc, kubelet_cfg, cluster_version):
    """Everything a control-plane join does after discovery and reading kubeadm-config."""
    check_ready_for_control_plane(cluster_doc, bool(cfg.certificate_key))
    say("[preflight] Running pre-flight checks before initializing the new control plane instance")
    if cfg.certificate_key:
        download_certs(boot, cfg.certificate_key)
    icfg = control_plane_config(cfg, cluster_doc, cluster_version)
    say('[certs] Using certificateDir folder "%s"' % PKI)
    certs = Certs(hp(PKI))
    ca = certs.ca("ca", "kubernetes")
    control_plane_certs(certs, icfg, ca)
    say('[certs] Valid certificates and keys now exist in "%s"' % PKI)
    endpoint_url = "https://" + icfg.endpoint
    local_url = "https://" + join_hostport(icfg.advertise, icfg.bind_port)
    write_kubeconfigs(ca, ca_pem, icfg.cluster_name, endpoint_url, local_url, super_admin=False)
    write_node_credentials(ca, ca_pem, icfg.reg.name, endpoint_url, icfg.cluster_name)
    etcd_ca_key = read_file(hp(PKI + "/etcd/ca.key"))
    etcd_ctx = ssl.create_default_context(cadata=read_file(hp(PKI + "/etcd/ca.crt")).decode())
    members = add_etcd_member(icfg, etcd_auth(etcd_ca_key), etcd_ctx)
    say('[etcd] Creating static Pod manifest for "etcd"')
    write_manifests(icfg, members)
    write_kubelet_files(kubelet_cfg, icfg.reg)
    restart_kubelet()
    say("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s")
    local = ApiClient.from_kubeconfig(Kubeconfig(ADMIN_CONF))
    local.host, local.port = icfg.advertise, icfg.bind_port

    def readyz():
        status, body = local.call("GET", "/readyz", raw=True)
        return status == 200 and body.strip() == b"ok"

    wait_for("the API server on this control plane (%s) to be healthy" % local_url, readyz, wait_seconds())
    client, _ = admin_client()
    mark_control_plane(client, icfg.reg)
    say()
    say("This node has joined the cluster and a new control plane instance was created:")
    say()
    say("* The certificates shared by the control planes were downloaded from the kubeadm-certs Secret.")
    say("* An etcd member was added for this node and the API server here serves from its replica.")
    say("* The control-plane label and taint were applied to the node.")
    say()
    say("To start administering your cluster from this node, you need to run the following as a regular user:")
    say()
    say("\tmkdir -p $HOME/.kube")
    say("\tsudo cp -i %s $HOME/.kube/config" % ADMIN_CONF)
    say("\tsudo chown $(id -u):$(id -g) $HOME/.kube/config")
    say()
    say("Run 'kubectl get nodes' to see this node join the cluster.")


def remove_etcd_member():
    """`kubeadm reset` on a control plane: its etcd member leaves the cluster (asked of the
    leader, found through this member or the others of the saved member list). A member that
    cannot be removed (no quorum) is reported, as kubeadm does, and the reset goes on."""
    flags, _ = manifest_command(ETCD_MANIFEST)
    if not flags or not flags.get("name"):
        return
    name = flags["name"]
    ca_file = hp(flags.get("peer-trusted-ca-file") or PKI + "/etcd/ca.crt")
    ca_pem, ca_key = read_file(ca_file), read_file(os.path.join(os.path.dirname(ca_file), "ca.key"))
    if not ca_pem or not ca_key:
        return
    say("[reset] Removing etcd member %s from the etcd cluster" % name)
    auth, ctx = etcd_auth(ca_key), ssl.create_default_context(cadata=ca_pem.decode())
    saved = read_file(hp(ETCD_MEMBER_DIR + "/member.json"))
    members = (json.loads(saved).get("members") if saved else None) or {name: flags.get("initial-advertise-peer-urls", "")}
    urls = [flags.get("initial-advertise-peer-urls", "")] + [u for n, u in sorted(members.items()) if n != name]
    for url in [u for u in urls if u]:
        try:
            code, status = PeerClient(url, ctx, auth).call("GET", "/status", timeout=3)
            if code != 200 or not status.get("leader"):
                continue
            leader_url = (status.get("members") or {}).get(status["leader"])
            code, body = PeerClient(leader_url, ctx, auth).call("DELETE", "/members/" + urllib.parse.quote(name), timeout=5)
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if code == 200:
            say("[reset] Removed etcd member %s; members: %s" % (name, ", ".join(sorted((body or {}).get("members") or {}))))
            return
    say(
        "W[reset] Failed to remove etcd member %s: no member with quorum answered; remove it by hand on a "
        "remaining control plane (stand-in: the member stays in the list)" % name
    )
