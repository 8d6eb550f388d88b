"""`provisioner import k3s-ansible` and `export ansible`: the mapping, every warning path, the
three input forms agreeing, and round trips native → k3s-ansible → native."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.errors import InventoryError, UsageError
from provisioner.importers.export import export_k3s_ansible
from provisioner.importers.k3s_ansible import import_k3s_ansible, split_flags
from provisioner.inventory import Inventory, load_inventory, parse_inventory

DATA = Path(__file__).parent / "data" / "import"
REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def imported(path: Path, **kwargs: str) -> tuple[Inventory, str, list[str]]:
    result = import_k3s_ansible(path, **kwargs)
    return parse_inventory(result.text, "out.yaml", check_files=False), result.text, [str(n) for n in result.notes]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


# --- the documented inventory ---------------------------------------------------------------


def test_documented_inventory_maps_to_servers_agents_version_and_flags(tmp_path: Path) -> None:
    result = import_k3s_ansible(DATA / "k3s" / "inventory.yml")
    out = write(tmp_path, "native.yaml", result.text)
    inventory = load_inventory(out)  # the output loads as a provisioner inventory
    assert inventory.cluster.name == "edge-lab"
    assert inventory.cluster.distribution == "k3s"
    assert inventory.cluster.version == "v1.30.6+k3s1"
    assert inventory.cluster.api_endpoint is None  # the sample's template names the first server: the default
    assert inventory.cluster.server_args == ["--disable=traefik", "--tls-san=k3s.example.net"]
    assert inventory.cluster.agent_args == []
    assert [(h.name, h.address, h.role) for h in inventory.hosts] == [
        ("10.10.0.11", "10.10.0.11", "server"),
        ("10.10.0.12", "10.10.0.12", "agent"),
        ("10.10.0.13", "10.10.0.13", "agent"),
    ]
    assert (inventory.ssh.user, inventory.ssh.port) == ("debian", 22)
    assert "version: v1.30.6+k3s1  # from inventory.yml:16: k3s_version" in result.text


def test_yaml_ini_and_json_forms_give_the_same_inventory() -> None:
    models = [imported(DATA / "k3s" / name)[0] for name in ("inventory.yml", "hosts.ini", "list.json")]
    assert models[0] == models[1] == models[2]


def test_token_and_api_endpoint_template_are_noted_with_their_place() -> None:
    _, text, notes = imported(DATA / "k3s" / "inventory.yml")
    assert "not-a-real-token" not in text and "not-a-real-token" not in "".join(notes)
    assert any(n.startswith("token (inventory.yml:17, group k3s_cluster): dropped") for n in notes)
    assert any(n.startswith("api_endpoint (inventory.yml:18") and "first server" in n for n in notes)
    assert any(n.startswith("10.10.0.11 (") and "named by its address" in n for n in notes)


# --- mapping details and warnings -------------------------------------------------------------


def test_unknown_variables_are_listed_once_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.yml",
        """\
        k3s_cluster:
          children:
            server: {hosts: {s1: {ansible_host: 192.0.2.1, rack: r1}}}
            agent: {hosts: {a1: {ansible_host: 192.0.2.2}, a2: {ansible_host: 192.0.2.3}}}
          vars:
            mystery: 1
            manage_firewall: true
        """,
    )
    write(tmp_path, "group_vars/all.yml", "ntp_server: pool.example\n")
    _, _, notes = imported(path)
    assert notes.count("mystery (inv.yml:6, group k3s_cluster): not understood; not carried over") == 1
    assert "rack (inv.yml:3, host s1): not understood; not carried over" in notes
    assert "ntp_server (group_vars/all.yml:1, group all): not understood; not carried over" in notes
    assert any(n.startswith("manage_firewall (inv.yml:7") and "firewalls" in n for n in notes)


def test_become_password_becomes_an_environment_variable_and_is_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_SUDO_PASSWORD", "x")
    path = write(
        tmp_path,
        "hosts",
        """\
        [server]
        s1 ansible_host=192.0.2.1
        [agent]
        a1 ansible_host=192.0.2.2
        [all:vars]
        ansible_become_password=Sup3r-s3cret
        """,
    )
    inventory, text, notes = imported(path)
    assert inventory.ssh.sudo_password_env == "PROVISIONER_SUDO_PASSWORD"
    assert "Sup3r-s3cret" not in text and "Sup3r-s3cret" not in "".join(notes)
    assert any("export PROVISIONER_SUDO_PASSWORD=<the password>" in n for n in notes)


def test_different_become_passwords_get_one_variable_per_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_SUDO_PASSWORD_S1", "x")
    monkeypatch.setenv("PROVISIONER_SUDO_PASSWORD_A_1", "x")
    path = write(
        tmp_path,
        "hosts",
        """\
        [server]
        s1 ansible_host=192.0.2.1 ansible_become_password=one
        [agent]
        a-1 ansible_host=192.0.2.2 ansible_become_password=two
        """,
    )
    inventory, text, _ = imported(path)
    assert [inventory.ssh_for(h).sudo_password_env for h in inventory.hosts] == [
        "PROVISIONER_SUDO_PASSWORD_S1",
        "PROVISIONER_SUDO_PASSWORD_A_1",
    ]
    assert "one" not in text.split() and "two" not in text.split()


def test_become_password_env_lookup_keeps_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SUDO", "x")
    path = write(
        tmp_path,
        "inv.yml",
        """\
        server: {hosts: {s1: {ansible_host: 192.0.2.1}}}
        all: {vars: {ansible_become_password: "{{ lookup('env', 'MY_SUDO') }}"}}
        """,
    )
    inventory, _, notes = imported(path)
    assert inventory.ssh.sudo_password_env == "MY_SUDO"
    assert not any("ansible_become_password" in n for n in notes)


def test_ssh_settings_shared_by_all_hosts_go_to_ssh_others_stay_per_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.yml",
        """\
        k3s_cluster:
          children:
            server: {hosts: {s1: {ansible_host: 192.0.2.1}}}
            agent:
              hosts:
                a1: {ansible_host: 192.0.2.2}
                a2: {ansible_host: 192.0.2.3, ansible_user: ubuntu, ansible_port: 2222}
          vars:
            ansible_user: root
            ansible_ssh_private_key_file: /keys/id_ed25519
            ansible_ssh_common_args: "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/keys/known -J jump@bastion.example -o ForwardAgent=yes"
        """,
    )
    inventory, _, notes = imported(path)
    assert inventory.ssh.user == "root"
    assert str(inventory.ssh.private_key) == "/keys/id_ed25519"
    assert inventory.ssh.host_key_policy == "strict"
    assert str(inventory.ssh.known_hosts) == "/keys/known"
    assert inventory.ssh.proxy_jump == "jump@bastion.example"
    assert inventory.ssh.port is None
    a2 = inventory.host("a2")
    assert a2.ssh is not None and (a2.ssh.user, a2.ssh.port) == ("ubuntu", 2222)
    assert inventory.host("a1").ssh is None
    assert any(n.startswith("ansible_ssh_common_args (inv.yml:11") and "ForwardAgent" in n for n in notes)


def test_extra_args_are_split_into_flags_and_host_flags_move_to_the_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.yml",
        """\
        k3s_cluster:
          children:
            server:
              hosts:
                s1: {ansible_host: 192.0.2.1, extra_server_args: "--disable=traefik --node-ip 10.0.0.1 --token abc"}
            agent:
              hosts:
                a1: {ansible_host: 192.0.2.2, extra_agent_args: "--flannel-iface eth1 --node-label 'tier=web'"}
                a2: {ansible_host: 192.0.2.3, extra_agent_args: "--node-label tier=web --node-name Worker-Two"}
        """,
    )
    inventory, _, notes = imported(path)
    assert inventory.cluster.server_args == ["--disable=traefik"]
    assert inventory.cluster.agent_args == ["--node-label=tier=web"]
    assert inventory.host("s1").node_ip == "10.0.0.1"
    assert inventory.host("a1").flannel_iface == "eth1"
    assert [h.name for h in inventory.hosts] == ["s1", "a1", "worker-two"]
    assert any("--token left out" in n for n in notes)
    assert any(n.startswith("Worker-Two (") and "written as worker-two" in n for n in notes)


def test_split_flags_joins_values_and_accepts_single_dash() -> None:
    assert split_flags("--a b --c=d -e -long x --f 'g h'") == ["--a=b", "--c=d", "-e", "--long=x", "--f=g h"]


def test_flags_differing_between_agents_use_the_first_and_note_the_others(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        [server]
        s1
        [agent]
        a1 extra_agent_args="--node-label=a"
        a2 extra_agent_args="--node-label=b"
        """,
    )
    inventory, _, notes = imported(path)
    assert inventory.cluster.agent_args == ["--node-label=a"]
    assert any(n.startswith("extra_agent_args (hosts:5, host a2)") and "used a1's" in n for n in notes)


def test_refused_flags_are_left_out_with_a_note(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[server]\ns1 extra_server_args='--disable=traefik positional --write-kubeconfig-mode=644'\n")
    inventory, _, notes = imported(path)
    assert inventory.cluster.server_args == ["--disable=traefik"]
    assert any("'positional' left out" in n for n in notes)
    assert any("--write-kubeconfig-mode left out" in n for n in notes)


def test_server_config_yaml_becomes_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.yml",
        """\
        server:
          hosts: {s1: {ansible_host: 192.0.2.1}}
          vars:
            server_config_yaml: |
              disable: [traefik, servicelb]
              secrets-encryption: true
              node-ip: 10.1.1.1
        """,
    )
    inventory, _, _ = imported(path)
    assert inventory.cluster.server_args == ["--disable=traefik", "--disable=servicelb", "--secrets-encryption"]
    assert inventory.host("s1").node_ip == "10.1.1.1"


def test_node_names_are_lowercased_and_cleaned_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[server]\nCtrl_1 ansible_host=192.0.2.1\n[agent]\nWorker1 ansible_host=192.0.2.2\n")
    inventory, _, notes = imported(path)
    assert [h.name for h in inventory.hosts] == ["ctrl-1", "worker1"]
    assert any(n.startswith("Ctrl_1 (hosts:2, group server)") and "written as ctrl-1" in n for n in notes)


def test_names_that_collide_after_cleaning_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[server]\nnode_1\n[agent]\nNODE-1\n")
    with pytest.raises(InventoryError, match="both be node 'node-1'"):
        import_k3s_ansible(path)


def test_templates_are_not_evaluated_and_say_what_to_set(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", '[server]\ns1 ansible_host=\'{{ lookup("dig", "s1") }}\'\n[all:vars]\nk3s_version={{ ver }}\n')
    inventory, _, notes = imported(path)
    assert inventory.cluster.version is None and inventory.host("s1").address == "s1"
    assert any(n.startswith("k3s_version (") and "set cluster.version by hand" in n for n in notes)
    assert any(n.startswith("ansible_host (") and "Jinja template" in n for n in notes)


def test_version_that_differs_between_hosts_is_noted(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[server]\ns1 k3s_version=v1.31.4+k3s1\n[agent]\na1 k3s_version=v1.30.1+k3s1\n")
    inventory, _, notes = imported(path)
    assert inventory.cluster.version == "v1.31.4+k3s1"
    assert any(n.startswith("k3s_version (hosts:4, host a1)") and "differs between hosts" in n for n in notes)


def test_literal_api_endpoint_is_kept_and_a_bad_one_noted(tmp_path: Path) -> None:
    good = write(tmp_path, "good", "[server]\ns1\n[all:vars]\napi_endpoint=k8s.example.net\n")
    assert imported(good)[0].cluster.api_endpoint == "k8s.example.net"
    bad = write(tmp_path, "bad", "[server]\ns1\n[all:vars]\napi_endpoint=not an address\n")
    inventory, _, notes = imported(bad)
    assert inventory.cluster.api_endpoint is None
    assert any(n.startswith("api_endpoint (bad:4") for n in notes)


def test_airgap_dir_with_the_files_becomes_cluster_airgap(tmp_path: Path) -> None:
    airgap = tmp_path / "airgap"
    for name in ("k3s", "k3s-install.sh", "k3s-airgap-images-amd64.tar.zst"):
        write(airgap, name, "x")
    path = write(tmp_path, "hosts", "[server]\ns1\n[all:vars]\nk3s_version=v1.31.4+k3s1\nairgap_dir=airgap\n")
    inventory, text, _ = imported(path)
    assert inventory.cluster.airgap is not None
    assert inventory.cluster.airgap.k3s_binary == airgap / "k3s"
    assert inventory.cluster.airgap.install_script == airgap / "k3s-install.sh"
    assert inventory.cluster.airgap.images == airgap / "k3s-airgap-images-amd64.tar.zst"
    assert "from hosts:5: airgap_dir" in text


def test_airgap_dir_without_the_files_is_noted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    path = write(tmp_path, "hosts", "[server]\ns1\n[all:vars]\nairgap_dir=empty\n")
    inventory, _, notes = imported(path)
    assert inventory.cluster.airgap is None
    assert any(n.startswith("airgap_dir (hosts:4") and "no k3s, k3s-install.sh" in n for n in notes)


def test_hosts_outside_server_and_agent_are_noted(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[server]\ns1\n[monitoring]\nm1\n")
    _, text, notes = imported(path)
    assert "m1" not in text
    assert any(n.startswith("m1 (hosts:4, group monitoring)") and "not imported" in n for n in notes)


def test_old_master_and_node_groups_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[master]\nm1\n[node]\nn1\n[k3s_cluster:children]\nmaster\nnode\n")
    inventory, _, _ = imported(path)
    assert [(h.name, h.role) for h in inventory.hosts] == [("m1", "server"), ("n1", "agent")]


def test_a_kubespray_inventory_is_refused_with_a_hint() -> None:
    with pytest.raises(InventoryError) as error:
        import_k3s_ansible(DATA / "kubespray" / "mycluster" / "inventory.ini")
    assert error.value.exit_code == 2
    assert "try `provisioner import kubespray`" in error.value.lines()[0]


# --- round trips --------------------------------------------------------------------------


RICH = """\
cluster:
  name: rack2
  version: v1.31.4+k3s1
  api_endpoint: 192.0.2.100
  server_args: [--disable=traefik, "--tls-san=k8s.example.net", --node-label=tier=control]
  agent_args: [--node-label=tier=web]
  airgap: {k3s_binary: ./airgap/k3s, install_script: ./airgap/k3s-install.sh, images: ./airgap/k3s-airgap-images-amd64.tar.zst}
ssh:
  user: admin
  port: 2200
  private_key: /keys/id_ed25519
  host_key_policy: strict
  known_hosts: /keys/known_hosts
  sudo_password_env: RACK2_SUDO
  proxy_jump: admin@bastion.example:22
  connect_timeout: 20
hosts:
  - {name: cp1, address: 192.0.2.11, role: server}
  - {name: cp2, address: 192.0.2.12, role: server, node_ip: 10.9.0.12}
  - {name: w1, address: 192.0.2.21, role: agent, flannel_iface: eth1}
  - {name: w2, address: w2.example.net, role: agent, ssh: {user: ubuntu, port: 22, host_key_policy: accept-new}}
"""


def round_trip(native: Inventory, tmp_path: Path, source: str = "native.yaml") -> Inventory:
    text, notes = export_k3s_ansible(native, source)
    assert notes == []
    ansible = write(tmp_path, "k3s-ansible.yml", text)
    result = import_k3s_ansible(ansible)
    back = write(tmp_path, "back.yaml", result.text)
    return load_inventory(back, check_files=False)


def test_round_trip_native_to_k3s_ansible_and_back_is_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACK2_SUDO", "x")
    for name in ("k3s", "k3s-install.sh", "k3s-airgap-images-amd64.tar.zst"):
        write(tmp_path / "airgap", name, "x")
    native = parse_inventory(RICH, "native.yaml", base_dir=tmp_path, check_files=False)
    assert round_trip(native, tmp_path / "out") == native


def test_round_trip_of_the_shipped_example_is_equal(tmp_path: Path) -> None:
    native = load_inventory(REPO / "inventories" / "k3s-homelab.yaml", check_files=False)
    assert round_trip(native, tmp_path) == native


def test_export_keeps_node_names_and_the_password_in_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACK2_SUDO", "x")
    text, _ = export_k3s_ansible(parse_inventory(RICH, "n.yaml", base_dir=tmp_path, check_files=False), "n.yaml")
    assert "--node-name={{ inventory_hostname }}" in text
    assert (
        "extra_server_args: --disable=traefik --tls-san=k8s.example.net --node-label=tier=control --node-name=cp2 --node-ip=10.9.0.12"
        in text
    )
    assert "ansible_become_password: \"{{ lookup('env', 'RACK2_SUDO') }}\"" in text


def test_export_notes_what_k3s_ansible_cannot_express(tmp_path: Path) -> None:
    native = parse_inventory(
        "cluster: {name: c, channel: stable, install_script_url: 'https://mirror.example/k3s.sh'}\n"
        "hosts: [{name: s1, address: 192.0.2.1, role: server}]\n",
        "c.yaml",
        check_files=False,
    )
    _, notes = export_k3s_ansible(native, "c.yaml")
    assert [n.name for n in notes] == ["cluster.channel", "cluster.install_script_url"]


def test_export_refuses_kubeadm_inventories() -> None:
    native = parse_inventory(
        "cluster: {name: k, distribution: kubeadm, version: '1.31'}\nhosts: [{name: s1, address: 192.0.2.1, role: server}]\n",
        "k.yaml",
        check_files=False,
    )
    with pytest.raises(UsageError, match="kubeadm cluster has no k3s-ansible form"):
        export_k3s_ansible(native, "k.yaml")


# --- the commands ---------------------------------------------------------------------------


def test_cli_import_prints_the_inventory_and_warnings_and_exits_0() -> None:
    code, out, err = invoke("import", "k3s-ansible", str(DATA / "k3s" / "hosts.ini"))
    assert code == 0
    assert out.startswith("# Imported by `provisioner import k3s-ansible` from hosts.ini.")
    assert "warning: token (hosts.ini:17, group k3s_cluster): dropped" in err


def test_cli_import_out_is_written_and_not_overwritten_without_force(tmp_path: Path) -> None:
    out = tmp_path / "native.yaml"
    assert invoke("import", "k3s-ansible", str(DATA / "k3s" / "inventory.yml"), "--out", str(out))[0] == 0
    first = out.read_text()
    out.write_text("mine\n")
    code, _, err = invoke("import", "k3s-ansible", str(DATA / "k3s" / "inventory.yml"), "--out", str(out))
    assert code == 2 and "pass --force" in err and out.read_text() == "mine\n"
    assert invoke("import", "k3s-ansible", str(DATA / "k3s" / "inventory.yml"), "--out", str(out), "--force", "--name", "other")[0] == 0
    changed = [(a, b) for a, b in zip(first.splitlines(), out.read_text().splitlines()) if a != b]
    assert changed == [("  name: edge-lab  # from inventory.yml:21: cluster_context", "  name: other  # from --name")]


def test_cli_import_of_a_file_that_is_not_an_inventory_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out, err = invoke("import", "k3s-ansible", str(REPO / "inventories" / "k3s-homelab.yaml"))
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: k3s-homelab.yaml:1: this is already a provisioner inventory, not an Ansible one"]


def test_cli_export_then_import_round_trips(tmp_path: Path) -> None:
    ansible = tmp_path / "k3s-ansible.yml"
    assert invoke("export", "ansible", "-i", str(REPO / "inventories" / "k3s-homelab.yaml"), "--out", str(ansible))[0] == 0
    code, out, _ = invoke("import", "k3s-ansible", str(ansible))
    assert code == 0
    native = load_inventory(REPO / "inventories" / "k3s-homelab.yaml", check_files=False)
    assert parse_inventory(out, "back.yaml", check_files=False) == native


def test_cli_import_json_output_lists_warnings() -> None:
    import json

    code, out, _ = invoke("import", "k3s-ansible", str(DATA / "k3s" / "list.json"), "--output", "json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["inventory"].startswith("# Imported")
    assert any(w.startswith("token (list.json, group k3s_cluster)") for w in data["warnings"])
