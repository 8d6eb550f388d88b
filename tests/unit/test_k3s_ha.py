"""k3s with several servers (embedded etcd): cluster-init, one join at a time, the agent token,
api_endpoint, even server counts, the SQLite refusal, and a lost quorum in `status`/`check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from provisioner import actions, kubeconfig
from provisioner.checks import CheckOptions
from provisioner.cli import main
from provisioner.distros import k3s
from provisioner.errors import HostValidationError
from provisioner.phases import Options
from provisioner.quorum import QuorumLost, even_servers_problem, lost_quorum, quorum
from tests.unit.checkfakes import FakeCheckedCluster
from tests.unit.conftest import make_inventory
from tests.unit.fakes import AGENT_TOKEN_PREFIX, TOKEN, FakeK3sCluster

HA = """
cluster: {name: ha, version: v1.31.4+k3s1, api_endpoint: 192.0.2.23}
hosts:
  - {name: s1, address: 192.0.2.21, role: server}
  - {name: s2, address: 192.0.2.22, role: server}
  - {name: s3, address: 192.0.2.23, role: server}
  - {name: a1, address: 192.0.2.31, role: agent}
  - {name: a2, address: 192.0.2.32, role: agent}
"""
SINGLE = """
cluster: {name: ha, version: v1.31.4+k3s1%s}
hosts:
  - {name: s1, address: 192.0.2.21, role: server}
  - {name: a1, address: 192.0.2.31, role: agent}
"""


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def up(cluster: FakeK3sCluster, text: str | None = None, **options: object) -> actions.Outcome:
    if text is not None:
        cluster.inventory = make_inventory(text)
        known = dict(cluster.hosts)
        cluster.__post_init__()
        cluster.hosts.update({n: h for n, h in known.items() if n in cluster.hosts})
    options.setdefault("timeout", 3)
    return actions.up(cluster.inventory, Options(**options), connector=cluster.connector)  # type: ignore[arg-type]


def config(cluster: FakeK3sCluster, name: str) -> dict:
    return YAML(typ="safe").load(cluster.remotes[name].files[k3s.CONFIG].decode())


def install_order(cluster: FakeK3sCluster) -> list[str]:
    return [e.split()[1] for e in cluster.events if e.startswith("install ")]


def test_three_servers_first_has_cluster_init_others_join_it_one_at_a_time_with_the_server_token() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    first, second, third = config(cluster, "s1"), config(cluster, "s2"), config(cluster, "s3")
    assert first["cluster-init"] is True and "server" not in first and "token" not in first
    for joined in (second, third):
        assert "cluster-init" not in joined
        # a server joins the first server itself (the endpoint, s3, does not run yet)
        assert joined["server"] == "https://192.0.2.21:6443" and joined["token"] == TOKEN
    # the servers join after the first, in inventory order, before the agents
    assert install_order(cluster)[:3] == ["s1", "s2", "s3"]
    # every server has the endpoint in its certificate and the same agent-token secret
    assert all("192.0.2.23" in c["tls-san"] for c in (first, second, third))
    secrets = {c["agent-token"] for c in (first, second, third)}
    assert len(secrets) == 1 and len(secrets.pop()) == 32


def test_agents_join_through_api_endpoint_with_the_agent_token_never_the_server_token() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    secret = config(cluster, "s1")["agent-token"]
    for agent in ("a1", "a2"):
        conf = config(cluster, agent)
        assert conf["server"] == "https://192.0.2.23:6443"
        assert conf["token"] == AGENT_TOKEN_PREFIX + secret
        assert TOKEN.encode() not in cluster.remotes[agent].files[k3s.CONFIG]
        assert cluster.remotes[agent].modes[k3s.CONFIG] == 0o600
    # the secret went to the hosts in files only, never in a command line
    assert all(secret not in command for command in cluster.all_commands())


def test_the_agent_token_is_read_back_so_a_rerun_changes_nothing() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    before = {name: r.files[k3s.CONFIG] for name, r in cluster.remotes.items()}
    installs = len(cluster.events)
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    assert {name: r.files[k3s.CONFIG] for name, r in cluster.remotes.items()} == before
    assert len(cluster.events) == installs
    assert {o.result for o in outcome.summary.outcomes.values()} == {"unchanged"}


def test_kubeconfig_points_at_api_endpoint() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    written = kubeconfig.parse(Path("ha.kubeconfig").read_text())
    assert written["clusters"][0]["cluster"]["server"] == "https://192.0.2.23:6443"


def test_without_api_endpoint_a_warning_says_the_kubeconfig_points_at_one_server() -> None:
    cluster = FakeK3sCluster(make_inventory(HA.replace(", api_endpoint: 192.0.2.23", "")))
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    assert any("api_endpoint is not set" in w and "s1 (192.0.2.21) only" in w for w in outcome.summary.warnings)


@pytest.mark.parametrize("servers", [2, 4])
def test_an_even_number_of_servers_is_refused_with_the_reason_unless_allowed(servers: int) -> None:
    hosts = "".join(f"  - {{name: s{i}, address: 192.0.2.{20 + i}, role: server}}\n" for i in range(1, servers + 1))
    text = "cluster: {name: ha, version: v1.31.4+k3s1, api_endpoint: 192.0.2.21}\nhosts:\n" + hosts
    cluster = FakeK3sCluster(make_inventory(text))
    refused = up(cluster)
    assert isinstance(refused.error, HostValidationError)
    assert f"{servers} servers run etcd, which needs {quorum(servers)} of them up" in str(refused.error)
    assert "--allow-even-servers" in str(refused.error)
    assert cluster.events == []  # nothing was installed
    allowed = up(cluster, allow_even_servers=True)
    assert allowed.ok, allowed.error
    assert any("--allow-even-servers" in w for w in allowed.summary.warnings)


def test_even_servers_problem_and_quorum_are_pure() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert even_servers_problem(1) is None and even_servers_problem(3) is None
    assert "Use 1 or 3 servers" in (even_servers_problem(2) or "")
    assert lost_quorum("Error from server: etcdserver: request timed out")
    assert lost_quorum("[+]ping ok\n[-]etcd failed: reason withheld")
    assert not lost_quorum("The connection to the server 127.0.0.1:6443 was refused")


def test_servers_are_added_to_a_running_single_server_started_with_embedded_etcd() -> None:
    cluster = FakeK3sCluster(make_inventory(SINGLE % ", embedded_etcd: true"))
    assert up(cluster).ok
    assert config(cluster, "s1")["cluster-init"] is True
    cluster.events.clear()
    grown = SINGLE % ", embedded_etcd: true, api_endpoint: 192.0.2.21"
    grown = grown.replace(
        "  - {name: a1",
        "  - {name: s2, address: 192.0.2.22, role: server}\n  - {name: s3, address: 192.0.2.23, role: server}\n  - {name: a1",
    )
    outcome = up(cluster, grown)
    assert outcome.ok, outcome.error
    assert install_order(cluster) == ["s2", "s3"]
    assert config(cluster, "s2")["server"] == "https://192.0.2.21:6443"


def test_a_running_sqlite_single_server_is_not_converted_the_refusal_gives_the_manual_steps() -> None:
    cluster = FakeK3sCluster(make_inventory(SINGLE % ""))
    assert up(cluster).ok
    assert "cluster-init" not in config(cluster, "s1")
    cluster.events.clear()
    grown = (SINGLE % "").replace(
        "  - {name: a1",
        "  - {name: s2, address: 192.0.2.22, role: server}\n  - {name: s3, address: 192.0.2.23, role: server}\n  - {name: a1",
    )
    outcome = up(cluster, grown)
    assert isinstance(outcome.error, HostValidationError)
    text = str(outcome.error)
    assert "s1: runs k3s with SQLite" in text and "cluster.embedded_etcd: true" in text and "back up /var/lib/rancher/k3s/server/db" in text
    assert cluster.events == []


def test_the_fact_script_reports_embedded_etcd_and_the_parser_reads_it() -> None:
    dist = k3s.K3s(make_inventory(HA))
    assert k3s.ETCD_DIR in dist.fact_script()
    assert dist.parse_facts({"k3s.etcd": "yes"}).etcd and not dist.parse_facts({}).etcd


def test_agent_token_secret_of_full_and_short_tokens() -> None:
    assert k3s.agent_token_secret("K10" + "ab" * 32 + "::node:s3cr3t\n") == "s3cr3t"
    assert k3s.agent_token_secret("s3cr3t") == "s3cr3t"


def test_status_reports_a_lost_quorum_clearly_with_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    cluster.stop("s1")
    cluster.stop("s2")
    cluster.quorum_lost = True
    outcome = actions.status(cluster.inventory, connector=cluster.connector)
    assert isinstance(outcome.error, QuorumLost)
    message = str(outcome.error)
    assert "etcd has lost quorum: 1 of 3 servers run the API (s3) and etcd needs 2" in message
    assert "systemctl start k3s" in message and "s1, s2" in message
    (tmp_path / "inv.yaml").write_text(HA)
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    result = CliRunner().invoke(main, ["status", "-i", "inv.yaml"])
    assert result.exit_code == 1
    assert re.search(r"error: etcd has lost quorum", result.stderr)


def test_status_with_one_server_down_still_lists_the_nodes() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    cluster.stop("s1")
    outcome = actions.status(cluster.inventory, connector=cluster.connector)
    assert outcome.error is None
    assert [n.name for n in outcome.summary.nodes or []] == ["a1", "a2", "s1", "s2", "s3"]


def test_check_reports_the_lost_quorum_as_a_failed_row_after_trying_every_server() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    cluster.stop("s1")
    cluster.stop("s2")
    cluster.quorum_lost = True
    sim = FakeCheckedCluster(cluster)
    outcome = actions.check(cluster.inventory, Options(timeout=5, check=CheckOptions()), connector=sim.connector)
    assert outcome.error is not None
    rows = {row.name: row for row in outcome.summary.checks}
    assert not rows["etcd quorum"].ok
    assert (
        "etcd has lost quorum" in rows["etcd quorum"].detail
        and "s3: Error from server: etcdserver: request timed out" in rows["etcd quorum"].detail
    )


def test_check_with_one_server_down_reads_the_nodes_from_another_server() -> None:
    cluster = FakeK3sCluster(make_inventory(HA))
    assert up(cluster).ok
    cluster.stop("s1")
    sim = FakeCheckedCluster(cluster)
    outcome = actions.check(cluster.inventory, Options(timeout=5, check=CheckOptions()), connector=sim.connector)
    rows = {row.name: row for row in outcome.summary.checks}
    assert "etcd quorum" not in rows and "nodes registered" in rows
    assert not rows["nodes Ready"].ok and "s1" in rows["nodes Ready"].detail


@pytest.mark.parametrize("with_agent_token", [True, False])
def test_the_cluster_state_reads_both_tokens_in_one_command_either_may_be_missing(with_agent_token: bool) -> None:
    from provisioner.testing import FakeRemote

    inventory = make_inventory()
    dist = k3s.K3s(inventory)
    remote = FakeRemote("server1", strict=True)
    agent = AGENT_TOKEN_PREFIX + "s3cr3t\n" if with_agent_token else ""
    missing = "" if with_agent_token else f"cat: {k3s.AGENT_TOKEN_FILE}: No such file or directory"
    remote.on(
        rf"^cat {k3s.NODE_TOKEN} {k3s.AGENT_TOKEN_FILE}$",
        exit_code=0 if with_agent_token else 1,
        stdout=TOKEN + "\n" + agent,
        stderr=missing,
    )
    remote.on(r"kubectl get nodes -o json", stdout='{"items": []}')
    state = dist.read_state(remote, inventory.servers[0])
    assert state.join_secret is not None and state.join_secret.reveal() == TOKEN
    assert ("agent-token" in state.secrets) is with_agent_token
    assert len([c for c in remote.commands if "cat " in c[1]]) == 1
