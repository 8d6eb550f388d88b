"""TEST DOUBLE (k3s stand-in, not the real k3s).

The stand-in's kube-controller-manager and kube-scheduler in one loop over the store: garbage
collection, Deployments, ReplicaSets and DaemonSets (workloads.py), the scheduler and the node
side of pods (scheduler.py), then workload status and PodDisruptionBudget status
(disruption.py). A pass runs whenever the store changed (and at least every second, for
node readiness and time-outs); passes that change nothing write nothing.

Upstream: kubernetes/kubernetes cmd/kube-controller-manager/app/controllermanager.go,
cmd/kube-scheduler/app/server.go
"""

from __future__ import annotations

import threading
import time
import traceback

from .disruption import Disruption
from .scheduler import Scheduler
from .store import Store
from .util import log
from .workloads import Controllers


class ControllerManager:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.workloads = Controllers(store)
        self.scheduler = Scheduler(store)
        self.disruption = Disruption(store)

    def sync_once(self) -> None:
        """One pass of every controller, holding the store lock (API writes wait for it)."""
        with self.store.lock:
            self.workloads.sync()
            self.scheduler.sync()
            self.workloads.sync_status()
            self.disruption.sync()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            before = self.store.rv
            try:
                self.sync_once()
            except Exception as e:  # noqa: BLE001 -- a bad object must not stop the loop
                log("error", "controller manager: %s\n%s" % (e, traceback.format_exc()))
            if self.store.rv != before:  # this pass wrote: run again until a pass is quiet
                time.sleep(0.05)
                continue
            with self.store.cond:
                if self.store.rv == before and not stop.is_set():
                    self.store.cond.wait(interval)

    def start(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stop,), name="controllers", daemon=True)
        t.start()
        return t
