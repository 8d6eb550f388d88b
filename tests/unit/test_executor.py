"""The executor runs planned steps as they are: records, first failure stops, placeholders filled
only in uploads, values read once and kept as secrets."""

from __future__ import annotations

import logging

import pytest

from provisioner.errors import ProvisionerError, RemoteCommandError
from provisioner.executor import StepFailed, ValueStore, run_steps
from provisioner.secrets import REDACTOR
from provisioner.steps import Command, Placeholder, ReadValue, Step, Upload
from provisioner.testing import FakeRemote

TOKEN = Placeholder("t", "<the token>")


def read_token(command: str = "cat /token", retry_for: float = 0.0) -> Step:
    return Step(
        "read the token",
        "hosts need it",
        (
            ReadValue(
                command, (TOKEN,), lambda out: (out.strip(),) if out.strip() else None, "no token", retry_for=retry_for, interval=0.01
            ),
        ),
    )


def test_steps_run_in_order_and_each_operation_is_recorded_with_its_exit_code() -> None:
    remote = FakeRemote("h", strict=True)
    remote.on(r"^echo one$").on(r"^echo two$")
    records = run_steps(
        remote, [Step("a", "r", (Command("echo one", 5), Upload("/f", "x"))), Step("b", "r", (Command("echo two", 5),))], ValueStore()
    )
    assert [(r.name, [o.exit_code for o in r.operations]) for r in records] == [("a", [0, 0]), ("b", [0])]
    assert [c for _, c in remote.commands] == ["echo one", "echo two"] and remote.uploads == ["/f"]


def test_the_first_failure_stops_the_host_and_carries_the_records() -> None:
    remote = FakeRemote("h", strict=True)
    remote.on(r"^false$", exit_code=3, stderr="nope")
    with pytest.raises(StepFailed) as caught:
        run_steps(remote, [Step("a", "r", (Command("false", 5),)), Step("b", "r", (Command("echo never", 5),))], ValueStore())
    assert isinstance(caught.value.cause, RemoteCommandError) and caught.value.cause.exit_status == 3
    assert [(r.name, r.ok, [o.exit_code for o in r.operations]) for r in caught.value.records] == [("a", False, [3])]
    assert not remote.ran("never")


def test_a_value_read_on_one_host_fills_the_placeholder_in_another_hosts_file_only() -> None:
    server = FakeRemote("server", strict=True)
    answers = iter(["", "", "s3cr3t-value\n"])  # the file appears after a while
    server.on(r"^cat /token$", handler=lambda r, c: (0, next(answers), ""))
    values = ValueStore()
    run_steps(server, [read_token(retry_for=5)], values)
    assert len(server.commands) == 3
    agent = FakeRemote("agent", strict=True)
    run_steps(agent, [Step("config", "r", (Upload("/etc/c.yaml", 'token: "<the token>"\n', 0o600, (TOKEN,)),))], values)
    assert agent.files["/etc/c.yaml"] == b'token: "s3cr3t-value"\n'
    assert REDACTOR.redact("s3cr3t-value") == "***"  # a secret value is masked wherever it would be logged


def test_a_placeholder_nobody_produced_stops_before_writing() -> None:
    agent = FakeRemote("agent", strict=True)
    with pytest.raises(StepFailed, match="<the token> is needed but no step produced it"):
        run_steps(agent, [Step("config", "r", (Upload("/c", "<the token>", fills=(TOKEN,)),))], ValueStore())
    assert agent.uploads == []


def test_a_value_that_would_break_the_file_is_refused() -> None:
    values = ValueStore()
    values.put(TOKEN, 'a"b')
    with pytest.raises(ProvisionerError, match="cannot go into a config file"):
        values.fill('token: "<the token>"', (TOKEN,))


def test_a_failed_command_runs_its_cleanup_and_names_the_journal(caplog: pytest.LogCaptureFixture) -> None:
    remote = FakeRemote("h", strict=True)
    remote.on(r"^install$", exit_code=1, stderr="boom")
    remote.on(r"^undo$")
    remote.on(r"^journalctl -u svc ", stdout="svc[1]: bad config\n")
    with caplog.at_level(logging.INFO, logger="provisioner.executor"), pytest.raises(StepFailed) as caught:
        run_steps(remote, [Step("s", "r", (Command("install", 5, cleanup="undo", journal_unit="svc"),))], ValueStore())
    assert str(caught.value.cause) == (
        "h: `install` exited 1: svc[1]: bad config (`undo` was run so that a rerun starts clean; see `journalctl -u svc` on h)"
    )
    assert remote.ran("^undo$")
    assert "step failed: s" in caplog.text
