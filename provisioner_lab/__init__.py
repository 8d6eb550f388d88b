"""TEST DOUBLE: an on-machine lab of real Linux hosts for testing the provisioner (not product code).

Hosts are Debian bookworm systemd-nspawn containers (systemd as PID 1, sshd, own hostname,
machine-id, SSH host keys, overlay filesystem, static address on bridge br-lab). Product code
never imports this package; ``provisioner lab …`` loads it lazily. See README.md beside this file.
"""

from __future__ import annotations

from provisioner_lab.lab import Lab, LabHost
from provisioner_lab.system import LabError

__all__ = ["Lab", "LabError", "LabHost"]
