"""TEST DOUBLE (k3s stand-in, not the real k3s).

Label and field selectors, merge patch, strategic merge (as merge) and JSON patch.

Upstream: kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/labels/selector.go,
staging/src/k8s.io/apimachinery/pkg/fields/selector.go; RFC 7386 (merge patch), RFC 6902
(JSON patch)
"""

from __future__ import annotations

import copy
import json
import re

from .store import ApiError, bad_request, valid_label_key, valid_label_value

LABEL_REQ_SET = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")


def _split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse_label_selector(sel):
    reqs = []
    for part in _split_top(sel or ""):
        p = part.strip()
        if not p:
            continue
        m = LABEL_REQ_SET.match(p)
        if m:
            key, op = m.group(1), m.group(2)
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
        elif p.startswith("!"):
            key, op, values = p[1:].strip(), "!", set()
        elif "!=" in p:
            key, v = p.split("!=", 1)
            op, values = "!=", {v.strip()}
        elif "==" in p:
            key, v = p.split("==", 1)
            op, values = "=", {v.strip()}
        elif "=" in p:
            key, v = p.split("=", 1)
            op, values = "=", {v.strip()}
        elif ">" in p or "<" in p:
            op = ">" if ">" in p else "<"
            key, v = p.split(op, 1)
            try:
                values = {int(v.strip())}
            except ValueError:
                raise bad_request("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer")
        else:
            key, op, values = p, "exists", set()
        key = key.strip()
        if not valid_label_key(key):
            raise bad_request('unable to parse requirement: invalid label key "%s"' % key)
        for v in values:
            if isinstance(v, str) and not valid_label_value(v):
                raise bad_request('unable to parse requirement: invalid label value: "%s"' % v)
        reqs.append((key, op, values))
    return reqs


def label_match(reqs, labels):
    labels = labels or {}
    for key, op, values in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op in ("=", "in") and (not has or v not in values):
            return False
        if op in ("!=", "notin") and has and v in values:
            return False
        if op in (">", "<"):
            try:
                iv = int(v)
            except (TypeError, ValueError):
                return False
            bound = next(iter(values))
            if (op == ">" and not iv > bound) or (op == "<" and not iv < bound):
                return False
    return True


def parse_field_selector(sel):
    reqs = []
    for part in (sel or "").split(","):
        p = part.strip()
        if not p:
            continue
        if "!=" in p:
            k, v = p.split("!=", 1)
            reqs.append((k.strip(), False, v.strip()))
        elif "==" in p:
            k, v = p.split("==", 1)
            reqs.append((k.strip(), True, v.strip()))
        elif "=" in p:
            k, v = p.split("=", 1)
            reqs.append((k.strip(), True, v.strip()))
        else:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (sel, p))
    return reqs


def field_value(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur) if not isinstance(cur, (dict, list)) else json.dumps(cur)


def field_match(reqs, obj):
    for path, eq, value in reqs:
        if (field_value(obj, path) == value) != eq:
            return False
    return True


def merge_patch(target, patch, strategic=False):
    """RFC 7386 JSON merge patch; strategic-merge directives ($...) are dropped and
    lists are replaced (enough for label/annotate/cordon/taint)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = copy.deepcopy(target)
    if strategic and patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    for k, v in patch.items():
        if strategic and k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            if strategic and v.get("$patch") == "delete":
                out.pop(k, None)
            else:
                out[k] = merge_patch(out.get(k), v, strategic)
        else:
            if strategic and isinstance(v, list):
                v = [x for x in v if not (isinstance(x, dict) and "$patch" in x)]
            out[k] = copy.deepcopy(v)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")

    def parent(path):
        parts = _pointer(path)
        if not parts:
            raise bad_request("cannot operate on the document root")
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    def get(path):
        cur = doc
        for p in _pointer(path):
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    for op in ops:
        try:
            kind = op["op"]
            if kind == "test":
                if get(op["path"]) != op.get("value"):
                    raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: test failed")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(get(op["from"]))
                if kind == "move":
                    p, k = parent(op["from"])
                    p.pop(int(k)) if isinstance(p, list) else p.pop(k)
                op = {"op": "add", "path": op["path"], "value": value}
                kind = "add"
            p, k = parent(op["path"])
            if kind == "add":
                if isinstance(p, list):
                    p.insert(len(p) if k == "-" else int(k), copy.deepcopy(op["value"]))
                else:
                    p[k] = copy.deepcopy(op["value"])
            elif kind == "replace":
                if isinstance(p, list):
                    p[int(k)] = copy.deepcopy(op["value"])
                else:
                    if k not in p:
                        raise KeyError(k)
                    p[k] = copy.deepcopy(op["value"])
            elif kind == "remove":
                p.pop(int(k)) if isinstance(p, list) else p.pop(k)
            else:
                raise bad_request("unknown json patch operation %r" % kind)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: %s" % e)
    return doc


def selector_matches(selector, labels, empty_matches=True):
    """Whether a LabelSelector object ({matchLabels, matchExpressions}) selects these labels.
    An empty selector selects everything (or nothing with empty_matches=False, as PDBs do)."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return bool(empty_matches) and selector is not None
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
