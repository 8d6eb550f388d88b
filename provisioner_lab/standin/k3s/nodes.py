"""TEST DOUBLE (k3s stand-in, not the real k3s).

Nodes: registration, node passwords (stored hashed as Secrets), labels/taints, heartbeats and
Leases, the readiness monitor (NotReady and unreachable taints after the grace period).

Upstream: k3s-io/k3s pkg/nodepassword/nodepassword.go; kubernetes/kubernetes
pkg/controller/nodelifecycle/node_lifecycle_controller.go, pkg/kubelet/kubelet_node_status.go
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import time
import uuid

from .store import (
    DAEMONSET,
    LEASE,
    NAME_RE,
    NODE,
    SECRET,
    UNREACHABLE_TAINT,
    ApiError,
    bad_request,
    not_found,
    valid_label_key,
    valid_label_value,
)
from .util import NODE_PASSWORD_REJECTED, Fatal, go_arch, hostname, log, machine_id, mem_total_ki, os_image, read_host_text, ts, utcnow
from .version import STANDIN_VERSION


def hash_password(password, salt=None):
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 20000).hex()
    return "$pbkdf2-sha256$%s$%s" % (salt, digest)


def verify_password(password, stored):
    try:
        _, algo, salt, _digest = stored.split("$", 3)
    except ValueError:
        return False
    return algo == "pbkdf2-sha256" and hmac.compare_digest(hash_password(password, salt), stored)


def parse_node_labels(items):
    labels = {}
    for item in items or []:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise Fatal("invalid node-label %r: expected key=value" % part)
            k, v = part.split("=", 1)
            if not valid_label_key(k) or not valid_label_value(v):
                raise Fatal("invalid node-label %r" % part)
            labels[k] = v
    return labels


def parse_node_taints(items):
    taints = []
    for item in items or []:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if ":" not in part:
                raise Fatal("invalid node-taint %r: expected key[=value]:Effect" % part)
            kv, effect = part.rsplit(":", 1)
            if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise Fatal("invalid node-taint %r: unknown effect %r" % (part, effect))
            k, v = (kv.split("=", 1) + [""])[:2] if "=" in kv else (kv, "")
            if not valid_label_key(k):
                raise Fatal("invalid node-taint key %r" % k)
            t = {"key": k, "effect": effect}
            if v:
                t["value"] = v
            taints.append(t)
    return taints


def local_node_info(version=STANDIN_VERSION):
    mid = machine_id()
    boot = read_host_text("/proc/sys/kernel/random/boot_id").strip()
    return {
        "architecture": go_arch(),
        "bootID": boot,
        "containerRuntimeVersion": "containerd://stand-in",
        "kernelVersion": os.uname().release,
        "kubeProxyVersion": version,
        "kubeletVersion": version,
        "machineID": mid,
        "operatingSystem": "linux",
        "osImage": os_image(),
        "systemUUID": str(uuid.UUID(mid)) if re.fullmatch(r"[0-9a-f]{32}", mid) else mid,
    }


def local_capacity():
    cpu = str(os.cpu_count() or 1)
    try:
        st = os.statvfs("/")
        disk = "%dKi" % (st.f_blocks * st.f_frsize // 1024)
    except OSError:
        disk = "0Ki"
    return {"cpu": cpu, "memory": mem_total_ki(), "pods": "110", "ephemeral-storage": disk, "hugepages-2Mi": "0"}


def node_registration(node_name, role, cfg, node_args, internal_ip, version=STANDIN_VERSION):
    """The body a node (server or agent) sends to register/heartbeat."""
    ips = [x.strip() for v in cfg.get("node-ip") or [] for x in v.split(",") if x.strip()]
    ext = [x.strip() for v in cfg.get("node-external-ip") or [] for x in v.split(",") if x.strip()]
    return {
        "nodeName": node_name,
        "role": role,
        "hostname": hostname(),
        "internalIPs": ips or [internal_ip],
        "externalIPs": ext,
        "labels": parse_node_labels(cfg.get("node-label")),
        "taints": parse_node_taints(cfg.get("node-taint")),
        "nodeInfo": local_node_info(version),
        "capacity": local_capacity(),
        "nodeArgs": node_args,
        "etcd": bool(cfg.get("cluster-init")),
    }


NOT_READY_TAINT = "node.kubernetes.io/not-ready"


#: k3s pkg/etcd: the etcd member name and peer address of a server's Node
ETCD_NAME_ANNOTATION = "etcd.k3s.cattle.io/node-name"
ETCD_ADDRESS_ANNOTATION = "etcd.k3s.cattle.io/node-address"


#: Ready=False message of a real kubelet whose CNI plugin has written no config yet.
NETWORK_NOT_READY = (
    "container runtime network not ready: NetworkReady=false "
    "reason:NetworkPluginNotReady message:Network plugin returns error: "
    "cni plugin not initialized"
)


#: kubeadm mode: nodes count as networked once this DaemonSet (namespace, name) exists.
CNI_DAEMONSET = ("kube-flannel", "kube-flannel-ds")


class Cluster:
    """Node bookkeeping on the server that owns the store.

    mode "k3s": k3s labels/annotations, node passwords, Ready while heartbeats are fresh.
    mode "kubeadm" (used by the kubelet stand-in): plain kubelet labels, no node passwords,
    and Ready only while heartbeats are fresh AND the CNI DaemonSet (CNI_DAEMONSET) exists;
    otherwise Ready=False/KubeletNotReady with the not-ready taint, as a real kubelet without
    a CNI config reports it."""

    def __init__(self, store, grace, mode="k3s", pod_network="10.42.0.0/16"):
        self.store = store
        self.grace = grace
        self.mode = mode
        self.pod_network = pod_network
        self.last_seen = {}
        self.etcd = False
        store.delete_hooks.append(self._on_delete)

    def network_ready(self):
        if self.mode != "kubeadm":
            return True
        return self.store.get(DAEMONSET, *CNI_DAEMONSET) is not None

    def _on_delete(self, kind, obj):
        if kind is NODE:
            name = obj["metadata"]["name"]
            self.last_seen.pop(name, None)
            try:
                self.store.delete(LEASE, "kube-node-lease", name)
            except ApiError:
                pass
            try:
                self.store.delete(SECRET, "kube-system", name + ".node-password.k3s")
                log("info", "Removed node password secret for deleted node %s" % name)
            except ApiError:
                pass

    def check_password(self, name, password):
        """Raises ApiError(403) when another host already claimed this node name."""
        sname = name + ".node-password.k3s"
        with self.store.lock:
            sec = self.store.get(SECRET, "kube-system", sname)
            if sec is None:
                self.store.create(
                    SECRET,
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "type": "k3s.cattle.io/node-password",
                        "immutable": True,
                        "metadata": {"name": sname, "namespace": "kube-system"},
                        "data": {"hash": base64.b64encode(hash_password(password).encode()).decode()},
                    },
                )
                return
            stored = base64.b64decode((sec.get("data") or {}).get("hash", "")).decode(errors="replace")
            if not verify_password(password, stored):
                raise ApiError(403, "Forbidden", NODE_PASSWORD_REJECTED)

    def register(self, reg, password, create=True):
        name = reg.get("nodeName", "")
        if not name or not NAME_RE.match(name) or len(name) > 63:
            raise bad_request("invalid node name %r" % name)
        with self.store.lock:
            node = self.store.get(NODE, None, name)
            if node is None and not create:
                raise not_found(NODE, name)
            if password is not None:
                self.check_password(name, password)
            if node is None:
                node = self._new_node(reg)
                self._update_status(node, reg)
                node = self.store.create(NODE, node)
                log("info", "Registered node %s (%s)" % (name, reg.get("role", "agent")))
            else:
                self._update_status(node, reg)
                node = self.store.update(NODE, node, expect_rv="", subresource="all")
            self.last_seen[name] = time.monotonic()
            self._renew_lease(node)
            return node

    def _lease_age(self, name):
        """Seconds since the node's Lease was renewed (None: no Lease)."""
        lease = self.store.get(LEASE, "kube-node-lease", name)
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        if not renew:
            return None
        try:
            when = datetime.datetime.strptime(renew, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return None
        return max(0.0, (utcnow() - when).total_seconds())

    def _renew_lease(self, node):
        name = node["metadata"]["name"]
        now = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = self.store.get(LEASE, "kube-node-lease", name)
        if lease is None:
            self.store.create(
                LEASE,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}],
                    },
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": int(self.grace), "renewTime": now},
                },
            )
        else:
            lease["spec"]["renewTime"] = now
            lease["spec"]["holderIdentity"] = name
            self.store.update(LEASE, lease, expect_rv="")

    def _pod_cidr(self):
        """The first /24 of the pod network no node has (what the node IPAM controller does)."""
        used = {(n.get("spec") or {}).get("podCIDR", "") for n in self.store.list(NODE)[0]}
        try:
            net = ipaddress.ip_network(self.pod_network, strict=False)
        except ValueError:
            net = ipaddress.ip_network("10.42.0.0/16")
        new_prefix = max(24, net.prefixlen) if net.version == 4 else max(64, net.prefixlen)
        for sub in net.subnets(new_prefix=new_prefix):
            if str(sub) not in used:
                return str(sub)
        return str(net)

    def _new_node(self, reg):
        if self.mode == "kubeadm":
            return self._new_kubelet_node(reg)
        name = reg["nodeName"]
        arch = reg.get("nodeInfo", {}).get("architecture", go_arch())
        labels = {
            "beta.kubernetes.io/arch": arch,
            "beta.kubernetes.io/instance-type": "k3s",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "node.kubernetes.io/instance-type": "k3s",
        }
        if reg.get("role") == "control-plane":
            labels["node-role.kubernetes.io/control-plane"] = "true"
            labels["node-role.kubernetes.io/master"] = "true"
            if reg.get("etcd"):
                labels["node-role.kubernetes.io/etcd"] = "true"
        labels.update(reg.get("labels") or {})
        cidr = self._pod_cidr()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    "k3s.io/standin": "true",
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": "k3s://" + name},
        }
        if reg.get("taints"):
            node["spec"]["taints"] = reg["taints"]
        self._etcd_annotations(node, reg)
        return node

    @staticmethod
    def _etcd_annotations(node, reg):
        """k3s annotates an etcd server's Node with its member name and peer address (its etcd
        member controller removes that member when the Node is deleted)."""
        member = reg.get("etcdMember") or {}
        if member.get("name"):
            ann = node["metadata"].setdefault("annotations", {})
            ann[ETCD_NAME_ANNOTATION] = member["name"]
            ann[ETCD_ADDRESS_ANNOTATION] = member.get("address", "")

    def _new_kubelet_node(self, reg):
        """A Node as a real kubelet registers it (kubeadm adds roles and taints later)."""
        name = reg["nodeName"]
        arch = reg.get("nodeInfo", {}).get("architecture", go_arch())
        labels = {
            "beta.kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
        }
        labels.update(reg.get("labels") or {})
        cidr = self._pod_cidr()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        }
        if reg.get("taints"):
            node["spec"]["taints"] = reg["taints"]
        return node

    def _update_status(self, node, reg):
        now = ts()
        ann = node["metadata"].setdefault("annotations", {})
        if self.mode != "kubeadm":
            ann["k3s.io/hostname"] = reg.get("hostname", "")
            ann["k3s.io/internal-ip"] = ",".join(reg.get("internalIPs") or [])
            if reg.get("externalIPs"):
                ann["k3s.io/external-ip"] = ",".join(reg["externalIPs"])
            ann["k3s.io/node-args"] = json.dumps(reg.get("nodeArgs") or [])
            self._etcd_annotations(node, reg)
        status = node.setdefault("status", {})
        addrs = [{"type": "InternalIP", "address": a} for a in reg.get("internalIPs") or []]
        addrs += [{"type": "ExternalIP", "address": a} for a in reg.get("externalIPs") or []]
        addrs.append({"type": "Hostname", "address": reg.get("hostname", "")})
        status["addresses"] = addrs
        status["nodeInfo"] = reg.get("nodeInfo") or {}
        status["capacity"] = reg.get("capacity") or {}
        status["allocatable"] = dict(reg.get("capacity") or {})
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": 10250}}
        status.setdefault("images", [])
        network = self.network_ready()
        self._set_conditions(status, True, now, network)
        spec = node.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE_TAINT]
        if self.mode == "kubeadm":
            taints = self._not_ready_taints(taints, network)
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)

    @staticmethod
    def _not_ready_taints(taints, ready):
        """kubeadm mode: the node lifecycle controller's not-ready taint while Ready=False."""
        taints = [t for t in taints if t.get("key") != NOT_READY_TAINT]
        if not ready:
            taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
        return taints

    @staticmethod
    def _set_conditions(status, ready, now, network_ready=True):
        old = {c["type"]: c for c in status.get("conditions") or []}
        if ready:
            want = [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
                if network_ready
                else ("Ready", "False", "KubeletNotReady", NETWORK_NOT_READY),
            ]
        else:
            want = [
                (t, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
                for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
            ]
        conds = []
        for typ, st, reason, msg in want:
            prev = old.get(typ, {})
            changed = prev.get("status") != st
            conds.append(
                {
                    "type": typ,
                    "status": st,
                    "reason": reason,
                    "message": msg,
                    "lastHeartbeatTime": now if ready else prev.get("lastHeartbeatTime", now),
                    "lastTransitionTime": now if changed else prev.get("lastTransitionTime", now),
                }
            )
        status["conditions"] = conds

    def _sync_network(self, node, network):
        """kubeadm mode: flip a fresh node's Ready between True and False when the CNI
        DaemonSet appears or goes (a real kubelet notices its CNI config within seconds)."""
        want = "True" if network else "False"
        ready = [c for c in node.get("status", {}).get("conditions") or [] if c.get("type") == "Ready"]
        if not ready or ready[0].get("status") in (want, "Unknown"):
            return
        try:
            with self.store.lock:
                n = self.store.get(NODE, None, node["metadata"]["name"])
                if n is None:
                    return
                self._set_conditions(n.setdefault("status", {}), True, ts(), network)
                spec = n.setdefault("spec", {})
                taints = self._not_ready_taints(spec.get("taints") or [], network)
                if taints:
                    spec["taints"] = taints
                else:
                    spec.pop("taints", None)
                self.store.update(NODE, n, expect_rv="", subresource="all")
            log("info", "Node %s network ready: %s" % (n["metadata"]["name"], network))
        except ApiError:
            pass

    def monitor_once(self):
        now = time.monotonic()
        network = self.network_ready()
        for node in self.store.list(NODE)[0]:
            name = node["metadata"]["name"]
            last = self.last_seen.get(name)
            renewed = self._lease_age(name)
            if renewed is not None:
                # heartbeats another server received reach this one as the node's Lease
                last = max(last or 0.0, now - renewed)
            if last is None:
                self.last_seen[name] = now
                continue
            if now - last <= self.grace:
                if self.mode == "kubeadm":
                    self._sync_network(node, network)
                continue
            ready = [c for c in node.get("status", {}).get("conditions") or [] if c.get("type") == "Ready"]
            if ready and ready[0].get("status") == "Unknown":
                continue

            def mark(n):
                self._set_conditions(n.setdefault("status", {}), False, ts())
                spec = n.setdefault("spec", {})
                taints = [t for t in spec.get("taints") or [] if t.get("key") not in (UNREACHABLE_TAINT, NOT_READY_TAINT)]
                taints += [
                    {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"},
                    {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": ts()},
                ]
                spec["taints"] = taints

            try:
                with self.store.lock:
                    n = self.store.get(NODE, None, name)
                    if n is None:
                        continue
                    mark(n)
                    self.store.update(NODE, n, expect_rv="", subresource="all")
                log("info", "Node %s is NotReady: Kubelet stopped posting node status." % name)
            except ApiError:
                pass
