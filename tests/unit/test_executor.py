"""The executor runs planned steps as they are: records, first failure stops, placeholders filled
only in uploads, values read once and kept as secrets."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from provisioner.errors import ProvisionerError, RemoteCommandError, UploadError
from provisioner.executor import StepFailed, ValueStore, run_steps
from provisioner.secrets import REDACTOR
from provisioner.steps import Command, Placeholder, ReadValue, Step, Upload
from provisioner.testing import FakeRemote
from provisioner.transfer import FileItem

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


class BatchingRemote(FakeRemote):
    """Records each batch of files the executor hands over; ``refuse`` fails that path."""

    def __init__(self, name: str, refuse: str = "") -> None:
        super().__init__(name, strict=True)
        self.batches: list[list[str]] = []
        self.refuse = refuse

    def _upload_all(self, items: Sequence[FileItem]) -> None:
        self.batches.append([item.path for item in items])
        for item in items:
            if item.path == self.refuse:
                raise UploadError(self.name, item.path, "Read-only file system")
            self._upload(item.data, item.path, mode=item.mode)


def upload_steps() -> list[Step]:
    return [
        Step("upload /etc/c.yaml", "r", (Upload("/etc/c.yaml", 'token: "<the token>"\n', 0o600, (TOKEN,)),)),
        Step("upload /usr/local/bin/k3s", "r", (Upload("/usr/local/bin/k3s", b"\x7fELF", 0o755),)),
        Step("upload /var/lib/install.sh", "r", (Upload("/var/lib/install.sh", "#!/bin/sh\n", 0o755),)),
        Step("run", "r", (Command("sh /var/lib/install.sh", 5),)),
    ]


def test_consecutive_upload_steps_are_written_in_one_batch_and_recorded_step_by_step() -> None:
    remote = BatchingRemote("agent")
    remote.on(r"^sh /var/lib/install.sh$")
    values = ValueStore()
    values.put(TOKEN, "s3cr3t")
    records = run_steps(remote, upload_steps(), values)
    assert remote.batches == [["/etc/c.yaml", "/usr/local/bin/k3s", "/var/lib/install.sh"]]
    assert [(r.name, r.ok, [o.exit_code for o in r.operations]) for r in records] == [
        ("upload /etc/c.yaml", True, [0]),
        ("upload /usr/local/bin/k3s", True, [0]),
        ("upload /var/lib/install.sh", True, [0]),
        ("run", True, [0]),
    ]
    assert remote.files["/etc/c.yaml"] == b'token: "s3cr3t"\n'


def test_a_file_that_fails_in_a_batch_fails_its_step_and_stops_the_host_as_one_by_one_would() -> None:
    remote = BatchingRemote("agent", refuse="/usr/local/bin/k3s")
    values = ValueStore()
    values.put(TOKEN, "s3cr3t")
    with pytest.raises(StepFailed) as caught:
        run_steps(remote, upload_steps(), values)
    assert [(r.name, r.ok) for r in caught.value.records] == [("upload /etc/c.yaml", True), ("upload /usr/local/bin/k3s", False)]
    assert isinstance(caught.value.cause, UploadError)
    assert "/var/lib/install.sh" not in remote.files and not remote.commands
