"""Get the kubeconfig: fetch the server's admin kubeconfig, point it at the API endpoint, name it
after the cluster, and write it (0600, atomic) or merge it into the user's kubeconfig files
(kubectl's rules for several files; entries of another cluster with the same names are refused)."""

from __future__ import annotations

from pathlib import Path

from provisioner import kubeconfig
from provisioner.phases import Context, Phase


class GetKubeconfig(Phase):
    """Writes only when the content changed, so a rerun leaves the file untouched."""

    title = "get kubeconfig"

    def should_run(self, ctx: Context) -> bool:
        return ctx.init_server.name not in ctx.failures

    def run(self, ctx: Context) -> None:
        init = ctx.init_server
        ctx.reporter.step(init.name, "fetching kubeconfig")
        text = ctx.remote(init).get(ctx.distribution.admin_kubeconfig)
        config = kubeconfig.rewrite(
            text,
            cluster_name=ctx.inventory.cluster.name,
            server=ctx.distribution.server_url(init),
            context_name=ctx.options.context_name,
        )
        ctx.kubeconfig = config
        if ctx.options.merge:
            ctx.kubeconfig_written = kubeconfig.merge_files(
                kubeconfig.kubeconfig_files(ctx.options.kubeconfig_out), config,
                set_current=ctx.options.set_current, replace=ctx.options.replace,
            )
        else:
            target = ctx.options.kubeconfig_out or Path(f"{ctx.inventory.cluster.name}.kubeconfig")
            ctx.kubeconfig_written = kubeconfig.write_file(target, config)
        ctx.reporter.step(init.name, "kubeconfig written" if ctx.kubeconfig_written.changed else "kubeconfig up to date")
