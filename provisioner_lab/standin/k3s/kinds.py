"""TEST DOUBLE (k3s stand-in, not the real k3s).

The registry entry of one API kind (group, version, plural, discovery, Table columns) and the
helpers Tables use (ages as kubectl prints them, column definitions).

Upstream: kubernetes/kubernetes pkg/printers/internalversion/printers.go (columns),
staging/src/k8s.io/apimachinery/pkg/util/duration/duration.go (HumanDuration),
staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go (APIResource)
"""

from __future__ import annotations

from .util import parse_ts, utcnow


def human_duration(seconds):
    """Age formatting as kubectl prints it (k8s duration.HumanDuration)."""
    s = round(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm%ds" % (minutes, s % 60) if s % 60 else "%dm" % minutes
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        return "%dh%dm" % (hours, minutes % 60) if minutes % 60 else "%dh" % hours
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        return "%dd%dh" % (hours // 24, hours % 24) if hours % 24 else "%dd" % (hours // 24)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return "%dy%dd" % (hours // 24 // 365, days) if days else "%dy" % (hours // 24 // 365)
    return "%dy" % (hours // 24 // 365)


def age(obj):
    created = parse_ts(obj.get("metadata", {}).get("creationTimestamp"))
    if not created:
        return "<unknown>"
    return human_duration((utcnow() - created).total_seconds())


def col(name, description, priority=0, fmt="", typ="string"):
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


NAME_COL = col("Name", "Name must be unique within a namespace.", fmt="name")


AGE_COL = col("Age", "CreationTimestamp is a timestamp representing the server time when this object was created.")


class Kind:
    """One entry of the kind registry. Add more kinds by appending to KINDS."""

    def __init__(
        self,
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names=(),
        status_subresource=True,
        columns=None,
        cells=None,
        prepare=None,
        subresources=(),
        categories=(),
    ):
        self.group, self.version, self.kind, self.plural = group, version, kind, plural
        self.namespaced, self.short_names = namespaced, list(short_names)
        self.singular = kind.lower()
        self.status_subresource = status_subresource
        self.columns = columns or [NAME_COL, AGE_COL]
        self.cells = cells or (lambda o: [o["metadata"]["name"], age(o)])
        self.prepare = prepare  # fn(obj, old) -> None, called before every write
        #: more subresources for discovery: (name, group, version, kind, verbs), e.g. pods/eviction
        self.subresources = list(subresources)
        self.categories = list(categories)

    @property
    def api_version(self):
        return self.version if not self.group else "%s/%s" % (self.group, self.version)

    @property
    def key(self):
        return "%s/%s" % (self.group, self.plural)

    @property
    def resource_label(self):
        return self.plural if not self.group else "%s.%s" % (self.plural, self.group)

    def discovery(self):
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        out = [{"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced, "kind": self.kind, "verbs": verbs}]
        if self.short_names:
            out[0]["shortNames"] = self.short_names
        if self.status_subresource:
            out.append(
                {
                    "name": self.plural + "/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.categories:
            out[0]["categories"] = self.categories
        for sub, group, version, kind, verbs in self.subresources:
            entry = {
                "name": "%s/%s" % (self.plural, sub),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": kind,
                "verbs": list(verbs),
            }
            if group or version:
                entry["group"], entry["version"] = group, version
            out.append(entry)
        return out

    def has_subresource(self, sub):
        return (sub == "status" and self.status_subresource) or any(s[0] == sub for s in self.subresources)
