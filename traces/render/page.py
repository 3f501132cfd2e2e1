"""The trace as one self-contained HTML page: the graph by module, a panel per node, and a
backward timeline to step forward and back.

The page is the JSON trace (``traces.render.json_file``, paths already portable) and a few facts
worked out here, where the project's own code knows them, embedded as data in the page,
and read by a small script bundled into the same file (``page.js``): nothing is fetched
when the page is opened, and no server is needed. What Python adds:

- ``equations``: for each node that ran, its derivative formula with this run's numbers,
  as the terminal's backward table writes it (``traces.below.formulas.gradient_equations``);
- ``folds``: a number per module that is the same for modules of the same structure, so
  the page folds repeated blocks as the terminal does (``traces.render.grouping.structure``);
- ``links``: for each path of the user's code, where that file lies relative to the page,
  when it lies in a folder above the page (``../scenarios/backward.py``). The page turns it
  into a ``vscode://file`` link only when it is opened from the disk, so the file holds no
  path of the machine that wrote it.

The layout is computed in the browser (``page.js``), because every click that opens or
closes a module changes the set of boxes to lay out.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

from traces.basics.paths import PROJECT_ROOT
from traces.basics.places import base_folder
from traces.below.formulas import gradient_equations
from traces.data.trace import Trace
from traces.render.grouping import DEFAULT_DEPTH, NODE_BY_NODE, module_tree, structure
from traces.render.json_file import strict_numbers, trace_to_dict

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "page_template.html"
SCRIPT = HERE / "page.js"


def equations(trace: Trace) -> dict[str, list[str]]:
    """Node id -> its formula with the numbers of this run, one line per input (nodes that ran)."""
    graph = trace.graph
    if graph is None:
        return {}
    lines = {}
    for step in trace.backward:
        node = graph.node(step.node)
        if node.derivative is None:
            continue
        targets = {edge.output_nr: graph.node(edge.target).variable for edge in graph.edges_from(node.id)}
        lines[node.id] = gradient_equations(node.derivative, node, step, targets, graph.not_asked(node.id))
    return lines


def fold_keys(trace: Trace) -> dict[str, int]:
    """Module name -> a number shared by the modules of the same structure (see traces.render.grouping)."""
    if trace.graph is None:
        return {}
    keys: dict[tuple, int] = {}
    found = {}
    stack = list(module_tree(trace.graph))
    while stack:
        group = stack.pop()
        found[group.name] = keys.setdefault(structure(group), len(keys))
        stack.extend(group.children)
    return found


def relative_link(portable: str, page_folder: Path) -> str | None:
    """Where the file of a saved ``portable`` path lies, relative to the page's folder, or None.

    A portable path is relative to the project's folder or to the folder the run was
    started in (``traces.basics.paths``). The link is given only when that folder is above the
    page's (``../../scenarios/backward.py``): then it names no folder of this machine.
    """
    if os.path.isabs(portable) or portable.startswith("~"):
        return None
    for root in (PROJECT_ROOT, Path(base_folder())):
        file = root / portable
        if not file.is_file():
            continue
        try:
            up = page_folder.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        return "/".join([".."] * len(up.parts) + [portable])
    return None


def code_links(trace: Trace, data: dict[str, Any], page_folder: Path | None) -> dict[str, str]:
    """Each path of the user's code in the trace (nodes and modules) -> its link from the page."""
    if page_folder is None or data["graph"] is None:
        return {}
    paths = {item["path"] for key in ("nodes", "modules") for item in data["graph"][key] if item["path"]}
    links = {path: relative_link(path, page_folder) for path in sorted(paths)}
    return {path: link for path, link in links.items() if link is not None}


def shared_derivatives(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each distinct derivative once: a node's ``derivative`` becomes its number in the list
    (the nodes of one class share theirs, and a long chain of them would repeat it)."""
    found: dict[str, int] = {}
    derivatives = []
    for node in data["graph"]["nodes"] if data["graph"] else []:
        key = json.dumps(node["derivative"], sort_keys=True)
        if key not in found:
            found[key] = len(derivatives)
            derivatives.append(node["derivative"])
        node["derivative"] = found[key]
    return derivatives


def page_data(trace: Trace, page_folder: Path | None = None) -> dict[str, Any]:
    """What the page shows: the JSON trace, and what Python knows that the script should not redo."""
    data = trace_to_dict(trace)
    derivatives = shared_derivatives(data)
    data["page"] = {
        "derivatives": derivatives,
        "equations": equations(trace),
        "folds": fold_keys(trace),
        "links": code_links(trace, data, page_folder),
        "depth": DEFAULT_DEPTH,
        "node_by_node": NODE_BY_NODE,
    }
    return data


def data_safe(json_text: str) -> str:
    """JSON that can sit inside a <script> element: every ``<`` written ``\\u003c`` (in JSON a
    ``<`` is only ever inside a string), so no ``</script>`` or ``<!--`` in a name ends it early."""
    return json_text.replace("<", "\\u003c")


def script_safe(text: str) -> str:
    """The page's own script, inside a <script> element: ``</`` written ``<\\/`` (it is only
    in the script's strings, where the two mean the same)."""
    return text.replace("</", "<\\/")


def to_html(trace: Trace, page_folder: Path | None = None) -> str:
    """The page, whole: the template with the trace's data and the script put in.

    ``page_folder`` is where the page will be saved, for the links to the user's code.
    """
    data = json.dumps(strict_numbers(page_data(trace, page_folder)), separators=(",", ":"), allow_nan=False)
    parts = {
        "{{TITLE}}": html.escape(f"{trace.scenario}: autograd trace"),
        "{{DATA}}": data_safe(data),
        "{{SCRIPT}}": script_safe(SCRIPT.read_text(encoding="utf-8")),
    }
    # Each mark of the template replaced once, never one inside what was put in.
    template = TEMPLATE.read_text(encoding="utf-8")
    return re.sub(r"\{\{(TITLE|DATA|SCRIPT)\}\}", lambda mark: parts[mark.group(0)], template)
