"""Hostile inventories: refused before any connection, one escaped line per problem, in bounded time and memory."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from provisioner.errors import InventoryError, Problem
from provisioner.inventory import K3sCluster, KubeadmCluster, https_url, load_inventory, parse_inventory
from provisioner.yamlload import Limits

HOSTS = "hosts:\n  - {name: c, address: 192.0.2.1, role: server}\n"


def lines_of(text: str | bytes, *, check_files: bool = False, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, "inv.yaml", base_dir=base_dir, check_files=check_files)
    assert caught.value.exit_code == 2
    return caught.value.lines()


def one_line(text: str | bytes, **kwargs: object) -> str:
    lines = lines_of(text, **kwargs)  # type: ignore[arg-type]
    assert len(lines) == 1, lines
    return lines[0]


def refused_within_bounds(text: str) -> str:
    """The one line refusing ``text``: it took < 2 s of CPU and peaked < 50 MB (bounds generous enough never to flake).

    Time and memory are measured in separate runs: tracemalloc slows the code it watches.
    """
    started = time.process_time()
    line = one_line(text)
    elapsed = time.process_time() - started
    assert elapsed < 2.0, f"took {elapsed:.2f}s of CPU"
    tracemalloc.start()
    try:
        assert one_line(text) == line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    return line


def billion_laughs(levels: int = 10) -> str:
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        text += f"a{level}: &a{level} [{refs}]\n"
    return text


# --- YAML that would hang, exhaust memory or crash ------------------------------------------------


def test_billion_laughs_is_refused_fast_and_in_small_memory() -> None:
    line = refused_within_bounds("cluster: {name: a}\n" + HOSTS + billion_laughs())
    assert line.startswith("inv.yaml:")
    assert "expands to more than 100000 values" in line


def test_billion_laughs_inside_a_field_is_refused_too() -> None:
    bomb = billion_laughs().replace("\n", "\n  ").replace("a0:", "  a0:", 1)
    line = refused_within_bounds("cluster:\n  name: a\n  server_args:\n" + "    - x\n" + "extra:\n" + bomb + "\n" + HOSTS)
    assert "expands to more than" in line


def test_deep_nesting_is_refused_fast_with_its_line() -> None:
    flow = refused_within_bounds("cluster: {name: a}\n" + HOSTS + "deep: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert flow.startswith("inv.yaml:4: YAML nested deeper than 32 levels")
    block = "deep:\n" + "".join(" " * i + "k:\n" for i in range(1, 60))
    assert "nested deeper than 32 levels" in refused_within_bounds(block)


def test_too_many_aliases_are_refused() -> None:
    text = "x: &x 1\nlist: [" + ", ".join(["*x"] * 1001) + "]\n"
    assert "more than 1000 YAML aliases" in refused_within_bounds(text)


def test_a_recursive_alias_is_refused() -> None:
    assert one_line("a: &a [1, *a]\n") == "inv.yaml:1: YAML alias *'a' refers to itself"


def test_aliases_and_merge_keys_within_bounds_still_work() -> None:
    inventory = parse_inventory(
        "cluster: {name: a}\nhosts:\n"
        "  - &first {name: c, address: 192.0.2.1, role: server, ssh: &s {user: admin}}\n"
        "  - {<<: *first, name: w, address: 192.0.2.2, role: agent}\n"
        "  - {name: v, address: 192.0.2.3, role: agent, ssh: *s}\n",
        "inv.yaml",
        check_files=False,
    )
    assert [h.role for h in inventory.hosts] == ["server", "agent", "agent"]
    assert inventory.ssh_for(inventory.host("w")).user == "admin"
    assert inventory.ssh_for(inventory.host("v")).user == "admin"


def test_non_utf8_file_is_refused_with_its_line() -> None:
    text = "cluster: {name: a}\n# caf\xe9\n".encode("latin-1") + HOSTS.encode()
    assert one_line(text) == "inv.yaml:2: not UTF-8 text (byte 0xe9 at column 6); save the file as UTF-8"
    utf16 = ("cluster: {name: a}\n" + HOSTS).encode("utf-16")
    assert "UTF-16" in one_line(utf16)


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    inventory = parse_inventory(b"\xef\xbb\xbfcluster: {name: a}\n" + HOSTS.encode(), "inv.yaml", check_files=False)
    assert inventory.cluster.name == "a"


def test_a_file_over_the_size_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.write(b"cluster: {name: a}\n" + HOSTS.encode() + b"#" * (8 << 20) + b"\n")
    tracemalloc.start()
    try:
        with pytest.raises(InventoryError) as caught:
            load_inventory(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.lines() == [f"{big}: larger than 1024 KiB; an inventory is a small text file"]
    assert peak < 4 * 1024 * 1024


def test_the_size_cap_is_a_limit_that_can_be_set() -> None:
    with pytest.raises(InventoryError, match="larger than 1 KiB"):
        parse_inventory("cluster: {name: a}\n" + HOSTS + "#" * 2048, "inv.yaml", check_files=False, limits=Limits(max_bytes=1024))


def test_tags_that_construct_objects_are_refused() -> None:
    line = one_line("cluster: !!python/object:os.system {name: a}\n" + HOSTS)
    assert line.startswith("inv.yaml:1: YAML tag 'tag:yaml.org,2002:python/object:os.system' is not allowed")


def test_a_number_too_long_to_convert_is_one_line_not_a_traceback() -> None:
    assert one_line("cluster: {name: a}\nssh: {port: " + "9" * 5000 + "}\n" + HOSTS) == "inv.yaml: a number in the YAML has too many digits"


def test_two_documents_are_refused() -> None:
    assert "more than one YAML document" in one_line("cluster: {name: a}\n" + HOSTS + "---\ncluster: {name: b}\n")


# --- control characters ---------------------------------------------------------------------------

CONTROL = [
    ("newline in a host name", 'hosts:\n  - {name: "c\\nrm -rf /", address: 192.0.2.1, role: server}\n', "hosts[0].name", "\\n"),
    ("carriage return in an address", 'hosts:\n  - {name: c, address: "192.0.2.1\\r", role: server}\n', "hosts[0].address", "\\r"),
    ("NUL in a user", 'ssh: {user: "root\\0"}\n' + HOSTS, "ssh.user", "\\x00"),
    ("ESC in the cluster name", 'cluster: {name: "a\\e[31m"}\n' + HOSTS, "cluster.name", "\\x1b"),
    ("DEL in a version", 'cluster: {name: a, version: "v1.31.4+k3s1\\x7f"}\n' + HOSTS, "cluster.version", "\\x7f"),
    (
        "C1 control in an interface",
        'hosts:\n  - {name: c, address: 192.0.2.1, role: server, flannel_iface: "eth0\\x9b"}\n',
        "hosts[0].flannel_iface",
        "\\x9b",
    ),
    (
        "bidi override in a flag",
        'cluster: {name: a, server_args: ["--disable=traefik\\u202e"]}\n' + HOSTS,
        "cluster.server_args[0]",
        "\\u202e",
    ),
    ("tab in a key path", 'ssh: {private_key: "/tmp/k\\tx"}\n' + HOSTS, "ssh.private_key", "\\t"),
    ("newline in sudo_password_env", 'ssh: {sudo_password_env: "PW\\nX"}\n' + HOSTS, "ssh.sudo_password_env", "\\n"),
    ("ESC in proxy_jump", 'ssh: {proxy_jump: "bastion\\e]0;x\\a"}\n' + HOSTS, "ssh.proxy_jump", "\\x1b"),
    (
        "newline in an airgap path",
        'cluster: {name: a, version: v1.31.4+k3s1, airgap: {k3s_binary: "k3s\\n", install_script: i.sh}}\n' + HOSTS,
        "cluster.airgap.k3s_binary",
        "\\n",
    ),
]


@pytest.mark.parametrize("what,text,field,escaped", CONTROL, ids=[c[0] for c in CONTROL])
def test_control_characters_in_any_string_are_refused_and_shown_escaped(what: str, text: str, field: str, escaped: str) -> None:
    if not text.startswith("cluster:"):
        text = "cluster: {name: a}\n" + text
    line = one_line(text)
    assert f": {field}: " in line
    assert "control character" in line
    assert escaped in line
    assert all(c == "\t" or c.isprintable() for c in line), repr(line)
    assert "\t" not in line


def test_a_key_with_a_control_character_is_one_escaped_line() -> None:
    line = one_line('cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server, "x\\e[2J": 1}\n')
    assert line == "inv.yaml:3: hosts[0].'x\\x1b[2J': this key contains a control character; remove it"


def test_a_long_value_is_cut_short_in_the_message() -> None:
    line = one_line("cluster: {name: a}\nhosts:\n  - {name: c, address: " + "x" * 5000 + ".example, role: server}\n")
    assert "is not an IP address or DNS name" in line
    assert len(line) < 200


def test_problem_lines_never_hold_raw_control_characters() -> None:
    line = str(Problem("f\x1bx", "bad\nthing\u202e", "inv\r.yaml", 3))
    assert line == "inv\\x0d.yaml:3: f\\x1bx: bad\\x0athing\\u202e"


# --- strict types ---------------------------------------------------------------------------------

TYPES = [
    ("boolean port", "cluster: {name: a}\nssh: {port: true}\n" + HOSTS, "inv.yaml:2: ssh.port: must be a number, not true"),
    (
        "quoted port",
        "cluster: {name: a}\nssh: {port: '22'}\n" + HOSTS,
        "ssh.port: must be a number, not the string '22': write it without quotes",
    ),
    ("boolean timeout", "cluster: {name: a}\nssh: {connect_timeout: false}\n" + HOSTS, "ssh.connect_timeout: must be a number, not false"),
    (
        "number as a name",
        "cluster: {name: 123}\n" + HOSTS,
        "inv.yaml:1: cluster.name: must be a string; YAML reads 123 as a number: write it in quotes",
    ),
    (
        "float as a k3s version",
        "cluster: {name: a, version: 1.30}\n" + HOSTS,
        "cluster.version: write it as a quoted string (YAML reads 1.3 as a number",
    ),
    (
        "number as a user",
        "cluster: {name: a}\nssh: {user: 1000}\n" + HOSTS,
        "ssh.user: must be a string; YAML reads 1000 as a number: write it in quotes",
    ),
    ("boolean as an address", "cluster: {name: a}\nhosts:\n  - {name: c, address: true, role: server}\n", "hosts[0].address: "),
    ("date as a version", "cluster: {name: a, distribution: kubeadm, version: 2024-01-01}\n" + HOSTS, "cluster.version: "),
    ("empty name", "cluster: {name: }\n" + HOSTS, "cluster.name: must be a string; YAML reads an empty value"),
    (
        "number as a flag",
        "cluster: {name: a, server_args: [1]}\n" + HOSTS,
        "cluster.server_args[0]: must be a string; YAML reads 1 as a number",
    ),
]


@pytest.mark.parametrize("what,text,expected", TYPES, ids=[t[0] for t in TYPES])
def test_values_of_the_wrong_type_are_refused_not_coerced(what: str, text: str, expected: str) -> None:
    lines = lines_of(text)
    assert any(expected in line for line in lines), lines


def test_a_user_name_with_shell_characters_is_refused() -> None:
    assert "ssh.user: 'root; reboot' is not a user name" in one_line("cluster: {name: a}\nssh: {user: 'root; reboot'}\n" + HOSTS)
    assert "'a b' is not a user name" in one_line("cluster: {name: a}\nssh: {proxy_jump: 'a b@bastion'}\n" + HOSTS)


# --- URLs -----------------------------------------------------------------------------------------

URLS = [
    ("http://get.k3s.io", "must be an https:// URL"),
    ("ftp://get.k3s.io/x", "must be an https:// URL"),
    ("get.k3s.io", "is not a URL with a host"),
    ("https:///install.sh", "is not a URL with a host"),
    ("https://get k3s.io", "contains ' '"),
    ("https://get.k3s.io/$(reboot)", "contains '$()'"),
    ("https://get.k3s.io/;reboot", "contains ';'"),
    ("https://get.k3s.io/`id`", "contains '`'"),
    ("https://get.k3s.io/x'y", 'contains "\'"'),
    ("https://get.k3s.io/a&b", "contains '&'"),
    ("https://user:secret@get.k3s.io/", "no user name or password in the URL"),
    ("https://token@get.k3s.io/", "no user name or password in the URL"),
    ("https://get.k3s.io:99999/", "is not a URL (Port out of range"),
    ("https://bad_host!/", "contains '!'"),
    ("https://-bad-.example/", "is not a URL with a host"),
]


@pytest.mark.parametrize("url,expected", URLS, ids=[u[0] for u in URLS])
def test_install_script_url_must_be_a_plain_https_url(url: str, expected: str) -> None:
    line = one_line(f'cluster: {{name: a, install_script_url: "{url}"}}\n' + HOSTS)
    assert line.startswith("inv.yaml:1: cluster.install_script_url: ")
    assert expected in line, line
    if "secret" in url:
        assert "secret" in line  # shown so the user finds it; it is their own file
    assert "\n" not in line


@pytest.mark.parametrize(
    "url",
    ["https://get.k3s.io", "https://mirror.example:8443/k3s/install.sh", "https://[2001:db8::1]/install.sh", "https://192.0.2.5/i.sh"],
)
def test_plain_https_urls_are_accepted(url: str) -> None:
    assert https_url(url) == url


def test_package_repo_takes_https_or_plain_http_to_a_private_address_only() -> None:
    text = 'cluster: {name: a, distribution: kubeadm, version: "1.31", package_repo: "URL"}\n' + HOSTS
    lab = parse_inventory(text.replace("URL", "http://10.231.0.1:8181/kubernetes/deb/"), "inv.yaml", check_files=False)
    assert isinstance(lab.cluster, KubeadmCluster) and lab.cluster.package_repo == "http://10.231.0.1:8181/kubernetes/deb/"
    assert "plain http is accepted only for a private IP address" in one_line(text.replace("URL", "http://mirror.example/deb/"))
    assert "plain http is accepted only for a private IP address" in one_line(text.replace("URL", "http://8.8.8.8/deb/"))
    assert "contains ' '" in one_line(text.replace("URL", "https://mirror.example/deb/ trusted=yes"))


# --- files ----------------------------------------------------------------------------------------


def test_known_hosts_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kh").mkdir()
    line = one_line("cluster: {name: a}\nssh: {known_hosts: kh}\n" + HOSTS, check_files=True, base_dir=tmp_path)
    assert line == f"inv.yaml:2: ssh.known_hosts: {tmp_path}/kh: is a directory; known_hosts must be a file"


def test_known_hosts_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    line = one_line(
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server, ssh: {known_hosts: file/sub/kh}}\n",
        check_files=True,
        base_dir=tmp_path,
    )
    assert (
        line
        == f"inv.yaml:3: hosts[0].ssh.known_hosts: {tmp_path}/file/sub/kh: cannot be created: {tmp_path}/file is a file, not a directory"
    )


def test_known_hosts_in_a_read_only_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access

    def access(path: object, mode: int) -> bool:  # root may write anywhere; pretend it may not here
        return False if Path(str(path)) == folder and mode & os.W_OK else real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr("provisioner.inventory.os.access", access)
    line = one_line("cluster: {name: a}\nssh: {known_hosts: ro/kh}\n" + HOSTS, check_files=True, base_dir=tmp_path)
    assert line == f"inv.yaml:2: ssh.known_hosts: {folder}/kh: cannot be created: {folder} is not writable"


def test_known_hosts_that_exists_or_can_be_created_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "existing").write_text("")
    for value in ("existing", "new.known_hosts", "new-dir/deeper/known_hosts"):
        inventory = parse_inventory(
            f"cluster: {{name: a}}\nssh: {{known_hosts: {value}}}\n" + HOSTS, "inv.yaml", base_dir=tmp_path, check_files=True
        )
        assert inventory.ssh.known_hosts == tmp_path / value


# --- other tools' inventories ---------------------------------------------------------------------

K3S_ANSIBLE_YAML = """\
k3s_cluster:
  children:
    server:
      hosts:
        192.16.35.11:
    agent:
      hosts:
        192.16.35.12:
  vars:
    ansible_port: 22
    k3s_version: v1.30.2+k3s1
"""

K3S_ANSIBLE_UNDER_ALL = """\
all:
  children:
    k3s_cluster:
      children:
        server: {hosts: {10.0.0.1: {}}}
        agent: {hosts: {10.0.0.2: {}}}
"""

KUBESPRAY_YAML = """\
all:
  hosts:
    node1: {ansible_host: 95.54.0.12, ip: 10.3.0.1}
  children:
    kube_control_plane: {hosts: {node1: {}}}
    kube_node: {hosts: {node1: {}}}
    etcd: {hosts: {node1: {}}}
    k8s_cluster:
      children: {kube_control_plane: {}, kube_node: {}}
"""

K3S_ANSIBLE_INI = """\
[server]
192.16.35.11

[agent]
192.16.35.12

[k3s_cluster:children]
server
agent
"""

KUBESPRAY_INI = """\
# kubespray sample
[all]
node1 ansible_host=95.54.0.12 ip=10.3.0.1

[kube_control_plane]
node1

[etcd]
node1

[kube_node]
node1

[k8s_cluster:children]
kube_control_plane
kube_node
"""

FOREIGN = [
    (
        "k3s-ansible YAML",
        K3S_ANSIBLE_YAML,
        "inv.yaml:1: this is an Ansible inventory for k3s-ansible",
        "provisioner import k3s-ansible inv.yaml",
    ),
    (
        "k3s-ansible under all",
        K3S_ANSIBLE_UNDER_ALL,
        "inv.yaml:1: this is an Ansible inventory for k3s-ansible",
        "provisioner import k3s-ansible inv.yaml",
    ),
    ("kubespray YAML", KUBESPRAY_YAML, "inv.yaml:1: this is an Ansible inventory for kubespray", "provisioner import kubespray inv.yaml"),
    (
        "k3s-ansible INI",
        K3S_ANSIBLE_INI,
        "inv.yaml:1: this is an Ansible INI inventory for k3s-ansible",
        "provisioner import k3s-ansible inv.yaml",
    ),
    ("kubespray INI", KUBESPRAY_INI, "inv.yaml:2: this is an Ansible INI inventory for kubespray", "provisioner import kubespray inv.yaml"),
]


@pytest.mark.parametrize("what,text,start,command", FOREIGN, ids=[f[0] for f in FOREIGN])
def test_other_tools_inventories_get_one_line_pointing_to_import(what: str, text: str, start: str, command: str) -> None:
    line = one_line(text)
    assert line.startswith(start)
    assert f"`{command}`" in line
    assert "did you mean" not in line


def test_the_import_hint_quotes_a_file_name_for_the_shell(tmp_path: Path) -> None:
    path = tmp_path / "my hosts.yml"
    path.write_text(K3S_ANSIBLE_YAML)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert f"`provisioner import k3s-ansible '{path}'`" in caught.value.lines()[0]


# --- the per-distribution models ------------------------------------------------------------------


def test_cluster_model_follows_the_distribution() -> None:
    k3s = parse_inventory("cluster: {name: a}\n" + HOSTS, "inv.yaml", check_files=False)
    kubeadm = parse_inventory('cluster: {name: a, distribution: kubeadm, version: "1.31"}\n' + HOSTS, "inv.yaml", check_files=False)
    assert isinstance(k3s.cluster, K3sCluster) and k3s.cluster.distribution == "k3s"
    assert k3s.cluster.install_script_url == "https://get.k3s.io"
    assert isinstance(kubeadm.cluster, KubeadmCluster) and kubeadm.cluster.distribution == "kubeadm"
    assert (kubeadm.cluster.pod_network_cidr, kubeadm.cluster.flannel_version) == ("10.244.0.0/16", "v0.26.1")
    assert "pod_network_cidr" not in K3sCluster.model_fields
    assert not {"channel", "server_args", "agent_args", "airgap", "install_script_url"} & set(KubeadmCluster.model_fields)


DISTRIBUTION_RULES = [
    (
        "kubeadm field on k3s",
        "cluster: {name: a, pod_network_cidr: 10.0.0.0/16}\n",
        "inv.yaml:1: cluster.pod_network_cidr: only for distribution kubeadm (this cluster's distribution is k3s)",
    ),
    (
        "package_repo on k3s",
        "cluster: {name: a, package_repo: 'https://m.example/'}\n",
        "cluster.package_repo: only for distribution kubeadm",
    ),
    (
        "k3s flags on kubeadm",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', server_args: [--x]}\n",
        "cluster.server_args: k3s flags do not apply to kubeadm clusters",
    ),
    (
        "channel on kubeadm",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', channel: stable}\n",
        "cluster.channel: kubeadm clusters take cluster.version",
    ),
    (
        "airgap on kubeadm",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', airgap: {k3s_binary: k, install_script: i}}\n",
        "cluster.airgap: airgap uploads are supported for k3s only",
    ),
    (
        "install_script_url on kubeadm",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', install_script_url: 'https://x.example'}\n",
        "cluster.install_script_url: only for distribution k3s",
    ),
    (
        "kubeadm version format",
        "cluster: {name: a, distribution: kubeadm, version: v1.31.4+k3s1}\n",
        'cluster.version: \'v1.31.4+k3s1\' is not a Kubernetes version like "1.31" or "1.31.4"',
    ),
    (
        "flannel version format",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', flannel_version: latest}\n",
        "cluster.flannel_version: 'latest' is not a version like v0.26.1",
    ),
    (
        "bad pod network",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', pod_network_cidr: 10.244.0.1/16}\n",
        "cluster.pod_network_cidr: '10.244.0.1/16' is not a network in CIDR form",
    ),
    (
        "typo in a kubeadm field",
        "cluster: {name: a, distribution: kubeadm, version: '1.31', pod_network: x}\n",
        "cluster.pod_network: unknown key (did you mean 'pod_network_cidr'?)",
    ),
    ("typo in a k3s field", "cluster: {name: a, vesion: v1.31.4+k3s1}\n", "cluster.vesion: unknown key (did you mean 'version'?)"),
    (
        "distribution not a string",
        "cluster: {name: a, distribution: 3}\n",
        "inv.yaml:1: cluster.distribution: must be one of 'k3s' or 'kubeadm', not 3",
    ),
    ("cluster not a mapping", "cluster: 5\n", "inv.yaml:1: cluster: must be a mapping"),
]


@pytest.mark.parametrize("what,text,expected", DISTRIBUTION_RULES, ids=[d[0] for d in DISTRIBUTION_RULES])
def test_each_distribution_refuses_what_is_not_its_own(what: str, text: str, expected: str) -> None:
    lines = lines_of(text + HOSTS)
    assert any(expected in line for line in lines), lines


def test_cluster_as_narrows_to_the_distribution_model_or_refuses() -> None:
    kubeadm = parse_inventory('cluster: {name: a, distribution: kubeadm, version: "1.31"}\n' + HOSTS, "inv.yaml", check_files=False)
    assert kubeadm.cluster_as(KubeadmCluster).version == "1.31"
    with pytest.raises(TypeError, match="the inventory is for kubeadm, not K3sCluster"):
        kubeadm.cluster_as(K3sCluster)


def test_thousands_of_problems_give_a_screenful_not_a_flood() -> None:
    hosts = "".join(f"  - {{name: H{i}, address: 192.0.2.1, role: server}}\n" for i in range(500))
    lines = lines_of("cluster: {name: a}\nhosts:\n" + hosts)
    assert len(lines) == 51
    assert lines[0].startswith("inv.yaml:3: hosts[0].name: 'H0' is not a valid node name")
    assert lines[-1] == "… and 450 more problems"


def test_a_raw_control_character_anywhere_in_the_file_is_refused_with_its_line() -> None:
    assert one_line("cluster: {name: a}\n# title \x1b]0;owned\x07\n" + HOSTS) == (
        "inv.yaml:2: control character U+001B in the file; YAML does not allow it raw"
    )
    assert one_line(b"cluster: {name: a}\n" + HOSTS.encode() + b"x: \x00\n").startswith("inv.yaml:4: control character U+0000")
