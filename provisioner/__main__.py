from __future__ import annotations

from provisioner.entry import run

run()
