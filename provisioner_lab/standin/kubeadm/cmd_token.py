"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

`kubeadm token create|list|delete`.

Upstream: kubernetes/kubernetes cmd/kubeadm/app/cmd/token.go
"""

from __future__ import annotations

from ..k3s.certs import url_host
from ..k3s.store import human_duration
from ..k3s.util import parse_ts, utcnow
from ..kubelet.tokens import parse_go_duration, token_fields
from .base import ADMIN_CONF, KubeadmError, say
from .cluster import admin_client, api, create_token, join_command
from .config import parse_flags


def cmd_token(args):
    if not args or args[0] in ("-h", "--help"):
        say("Usage: kubeadm token [create|list|delete] (stand-in)")
        return 0
    sub, rest = args[0], args[1:]
    flags, positional = parse_flags(
        rest, {"ttl", "kubeconfig", "description", "usages", "groups", "config", "v", "output", "o"}, ("print-join-command", "dry-run")
    )
    client, kc = admin_client(flags.get("kubeconfig", ADMIN_CONF))
    if sub == "create":
        try:
            ttl = parse_go_duration(flags.get("ttl", "24h0m0s"))
        except ValueError as e:
            raise KubeadmError('invalid argument "%s" for "--ttl" flag: %s' % (flags["ttl"], e))
        usages = tuple(u for u in flags.get("usages", "signing,authentication").split(",") if u)
        groups = tuple(g for g in flags.get("groups", "system:bootstrappers:kubeadm:default-node-token").split(",") if g)
        token = create_token(client, positional[0] if positional else None, ttl, usages, groups, flags.get("description", ""))
        if flags.get("print-join-command"):
            say(join_command("%s:%d" % (url_host(kc.host), kc.port), token, kc.ca_pem))
        else:
            say(token)
        return 0
    if sub == "list":
        _, data = api(client, "GET", "/api/v1/namespaces/kube-system/secrets")
        rows = []
        for s in data.get("items", []):
            if s.get("type") != "bootstrap.kubernetes.io/token":
                continue
            f = token_fields(s)
            exp = f.get("expiration", "")
            ttl = "<forever>"
            when = parse_ts(exp) if exp else None
            if when:
                left = (when - utcnow()).total_seconds()
                ttl = "<invalid>" if left <= 0 else human_duration(left)
            usages = ",".join(
                sorted(k[len("usage-bootstrap-") :] for k, v in f.items() if k.startswith("usage-bootstrap-") and v == "true")
            )
            rows.append(
                (
                    f.get("token-id", "") + "." + f.get("token-secret", ""),
                    ttl,
                    exp or "<never>",
                    usages,
                    f.get("description", "<none>") or "<none>",
                    f.get("auth-extra-groups", ""),
                )
            )
        fmt = "%-24s %-10s %-21s %-25s %-26s %s"
        say(fmt % ("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"))
        for r in rows:
            say(fmt % r)
        return 0
    if sub == "delete":
        for t in positional:
            tid = t.split(".")[0]
            api(client, "DELETE", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-" + tid)
            say('bootstrap token "%s" deleted' % tid)
        return 0
    raise KubeadmError('unknown command "%s" for "kubeadm token"' % sub)
