"""Check the cluster: nodes, the API through the kubeconfig, and the distribution's system pods,
read with kubectl over SSH on the first server (the path the Ready wait uses). Read-only."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from provisioner.checks import (
    CheckResult,
    api_check,
    daemonset_check,
    failed,
    node_checks,
    system_pods_check,
)
from provisioner.distros import ClusterState
from provisioner.errors import ProvisionerError
from provisioner.inventory import Host
from provisioner.nodes import NodeListing
from provisioner.phases import Context, Phase
from provisioner.quorum import lost_quorum


def api_server(ctx: Context) -> Host | None:
    """The server kubectl runs on: the run's first server when ``up`` chose one, else the first
    connected inventory server holding the admin kubeconfig (else the first connected one)."""
    if ctx.results.state is not None:
        return ctx.init_server
    connected = [s for s in ctx.inputs.inventory.servers if s.name in ctx.results.remotes and s.name not in ctx.failures]
    health = ctx.results.health
    chosen = next((s for s in connected if s.name in health and health[s.name].admin_kubeconfig), None)
    chosen = chosen or (connected[0] if connected else None)
    if chosen is not None:
        ctx.results.state = ClusterState(init_server=chosen)
    return chosen


class CheckCluster(Phase):
    """Every inventory node registered, Ready, on the wanted version and not cordoned (unless
    allowed); the API answers through the written kubeconfig with TLS verified from here; every
    kube-system pod Running or Succeeded; the distribution's DaemonSets (Flannel) ready."""

    title = "check cluster"

    def run(self, ctx: Context) -> None:
        rows = ctx.results.checks
        dist = ctx.inputs.distribution
        options = ctx.inputs.options.check
        server = api_server(ctx)
        fetched = ctx.results.kubeconfig
        api_row = api_check(fetched.check.status, fetched.check.detail) if fetched and fetched.check else None
        if server is None or server.name in ctx.failures:
            rows.append(failed("kubectl on a server", "no server answered over SSH"))
            rows.extend([api_row] if api_row else [])
            return
        ctx.inputs.reporter.step(server.name, "checking nodes and system pods")
        server, listing, errors = self._list_nodes(ctx, server)
        remote = ctx.remote(server)
        if listing.nodes is None and any(lost_quorum(e) for e in errors.values()):
            detail = "; ".join(f"{name}: {error}" for name, error in errors.items())
            rows.append(failed("etcd quorum", f"etcd has lost quorum: no server's API can read the cluster ({detail})"))
        elif listing.nodes is None:
            rows.append(failed(f"kubectl on {server.name}", f"`kubectl get nodes` failed: {listing.error}"))
        else:
            ctx.results.nodes = listing.nodes
            rows.extend(
                node_checks(
                    listing.nodes,
                    [h.name for h in ctx.inputs.inventory.hosts],
                    version_problem=dist.version_problem,
                    allow_cordoned=options.allow_cordoned if options else (),
                )
            )
        rows.extend([api_row] if api_row else [])
        rows.append(self._read(ctx, server, "get pods -n kube-system -o json", "kube-system pods", system_pods_check))
        for namespace, name in dist.system_daemonsets:
            command = dist.kubectl(f"get daemonset {shlex.quote(name)} -n {shlex.quote(namespace)} -o json")
            result = remote.sudo(command, check=False, timeout=30)
            rows.append(daemonset_check(namespace, name, result.ok, result.stdout if result.ok else result.stderr))
        ctx.inputs.reporter.done(server.name, "checked")

    @staticmethod
    def _list_nodes(ctx: Context, first: Host) -> tuple[Host, NodeListing, dict[str, str]]:
        """The nodes from ``first``, else from the next connected server whose API answers (a
        stopped server does not fail the check while the others keep the cluster)."""
        dist = ctx.inputs.distribution
        others = [
            s for s in ctx.inputs.inventory.servers if s.name != first.name and s.name in ctx.results.remotes and s.name not in ctx.failures
        ]
        errors: dict[str, str] = {}
        listing = NodeListing(None)
        for server in [first, *others]:
            listing = dist.list_nodes(ctx.remote(server))
            if listing.nodes is not None:
                return server, listing, errors
            errors[server.name] = listing.error
        return first, NodeListing(None, errors.get(first.name, "")), errors

    @staticmethod
    def _read(ctx: Context, server: Host, args: str, name: str, judge: Callable[[str], CheckResult]) -> CheckResult:
        result = ctx.remote(server).sudo(ctx.inputs.distribution.kubectl(args), check=False, timeout=30)
        if not result.ok:
            return failed(name, f"`kubectl {args}` failed: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
        try:
            return judge(result.stdout)
        except ProvisionerError as error:
            return failed(name, str(error))
