"""Which PodDisruptionBudgets block a drain: the selector match and the blockers, as pure functions."""

from __future__ import annotations

import json

import pytest

from provisioner.disruption import Budget, Pod, blockers, parse_budgets, parse_pods, selector_matches

LABELS = {"app": "web", "tier": "front"}


@pytest.mark.parametrize(
    "selector,matches",
    [
        ({"matchLabels": {"app": "web"}}, True),
        ({"matchLabels": {"app": "web", "tier": "back"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "zone", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Like", "values": ["w"]}]}, False),
        ({}, True),  # policy/v1: an empty selector selects every pod of the namespace
        (None, False),  # no selector selects nothing
    ],
)
def test_label_selector_semantics(selector: dict | None, matches: bool) -> None:
    assert selector_matches(selector, LABELS) is matches


def budget(name: str, allowed: int, selector: dict | None, namespace: str = "default") -> Budget:
    return Budget(namespace, name, selector, allowed)


def test_blockers_are_budgets_allowing_no_disruption_that_cover_evictable_pods_of_their_namespace() -> None:
    pods = [
        Pod("default", "web-1", {"app": "web"}, "ReplicaSet"),
        Pod("default", "web-2", {"app": "web"}, "ReplicaSet"),
        Pod("other", "web-3", {"app": "web"}, "ReplicaSet"),
        Pod("default", "agent", {"app": "web"}, "DaemonSet"),
    ]
    found = blockers(
        [
            budget("web", 0, {"matchLabels": {"app": "web"}}),
            budget("relaxed", 1, {}),
            budget("db", 0, {"matchLabels": {"app": "db"}}),
            budget("elsewhere", 0, {}, "third"),
        ],
        pods,
    )
    assert [(b.budget.name, b.pods) for b in found] == [("web", ("default/web-1", "default/web-2"))]
    assert found[0].as_dict()["disruptionsAllowed"] == 0


def test_parsers_read_kubectl_json() -> None:
    pods = parse_pods(
        json.dumps(
            {
                "items": [
                    {
                        "metadata": {
                            "name": "p",
                            "namespace": "n",
                            "labels": {"a": "b"},
                            "ownerReferences": [{"kind": "ReplicaSet", "controller": True}],
                        }
                    }
                ]
            }
        )
    )
    assert pods == [Pod("n", "p", {"a": "b"}, "ReplicaSet")]
    budgets = parse_budgets(
        json.dumps(
            {
                "items": [
                    {
                        "metadata": {"name": "web", "namespace": "n"},
                        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"a": "b"}}},
                        "status": {"disruptionsAllowed": 0},
                    }
                ]
            }
        )
    )
    assert budgets == [Budget("n", "web", {"matchLabels": {"a": "b"}}, 0, "3", "")]
