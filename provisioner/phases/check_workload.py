"""Check a workload: nginx 2 → 4 replicas in a throw-away namespace, spread over the nodes, then
the namespace deleted — all with kubectl over SSH on the first server (``check --workload``).

The only phase of ``check`` that changes the cluster, and only inside its own namespace
``provisioner-check-<random>``: it is removed afterwards whatever happens — on success, on a
failed step, and on Ctrl-C or SIGTERM (then with a detached command on the server, so the removal
finishes even when this process has to end at once). Every kubectl call is bounded.
"""

from __future__ import annotations

import shlex
import time

from provisioner.checks import CheckResult, failed, ok, schedulable
from provisioner.errors import ProvisionerError
from provisioner.inventory import Host
from provisioner.phases import Context, Phase
from provisioner.phases.check_cluster import api_server
from provisioner.remote import Remote
from provisioner.workload import (
    DEPLOYMENT,
    LABELS,
    REPLICAS,
    SCALED,
    manifest,
    namespace_name,
    parse_deployment,
    pods_per_node,
)

POLL_SECONDS = 2.0
KUBECTL_SECONDS = 60.0  # the limit of one kubectl call


class CheckWorkload(Phase):
    """Creates the namespace and Deployment (manifest uploaded as a root-owned file, removed right
    after ``kubectl apply``), scales it to 4, waits for 4 available replicas (``--timeout``),
    checks they run on at least min(2, schedulable nodes) nodes, and deletes the namespace."""

    title = "check workload"

    def should_run(self, ctx: Context) -> bool:
        options = ctx.inputs.options.check
        return options is not None and options.workload

    def run(self, ctx: Context) -> None:
        server = api_server(ctx)
        rows = ctx.results.checks
        if server is None or server.name in ctx.failures:
            rows.append(failed("workload", "no server answered over SSH"))
            return
        namespace = namespace_name()
        remote = ctx.remote(server)
        try:
            rows.extend(self._exercise(ctx, server, namespace))
        except Exception as error:  # noqa: BLE001 - a failed step is a failed check; the namespace goes
            why = str(error) if isinstance(error, ProvisionerError) else repr(error)
            rows.append(failed("workload", why))
            rows.append(self._remove(ctx, remote, namespace))
        except BaseException:  # Ctrl-C, SIGTERM: remove the namespace without waiting for it
            self._remove_detached(ctx, remote, namespace)
            raise
        else:
            rows.append(self._remove(ctx, remote, namespace))

    def _kubectl(self, ctx: Context, remote: Remote, args: str, *, timeout: float = KUBECTL_SECONDS) -> str:
        return remote.sudo(ctx.inputs.distribution.kubectl(args), timeout=timeout).stdout

    def _exercise(self, ctx: Context, server: Host, namespace: str) -> list[CheckResult]:
        options = ctx.inputs.options.check
        assert options is not None
        remote = ctx.remote(server)
        reporter = ctx.inputs.reporter
        ns = shlex.quote(namespace)
        path = f"/tmp/{namespace}.json"
        started = time.monotonic()

        reporter.step(server.name, f"workload: {DEPLOYMENT} with {REPLICAS} replicas in {namespace}")
        remote.put(manifest(namespace, options.image), path, mode=0o600)
        apply = ctx.inputs.distribution.kubectl(f"apply -f {path}")
        remote.sudo(f"{apply}; rc=$?; rm -f {path}; exit $rc", timeout=KUBECTL_SECONDS)

        reporter.step(server.name, f"workload: scaling {DEPLOYMENT} to {SCALED}")
        self._kubectl(ctx, remote, f"scale deployment {DEPLOYMENT} -n {ns} --replicas={SCALED}")

        deadline = started + ctx.inputs.options.timeout
        while True:
            status = parse_deployment(self._kubectl(ctx, remote, f"get deployment {DEPLOYMENT} -n {ns} -o json"))
            reporter.step(server.name, f"workload: {status.available}/{SCALED} available")
            if status.available >= SCALED and status.updated >= SCALED:
                break
            if time.monotonic() >= deadline:
                return [
                    failed(
                        "workload nginx 2 → 4",
                        f"{status.available}/{SCALED} replicas available "
                        f"({status.ready} ready) after {ctx.inputs.options.timeout:.0f}s, image {options.image}",
                    )
                ]
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - started
        rows = [ok("workload nginx 2 → 4", f"{SCALED}/{SCALED} replicas available after {seconds:.0f}s, image {options.image}")]

        selector = shlex.quote(f"app={LABELS['app']}")
        spread = pods_per_node(self._kubectl(ctx, remote, f"get pods -n {ns} -l {selector} -o json"))
        nodes = ctx.results.nodes if ctx.results.nodes is not None else ctx.inputs.distribution.list_nodes(remote).nodes or []
        wanted = min(2, len(schedulable(nodes)))
        placed = ", ".join(f"{node} ({count})" for node, count in sorted(spread.items()))
        if len(spread) < wanted:
            rows.append(failed("workload spread", f"the pods run on {len(spread)} node(s), at least {wanted} wanted: {placed or 'none'}"))
        else:
            rows.append(ok("workload spread", f"{len(spread)} nodes: {placed}"))
        return rows

    def _remove(self, ctx: Context, remote: Remote, namespace: str) -> CheckResult:
        """Delete the namespace and wait until it is gone (bounded)."""
        ctx.inputs.reporter.step(remote.name, f"workload: deleting {namespace}")
        name = "workload namespace removed"
        command = ctx.inputs.distribution.kubectl(f"delete namespace {shlex.quote(namespace)} --ignore-not-found --wait=true --timeout=60s")
        try:
            remote.sudo(f"rm -f /tmp/{namespace}.json; {command}", timeout=KUBECTL_SECONDS + 30)
        except ProvisionerError as error:
            return failed(name, f"{error}; remove it with `kubectl delete namespace {namespace}`")
        return ok(name, namespace)

    def _remove_detached(self, ctx: Context, remote: Remote, namespace: str) -> None:
        """Start the namespace's deletion on the server in a session of its own (it runs on when
        the SSH connection ends) and return at once; errors are only logged."""
        command = ctx.inputs.distribution.kubectl(f"delete namespace {shlex.quote(namespace)} --ignore-not-found")
        inner = f"rm -f /tmp/{namespace}.json; timeout 120 {command}"
        try:
            remote.sudo(f"setsid -f sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1", timeout=10)
        except Exception as error:  # noqa: BLE001 - we are ending anyway; the log says what was left
            ctx.warn(
                f"could not start the removal of namespace {namespace}: {error}; remove it with `kubectl delete namespace {namespace}`"
            )
