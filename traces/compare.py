"""Compare two saved traces on what does not depend on the machine.

Kept: node names, variables and modules, what each node saved (and whether
backward freed it, and a saved tensor's version), edges, the gradients on them,
which nodes backward ran, the facts, and the ATen op names per phase. Left out: the
torch version, the device, the source view (paths and line numbers move with
every torch release and install), the line of code that made each node and the
order nodes were made in (a graph in the facts included), facts that are timings
or paths, and the exact backward order (any order that
respects the edges is valid; ``order_violations`` checks that).
"""

from __future__ import annotations

import math
from typing import Any

RELATIVE_TOLERANCE = 1e-4  # floats from different CPUs' kernels differ in the last digits

# Facts that tell where and how fast a run went, not what torch did: timings,
# paths, the sentence naming the data folder in use, and the threads torch used.
MACHINE_FACT_SUFFIXES = ("_seconds", "_per_second", "_path")
MACHINE_FACTS = {"data", "threads"}


def machine_independent(facts: dict[str, Any]) -> dict[str, Any]:
    return {
        name: without_places(value)
        for name, value in facts.items()
        if name not in MACHINE_FACTS and not name.endswith(MACHINE_FACT_SUFFIXES)
    }


def is_graph(value: Any) -> bool:
    return isinstance(value, dict) and {"outputs", "nodes", "edges"} <= value.keys()


def without_places(value: Any) -> Any:
    """A fact with every autograd graph in it reduced to ``stable_nodes``: where code lives is the machine's."""
    if is_graph(value):
        return {"outputs": value["outputs"], "nodes": stable_nodes(value), "edges": value["edges"]}
    if isinstance(value, dict):
        return {key: without_places(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_places(item) for item in value]
    return value


def stable_nodes(graph: dict[str, Any]) -> list[dict[str, Any]]:
    """What a rerun reproduces of each node: not the path and line of the code that made it."""
    return [
        {
            "id": node["id"],
            "name": node["name"],
            "variable": node["variable"],
            "module": node["module"],
            "leaf": node["leaf"],
            "saved": [(saved["name"], saved["freed"], saved.get("version")) for saved in node["saved"]],
        }
        for node in graph["nodes"]
    ]


def stable_view(trace: dict[str, Any]) -> dict[str, Any]:
    """The parts of a trace (as loaded from JSON) that a rerun must reproduce."""
    graph = trace["graph"] or {"outputs": [], "nodes": [], "edges": []}
    return {
        "scenario": trace["scenario"],
        "graph.outputs": graph["outputs"],
        "graph.nodes": stable_nodes(graph),
        "graph.edges": graph["edges"],
        "backward.nodes_run": sorted(step["node"] for step in trace["backward"]),
        "facts": machine_independent(trace["facts"]),
        "ops.forward": op_names(trace, "forward"),
        "ops.backward": op_names(trace, "backward"),
    }


def op_names(trace: dict[str, Any], phase: str) -> list[str]:
    """Every call's op name, in order (calls folded with a ``count`` counted out again)."""
    return [call["op"] for call in trace["ops"] if call["phase"] == phase for _ in range(call.get("count", 1))]


def order_violations(trace: dict[str, Any]) -> list[str]:
    """Edges whose gradient arrived after the node it flows into had already run."""
    order = {step["node"]: step["order"] for step in trace["backward"]}
    problems = []
    for edge in (trace["graph"] or {"edges": []})["edges"]:
        source, target = edge["source"], edge["target"]
        if source in order and target in order and order[source] > order[target]:
            problems.append(f"{target} ran (step {order[target]}) before {source} (step {order[source]}) fed it")
    return problems


def differences(recorded: Any, fresh: Any, where: str = "") -> list[str]:
    """Readable differences between two JSON values, one line per difference."""
    if isinstance(recorded, dict) and isinstance(fresh, dict):
        lines = []
        for key in recorded.keys() | fresh.keys():
            place = f"{where}.{key}" if where else str(key)
            if key not in fresh:
                lines.append(f"{place}: recorded, but missing now")
            elif key not in recorded:
                lines.append(f"{place}: new, now {fresh[key]!r}")
            else:
                lines.extend(differences(recorded[key], fresh[key], place))
        return sorted(lines)
    if isinstance(recorded, (list, tuple)) and isinstance(fresh, (list, tuple)):
        if len(recorded) != len(fresh):
            return [f"{where}: recorded {len(recorded)} items, now {len(fresh)}: {summary(recorded)} -> {summary(fresh)}"]
        return [line for i, (a, b) in enumerate(zip(recorded, fresh)) for line in differences(a, b, f"{where}[{i}]")]
    if isinstance(recorded, float) or isinstance(fresh, float):
        if isinstance(recorded, (int, float)) and isinstance(fresh, (int, float)):
            if math.isclose(recorded, fresh, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6):
                return []
    if recorded != fresh:
        return [f"{where}: recorded {recorded!r}, now {fresh!r}"]
    return []


def summary(items: list | tuple) -> str:
    text = repr(list(items))
    return text if len(text) <= 200 else text[:197] + "..."
