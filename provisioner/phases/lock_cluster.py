"""Lock the cluster: one run at a time for every command that changes hosts.

Put ``LockCluster("<command>")`` in an action's phases right after the facts (the server that
holds the cluster is known from them) and before anything is validated, planned or changed:

- before any phase runs (``prepare``) it takes the **local lock** of the inventory on this
  machine, so a second run with the same inventory is refused before it connects;
- when it runs it takes the **cluster lock** on the server that holds the cluster (the first
  server already running it, else the first inventory server), refusing runs from other
  machines or other inventory files for the same cluster;
- both are released when the action ends, whatever happens (``clean_up``); a run that is killed
  releases them too (the kernel drops its flock, the server's sshd ends the holding shell).

A run that had to wait for the cluster lock (``--wait-lock``) gathers the facts again: the run
that held the lock has changed the hosts since.
"""

from __future__ import annotations

import logging
from pathlib import Path

from provisioner import runlog
from provisioner.errors import LocalFileError, ProvisionerError
from provisioner.inventory import Host
from provisioner.lock import ClusterLock, Holder, LocalLock, LockHeld, local_lock_path
from provisioner.phases import Context, Phase
from provisioner.phases.gather_facts import GatherFacts

log = logging.getLogger("provisioner.phases")


class LockCluster(Phase):
    """Takes the local lock (``prepare``) and the cluster lock (``run``); releases both (``clean_up``)."""

    title = "lock the cluster"

    def __init__(self, command: str) -> None:
        self.command = command
        self._local: LocalLock | None = None
        self._cluster: ClusterLock | None = None

    def holder(self) -> Holder:
        return Holder.me(f"provisioner {self.command}")

    def prepare(self, ctx: Context) -> None:
        inventory, options = ctx.inputs.inventory, ctx.inputs.options
        # without an inventory file (a library caller), the lock is per cluster name
        source = options.inventory_path or Path(f"<cluster {inventory.cluster.name}>")
        lock = LocalLock(local_lock_path(runlog.state_dir(), source, inventory.cluster.name), self.holder())
        try:
            lock.acquire(wait=options.wait_lock)
        except OSError as error:  # the state directory cannot be written
            raise LocalFileError(str(lock.path), f"cannot take the lock: {error.strerror or error}") from None
        self._local = lock
        log.info("local lock taken: %s", lock.path)

    def run(self, ctx: Context) -> None:
        server = self.lock_server(ctx)
        if server.name not in ctx.results.remotes:
            raise ProvisionerError(f"{server.name}: not connected, so the cluster lock cannot be taken there")
        lock = ClusterLock(ctx.remote(server), self.holder())
        wait = ctx.inputs.options.wait_lock
        ctx.inputs.reporter.step(server.name, "taking the cluster lock")
        try:
            lock.acquire(wait=0)
        except LockHeld as held:
            if not wait:
                raise
            ctx.inputs.reporter.note(f"waiting up to {wait:.0f}s: {held}")
            lock.acquire(wait=wait)
            self._cluster = lock
            self._gather_again(ctx)
        self._cluster = lock
        log.info("cluster lock taken on %s", server.name)

    def clean_up(self, ctx: Context) -> None:
        cluster, local, self._cluster, self._local = self._cluster, self._local, None, None
        if cluster is not None:
            cluster.release()
        if local is not None:
            local.release()

    @staticmethod
    def lock_server(ctx: Context) -> Host:
        """The server that holds the cluster, as the facts tell (else the first inventory server)."""
        facts = ctx.results.facts
        if facts:
            return ctx.inputs.distribution.init_server(facts)
        return ctx.inputs.inventory.servers[0]

    @staticmethod
    def _gather_again(ctx: Context) -> None:
        if ctx.results.facts:
            GatherFacts().run(ctx)
