"""TEST DOUBLE (k3s stand-in, not the real k3s).

The host's network addresses (every interface address, the default-route address) for
Node addresses and serving-certificate SANs.

Upstream: k3s-io/k3s pkg/util/net.go and pkg/agent/config/config.go (node-ip default)
"""

from __future__ import annotations

import ipaddress
import subprocess

from .util import read_host_text


def _is_link_local(addr):
    try:
        return ipaddress.ip_address(addr).is_link_local
    except ValueError:
        return True


def host_interface_addresses():
    """[(ifname, address)] for every address on the host's interfaces (no link-local)."""
    result = []
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            parts = line.split()
            for fam in ("inet", "inet6"):
                if fam in parts:
                    i = parts.index(fam)
                    addr = parts[i + 1].split("/")[0]
                    if not _is_link_local(addr):
                        result.append((parts[1].rstrip(":"), addr))
        if result:
            return result
    except (OSError, subprocess.SubprocessError):
        pass
    # fallback: /proc (no ip(8) in the image)
    prev = None
    for line in read_host_text("/proc/net/fib_trie").splitlines():
        s = line.strip()
        if s.startswith("|--"):
            prev = s[3:].strip()
        elif "/32 host LOCAL" in s and prev:
            if ("?", prev) not in result:
                result.append(("?", prev))
    for line in read_host_text("/proc/net/if_inet6").splitlines():
        parts = line.split()
        if len(parts) >= 6:
            raw = parts[0]
            addr = str(ipaddress.ip_address(":".join(raw[i : i + 4] for i in range(0, 32, 4))))
            if not _is_link_local(addr):
                result.append((parts[5], addr))
    return result


def default_route_address():
    iface = None
    for line in read_host_text("/proc/net/route").splitlines()[1:]:
        parts = line.split()
        if len(parts) > 2 and parts[1] == "00000000":
            iface = parts[0]
            break
    addrs = host_interface_addresses()
    for name, addr in addrs:
        if iface and name == iface and ":" not in addr:
            return addr
    for _name, addr in addrs:
        if ":" not in addr and not addr.startswith("127."):
            return addr
    return "127.0.0.1"
