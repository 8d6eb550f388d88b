"""Command line of the stand-in k3s: version, flag parsing, `k3s kubectl`."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from standin_helpers import STANDIN, SYSTEM_PYTHON, VERSION, find_kubectl, require_prerequisites


def run(args, env=None, root=None, timeout=20, python_flags=()):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "KUBECONFIG"))}
    full.update(env or {})
    if root is not None:
        full["K3S_STANDIN_ROOT"] = str(root)
    return subprocess.run([SYSTEM_PYTHON, *python_flags, str(STANDIN), *args], env=full, capture_output=True, text=True, timeout=timeout)


def test_executable_carries_the_version_line_and_the_sh_prelude():
    data = STANDIN.read_bytes()
    prelude = data[: data.index(b"PK\x03\x04")].decode()  # the zip archive follows the prelude
    assert re.search(r'^# STANDIN_VERSION = "(v[^"]+)"$', prelude, re.M).group(1) == VERSION
    assert "TEST DOUBLE" in prelude
    assert os.access(STANDIN, os.X_OK) and prelude.startswith("#!/bin/sh\n")
    assert prelude.rstrip().endswith('exec /usr/bin/python3 "$0" "$@"')


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_executed_directly_the_sh_prelude_answers_version_like_python_does(flag):
    direct = subprocess.run([str(STANDIN), flag], capture_output=True, text=True, timeout=10)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.splitlines()[0] == f"k3s version {VERSION} (stand-in for testing, not real k3s)"
    if os.access(SYSTEM_PYTHON, os.X_OK):
        assert run([flag]).stdout.splitlines()[0] == direct.stdout.splitlines()[0]


def test_executed_directly_other_commands_run_the_python_part():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("no /usr/bin/python3")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "KUBECONFIG"))}
    env["K3S_STANDIN_KUBECTL"] = "/bin/echo"
    res = subprocess.run([str(STANDIN), "kubectl", "get", "nodes"], env=env, capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("get nodes")


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_says_stand_in_and_needs_no_third_party_modules(flag):
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("no /usr/bin/python3")
    res = run([flag], python_flags=["-S"])  # -S: no dist-packages, so no cryptography/yaml
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"k3s version {VERSION} (stand-in for testing, not real k3s)"
    assert lines[1].startswith("go version ") and "stand-in" in lines[1]


@pytest.mark.parametrize("cmd", ["server", "agent"])
def test_unknown_command_line_flag_is_rejected_naming_it(cmd, tmp_path):
    require_prerequisites(need_kubectl=False)
    res = run([cmd, "--no-such-flag", "x"], root=tmp_path)
    assert res.returncode == 1
    assert "flag provided but not defined: -no-such-flag" in res.stderr
    assert "level=fatal" in res.stderr
    assert not (tmp_path / "var").exists()  # failed before doing anything


def test_agent_fails_on_unknown_or_server_only_config_keys(tmp_path):
    """k3s skips unknown config.yaml keys only for `server`; `agent` treats them as flags."""
    require_prerequisites(need_kubectl=False)
    cfg = tmp_path / "etc/rancher/k3s/config.yaml"
    cfg.parent.mkdir(parents=True)
    for key in ("bogus-key: 1", "tls-san: [a.example]", "cluster-init: true"):
        cfg.write_text(f"server: https://127.0.0.1:1\ntoken: t0ken\n{key}\n")
        res = run(["agent"], root=tmp_path)
        name = key.split(":")[0]
        assert res.returncode == 1, key
        assert f"flag provided but not defined: -{name}" in res.stderr


@pytest.mark.parametrize("env,missing", [({}, "--server is required"), ({"K3S_URL": "https://127.0.0.1:1"}, "--token is required")])
def test_agent_without_server_or_token_exits_1_with_a_clear_message(env, missing, tmp_path):
    require_prerequisites(need_kubectl=False)
    res = run(["agent"], env=env, root=tmp_path)
    assert res.returncode == 1 and missing in res.stderr


def test_bad_flag_values_are_rejected(tmp_path):
    require_prerequisites(need_kubectl=False)
    res = run(["server", "--https-listen-port", "abc"], root=tmp_path)
    assert res.returncode == 1 and 'invalid value "abc" for flag -https-listen-port' in res.stderr
    res = run(["server", "--cluster-init=maybe"], root=tmp_path)
    assert res.returncode == 1 and "invalid boolean value" in res.stderr


def test_k3s_kubectl_and_kubectl_symlink_use_the_default_kubeconfig(server, tmp_path):
    kubectl = find_kubectl()
    env = {"K3S_STANDIN_KUBECTL": kubectl, "HOME": str(tmp_path)}
    res = run(["kubectl", "get", "nodes", "-o", "name"], env=env, root=server.root)
    assert res.returncode == 0, res.stderr
    assert "node/standin-server" in res.stdout.split()
    link = tmp_path / "bin" / "kubectl"
    link.parent.mkdir()
    link.symlink_to(STANDIN)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "KUBECONFIG"))}
    full.update(env, K3S_STANDIN_ROOT=str(server.root))
    res = subprocess.run([SYSTEM_PYTHON, str(link), "get", "nodes", "-o", "name"], env=full, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "node/standin-server" in res.stdout.split()
    # an explicit KUBECONFIG wins over the default
    res = run(["kubectl", "get", "nodes"], env={**env, "KUBECONFIG": str(tmp_path / "none")}, root=server.root)
    assert res.returncode != 0


def test_k3s_kubectl_refuses_to_exec_itself(tmp_path):
    link = tmp_path / "kubectl"
    link.symlink_to(STANDIN)
    res = run(["kubectl", "version", "--client"], env={"K3S_STANDIN_KUBECTL": str(link)}, root=tmp_path, timeout=10)
    assert res.returncode == 1 and "refusing to exec" in res.stderr
    res = run(["kubectl", "get", "nodes"], env={"K3S_STANDIN_KUBECTL_EXEC": "1"}, root=tmp_path, timeout=10)
    assert res.returncode == 1 and "refusing to exec" in res.stderr


def test_unimplemented_commands_fail_clearly():
    res = run(["etcd-snapshot", "save"])
    assert res.returncode == 1 and "not implemented by the stand-in" in res.stderr
