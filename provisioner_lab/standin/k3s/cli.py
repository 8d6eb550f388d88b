"""TEST DOUBLE (k3s stand-in, not the real k3s).

The k3s command line: server, agent, kubectl (execs the real kubectl), --version, usage.

Upstream: k3s-io/k3s cmd/server/main.go (multicall: k3s, kubectl, crictl, ctr), pkg/cli/cmds/root.go
"""

from __future__ import annotations

import os
import platform
import sys
import threading

from . import util
from .util import DEFAULT_KUBECONFIG, REAL_KUBECTL, Fatal, hp, log
from .version import GO_VERSION, STANDIN_NOTE, STANDIN_VERSION


def run_kubectl(args):
    target = os.environ.get("K3S_STANDIN_KUBECTL") or REAL_KUBECTL
    me = os.path.realpath(os.path.abspath(sys.argv[0]))  # the executable (a zipapp)
    if os.environ.get("K3S_STANDIN_KUBECTL_EXEC") or os.path.realpath(target) == me:
        sys.stderr.write(
            "k3s (stand-in): refusing to exec %s: it is this stand-in itself. Install "
            "the real kubectl (apt-get install kubernetes-client).\n" % target
        )
        return 1
    if not os.access(target, os.X_OK):
        sys.stderr.write(
            "k3s (stand-in): 'kubectl' is delegated to %s, which is not installed (apt-get install kubernetes-client).\n" % target
        )
        return 1
    env = dict(os.environ)
    explicit = any(a == "--kubeconfig" or a.startswith("--kubeconfig=") for a in args)
    if not env.get("KUBECONFIG") and not explicit:
        path = hp(DEFAULT_KUBECONFIG)
        if os.path.exists(path) and not os.access(path, os.R_OK):
            sys.stderr.write(
                "Unable to read %s, please start server with --write-kubeconfig-mode "
                "or --write-kubeconfig-group to modify kube config permissions\n" % path
            )
        env["KUBECONFIG"] = path
    env["K3S_STANDIN_KUBECTL_EXEC"] = "1"
    os.execve(target, ["kubectl"] + list(args), env)
    return 1


def print_version():
    print("k3s version %s (%s)" % (STANDIN_VERSION, STANDIN_NOTE))
    print("go version %s (stand-in: python %s)" % (GO_VERSION, platform.python_version()))


USAGE = """NAME:
   k3s - Kubernetes, but small and simple -- STAND-IN FOR TESTING, NOT REAL k3s

USAGE:
   k3s [global options] command [command options] [arguments...]

VERSION:
   %s (%s)

COMMANDS:
   server   Run management server
   agent    Run node agent
   kubectl  Run kubectl (execs %s)

GLOBAL OPTIONS:
   --debug          (logging) Turn on debug logs
   --help, -h       show help
   --version, -v    print the version
""" % (STANDIN_VERSION, STANDIN_NOTE, REAL_KUBECTL)


def run_command(cmd, args):
    # imported here: `k3s kubectl` (run on every wait and node listing) needs none of them, and
    # the real binary answers it without starting a server
    from .agent import run_agent
    from .config import FlagError, parse_command_config
    from .server import install_signal_handlers, run_server

    stop = threading.Event()
    try:
        cfg, positional, node_args = parse_command_config(cmd, args)
    except FlagError as e:
        sys.stderr.write("Incorrect Usage: %s\n\n" % e)
        sys.stderr.write(
            "NAME:\n   k3s %s - Run %s (stand-in)\n\nUSAGE:\n   k3s %s [OPTIONS]\n\n"
            % (cmd, "management server" if cmd == "server" else "node agent", cmd)
        )
        log("fatal", str(e))
        return 1
    util.DEBUG = util.DEBUG or bool(cfg.get("debug"))
    if positional:
        log("warning", "ignoring unexpected arguments: %s" % " ".join(positional))
    install_signal_handlers(stop)
    if cmd == "server":
        return run_server(cfg, node_args, stop)
    return run_agent(cfg, node_args, stop)


def main(argv):
    prog = os.path.basename(argv[0])
    if prog == "kubectl":
        return run_kubectl(argv[1:])
    if prog in ("crictl", "ctr"):
        sys.stderr.write("k3s (stand-in): %s is not implemented by the stand-in\n" % prog)
        return 1
    args = list(argv[1:])
    while args and args[0] in ("--debug", "-debug"):
        util.DEBUG = True
        args = args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] in ("-v", "--version", "version"):
        print_version()
        return 0
    cmd, rest = args[0], args[1:]
    if cmd == "kubectl":
        return run_kubectl(rest)
    if cmd in ("server", "agent"):
        if any(a in ("-h", "--help") for a in rest):
            sys.stdout.write("k3s %s [OPTIONS] (stand-in; see README.md)\n" % cmd)
            return 0
        try:
            return run_command(cmd, rest)
        except Fatal as e:
            log("fatal", str(e))
            return 1
    if cmd.startswith("-"):
        sys.stderr.write("Incorrect Usage: flag provided but not defined: -%s\n" % cmd.lstrip("-"))
        return 1
    sys.stderr.write("k3s (stand-in): command %r is not implemented by the stand-in (supported: server, agent, kubectl, --version)\n" % cmd)
    return 1
