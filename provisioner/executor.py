"""The one executor: runs a host's planned steps in order over its ``Remote``.

It never decides anything: each operation of each step is carried out as planned, recorded with
its exit code and timing (in the run log and in the returned records), and the first failure
stops the host with a typed error. Values produced by ``ReadValue`` operations (join tokens, CA
hashes) go into a ``ValueStore``; uploads that name placeholders are filled from it right before
they are written, so secrets exist only in memory, in the store and in the 0600 files on hosts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from provisioner.errors import HostError, ProvisionerError, RemoteCommandError, UploadError
from provisioner.remote import Remote
from provisioner.secrets import REDACTOR, Secret
from provisioner.steps import (
    Command,
    Operation,
    Placeholder,
    ReadValue,
    Step,
    Upload,
    Wait,
)
from provisioner.transfer import FileItem

log = logging.getLogger("provisioner.executor")

#: Characters a filled value may not hold: placeholders sit inside quoted YAML/TOML scalars.
_UNSAFE = set('"\\\n\r')


class ValueStore:
    """Values produced during the run, by placeholder. Secret values are kept as ``Secret``."""

    def __init__(self, values: dict[Placeholder, Secret | str] | None = None) -> None:
        self._values: dict[Placeholder, Secret | str] = dict(values or {})
        self._lock = threading.Lock()

    def put(self, placeholder: Placeholder, value: str) -> None:
        with self._lock:
            self._values[placeholder] = Secret(value) if placeholder.secret else value

    def prefill(self, values: dict[Placeholder, Secret | str]) -> None:
        """Values already known before the run changes anything (from the cluster state)."""
        with self._lock:
            self._values.update(values)

    def knows(self, placeholder: Placeholder) -> bool:
        return placeholder in self._values

    def known(self) -> frozenset[Placeholder]:
        with self._lock:
            return frozenset(self._values)

    def fill(self, text: str, placeholders: Iterable[Placeholder]) -> str:
        """``text`` with each placeholder replaced by its value (never logged)."""
        for placeholder in placeholders:
            value = self._values.get(placeholder)
            if value is None:
                raise ProvisionerError(f"{placeholder.text} is needed but no step produced it")
            real = value.reveal() if isinstance(value, Secret) else value
            if _UNSAFE & set(real):
                raise ProvisionerError(f"{placeholder.text} holds characters that cannot go into a config file")
            text = text.replace(placeholder.text, real)
        return text


@dataclass(frozen=True)
class OperationRecord:
    """One operation as it ran: its description (no secrets), exit code and seconds."""

    operation: dict[str, object]
    exit_code: int | None
    seconds: float
    attempts: int = 1


@dataclass
class StepRecord:
    """One step as it ran on one host."""

    host: str
    name: str
    operations: list[OperationRecord] = field(default_factory=list)
    ok: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ok": self.ok,
            "operations": [
                {**o.operation, "exit_code": o.exit_code, "seconds": round(o.seconds, 3), "attempts": o.attempts} for o in self.operations
            ],
        }


class StepFailed(HostError):
    """A step failed on a host; ``cause`` is the typed error, ``records`` what ran up to it."""

    def __init__(self, cause: ProvisionerError, records: list[StepRecord]) -> None:
        self.cause = cause
        self.records = records
        host = cause.host if isinstance(cause, HostError) else (records[-1].host if records else "?")
        message = cause.message if isinstance(cause, HostError) else str(cause)
        super().__init__(host, message)

    def lines(self) -> list[str]:
        return self.cause.lines()


def run_steps(remote: Remote, steps: Iterable[Step], values: ValueStore) -> list[StepRecord]:
    """Run ``steps`` in order on ``remote``; stop at the first failure (raises ``StepFailed``
    carrying the records so far). Returns one record per step.

    Consecutive steps that only upload files are written in one batch (``Remote.put_all``: one
    round trip to check and rename them all); each file is still replaced whole, in order, and a
    failure stops at the step whose file failed, as if they had run one by one."""
    records: list[StepRecord] = []
    for batch in batches(steps):
        if len(batch) > 1:
            _run_uploads(remote, batch, values, records)
            continue
        (step,) = batch
        record = StepRecord(remote.name, step.name)
        records.append(record)
        log.info("%s: step: %s (%s)", remote.name, step.name, step.reason)
        for op in step.operations:
            started = time.monotonic()
            try:
                code, attempts = _run_operation(remote, op, values)
            except ProvisionerError as error:
                _fail(remote, step, record, op, error, time.monotonic() - started)
                raise StepFailed(error, records) from None
            elapsed = time.monotonic() - started
            record.operations.append(OperationRecord(op.describe(), code, elapsed, attempts))
            log.info("%s:   %s -> %s in %.2fs", remote.name, _short(op), code, elapsed)
    return records


def batches(steps: Iterable[Step]) -> list[list[Step]]:
    """``steps`` in the groups ``run_steps`` runs together: consecutive upload-only steps form
    one group, every other step is a group of its own."""
    groups: list[list[Step]] = []
    for step in steps:
        if _uploads_only(step) and groups and _uploads_only(groups[-1][-1]):
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _uploads_only(step: Step) -> bool:
    return bool(step.operations) and all(isinstance(op, Upload) for op in step.operations)


def _run_uploads(remote: Remote, batch: list[Step], values: ValueStore, records: list[StepRecord]) -> None:
    """Write the files of upload-only ``batch`` together; record each step as if it ran alone."""
    uploads = [(step, op) for step in batch for op in step.operations if isinstance(op, Upload)]
    for step in batch:
        log.info("%s: step: %s (%s)", remote.name, step.name, step.reason)
    started = time.monotonic()
    files: list[FileItem] = []
    failure: ProvisionerError | None = None
    failed = len(uploads)
    for _, op in uploads:
        try:
            files.append(_file(op, values))
        except ProvisionerError as error:
            failure, failed = error, len(files)
            break
    try:
        if files:
            remote.put_all(files)
    except ProvisionerError as error:
        paths = [item.path for item in files]
        failure = error
        failed = paths.index(error.path) if isinstance(error, UploadError) and error.path in paths else 0
    elapsed = (time.monotonic() - started) / len(uploads)
    by_step: dict[int, StepRecord] = {}
    for index, (step, op) in enumerate(uploads):
        record = by_step.get(id(step))
        if record is None:
            record = by_step[id(step)] = StepRecord(remote.name, step.name)
            records.append(record)
        if failure is not None and index == failed:
            _fail(remote, step, record, op, failure, elapsed)
            raise StepFailed(failure, records)
        record.operations.append(OperationRecord(op.describe(), 0, elapsed))
        log.info("%s:   %s -> 0 in %.2fs", remote.name, _short(op), elapsed)


def _fail(remote: Remote, step: Step, record: StepRecord, op: Operation, error: ProvisionerError, elapsed: float) -> None:
    status = error.exit_status if isinstance(error, RemoteCommandError) else None
    record.operations.append(OperationRecord(op.describe(), status if status is not None else -1, elapsed))
    record.ok = False
    log.info("%s: step failed: %s: %s", remote.name, step.name, error)


def _file(op: Upload, values: ValueStore) -> FileItem:
    """The bytes ``op`` writes, placeholders filled."""
    data: str | bytes = op.local_file.read_bytes() if op.local_file is not None else op.content
    if op.fills:
        assert isinstance(data, str), "placeholders are filled in text files only"
        data = values.fill(data, op.fills)
    return FileItem(data.encode() if isinstance(data, str) else data, op.path, op.mode)


def _short(op: Operation) -> str:
    if isinstance(op, Upload):
        return f"upload {op.path}"
    if isinstance(op, Command):
        return f"run {REDACTOR.redact(op.text)[:100]}"
    if isinstance(op, Wait):
        return f"wait for {op.what}"
    return f"read {', '.join(p.text for p in op.produces)}"


def _run_operation(remote: Remote, op: Operation, values: ValueStore) -> tuple[int, int]:
    """Carry out one operation; (exit code, attempts)."""
    if isinstance(op, Upload):
        remote.put_all([_file(op, values)])
        return 0, 1
    if isinstance(op, Command):
        return _command(remote, op), 1
    if isinstance(op, Wait):
        return _wait(remote, op)
    return _read(remote, op, values)


def _command(remote: Remote, op: Command) -> int:
    result = remote.sudo(op.text, check=False, timeout=op.timeout)
    if result.ok:
        return 0
    output = REDACTOR.redact((result.stderr + "\n" + result.stdout).strip())
    if op.check_output is not None:
        typed = op.check_output(remote.name, output)
        if typed is not None:
            raise typed
    hints = []
    if op.cleanup:
        remote.sudo(op.cleanup, check=False, timeout=180)
        hints.append(f"`{op.cleanup}` was run so that a rerun starts clean")
    detail = output
    if op.journal_unit:
        journal = journal_tail(remote, op.journal_unit)
        detail = journal or output
        hints.append(f"see `journalctl -u {op.journal_unit}` on {remote.name}")
    if op.hint:
        hints.append(op.hint)
    raise RemoteCommandError(remote.name, result.command, result.exit_code, detail, "; ".join(hints))


def _wait(remote: Remote, op: Wait) -> tuple[int, int]:
    deadline = time.monotonic() + op.timeout
    attempts = 0
    while True:
        attempts += 1
        result = remote.sudo(op.command, check=False, timeout=20)
        if result.ok and result.stdout.strip() == op.expect:
            return 0, attempts
        if time.monotonic() >= deadline:
            break
        time.sleep(op.interval)
    last = ""
    if op.journal_unit:
        journal = journal_tail(remote, op.journal_unit)
        last = f"; last log line: {journal.splitlines()[-1]}" if journal else ""
    raise HostError(remote.name, f"{op.what} did not become ready within {op.timeout:.0f}s{last}")


def _read(remote: Remote, op: ReadValue, values: ValueStore) -> tuple[int, int]:
    deadline = time.monotonic() + op.retry_for
    attempts = 0
    while True:
        attempts += 1
        result = remote.sudo(op.command, check=not op.retry_for, timeout=op.timeout, secret_output=True)
        found = op.parse(result.stdout) if result.ok else None
        if found is not None:
            for placeholder, value in zip(op.produces, found, strict=True):
                values.put(placeholder, value)
            return result.exit_code, attempts
        if time.monotonic() >= deadline:
            raise HostError(remote.name, op.failure)
        time.sleep(op.interval)


def journal_tail(remote: Remote, unit: str, lines: int = 20) -> str:
    """The last lines of a unit's journal, secrets masked."""
    result = remote.sudo(f"journalctl -u {unit} -n {lines} --no-pager -o cat", check=False, timeout=20)
    return REDACTOR.redact(result.stdout.strip())
