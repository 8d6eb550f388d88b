"""Verify the kubeconfig from this machine: TLS verified against its CA, client cert accepted."""

from __future__ import annotations

from dataclasses import replace

from provisioner import kubeconfig
from provisioner.errors import KubeconfigError
from provisioner.phases import Context, Phase


class VerifyKubeconfig(Phase):
    """An address the certificate does not cover is an error; an API not reachable from here
    (a VIP behind a firewall, say) is a warning. With ``report_only`` (``check``) the result is
    only recorded: the checks report it."""

    title = "verify kubeconfig"

    def __init__(self, *, report_only: bool = False) -> None:
        self.report_only = report_only

    def should_run(self, ctx: Context) -> bool:
        return ctx.results.kubeconfig is not None

    def run(self, ctx: Context) -> None:
        fetched = ctx.results.kubeconfig
        assert fetched is not None
        result = kubeconfig.check(fetched.config)
        ctx.results.kubeconfig = replace(fetched, check=result)
        if self.report_only:
            return
        if result.status == "error":
            raise KubeconfigError(result.detail)
        if result.status == "unreachable":
            ctx.warn(result.detail)
