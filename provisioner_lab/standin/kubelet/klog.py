"""TEST DOUBLE (kubelet stand-in, not the real kubelet).

klog-style log lines (I/W/E MMDD hh:mm:ss.us pid file] msg), secrets masked.

Upstream: kubernetes/klog klog.go (header format)
"""

from __future__ import annotations

import datetime
import os
import sys

from ..k3s import util
from ..k3s.util import mask
from .version import STANDIN_NOTE, STANDIN_VERSION


def klog(level, msg):
    """klog-style line on stderr (I/W/E), secrets masked."""
    now = datetime.datetime.now()
    sev = {"info": "I", "warning": "W", "error": "E", "fatal": "F", "debug": "I"}.get(level, "I")
    if level == "debug" and not util.DEBUG:
        return
    line = "%s%s %s %7d standin] %s\n" % (sev, now.strftime("%m%d"), now.strftime("%H:%M:%S.%f"), os.getpid(), mask(msg))
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def version_line(prog="Kubernetes"):
    return "%s %s (%s)" % (prog, STANDIN_VERSION, STANDIN_NOTE)
