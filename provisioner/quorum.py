"""etcd quorum as the tool sees it: how many members a cluster needs, what an even server count
means, and how a lost quorum looks in kubectl's answer (a pure parser).

A cluster whose control plane keeps its state in etcd of its own (k3s embedded etcd, kubeadm
stacked etcd) answers only while a majority of its members is up. kube-apiserver then fails every
request that needs etcd with ``etcdserver: request timed out`` (etcd-io/etcd
server/etcdserver/errors.go) and its ``/readyz`` lists ``[-]etcd failed``.
"""

from __future__ import annotations

from provisioner.errors import ProvisionerError

#: What kubectl prints when the API server's etcd has no quorum (or no leader).
LOST_QUORUM_MARKERS = (
    "etcdserver: request timed out",
    "etcdserver: no leader",
    "etcdserver: leader changed",
    "[-]etcd failed",
)


def quorum(members: int) -> int:
    """Members that must be up for etcd to answer: a majority."""
    return members // 2 + 1


def lost_quorum(answer: str) -> bool:
    """Whether an API answer (kubectl's error output) says etcd has no quorum."""
    return any(marker in answer for marker in LOST_QUORUM_MARKERS)


def even_servers_problem(servers: int) -> str | None:
    """Why an even number of etcd members is refused (None for an odd number or one)."""
    if servers < 2 or servers % 2:
        return None
    return (
        f"{servers} servers run etcd, which needs {quorum(servers)} of them up: that tolerates as many failures "
        f"({servers - quorum(servers)}) as {servers - 1} servers would, with one more machine that can fail. "
        f"Use {servers - 1} or {servers + 1} servers, or pass --allow-even-servers"
    )


class QuorumLost(ProvisionerError):
    """The API servers answer, but their etcd has no quorum: nothing can be read or changed."""

    def __init__(self, servers: list[str], answers: dict[str, str], unit: str) -> None:
        self.servers, self.answers = servers, answers
        up = [name for name in servers if lost_quorum(answers.get(name, ""))]
        down = [name for name in servers if name not in up]
        detail = "; ".join(f"{name}: {answers[name]}" for name in servers if name in answers)
        super().__init__(
            f"etcd has lost quorum: {len(up)} of {len(servers)} servers run the API "
            f"({', '.join(up) or 'none'}) and etcd needs {quorum(len(servers))}. "
            f"Start {unit} on {', '.join(down) or 'the stopped servers'} (systemctl start {unit}). [{detail}]"
        )
