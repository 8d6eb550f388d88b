"""TEST DOUBLE (k3s stand-in, not the real k3s).

What the k3s stand-in says it is (read by the lab for its inventories and by the zipapp's sh prelude).

Upstream: k3s-io/k3s pkg/version/version.go (`k3s version vX (commit)` / `go version`)
"""

from __future__ import annotations

STANDIN_VERSION = "v1.31.4+k3s1"


GO_VERSION = "go1.22.9"


STANDIN_NOTE = "stand-in for testing, not real k3s"
