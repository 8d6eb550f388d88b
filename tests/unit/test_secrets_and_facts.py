"""Secrets never print themselves and are masked in logs; fact output parses into facts."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from provisioner.distros.k3s import K3s, K3sFacts
from provisioner.facts import parse_host_facts, parse_key_values
from provisioner.flags import flags_to_config
from provisioner.secrets import REDACTOR, RedactingFilter, Secret
from tests.unit.conftest import make_inventory


def test_a_secret_shows_stars_in_str_repr_and_format() -> None:
    secret = Secret("hunter2-and-more")
    assert str(secret) == "***" and repr(secret) == "Secret('***')"
    assert f"{secret}" == "***"
    assert secret.reveal() == "hunter2-and-more"


def test_k3s_tokens_are_masked_whole_and_their_secret_part_alone() -> None:
    token = "K10" + "ef" * 32 + "::server:" + "9f8e7d6c5b4a" * 2
    Secret(token)
    secret_part = token.split("::server:")[1]
    assert REDACTOR.redact(f"token: {token}") == "token: ***"
    assert REDACTOR.redact(f"password {secret_part} here") == "password *** here"


def test_token_shaped_strings_are_masked_even_if_never_registered() -> None:
    text = "K10" + "12" * 32 + "::server:abcdef0123456789 and abcdef.0123456789abcdef"
    assert REDACTOR.redact(text) == "*** and ***"


def test_log_records_are_redacted_including_their_arguments(caplog: pytest.LogCaptureFixture) -> None:
    Secret("sudo-password-xyz")
    logger = logging.getLogger("provisioner.test")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("sent %s to sudo", "sudo-password-xyz")
    finally:
        logger.removeHandler(handler)
    assert records == ["sent *** to sudo"]


def test_fact_output_parses_into_host_facts() -> None:
    values = parse_key_values(
        "os.id=ubuntu\nos.id_like=debian\nos.version_id=24.04\nos.pretty_name=Ubuntu 24.04 LTS\narch=aarch64\n"
        "mem_kib=2048000\ncpus=4\nsystemd=yes\nhostname=node-a\nmachine_id=abc\nuser=root\ntool.curl=yes\nnoise line\n"
    )
    facts = parse_host_facts("a", values)
    assert (facts.os.id, facts.os.family, facts.arch, facts.memory_mib, facts.cpus) == ("ubuntu", "debian", "aarch64", 2000, 4)
    assert facts.systemd and facts.tools == {"curl"} and facts.user == "root"


@pytest.mark.parametrize(
    "os_id,like,family",
    [("rocky", "rhel centos fedora", "rhel"), ("almalinux", "rhel", "rhel"), ("debian", "", "debian"), ("arch", "", "other")],
)
def test_os_family(os_id: str, like: str, family: str) -> None:
    facts = parse_host_facts("a", {"os.id": os_id, "os.id_like": like})
    assert facts.os.family == family


def test_k3s_facts_from_an_agent() -> None:
    dist = K3s(make_inventory())
    facts = dist.parse_facts(parse_key_values("k3s.version=v1.31.4+k3s1\nk3s.unit.k3s-agent=failed\nk3s.config_sha256=abc\n"))
    assert facts == K3sFacts(version="v1.31.4+k3s1", units={"k3s-agent": "failed"}, config_sha256="abc")
    assert facts.role == "agent" and facts.installed and not facts.active and facts.service_state == "failed"


def test_flags_become_config_entries() -> None:
    config, problems = flags_to_config(
        [
            "--disable=traefik",
            "--disable=metrics-server",
            "--secrets-encryption",
            "--cluster-cidr=10.50.0.0/16",
            "--etcd-expose-metrics=true",
        ]
    )
    assert problems == []
    assert config == {
        "disable": ["traefik", "metrics-server"],
        "secrets-encryption": True,
        "cluster-cidr": ["10.50.0.0/16"],
        "etcd-expose-metrics": "true",
    }


def test_flag_problems_are_named() -> None:
    _, problems = flags_to_config(["--node-label", "--foo=1", "--foo=2", "--token=abc"])
    assert problems == [
        "[0] --node-label needs a value: --node-label=VALUE",
        "[2] --foo is given twice and cannot be repeated",
        "[3] --token cannot be set here: the join token is managed by the provisioner",
    ]


def test_k3s_fact_script_asks_systemctl_once_and_reads_firewalld_from_its_answer(tmp_path: Path) -> None:
    """The script runs in sh with stub systemctl/firewall-cmd first on PATH (each call logged)."""
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "systemctl").write_text(
        f'#!/bin/sh\necho "systemctl $*" >> {calls}\n'
        'for u in "$@"; do case $u in is-active|-*) ;; firewalld) echo active;; *) echo inactive;; esac; done\nexit 3\n'
    )
    (stubs / "firewall-cmd").write_text(
        f'#!/bin/sh\necho "firewall-cmd $*" >> {calls}\ncase "$*" in *--zone*) echo 10.0.0.0/8;; *) echo 6443/tcp;; esac\n'
    )
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    script = K3s(make_inventory()).fact_script()
    run = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}"))
    assert run.returncode == 0, run.stderr
    facts = K3s(make_inventory()).parse_facts(parse_key_values(run.stdout))
    assert facts.firewalld == "active"
    assert facts.firewalld_ports == frozenset({"6443/tcp"}) and facts.firewalld_trusted == frozenset({"10.0.0.0/8"})
    assert [line for line in calls.read_text().splitlines() if line.startswith("systemctl")] == [
        "systemctl is-active "
        + " ".join(["firewalld", *(u for u in ("k3s", "k3s-agent") if Path(f"/etc/systemd/system/{u}.service").is_file())])
    ]
