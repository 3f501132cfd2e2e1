"""Compare two saved traces on what does not depend on the machine.

Kept: node names, variables and modules, what each node saved (and whether
backward freed it, and a saved tensor's version), edges, the gradients on them,
which nodes backward ran, the facts, and the ATen op names per phase. Left out: the
torch version, the device, the source view (paths and line numbers move with
every torch release and install), the line of code that made each node and the
order nodes were made in (a graph in the facts included), facts that are timings
or paths, and the exact backward order (any order that
respects the edges is valid; ``order_violations`` checks that).

A saved trace is checked before it is compared (``check_trace``): a file that
is not a trace's JSON raises ``InvalidTrace`` with one line saying what is
wrong, and nothing in it (an op's ``count``) decides how much work is done.
The strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` stand for those
numbers (``number``), and NaN equals NaN here.
"""

from __future__ import annotations

import math
from typing import Any

# The strings a saved trace writes where a number is NaN or infinite (strict JSON has no such numbers).
NOT_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
TOP_LEVEL = ("schema_version", "scenario", "graph", "backward", "ops", "facts")
PHASES = ("forward", "backward")

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


class InvalidTrace(ValueError):
    """A loaded JSON that is not a trace; the message says what is wrong, in one line."""


def number(value: Any) -> Any:
    """A number as a saved trace holds it, as a float: ``"NaN"`` -> nan; anything else as it is."""
    if isinstance(value, str) and value in NOT_FINITE:
        return NOT_FINITE[value]
    return value


def check_trace(trace: Any) -> None:
    """Raise ``InvalidTrace`` unless ``trace`` has the shape this module reads (cheap: no value is expanded)."""
    if not isinstance(trace, dict):
        raise InvalidTrace(f"a trace is a JSON object, not {type(trace).__name__}")
    missing = [key for key in TOP_LEVEL if key not in trace]
    if missing:
        raise InvalidTrace(f"not a trace: no {', '.join(missing)}")
    if not isinstance(trace["schema_version"], int) or isinstance(trace["schema_version"], bool):
        raise InvalidTrace(f"schema_version must be a whole number, not {trace['schema_version']!r}")
    graph = trace["graph"]
    if graph is not None and not (
        isinstance(graph, dict) and all(isinstance(graph.get(key), list) for key in ("outputs", "nodes", "edges"))
    ):
        raise InvalidTrace("graph must be null or hold the lists outputs, nodes and edges")
    for key in ("backward", "ops"):
        if not isinstance(trace[key], list) or not all(isinstance(item, dict) for item in trace[key]):
            raise InvalidTrace(f"{key} must be a list of objects")
    if not isinstance(trace["facts"], dict):
        raise InvalidTrace("facts must be an object")
    for position, call in enumerate(trace["ops"]):
        count = call.get("count", 1)
        if not isinstance(call.get("op"), str) or call.get("phase") not in PHASES:
            raise InvalidTrace(f"ops[{position}] needs an op name and a phase (forward or backward)")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidTrace(f"ops[{position}].count must be a whole number of at least 1, not {count!r}")


def stable_view(trace: dict[str, Any]) -> dict[str, Any]:
    """The parts of a trace (as loaded from JSON) that a rerun must reproduce; raises ``InvalidTrace``."""
    check_trace(trace)
    graph = trace["graph"] or {"outputs": [], "nodes": [], "edges": []}
    return {
        "scenario": trace["scenario"],
        "graph.outputs": graph["outputs"],
        "graph.nodes": stable_nodes(graph),
        "graph.edges": graph["edges"],
        "backward.nodes_run": sorted(step["node"] for step in trace["backward"]),
        "facts": machine_independent(trace["facts"]),
        "ops.forward": op_runs(trace, "forward"),
        "ops.backward": op_runs(trace, "backward"),
    }


def op_runs(trace: dict[str, Any], phase: str) -> list[tuple[str, int]]:
    """Every call's op name, in order, as ``(op, calls in a row)``: entries that the
    tracer folded apart (other shapes) are joined again, and no count is ever counted out."""
    runs: list[tuple[str, int]] = []
    for call in trace["ops"]:
        if call["phase"] != phase:
            continue
        count = call.get("count", 1)
        if runs and runs[-1][0] == call["op"]:
            runs[-1] = (call["op"], runs[-1][1] + count)
        else:
            runs.append((call["op"], count))
    return runs


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
    recorded, fresh = number(recorded), number(fresh)
    if isinstance(recorded, float) or isinstance(fresh, float):
        if isinstance(recorded, (int, float)) and isinstance(fresh, (int, float)):
            if math.isnan(recorded) and math.isnan(fresh):
                return []
            if math.isclose(recorded, fresh, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6):
                return []
    if recorded != fresh:
        return [f"{where}: recorded {recorded!r}, now {fresh!r}"]
    return []


def summary(items: list | tuple) -> str:
    text = repr(list(items))
    return text if len(text) <= 200 else text[:197] + "..."
