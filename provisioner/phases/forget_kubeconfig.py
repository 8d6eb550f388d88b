"""Forget the cluster in the kubeconfig: the context, cluster and user this tool wrote
(``./<cluster>.kubeconfig`` or ``--out``) or merged (``$KUBECONFIG`` / ``~/.kube/config``) are
taken out, each changed file backed up first."""

from __future__ import annotations

from pathlib import Path

from provisioner import kubeconfig
from provisioner.phases import Context, Phase


class ForgetKubeconfig(Phase):
    """Only entries under the cluster's context name whose server is this cluster's API are
    touched; entries of another cluster with the same name stay."""

    title = "forget the kubeconfig entries"

    def run(self, ctx: Context) -> None:
        inputs = ctx.inputs
        options = inputs.options
        name = inputs.inventory.cluster.name
        written = options.kubeconfig_out or Path(f"{name}.kubeconfig")
        paths = [written] + [p for p in kubeconfig.kubeconfig_files() if p != written]
        server = inputs.distribution.server_url(inputs.distribution.init_server(ctx.results.facts))
        changed = kubeconfig.remove_entries(paths, options.context_name or name, server)
        ctx.results.kubeconfig_cleaned.extend(changed.items())
