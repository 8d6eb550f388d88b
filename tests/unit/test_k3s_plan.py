"""k3s plan decisions and rendered configs: facts in, action and config out."""

from __future__ import annotations

import hashlib

import pytest
from ruamel.yaml import YAML

from provisioner.distros import Action, ClusterState
from provisioner.distros.k3s import K3s, K3sFacts
from provisioner.errors import ProvisionerError
from provisioner.inventory import Host
from provisioner.nodes import Condition, Node
from provisioner.secrets import Secret
from tests.unit.conftest import make_inventory

TOKEN = Secret("K10" + "cd" * 32 + "::server:" + "0123456789abcdef" * 2)
AGENT_SECRET = "fedcba9876543210" * 2
AGENT = Secret("K10" + "cd" * 32 + "::node:" + AGENT_SECRET)


def running(servers: Host, nodes: list[Node] | None) -> ClusterState:
    """The state of a running cluster whose first server has the server and agent tokens."""
    return ClusterState(servers, TOKEN, nodes, secrets={"agent-token": AGENT})


def k3s_for(text: str | None = None) -> K3s:
    return K3s(make_inventory(text) if text else make_inventory())


def ready(name: str, ok: bool = True) -> Node:
    status = "True" if ok else "Unknown"
    return Node(
        name,
        status,
        (),
        "v1.31.4+k3s1",
        "192.0.2.1",
        conditions=(Condition("Ready", status, "KubeletReady" if ok else "NodeStatusUnknown"),),
    )


def config_sha(dist: K3s, name: str, token: Secret | None = TOKEN) -> str:
    inv = dist.inventory
    host = inv.host(name)
    if token is not None and host.role == "agent":
        token = AGENT
    text = dist.render_config(host, inv.servers[0], token.reveal() if token and name != "controller" else None, AGENT_SECRET)
    return hashlib.sha256(text.encode()).hexdigest()


def installed(
    dist: K3s, name: str, *, role: str, active: str = "active", version: str = "v1.31.4+k3s1", sha: str | None = "same"
) -> K3sFacts:
    unit = "k3s" if role == "server" else "k3s-agent"
    return K3sFacts(version=version, units={unit: active}, config_sha256=config_sha(dist, name) if sha == "same" else sha)


def decide(
    dist: K3s, name: str, facts: K3sFacts, *, nodes: list[Node] | None = None, desired: str | None = "auto"
) -> tuple[Action, list[str]]:
    inv = dist.inventory
    state = running(inv.servers[0], nodes)
    if desired == "auto":
        desired = config_sha(dist, name)
    return dist.decide(inv.host(name), facts, desired, state, is_init=name == "controller")


def test_fresh_first_server_is_installed_and_fresh_agent_joins() -> None:
    dist = k3s_for()
    assert decide(dist, "controller", K3sFacts())[0] is Action.INSTALL
    assert decide(dist, "worker1", K3sFacts()) == (Action.JOIN, ["k3s is not installed"])


def test_host_with_same_version_config_and_ready_node_is_left_alone() -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent"), nodes=[ready("worker1")])
    assert (action, reasons) == (Action.NOTHING, [])


def test_other_version_is_an_upgrade() -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent", version="v1.30.2+k3s1"))
    assert action is Action.UPGRADE
    assert reasons == ["runs v1.30.2+k3s1, the inventory wants v1.31.4+k3s1"]


def test_channel_installs_are_not_upgraded_on_rerun() -> None:
    dist = k3s_for("cluster: {name: a, channel: stable}\nhosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n")
    facts = K3sFacts(version="v1.20.0+k3s1", units={"k3s": "active"}, config_sha256=config_sha(dist, "controller"))
    assert decide(dist, "controller", facts)[0] is Action.NOTHING


def test_changed_config_is_a_reconfigure() -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent", sha="0" * 64))
    assert action is Action.RECONFIGURE
    assert reasons == ["/etc/rancher/k3s/config.yaml differs from the inventory"]


def test_unknown_token_means_rejoin_after_the_new_server() -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent"), desired=None)
    assert action is Action.RECONFIGURE
    assert "rejoin" in reasons[0]


@pytest.mark.parametrize("state", ["inactive", "failed"])
def test_stopped_service_is_restarted(state: str) -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent", active=state))
    assert (action, reasons) == (Action.RESTART, [f"k3s-agent is {state}"])


def test_active_service_with_not_ready_node_is_restarted() -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent"), nodes=[ready("worker1", ok=False)])
    assert action is Action.RESTART
    assert reasons == ["node worker1 is NotReady (NodeStatusUnknown)"]


def test_active_service_whose_node_is_missing_is_restarted() -> None:
    dist = k3s_for()
    action, reasons = decide(dist, "worker1", installed(dist, "worker1", role="agent"), nodes=[ready("controller")])
    assert action is Action.RESTART
    assert "not registered" in reasons[0]


def test_unknown_node_list_does_not_cause_restarts() -> None:
    dist = k3s_for()
    assert decide(dist, "worker1", installed(dist, "worker1", role="agent"), nodes=None)[0] is Action.NOTHING


def test_changed_airgap_binary_is_an_upgrade(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "k3s").write_bytes(b"new binary")
    (tmp_path / "install.sh").write_text("#!/bin/sh\n")
    dist = K3s(
        make_inventory(
            "cluster: {name: a, version: v1.31.4+k3s1, airgap: {k3s_binary: k3s, install_script: install.sh}}\n"
            "hosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n",
            base_dir=tmp_path,
        )
    )
    facts = K3sFacts(
        version="v1.31.4+k3s1",
        units={"k3s": "active"},
        config_sha256=config_sha(dist, "controller"),
        binary_sha256=hashlib.sha256(b"old binary").hexdigest(),
    )
    action, reasons = decide(dist, "controller", facts)
    assert action is Action.UPGRADE
    assert reasons == ["/usr/local/bin/k3s differs from cluster.airgap.k3s_binary"]


# --- rendered configuration --------------------------------------------------------------------


def rendered(dist: K3s, name: str, token: str | None = "TOKEN") -> dict:
    inv = dist.inventory
    return YAML(typ="safe").load(dist.render_config(inv.host(name), inv.servers[0], token))


def test_first_server_config_has_node_name_sans_and_0600_kubeconfig_but_no_token() -> None:
    dist = k3s_for(
        "cluster: {name: a, api_endpoint: 10.9.9.9, server_args: ['--disable=traefik', '--disable=servicelb', '--tls-san=k8s.example', '--secrets-encryption']}\n"
        "hosts:\n  - {name: controller, address: 192.0.2.10, role: server, node_ip: 192.0.2.100}\n"
    )
    config = rendered(dist, "controller")
    assert config == {
        "node-name": "controller",
        "node-ip": "192.0.2.100",
        "write-kubeconfig-mode": "0600",
        "agent-token": "<agent token secret>",
        "tls-san": ["10.9.9.9", "192.0.2.10", "192.0.2.100", "k8s.example"],
        "disable": ["traefik", "servicelb"],
        "secrets-encryption": True,
    }


def test_agent_config_has_server_url_token_node_ip_and_flannel_iface() -> None:
    dist = k3s_for()
    config = rendered(dist, "worker2")
    assert config == {
        "server": "https://192.0.2.10:6443",
        "token": "TOKEN",
        "node-name": "worker2",
        "node-ip": "192.0.2.12",
        "flannel-iface": "eth1",
    }


def test_agents_join_through_the_api_endpoint_when_set() -> None:
    dist = k3s_for(
        "cluster: {name: a, api_endpoint: 'fd00::10'}\nhosts:\n"
        "  - {name: controller, address: 192.0.2.10, role: server}\n  - {name: w, address: 192.0.2.11, role: agent}\n"
    )
    assert rendered(dist, "w")["server"] == "https://[fd00::10]:6443"


def test_several_servers_give_cluster_init_to_the_first_and_server_url_to_the_others() -> None:
    dist = k3s_for(
        "cluster: {name: a}\nhosts:\n"
        "  - {name: controller, address: 192.0.2.10, role: server}\n  - {name: cp2, address: 192.0.2.11, role: server}\n"
    )
    first, second = rendered(dist, "controller"), rendered(dist, "cp2")
    assert first["cluster-init"] is True and "server" not in first
    assert second["server"] == "https://192.0.2.10:6443" and second["token"] == "TOKEN"
    assert "cluster-init" not in second


def test_values_that_look_like_yaml_are_quoted() -> None:
    dist = k3s_for(
        "cluster: {name: a, server_args: ['--node-label=a: b', '--kubelet-arg=x=#1']}\nhosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n"
    )
    config = rendered(dist, "controller")
    assert config["node-label"] == ["a: b"]
    assert config["kubelet-arg"] == ["x=#1"]


def test_template_with_a_missing_variable_fails_instead_of_rendering_empty() -> None:
    from provisioner import templates

    with pytest.raises(ProvisionerError, match=r"^template error: '\w+' is undefined"):
        templates.render("k3s/config.yaml.j2", node_name="x")


def test_plan_holds_the_token_as_a_placeholder_even_when_it_is_known() -> None:
    dist = k3s_for()
    facts = {h.name: _host_facts(h.name, K3sFacts()) for h in dist.inventory.hosts}
    plans = dist.plan(facts, ClusterState(dist.inventory.servers[0], TOKEN, None))
    assert TOKEN.reveal() not in plans["worker1"].preview and TOKEN.reveal() not in str(plans["worker1"].as_dict())
    assert 'token: "<agent token of the first server>"' in plans["worker1"].preview
    assert [p.action for p in plans.values()] == [Action.INSTALL, Action.JOIN, Action.JOIN]
    assert [s.name for s in plans["worker1"].steps] == ["upload /etc/rancher/k3s/config.yaml", "run the install script as agent"]
    assert [s.name for s in plans["controller"].steps] == [
        "upload /etc/rancher/k3s/config.yaml",
        "run the install script as server",
        "wait for the Kubernetes API",
    ]


def _host_facts(name: str, dist_facts: K3sFacts):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from provisioner.facts import parse_host_facts

    return replace(parse_host_facts(name, {"user": "root", "systemd": "yes", "arch": "x86_64"}), dist=dist_facts)


# --- air-gap upgrades: the install script cannot see what was uploaded before it ran -----------


def _airgap(tmp_path, images: bool = True) -> K3s:  # type: ignore[no-untyped-def]
    (tmp_path / "k3s").write_bytes(b"binary B")
    (tmp_path / "install.sh").write_text("#!/bin/sh\n")
    (tmp_path / "images.tar").write_bytes(b"images B")
    extra = ", images: images.tar" if images else ""
    return K3s(
        make_inventory(
            f"cluster: {{name: a, version: v1.32.0+k3s1, airgap: {{k3s_binary: k3s, install_script: install.sh{extra}}}}}\n"
            "hosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n",
            base_dir=tmp_path,
        )
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plan_controller(dist: K3s, facts: K3sFacts, nodes: list[Node] | None):  # type: ignore[no-untyped-def]
    plans = dist.plan({"controller": _host_facts("controller", facts)}, running(dist.inventory.servers[0], nodes))
    return plans["controller"]


def _install_command(plan) -> str:  # type: ignore[no-untyped-def]
    step = next(s for s in plan.steps if s.name.startswith("run the install script"))
    return step.operations[0].text


def test_uploaded_binary_forces_the_install_script_to_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dist = _airgap(tmp_path)
    facts = K3sFacts(
        version="v1.31.4+k3s1",
        units={"k3s": "active"},
        config_sha256=config_sha(dist, "controller"),
        binary_sha256=_sha(b"binary A"),
        images_sha256=_sha(b"images B"),
        installer_sha256=_sha(b"#!/bin/sh\n"),
    )
    plan = _plan_controller(dist, facts, [ready("controller")])
    assert plan.action is Action.UPGRADE
    assert [s.name for s in plan.steps] == ["upload /usr/local/bin/k3s", "run the install script as server", "wait for the Kubernetes API"]
    assert "INSTALL_K3S_FORCE_RESTART=true" in _install_command(plan)


def test_uploaded_images_alone_force_the_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dist = _airgap(tmp_path)
    facts = K3sFacts(
        version="v1.32.0+k3s1",
        units={"k3s": "active"},
        config_sha256=config_sha(dist, "controller"),
        binary_sha256=_sha(b"binary B"),
        images_sha256=_sha(b"images A"),
        installer_sha256=_sha(b"#!/bin/sh\n"),
    )
    plan = _plan_controller(dist, facts, [Node("controller", "True", (), "v1.32.0+k3s1", "192.0.2.10")])
    assert plan.action is Action.UPGRADE
    assert plan.reasons == ("the air-gap images differ from cluster.airgap.images",)
    assert "INSTALL_K3S_FORCE_RESTART=true" in _install_command(plan)


def test_fresh_install_does_not_force_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dist = _airgap(tmp_path)
    plan = _plan_controller(dist, K3sFacts(), None)
    assert "INSTALL_K3S_FORCE_RESTART" not in _install_command(plan)


def test_new_binary_whose_node_still_runs_the_old_version_is_restarted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dist = _airgap(tmp_path)
    facts = K3sFacts(
        version="v1.32.0+k3s1",
        units={"k3s": "active"},
        config_sha256=config_sha(dist, "controller"),
        binary_sha256=_sha(b"binary B"),
        images_sha256=_sha(b"images B"),
        installer_sha256=_sha(b"#!/bin/sh\n"),
    )
    old = Node("controller", "True", (), "v1.31.4+k3s1", "192.0.2.10", conditions=(Condition("Ready", "True", "KubeletReady"),))
    plan = _plan_controller(dist, facts, [old])
    assert plan.action is Action.UPGRADE
    assert plan.reasons == (
        "node controller still runs v1.31.4+k3s1 but /usr/local/bin/k3s is v1.32.0+k3s1: k3s was not restarted after the upgrade",
    )
    assert [s.name for s in plan.steps] == ["restart k3s", "wait for the Kubernetes API"]
    assert "systemctl restart k3s" in plan.steps[0].operations[0].text
    # once it runs the new version, nothing is left to do
    new = Node("controller", "True", (), "v1.32.0+k3s1", "192.0.2.10", conditions=(Condition("Ready", "True", "KubeletReady"),))
    assert _plan_controller(dist, facts, [new]).action is Action.NOTHING


def test_running_version_is_compared_with_the_binary_for_channel_installs_too() -> None:
    dist = k3s_for("cluster: {name: a, channel: stable}\nhosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n")
    facts = K3sFacts(version="v1.32.0+k3s1", units={"k3s": "active"}, config_sha256=config_sha(dist, "controller"))
    action, reasons = decide(dist, "controller", facts, nodes=[ready("controller")])
    assert action is Action.UPGRADE and "still runs v1.31.4+k3s1" in reasons[0]


# --- firewalld ------------------------------------------------------------------------------------


def test_active_firewalld_gets_the_k3s_ports_and_the_pod_and_service_networks() -> None:
    dist = k3s_for()
    facts = K3sFacts(firewalld="active", firewalld_ports=frozenset({"10250/tcp"}))
    plans = dist.plan({h.name: _host_facts(h.name, facts) for h in dist.inventory.hosts}, running(dist.inventory.servers[0], None))
    server = plans["controller"].steps[0]
    assert server.name == "firewalld: open k3s ports"
    assert server.operations[0].text == (  # type: ignore[union-attr]
        "firewall-cmd --permanent --add-port=6443/tcp --add-port=8472/udp && "
        "firewall-cmd --permanent --zone=trusted --add-source=10.42.0.0/16 --add-source=10.43.0.0/16 && firewall-cmd --reload"
    )
    assert "--add-port=8472/udp" in plans["worker1"].steps[0].operations[0].text  # type: ignore[union-attr]
    assert "6443" not in plans["worker1"].steps[0].operations[0].text  # type: ignore[union-attr]


def test_firewalld_uses_the_inventorys_cidrs_and_is_left_alone_once_open() -> None:
    dist = k3s_for(
        "cluster: {name: a, server_args: ['--cluster-cidr=10.50.0.0/16,fd00:50::/56', '--service-cidr=10.60.0.0/16']}\n"
        "hosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n"
    )
    assert dist.cluster_cidrs() == ["10.50.0.0/16", "fd00:50::/56", "10.60.0.0/16"]
    host = dist.inventory.host("controller")
    done = K3sFacts(
        firewalld="active",
        firewalld_ports=frozenset({"6443/tcp", "8472/udp", "10250/tcp"}),
        firewalld_trusted=frozenset(dist.cluster_cidrs()),
    )
    assert dist.firewalld_step(host, done) is None
    assert dist.firewalld_step(host, K3sFacts(firewalld="inactive")) is None


def test_an_installed_host_behind_a_closed_firewalld_is_reconfigured_without_a_restart() -> None:
    dist = k3s_for("cluster: {name: a, version: v1.31.4+k3s1}\nhosts:\n  - {name: controller, address: 192.0.2.10, role: server}\n")
    facts = K3sFacts(version="v1.31.4+k3s1", units={"k3s": "active"}, config_sha256=config_sha(dist, "controller"), firewalld="active")
    plan = _plan_controller(dist, facts, [ready("controller")])
    assert plan.action is Action.RECONFIGURE
    assert [s.name for s in plan.steps] == ["firewalld: open k3s ports", "wait for the Kubernetes API"]


def test_fact_script_reports_firewalld_and_the_parser_reads_it() -> None:
    dist = k3s_for()
    assert "firewall-cmd --zone=trusted --list-sources" in dist.fact_script()
    facts = dist.parse_facts({"firewalld": "active", "firewalld.ports": "6443/tcp 8472/udp", "firewalld.trusted": "10.42.0.0/16"})
    assert facts.firewalld_ports == frozenset({"6443/tcp", "8472/udp"}) and facts.firewalld_trusted == frozenset({"10.42.0.0/16"})
