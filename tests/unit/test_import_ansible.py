"""Reading Ansible inventories: the INI parser, YAML and ansible-inventory JSON, group_vars/host_vars
folders, Ansible's variable precedence, and refusing files that are not inventories."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from provisioner.errors import InventoryError
from provisioner.importers.ansible import expand_host_pattern, load_ansible_inventory
from provisioner.inventory import load_inventory

DATA = Path(__file__).parent / "data" / "import"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def values(path: Path, host: str) -> dict[str, object]:
    return {name: var.value for name, var in load_ansible_inventory(path).resolve(host).items()}


# --- INI ----------------------------------------------------------------------------------


def test_ini_host_lines_read_quoted_values_literals_ports_and_trailing_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        # leading comment
        ; another comment
        lone ansible_host=192.0.2.9
        [web]
        web1 ansible_host=192.0.2.10 ansible_user="deploy user" flag=True count=3  # trailing
        web2:2222 note='a b=c'
        """,
    )
    inventory = load_ansible_inventory(path)
    assert inventory.kind == "ini"
    assert inventory.hosts == ["lone", "web1", "web2"]
    assert inventory.groups["ungrouped"].hosts == ["lone"]
    web1 = values(path, "web1")
    assert web1 == {"ansible_host": "192.0.2.10", "ansible_user": "deploy user", "flag": True, "count": 3}
    assert values(path, "web2") == {"ansible_port": 2222, "note": "a b=c"}
    assert inventory.resolve("web1")["ansible_user"].origin.line == 5


def test_ini_vars_sections_are_strings_and_children_nest_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        [a]
        h1
        [parent:children]
        a
        [parent:vars]
        port=22
        quoted="x y"
        """,
    )
    inventory = load_ansible_inventory(path)
    assert inventory.groups["parent"].children == ["a"]
    assert inventory.members("parent") == ["h1"]
    assert values(path, "h1") == {"port": "22", "quoted": "x y"}


def test_host_ranges_expand_with_padding_letters_and_stride() -> None:
    assert expand_host_pattern("node[01:03]") == ["node01", "node02", "node03"]
    assert expand_host_pattern("db-[a:c].example") == ["db-a.example", "db-b.example", "db-c.example"]
    assert expand_host_pattern("n[1:7:3]") == ["n1", "n4", "n7"]
    assert expand_host_pattern("plain") == ["plain"]


def test_ini_ranges_make_one_host_each(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[agent]\nworker[1:3] ansible_user=ops\n")
    inventory = load_ansible_inventory(path)
    assert inventory.members("agent") == ["worker1", "worker2", "worker3"]
    assert values(path, "worker3") == {"ansible_user": "ops"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h0\n[g:weird]\n", "unknown section kind 'weird'"),
        ("[g:vars]\njust words\n", "expected key=value in [g:vars]"),
        ("[g]\nh1 not-an-assignment\n", "expected key=value after the host name"),
        ("[g:children]\na b\n", "one group name per line"),
        ("[g]\nh1 x='unbalanced\n", "No closing quotation"),
    ],
)
def test_ini_lines_that_are_not_inventory_exit_2_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "hosts.ini", text)
    with pytest.raises(InventoryError) as error:
        load_ansible_inventory(path)
    assert error.value.exit_code == 2
    (line,) = error.value.lines()
    assert message in line and "hosts.ini:2" in line


# --- YAML and JSON -----------------------------------------------------------------------


def test_yaml_json_and_ini_forms_hold_the_same_groups_and_variables() -> None:
    forms = [load_ansible_inventory(DATA / "k3s" / name) for name in ("inventory.yml", "hosts.ini", "list.json")]
    assert [f.kind for f in forms] == ["yaml", "ini", "json"]
    for form in forms:
        assert form.members("server") == ["10.10.0.11"]
        assert form.members("agent") == ["10.10.0.12", "10.10.0.13"]
        resolved = {k: v.value for k, v in form.resolve("10.10.0.12").items()}
        assert resolved["k3s_version"] == "v1.30.6+k3s1"
        assert str(resolved["ansible_port"]) == "22"
        assert resolved["extra_server_args"] == "--disable traefik --tls-san k3s.example.net"


def test_yaml_values_keep_file_and_line() -> None:
    var = load_ansible_inventory(DATA / "k3s" / "inventory.yml").resolve("10.10.0.11")["k3s_version"]
    assert (var.origin.file, var.origin.line, var.origin.scope) == ("inventory.yml", 16, "group k3s_cluster")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("native.yaml", "cluster: {name: x}\nhosts:\n  - {name: a, address: 192.0.2.1, role: server}\n", "already a provisioner inventory"),
        ("list.yaml", "- a\n- b\n", "the top level must map group names"),
        ("odd.yaml", "web:\n  servers: [a]\n", "group 'web' has servers"),
        ("hosts.yaml", "web:\n  hosts: [a, b]\n", "web.hosts must map host names"),
        ("empty.yaml", "all:\n  vars: {x: 1}\n", "no hosts"),
        ("list.json", '{"web": {"hosts": ["a"], "extra": 1}}', "holds more than hosts, vars and children"),
        ("broken.json", '{"web": ', "not JSON"),
    ],
)
def test_files_that_are_not_ansible_inventories_exit_2_with_one_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InventoryError) as error:
        load_ansible_inventory(path)
    assert error.value.exit_code == 2
    assert len(error.value.lines()) == 1 and message in error.value.lines()[0]


def test_json_hostvars_are_host_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.json",
        """\
        {"_meta": {"hostvars": {"a": {"x": "host"}}},
         "all": {"children": ["g"], "vars": {"x": "all"}},
         "g": {"hosts": ["a", "b"], "vars": {"x": "group"}}}
        """,
    )
    assert values(path, "a")["x"] == "host"
    assert values(path, "b")["x"] == "group"


# --- precedence ----------------------------------------------------------------------------


def test_precedence_all_then_parent_then_child_then_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.yml",
        """\
        all:
          vars: {a: all, b: all, c: all, d: all}
          children:
            parent:
              vars: {b: parent, c: parent, d: parent}
              children:
                child:
                  vars: {c: child, d: child}
                  hosts:
                    h1: {d: host}
        """,
    )
    assert values(path, "h1") == {"a": "all", "b": "parent", "c": "child", "d": "host"}


def test_child_group_wins_over_parent_even_when_declared_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        [child]
        h1
        [child:vars]
        v=child
        [parent:children]
        child
        [parent:vars]
        v=parent
        """,
    )
    assert values(path, "h1")["v"] == "child"


def test_sibling_groups_merge_by_name_the_later_name_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        [zeta]
        h1
        [alpha]
        h1
        [zeta:vars]
        v=zeta
        [alpha:vars]
        v=alpha
        """,
    )
    assert values(path, "h1")["v"] == "zeta"


def test_ansible_group_priority_orders_siblings_before_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        [zeta]
        h1
        [alpha]
        h1
        [zeta:vars]
        v=zeta
        [alpha:vars]
        v=alpha
        ansible_group_priority=10
        """,
    )
    assert values(path, "h1") == {"v": "alpha"}


def test_group_vars_and_host_vars_folders_follow_ansible_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        """\
        [server]
        s1 inline=host
        [k3s_cluster:children]
        server
        [server:vars]
        file_group=inventory
        in_all_file=inventory-group
        """,
    )
    write(tmp_path, "group_vars/all.yml", "in_all_file: group_vars-all\nonly_all: yes-all\nfrom_dir: file\n")
    write(tmp_path, "group_vars/all/10-first.yml", "from_dir: first\n")
    write(tmp_path, "group_vars/all/20-second.yaml", "from_dir: second\n")
    write(tmp_path, "group_vars/k3s_cluster.yml", "file_group: group_vars-parent\nlevel: parent\n")
    write(tmp_path, "group_vars/server", "level: child\n")
    write(tmp_path, "host_vars/s1.yml", "inline: host_vars\n")
    got = values(path, "s1")
    # group_vars/all beats every group var written in the inventory file itself
    assert got["in_all_file"] == "group_vars-all"
    # a group_vars/<group> file beats the inventory's own group vars
    assert got["file_group"] == "group_vars-parent"
    assert got["level"] == "child"
    assert got["from_dir"] == "second"
    assert got["inline"] == "host_vars"
    origin = load_ansible_inventory(path).resolve("s1")["level"].origin
    assert (origin.file, origin.line) == ("group_vars/server", 1)


def test_unreadable_vars_files_are_noted_not_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[server]\ns1\n")
    write(tmp_path, "group_vars/server/vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    write(tmp_path, "group_vars/all.yml", "- not\n- a mapping\n")
    notes = [str(n) for n in load_ansible_inventory(path).notes]
    assert any("group_vars/server/vault.yml" in n and "ansible-vault" in n for n in notes)
    assert any("group_vars/all.yml" in n and "does not map" in n for n in notes)


# --- -i given an Ansible inventory -----------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "tool"),
    [
        (DATA / "k3s" / "hosts.ini", "k3s-ansible"),
        (DATA / "k3s" / "inventory.yml", "k3s-ansible"),
        (DATA / "k3s" / "list.json", "k3s-ansible"),
        (DATA / "kubespray" / "mycluster" / "inventory.ini", "kubespray"),
    ],
)
def test_an_ansible_inventory_given_as_i_names_the_import_command(file: Path, tool: str) -> None:
    with pytest.raises(InventoryError) as error:
        load_inventory(file)
    (line,) = error.value.lines()
    assert f"provisioner import {tool} {file}" in line
