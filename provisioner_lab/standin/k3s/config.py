"""TEST DOUBLE (k3s stand-in, not the real k3s).

Command line and config.yaml: k3s's flags (server and agent), flags beat config beats K3S_*
env, config.yaml.d and `key+:` appends, unknown flags fatal; tokens (K10<hash>::user:secret).

Upstream: k3s-io/k3s pkg/cli/cmds/server.go, pkg/cli/cmds/agent.go, pkg/configfilearg/parser.go,
pkg/clientaccess/token.go
"""

from __future__ import annotations

import base64
import hashlib
import os

from .util import DEFAULT_CONFIG, MASK, Fatal, add_secret, hp, log, read_file


class Flag:
    def __init__(self, name, kind="str", env=None, short=None, default=None):
        self.name, self.kind, self.env, self.short, self.default = name, kind, env, short, default


def _flags(*specs):
    return [Flag(*s) if isinstance(s, tuple) else Flag(s) for s in specs]


# flags shared by `server` and `agent` (names as in k3s v1.31)
COMMON_FLAGS = _flags(
    ("config", "str", "K3S_CONFIG_FILE", "c"),
    ("debug", "bool", "K3S_DEBUG"),
    ("v", "int"),
    "vmodule",
    ("log", "str", None, "l"),
    ("alsologtostderr", "bool"),
    ("token", "str", "K3S_TOKEN", "t"),
    ("token-file", "str", "K3S_TOKEN_FILE"),
    ("server", "str", "K3S_URL", "s"),
    ("data-dir", "str", None, "d"),
    ("node-name", "str", "K3S_NODE_NAME"),
    ("with-node-id", "bool"),
    ("node-label", "list"),
    ("node-taint", "list"),
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    ("selinux", "bool", "K3S_SELINUX"),
    ("lb-server-port", "int", "K3S_LB_SERVER_PORT"),
    ("protect-kernel-defaults", "bool"),
    "container-runtime-endpoint",
    "image-service-endpoint",
    "default-runtime",
    "pause-image",
    "snapshotter",
    "private-registry",
    ("disable-default-registry-endpoint", "bool"),
    ("airgap-extra-registry", "list"),
    ("node-ip", "list", None, "i"),
    ("node-external-ip", "list"),
    ("node-internal-dns", "list"),
    ("node-external-dns", "list"),
    ("resolv-conf", "str", "K3S_RESOLV_CONF"),
    "flannel-iface",
    "flannel-conf",
    "flannel-cni-conf",
    ("kubelet-arg", "list"),
    ("kube-proxy-arg", "list"),
    ("rootless", "bool"),
    ("prefer-bundled-bin", "bool"),
    ("docker", "bool"),
    ("disable-selinux", "bool"),
    ("no-flannel", "bool"),
    ("cluster-secret", "str", "K3S_CLUSTER_SECRET"),
    ("vpn-auth", "str", "K3S_VPN_AUTH"),
    ("vpn-auth-file", "str", "K3S_VPN_AUTH_FILE"),
    ("enable-pprof", "bool"),
    ("nonroot-devices", "bool"),
)


SERVER_ONLY_FLAGS = _flags(
    "bind-address",
    ("https-listen-port", "int", None, None, 6443),
    ("supervisor-port", "int"),
    ("apiserver-port", "int"),
    "apiserver-bind-address",
    "advertise-address",
    ("advertise-port", "int"),
    ("tls-san", "list"),
    ("tls-san-security", "bool"),
    ("cluster-cidr", "list"),
    ("service-cidr", "list"),
    "service-node-port-range",
    ("cluster-dns", "list"),
    "cluster-domain",
    "flannel-backend",
    ("flannel-ipv6-masq", "bool"),
    ("flannel-external-ip", "bool"),
    "egress-selector-mode",
    "servicelb-namespace",
    ("write-kubeconfig", "str", "K3S_KUBECONFIG_OUTPUT", "o"),
    ("write-kubeconfig-mode", "str", "K3S_KUBECONFIG_MODE"),
    ("write-kubeconfig-group", "str", "K3S_KUBECONFIG_GROUP"),
    "helm-job-image",
    ("agent-token", "str", "K3S_AGENT_TOKEN"),
    ("agent-token-file", "str", "K3S_AGENT_TOKEN_FILE"),
    ("cluster-init", "bool", "K3S_CLUSTER_INIT"),
    ("cluster-reset", "bool", "K3S_CLUSTER_RESET"),
    "cluster-reset-restore-path",
    ("kube-apiserver-arg", "list"),
    ("etcd-arg", "list"),
    ("kube-controller-manager-arg", "list"),
    ("kube-scheduler-arg", "list"),
    ("kube-cloud-controller-manager-arg", "list"),
    ("kine-tls", "bool"),
    ("datastore-endpoint", "str", "K3S_DATASTORE_ENDPOINT"),
    "datastore-cafile",
    "datastore-certfile",
    "datastore-keyfile",
    ("etcd-expose-metrics", "bool"),
    ("etcd-disable-snapshots", "bool"),
    "etcd-snapshot-name",
    "etcd-snapshot-schedule-cron",
    ("etcd-snapshot-retention", "int"),
    "etcd-snapshot-dir",
    ("etcd-snapshot-compress", "bool"),
    ("etcd-s3", "bool"),
    "etcd-s3-endpoint",
    "etcd-s3-endpoint-ca",
    ("etcd-s3-skip-ssl-verify", "bool"),
    "etcd-s3-access-key",
    "etcd-s3-secret-key",
    "etcd-s3-session-token",
    "etcd-s3-bucket",
    "etcd-s3-region",
    "etcd-s3-folder",
    "etcd-s3-proxy",
    "etcd-s3-config-secret",
    ("etcd-s3-insecure", "bool"),
    "etcd-s3-timeout",
    "default-local-storage-path",
    ("disable", "list"),
    ("disable-scheduler", "bool"),
    ("disable-cloud-controller", "bool"),
    ("disable-kube-proxy", "bool"),
    ("disable-network-policy", "bool"),
    ("disable-helm-controller", "bool"),
    ("disable-apiserver", "bool"),
    ("disable-controller-manager", "bool"),
    ("disable-etcd", "bool"),
    ("disable-apiserver-lb", "bool"),
    ("embedded-registry", "bool"),
    ("supervisor-metrics", "bool"),
    ("secrets-encryption", "bool"),
    "secrets-encryption-provider",
    ("system-default-registry", "str", "K3S_SYSTEM_DEFAULT_REGISTRY"),
    ("disable-agent", "bool"),
    ("no-deploy", "list"),
    ("cluster-reset-restore-path", "str"),
)


SERVER_FLAGS = {f.name: f for f in COMMON_FLAGS + SERVER_ONLY_FLAGS}


AGENT_FLAGS = {f.name: f for f in COMMON_FLAGS}


SECRET_FLAGS = {
    "token",
    "agent-token",
    "cluster-secret",
    "vpn-auth",
    "datastore-endpoint",
    "etcd-s3-secret-key",
    "etcd-s3-access-key",
    "etcd-s3-session-token",
}


TRUE_WORDS = {"1", "t", "T", "TRUE", "true", "True"}


FALSE_WORDS = {"0", "f", "F", "FALSE", "false", "False"}


class FlagError(Exception):
    pass


def parse_flag_args(flags, args):
    """Go flag-package style parsing. Returns ([(name, value)], positional)."""
    shorts = {f.short: f for f in flags.values() if f.short}
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out, args[i + 1 :]
        if not a.startswith("-") or a == "-":
            return out, args[i:]
        if a.startswith("---"):
            raise FlagError("bad flag syntax: %s" % a)
        name, val = a.lstrip("-"), None
        if "=" in name:
            name, val = name.split("=", 1)
        f = flags.get(name) or shorts.get(name)
        if f is None:
            raise FlagError("flag provided but not defined: -%s" % name)
        if f.kind == "bool":
            if val is None:
                v = True
            elif val in TRUE_WORDS:
                v = True
            elif val in FALSE_WORDS:
                v = False
            else:
                raise FlagError('invalid boolean value "%s" for -%s: parse error' % (val, name))
        else:
            if val is None:
                i += 1
                if i >= len(args):
                    raise FlagError("flag needs an argument: -%s" % name)
                val = args[i]
            v = val
            if f.kind == "int":
                try:
                    v = int(val, 0)
                except ValueError:
                    raise FlagError('invalid value "%s" for flag -%s: parse error' % (val, name))
        out.append((f.name, v))
        i += 1
    return out, []


def _yaml():
    try:
        import yaml

        return yaml
    except ImportError:
        raise Fatal("python3-yaml is required to read config.yaml (apt-get install python3-yaml)")


def _config_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def read_config_args(path):
    """config.yaml (+ config.yaml.d/*.yaml) -> ["--key=value", ...] like k3s."""
    files = []
    if os.path.exists(path):
        files.append(path)
    dropins = path + ".d"
    if os.path.isdir(dropins):
        files += sorted(
            os.path.join(dropins, n)
            for n in os.listdir(dropins)
            if n.lower().endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(dropins, n))
        )
    if not files:
        return []
    yaml = _yaml()
    order, values = [], {}
    for fn in files:
        with open(fn, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise Fatal("failed to parse %s: %s" % (fn, e))
        if not isinstance(data, dict):
            raise Fatal("%s: expected a YAML mapping of flag names to values" % fn)
        for k, v in data.items():
            k = str(k)
            append = k.endswith("+")
            k = k.rstrip("+")
            if k not in values:
                order.append(k)
            if append and k in values:
                old = values[k] if isinstance(values[k], list) else [values[k]]
                values[k] = old + (v if isinstance(v, list) else [v])
            else:
                values[k] = v
    result = []
    for k in order:
        prefix = "-" if len(k) == 1 else "--"
        v = values[k]
        if isinstance(v, list):
            result += ["%s%s=%s" % (prefix, k, _config_scalar(x)) for x in v]
        else:
            result.append("%s%s=%s" % (prefix, k, _config_scalar(v)))
    return result


def find_config_path(args):
    env = os.environ.get("K3S_CONFIG_FILE")
    if env:
        return env
    for i, a in enumerate(args):
        for n in ("--config", "-c"):
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a[len(n) + 1 :]
    return DEFAULT_CONFIG


def parse_command_config(cmd, args):
    """Merge config.yaml, command line and environment like k3s (urfave/cli)."""
    flags = SERVER_FLAGS if cmd == "server" else AGENT_FLAGS
    cfg_args = read_config_args(hp(find_config_path(args)))
    if cmd == "server":
        # k3s server skips (with a warning) config keys that are not server flags
        kept = []
        for a in cfg_args:
            key = a.lstrip("-").split("=", 1)[0]
            if key in flags or any(f.short == key for f in flags.values()):
                kept.append(a)
            else:
                log("warning", "Unknown flag --%s found in config.yaml, skipping" % key)
        cfg_args = kept
    pairs, positional = parse_flag_args(flags, cfg_args + list(args))
    cfg = {}
    for f in flags.values():
        cfg[f.name] = [] if f.kind == "list" else f.default
    explicit = set()
    for name, value in pairs:
        if flags[name].kind == "list":
            cfg[name].append(value)
        else:
            cfg[name] = value
        explicit.add(name)
    for f in flags.values():
        if f.name not in explicit and f.env and os.environ.get(f.env):
            v = os.environ[f.env]
            if f.kind == "bool":
                v = v in TRUE_WORDS
            elif f.kind == "int":
                try:
                    v = int(v)
                except ValueError:
                    raise Fatal("invalid value %r for %s" % (v, f.env))
            cfg[f.name] = v
    node_args = [cmd]
    for name, value in pairs:
        node_args += ["--" + name, MASK if name in SECRET_FLAGS else _config_scalar(value)]
    return cfg, positional, node_args


def parse_token(token):
    """-> (ca_hash or None, user, secret). Bare tokens use user 'node'."""
    token = (token or "").strip()
    if token.startswith("K10") and "::" in token:
        hashpart, rest = token[3:].split("::", 1)
        if ":" not in rest:
            raise Fatal("invalid token format: expected K10<hash>::<username>:<password>")
        user, secret = rest.split(":", 1)
        if not secret:
            raise Fatal("invalid token format: empty password")
        return (hashpart or None), user, secret
    return None, "node", token


def resolve_token(cfg, name="token", file_name="token-file"):
    tok = cfg.get(name) or ""
    if not tok and cfg.get(file_name):
        data = read_file(hp(cfg[file_name]))
        if data is None:
            raise Fatal("failed to read %s %s" % (file_name, cfg[file_name]))
        tok = data.decode().strip()
    tok = tok.strip()
    add_secret(tok)
    if tok:
        add_secret(parse_token(tok)[2])
    return tok


def basic_auth(user, secret):
    return "Basic " + base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()
