"""Get the kubeconfig: fetch the server's admin kubeconfig, point it at the API endpoint, name it
after the cluster, and write it (0600, atomic) or merge it into the user's kubeconfig files
(kubectl's rules for several files; entries of another cluster with the same names are refused)."""

from __future__ import annotations

from pathlib import Path

from provisioner import kubeconfig
from provisioner.phases import Context, Phase
from provisioner.summary import FetchedKubeconfig


class GetKubeconfig(Phase):
    """Writes only when the content changed, so a rerun leaves the file untouched."""

    title = "get kubeconfig"

    def should_run(self, ctx: Context) -> bool:
        return ctx.init_server.name not in ctx.failures

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        inputs = ctx.inputs
        options = inputs.options
        inputs.reporter.step(init.name, "fetching kubeconfig")
        text = ctx.remote(init).get(inputs.distribution.admin_kubeconfig)
        config = kubeconfig.rewrite(
            text,
            cluster_name=inputs.inventory.cluster.name,
            server=inputs.distribution.server_url(init),
            context_name=options.context_name,
        )
        if options.merge:
            written = kubeconfig.merge_files(
                kubeconfig.kubeconfig_files(options.kubeconfig_out),
                config,
                set_current=options.set_current,
                replace=options.replace,
            )
        else:
            target = options.kubeconfig_out or Path(f"{inputs.inventory.cluster.name}.kubeconfig")
            written = kubeconfig.write_file(target, config)
        ctx.results.kubeconfig = FetchedKubeconfig(config, str(config.get("current-context", "")), written)
        inputs.reporter.step(init.name, "kubeconfig written" if written.changed else "kubeconfig up to date")
