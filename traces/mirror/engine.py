"""The autograd engine, mirrored in readable Python on torch's own nodes.

``loss.backward()`` hands the graph to torch's C++ engine
(``torch/csrc/autograd/engine.cpp``), where a debugger cannot follow. This
module does the engine's work in Python, one function per idea, named as
engine.cpp names them, so that F11 from ``traces.mirror.engine.backward(loss)`` steps
through backward node by node:

- ``compute_dependencies``: how many edges lead into each node;
- ``ReadyQueue``: which ready node runs next (the CPU engine's order: the
  highest sequence number first, ``AccumulateGrad`` as soon as it is ready);
- ``InputBuffer.add``: the gradients arriving at a node from several edges are
  added, in the order they arrive;
- ``validate_outputs``: each gradient leaving a node is summed to its input's
  shape (``sum_to``: a bias gradient sums over the batch here), cast to its
  dtype and moved to its device;
- ``call_function``: tensor hooks and ``retain_grad`` first, then the node's
  pre-hooks, the node itself (torch's own C++ or Python backward, called as
  ``node(*grads)``), and the node's hooks;
- ``evaluate_function``: the node's gradients go to the next nodes' buffers.

Every node is torch's own, so the numbers are torch's: the tests check that
every leaf's ``.grad`` is bitwise equal to the C++ engine's, and the order of
the nodes identical.

A node's hooks registered from Python (``node.register_hook`` /
``register_prehook``) live in C++ with no API to list them; ``node_hook_dicts``
finds them through the one Python call torch makes when one is registered.

What Python cannot see is refused before anything runs, with ``NotMirrored``
(one line naming the node and why); call ``loss.backward()`` instead then.
That includes the parameters of a live DistributedDataParallel model, whose
reducer hooks their gradients in C++. Known differences, all outside the
numbers (see docs/engine.md):

- other hooks registered only in C++ (a C++ extension's) are not seen; nor a
  tensor hook whose tensor's Python object is gone;
- saved tensors are not freed: no Python API frees a C++ node's saved
  tensors. Without ``retain_graph`` the mirror gives each node torch would
  free a pre-hook that fails as a freed node does (``SavedTensorsReleased``),
  so a second backward, by either engine, fails in the same node with
  torch's message. The memory stays taken until the graph is dropped,
  ``grad_fn._saved_self`` still reads, and a pre-hook registered on such a
  node after the first backward does not run in the failing second one
  (torch would run it first);
- a custom Function that saved nothing but reads ``ctx.saved_tensors`` fails
  a second backward in torch, not in the mirror;
- ``AccumulateGrad`` copies a fresh gradient into ``.grad`` where torch's
  engine, holding its only reference, lets the node take the tensor itself:
  called from Python, the gradient's tensor object is a second reference.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.autograd import _make_grads, _tensor_or_tensors_to_tuple
from torch.autograd.function import BackwardCFunction

from traces.below.formulas import node_derivative
from traces.data import graph

TORCH_COMMIT = torch.version.git_version
SOURCE = f"https://github.com/pytorch/pytorch/blob/{TORCH_COMMIT}/torch/csrc/autograd"
ENGINE_CPP = f"{SOURCE}/engine.cpp"
INPUT_BUFFER_CPP = f"{SOURCE}/input_buffer.cpp"
PYTHON_ENGINE_CPP = f"{SOURCE}/python_engine.cpp"
PYTHON_FUNCTION_CPP = f"{SOURCE}/python_function.cpp"
ACCUMULATE_GRAD_H = f"{SOURCE}/functions/accumulate_grad.h"

# AccumulateGrad's sequence number: UINT64_MAX, so a ready leaf runs at once.
UINT64_MAX = 2**64 - 1

SECOND_BACKWARD_ERROR = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward."
)


# Called with each Step as a node runs; see ``watching``.
WATCHERS: list[Callable] = []


@contextmanager
def watching(on_node: Callable):
    """Call ``on_node(step)`` after each node the mirror runs, while inside."""
    WATCHERS.append(on_node)
    try:
        yield
    finally:
        WATCHERS.remove(on_node)


class NotMirrored(RuntimeError):
    """The graph holds something the Python mirror cannot do as torch does.

    Raised before any node runs, so nothing has changed; ``loss.backward()``
    (torch's own engine) still works.
    """


# ---------------------------------------------------------------------------
# The public entry points, as in torch/autograd/__init__.py
# ---------------------------------------------------------------------------


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
             inputs=None) -> None:
    """``torch.autograd.backward``, run by the Python engine.

    The argument handling is torch's own (torch/autograd/__init__.py); where
    torch calls ``_engine_run_backward`` (C++), this calls ``run_backward``
    below. See THPEngine_run_backward in python_engine.cpp:
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/python_engine.cpp
    """
    if grad_variables is not None:  # torch's deprecated name for grad_tensors
        grad_tensors = grad_variables if grad_tensors is None else grad_tensors
    if inputs is None:
        inputs_tuple = ()
    elif isinstance(inputs, torch.Tensor):
        inputs_tuple = (inputs,)
    else:
        inputs_tuple = tuple(inputs)
    if inputs is not None and len(inputs_tuple) == 0:
        raise RuntimeError("`inputs` argument to `backward()` cannot be empty.")
    tensors = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
    grad_tensors_ = _tensor_or_tensors_to_tuple(grad_tensors, len(tensors))
    grad_tensors_ = _make_grads(tensors, grad_tensors_, is_grads_batched=False)
    if retain_graph is None:
        retain_graph = create_graph
    run_backward(tensors, grad_tensors_, retain_graph, create_graph, inputs_tuple,
                 allow_unreachable=True, accumulate_grad=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """``torch.autograd.grad``, run by the Python engine: the gradients of
    ``outputs`` with respect to ``inputs``, returned instead of accumulated."""
    if is_grads_batched:
        raise NotMirrored("grad(is_grads_batched=True): vmap over backward runs in torch's engine only")
    if allow_unused is None:
        allow_unused = materialize_grads
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
    inputs_tuple = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    grad_outputs_ = _tensor_or_tensors_to_tuple(grad_outputs, len(outputs))
    grad_outputs_ = _make_grads(outputs, grad_outputs_, is_grads_batched=False)
    if retain_graph is None:
        retain_graph = create_graph
    result = run_backward(outputs, grad_outputs_, retain_graph, create_graph, inputs_tuple,
                          allow_unreachable=allow_unused, accumulate_grad=False)
    if materialize_grads:
        result = tuple(r if r is not None else torch.zeros_like(i, requires_grad=create_graph)
                       for r, i in zip(result, inputs_tuple))
    return result


@contextmanager
def installed():
    """While inside, ``torch.autograd.backward`` and ``torch.autograd.grad``
    (and so ``Tensor.backward``, which calls the first) run in this engine:
    what ``python -m traces --engine python`` does for a script."""
    originals = torch.autograd.backward, torch.autograd.grad
    torch.autograd.backward, torch.autograd.grad = backward, grad
    try:
        yield
    finally:
        if torch.autograd.backward is backward:  # else someone wrapped it again: theirs calls ours
            torch.autograd.backward = originals[0]
        if torch.autograd.grad is grad:
            torch.autograd.grad = originals[1]


# ---------------------------------------------------------------------------
# python_engine.cpp: from tensors to edges
# ---------------------------------------------------------------------------


def gradient_edge(tensor: torch.Tensor):
    """The edge a gradient for ``tensor`` enters the graph by: its ``grad_fn``
    at its output number, or for a leaf its ``AccumulateGrad`` node."""
    if tensor.grad_fn is not None:
        return (tensor.grad_fn, tensor.output_nr)
    if tensor.requires_grad:
        return (grad_accumulator(tensor), 0)
    return (None, 0)


def grad_accumulator(leaf: torch.Tensor):
    """The leaf's ``AccumulateGrad`` node (torch makes it on first use)."""
    return torch.autograd.graph.get_gradient_edge(leaf).node


def run_backward(tensors, grad_tensors, keep_graph, create_graph, inputs,
                 allow_unreachable, accumulate_grad):
    """THPEngine_run_backward: turn tensors into root edges and output edges,
    run ``execute``, and for ``grad()`` check that every input was reached.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/python_engine.cpp
    """
    root_edges, grads = [], []
    for i, (tensor, gradient) in enumerate(zip(tensors, grad_tensors)):
        edge = gradient_edge(tensor)
        if edge[0] is None:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        root_edges.append(edge)
        grads.append(gradient)

    output_edges = []
    for tensor in inputs:
        if accumulate_grad:
            tensor.retain_grad()
        if not tensor.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
        output_edges.append(gradient_edge(tensor))

    outputs = execute(root_edges, grads, keep_graph, create_graph, accumulate_grad, output_edges,
                      output_tensors=list(inputs))
    if not accumulate_grad:
        for value in outputs:
            if value is None and not allow_unreachable:
                raise RuntimeError(
                    "One of the differentiated Tensors appears to not have been used in the graph. "
                    "Set allow_unused=True if this is the desired behavior.")
        return tuple(outputs)
    return None


# ---------------------------------------------------------------------------
# engine.cpp: the graph task and its preparation
# ---------------------------------------------------------------------------


class GraphRoot:
    """The node the engine starts from when there are several roots: it
    returns the root gradients, one per root edge (functions/basic_ops.h)."""

    def __init__(self, edges, grads):
        self.next_functions = tuple(edges)
        self.grads = list(grads)
        self._input_metadata = ()
        self.metadata: dict = {}

    def name(self) -> str:
        return "GraphRoot"

    def _sequence_nr(self) -> int:
        return UINT64_MAX


@dataclass
class Capture:
    """``grad()`` keeps the gradient arriving at a node's input ``input_nr``
    as its result number ``output_idx`` (GraphTask::ExecInfo::Capture)."""

    input_nr: int
    output_idx: int
    tensor: torch.Tensor | None = None


@dataclass
class ExecInfo:
    """Whether a node must run (``needed``), and which of its arriving
    gradients ``grad()`` returns (``captures``)."""

    needed: bool = False
    captures: list[Capture] = field(default_factory=list)

    def should_execute(self) -> bool:
        return self.needed or bool(self.captures)


@dataclass
class GraphTask:
    """One backward call's state (engine.h ``struct GraphTask``)."""

    keep_graph: bool
    create_graph: bool
    dependencies: dict = field(default_factory=dict)
    not_ready: dict = field(default_factory=dict)  # node -> InputBuffer still filling
    exec_info: dict = field(default_factory=dict)  # empty: run every node
    captured_vars: list = field(default_factory=list)
    tensor_hooks: dict = field(default_factory=dict)  # (node, output_nr) -> tensors with hooks
    order: list = field(default_factory=list)  # the nodes in the order they ran


def execute(root_edges, grads, keep_graph, create_graph, accumulate_grad, output_edges,
            output_tensors=()):
    """Engine::execute: validate the root gradients, count dependencies, mark
    what must run when ``inputs=`` is given, then run the graph.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    validate_outputs(root_edges, grads, lambda message: message)
    if len(root_edges) == 1:
        # One root: the engine starts at it directly ("skip_dummy_node").
        graph_root = root_edges[0][0]
        first_buffer = InputBuffer(number_of_inputs(graph_root))
        first_buffer.add(root_edges[0][1], grads[0])
    else:
        graph_root = GraphRoot(root_edges, grads)
        first_buffer = InputBuffer(0)

    task = GraphTask(keep_graph=keep_graph, create_graph=create_graph)
    task.dependencies = compute_dependencies(graph_root)
    if output_edges:
        task.exec_info = init_to_execute(graph_root, output_edges, accumulate_grad, output_tensors)
        task.captured_vars = [None] * sum(len(info.captures) for info in task.exec_info.values())
    refuse_what_cannot_be_mirrored(graph_root, task, root_edges)
    task.tensor_hooks = tensor_hooks_by_edge([graph_root, *task.dependencies])

    with torch.set_grad_enabled(create_graph):
        thread_main(task, graph_root, first_buffer)
    return task.captured_vars


def compute_dependencies(graph_root) -> dict:
    """Engine::compute_dependencies: walk every edge from the root once and
    count, for each node, how many edges lead into it. A node is ready when
    that many gradients have arrived.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    dependencies: dict = {}
    seen = set()
    stack = [graph_root]
    while stack:
        node = stack.pop()
        for next_node, _input_nr in node.next_functions:
            if next_node is None:
                continue
            dependencies[next_node] = dependencies.get(next_node, 0) + 1
            if next_node not in seen:
                seen.add(next_node)
                stack.append(next_node)
    return dependencies


def init_to_execute(graph_root, output_edges, accumulate_grad, output_tensors) -> dict:
    """GraphTask::init_to_execute: with ``inputs=``, only the nodes on a path
    from the root to an input run. ``backward(inputs=)`` marks each input's
    node as needed; ``grad()`` captures the gradient arriving there.

    torch also skips nodes below the smallest topological number of the
    inputs; that only spares work, it changes no node that runs.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    exec_info: dict = {graph_root: ExecInfo(needed=True)}
    for output_idx, (node, input_nr) in enumerate(output_edges):
        info = exec_info.setdefault(node, ExecInfo())
        if accumulate_grad:
            info.needed = True
        else:
            tensor = output_tensors[output_idx] if output_idx < len(output_tensors) else None
            info.captures.append(Capture(input_nr, output_idx, tensor))

    # A node is needed when one of its next nodes should execute: decide the
    # next nodes first (an iterative depth-first walk, as torch does).
    done = set()
    stack = [(graph_root, iter(graph_root.next_functions))]
    while stack:
        node, children = stack[-1]
        child = next((c for c, _ in children if c is not None), None)
        if child is not None:
            if child in done:
                if should_execute(exec_info, child):
                    exec_info.setdefault(node, ExecInfo()).needed = True
            else:
                done.add(child)
                stack.append((child, iter(child.next_functions)))
            continue
        stack.pop()
        if stack and should_execute(exec_info, node):
            exec_info.setdefault(stack[-1][0], ExecInfo()).needed = True
    return exec_info


def should_execute(exec_info: dict, node) -> bool:
    info = exec_info.get(node)
    return info is not None and info.should_execute()


# ---------------------------------------------------------------------------
# What Python cannot do as torch does: refused before anything runs
# ---------------------------------------------------------------------------


def refuse_what_cannot_be_mirrored(graph_root, task: GraphTask, root_edges) -> None:
    """Raise ``NotMirrored`` for the first node the mirror would run wrongly."""
    nodes = [graph_root, *task.dependencies]
    edges_in = {(next_node, input_nr) for node in nodes for next_node, input_nr in node.next_functions}
    edges_in.update(root_edges)
    synchronized = parameters_synchronized_in_cpp()
    for node in nodes:
        name = node.name()
        if id(getattr(node, "variable", None)) in synchronized:
            raise NotMirrored(f"{name}: a DistributedDataParallel parameter {synchronized[id(node.variable)]}; DDP "
                              "averages its gradient across ranks in a hook registered only in C++, which the "
                              "mirror cannot see or run")
        node_hook_dicts(node)  # raises NotMirrored where a node's hooks cannot be found
        if isinstance(node, BackwardCFunction) and materialize_grads(node):
            for input_nr, metadata in enumerate(node._input_metadata):
                if (node, input_nr) not in edges_in and may_be_non_differentiable(metadata):
                    raise NotMirrored(
                        f"{name}: output {input_nr} gets no gradient and may be non-differentiable, for "
                        "which torch passes zeros shaped like the output, a shape Python cannot read")
        if name == "CheckpointFunctionBackward":
            raise NotMirrored(f"{name}: a reentrant checkpoint runs a backward inside backward "
                              "(use_reentrant=False is mirrored)")
        for metadata in node._input_metadata:
            if metadata.device.type != "cpu":
                raise NotMirrored(f"{name}: runs on the {metadata.device} device thread; "
                                  "the mirror runs CPU graphs")


def parameters_synchronized_in_cpp() -> dict[int, str]:
    """The parameters of every live DistributedDataParallel model, by id: DDP's reducer hooks
    each one's AccumulateGrad in C++ (to all-reduce its gradient), where Python cannot see the
    hook. Only looked for while a process group is up, as DDP needs one."""
    distributed = getattr(torch, "distributed", None)
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return {}
    ddp_class = torch.nn.parallel.DistributedDataParallel
    found = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), ddp_class):
            found.update({id(parameter): f"({name}, {tuple(parameter.shape)})"
                          for name, parameter in obj.module.named_parameters()})
    return found


def may_be_non_differentiable(metadata) -> bool:
    """A custom Function's non-differentiable output (``mark_non_differentiable``,
    an integer tensor) leaves its node an empty InputMetadata: shape ``()``,
    the default dtype, the CPU. For it torch's PyNode::apply materializes zeros
    from the output's own shape and dtype (``output_info``, not readable from
    Python) or, with ``ctx._materialize_non_diff_grads = False``, passes None.
    Python cannot tell that empty metadata from a real float scalar output's.
    """
    return (tuple(metadata.shape) == () and metadata.dtype == torch.get_default_dtype()
            and metadata.device.type == "cpu")


# ---------------------------------------------------------------------------
# A node's own hooks: registered from Python, kept in C++
# ---------------------------------------------------------------------------


def node_hook_dicts(node) -> tuple[dict | None, dict | None]:
    """The node's live dicts of hooks registered from Python, (pre-hooks, hooks), as
    ``traces.data.graph.node_hook_dicts`` finds them; refused where this torch hides them."""
    if isinstance(node, GraphRoot):
        return None, None
    try:
        return graph.node_hook_dicts(node)
    except graph.HooksNotFound as error:
        raise NotMirrored(f"{node.name()}: {error}") from None


# ---------------------------------------------------------------------------
# Freeing saved tensors
# ---------------------------------------------------------------------------


class SavedTensorsReleased:
    """The pre-hook that stands for a node's released saved tensors.

    Without ``retain_graph``, torch's engine frees each node's saved tensors
    after running it (``release_variables``), so a second backward fails in
    that node with SECOND_BACKWARD_ERROR. No Python API frees a C++ node's
    saved tensors; instead the mirror gives each node that saved one this
    pre-hook, which raises the same error at the same place, in either
    engine. The tensors themselves stay in memory until the graph is dropped,
    and ``grad_fn._saved_self`` still reads them.
    """

    def __call__(self, grad_outputs):
        raise RuntimeError(SECOND_BACKWARD_ERROR)


RELEASED = SavedTensorsReleased()


def release_variables(node) -> None:
    """Node::release_variables, as far as Python can: see SavedTensorsReleased."""
    if isinstance(node, GraphRoot) or not has_saved_tensors(node):
        return
    pre_hooks, _ = node_hook_dicts(node)
    if pre_hooks is None or RELEASED not in pre_hooks.values():
        node.register_prehook(RELEASED)


def released(node) -> bool:
    """Whether the mirror released this node's saved tensors: its guard is
    among its pre-hooks (told apart from the user's by identity)."""
    pre_hooks, _ = node_hook_dicts(node)
    return pre_hooks is not None and RELEASED in pre_hooks.values()


def has_saved_tensors(node) -> bool:
    """Whether a second backward fails in this node once its saved tensors
    are released. A C++ node fails when it unpacks a saved tensor that was
    defined (an undefined one unpacks as undefined, released or not: e.g.
    ``torch.addcmul(w, a, b)`` saves neither ``a`` nor ``b`` when only ``w``
    needs a gradient). A custom Function's ``ctx.saved_tensors`` fails once
    released whatever ``save_for_backward`` got, even ``None``; one that saved
    nothing is taken not to read ``ctx.saved_tensors``.
    """
    try:
        if isinstance(node, BackwardCFunction):
            return len(node._raw_saved_tensors) > 0
        for name in dir(node):
            if not name.startswith("_raw_saved_"):
                continue
            raw = getattr(node, name)
            for saved in raw if isinstance(raw, (list, tuple)) else [raw]:
                # .data: the tensor, or what a saved_tensors_hooks pack hook made of it (maybe None)
                if saved.data is not None or saved.unpack_hook is not None:
                    return True
    except RuntimeError:  # released by torch's engine already: it fails by itself
        return False
    return False


def tensor_hooks_by_edge(nodes: list) -> dict:
    """Find the non-leaf tensors with hooks or ``retain_grad`` whose node is
    in this graph. torch keeps them on the node in C++; Python finds the
    tensors themselves (and a leaf's hooks through its AccumulateGrad)."""
    wanted = {node for node in nodes if not isinstance(node, GraphRoot)
              and node.name() != "torch::autograd::AccumulateGrad"}
    found: dict = {}
    for obj in gc.get_objects():
        if not issubclass(type(obj), torch.Tensor):
            continue
        if obj.grad_fn is None or obj.grad_fn not in wanted:
            continue
        if obj._backward_hooks or obj.retains_grad:
            found.setdefault((obj.grad_fn, obj.output_nr), []).append(obj)
    return found


# ---------------------------------------------------------------------------
# The ready queue
# ---------------------------------------------------------------------------


@dataclass
class NodeTask:
    node: Any
    buffer: InputBuffer


def runs_later(a: NodeTask, b: NodeTask) -> bool:
    """CompareNodeTaskTime: ``a`` runs after ``b`` when its sequence number
    is lower (a node made later in the forward runs earlier in backward).
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    return sequence_nr(a.node) < sequence_nr(b.node)


def sequence_nr(node) -> int:
    return node._sequence_nr()


class ReadyQueue:
    """The nodes whose gradients are complete, highest sequence number first.

    The C++ engine keeps them in a ``std::priority_queue``; this is the same
    binary heap (libstdc++'s ``push_heap`` / ``pop_heap``), so that even nodes
    with equal sequence numbers (leaves' AccumulateGrad) come out in torch's
    order.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """

    def __init__(self):
        self.heap: list[NodeTask] = []

    def __len__(self) -> int:
        return len(self.heap)

    def names(self) -> list[str]:
        """The queue's nodes, the next one first (for the debugger)."""
        return [task.node.name() for task in sorted_tasks(self.heap)]

    def push(self, task: NodeTask) -> None:
        self.heap.append(task)
        sift_up(self.heap, len(self.heap) - 1, task)

    def pop(self) -> NodeTask:
        heap = self.heap
        top = heap[0]
        last = heap.pop()
        if heap:
            sift_down_then_up(heap, last)
        return top


def sift_down_then_up(heap: list, value) -> None:
    """libstdc++'s __adjust_heap: move the hole at the top down along the
    larger child to a leaf, then push ``value`` up from there."""
    length = len(heap)
    hole = 0
    child = 0
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if runs_later(heap[child], heap[child - 1]):
            child -= 1
        heap[hole] = heap[child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        heap[hole] = heap[child - 1]
        hole = child - 1
    sift_up(heap, hole, value)


def sift_up(heap: list, hole: int, value) -> None:
    """libstdc++'s __push_heap: move ``value`` up from ``hole`` past every parent that runs later."""
    while hole > 0:
        parent = (hole - 1) // 2
        if not runs_later(heap[parent], value):
            break
        heap[hole] = heap[parent]
        hole = parent
    heap[hole] = value


def sorted_tasks(heap: list) -> list:
    copy = ReadyQueue()
    copy.heap = list(heap)
    return [copy.pop() for _ in range(len(heap))]


# ---------------------------------------------------------------------------
# Input buffers
# ---------------------------------------------------------------------------


class InputBuffer:
    """The gradients arriving at one node, one slot per node input."""

    def __init__(self, size: int):
        self.buffer: list = [None] * size

    def add(self, pos: int, var) -> None:
        """InputBuffer::add: the first gradient fills the slot; each later one
        is added to it, in the order they arrive.

        torch adds in place when it holds the only reference (``old.add_(var)``
        or ``var.add_(old)``); the sum is the same either way (floating-point
        addition of two numbers is commutative), so this adds out of place.
        https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/input_buffer.cpp
        """
        if var is None:
            return
        old = self.buffer[pos]
        if old is None:
            self.buffer[pos] = var
        elif old.layout != torch.strided and var.layout == torch.strided:
            self.buffer[pos] = var + old  # sparse + dense: torch adds into the dense one
        else:
            self.buffer[pos] = old + var


def number_of_inputs(node) -> int:
    return len(node._input_metadata)


# ---------------------------------------------------------------------------
# validate_outputs
# ---------------------------------------------------------------------------


def validate_outputs(edges, grads: list, format_error: Callable[[str], str]) -> None:
    """validate_outputs: each gradient must fit the input it goes to. A
    gradient with the broadcast shape is summed down to it (``sum_to``: this
    is where a bias's gradient is summed over the batch); a wrong dtype is
    cast, a wrong device moved. Edits ``grads`` in place, as torch does.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    if len(grads) != len(edges):
        raise RuntimeError(format_error(
            f"invalid number of gradients - expected {len(edges)}, but got {len(grads)}"))
    for i, (node, input_nr) in enumerate(edges):
        if node is None:
            continue
        gradient = grads[i]
        if gradient is None:
            continue
        metadata = node._input_metadata[input_nr]
        shape = tuple(metadata.shape)
        if tuple(gradient.shape) != shape:
            if is_expandable_to(shape, tuple(gradient.shape)):
                gradient = gradient.sum_to_size(shape)  # at::sum_to
            else:
                raise RuntimeError(format_error(
                    f"invalid gradient at index {i} - got {list(gradient.shape)} but expected "
                    f"shape compatible with {list(shape)}"))
        if gradient.dtype != metadata.dtype:
            gradient = gradient.to(metadata.dtype)
        if gradient.device != metadata.device and not (
                gradient.dim() == 0 and gradient.device.type == "cpu"):
            gradient = gradient.to(metadata.device)
        grads[i] = gradient


def is_expandable_to(shape: tuple, desired: tuple) -> bool:
    """at::is_expandable_to: ``shape`` broadcasts to ``desired``."""
    if len(shape) > len(desired):
        return False
    for size, target in zip(reversed(shape), reversed(desired)):
        if size != target and size != 1:
            return False
    return True


# ---------------------------------------------------------------------------
# Running the graph
# ---------------------------------------------------------------------------


@dataclass
class Step:
    """What one node did, for the debugger's Variables pane and for tests."""

    node: Any
    name: str
    grads_arriving: list  # the node's input buffer, after the tensor hooks
    grads_leaving: list  # one per next_functions entry, after validate_outputs
    shapes_from_node: list  # the shapes the node returned, before validate_outputs


def thread_main(task: GraphTask, graph_root, first_buffer: InputBuffer) -> None:
    """Engine::thread_main on the calling thread: take the next ready node
    and evaluate it, until the queue is empty.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    queue = ReadyQueue()
    queue.push(NodeTask(graph_root, first_buffer))
    while queue:
        node_task = queue.pop()
        evaluate_function(task, node_task.node, node_task.buffer, queue)


def evaluate_function(task: GraphTask, node, buffer: InputBuffer, queue: ReadyQueue) -> None:
    """Engine::evaluate_function: run one node, then hand each gradient it
    returns to the input buffer of the node its edge leads to; a node whose
    last gradient arrived goes on the ready queue.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    name = node.name()
    if task.exec_info:
        info = task.exec_info[node]
        inputs = list(buffer.buffer)
        if not info.needed:
            inputs = call_tensor_pre_hooks(task, node, inputs)
        for capture in info.captures:
            task.captured_vars[capture.output_idx] = inputs[capture.input_nr]
        if not info.needed:
            return

    grads_arriving = list(buffer.buffer)
    formula = derivative_formula(name) if sys.gettrace() is not None else None  # noqa: F841  (to read while stepping)
    queue_now = queue.names() if sys.gettrace() is not None else None  # noqa: F841  (to read while stepping)
    grads_leaving, shapes_from_node = call_function(task, node, buffer)
    if not task.keep_graph:
        release_variables(node)
    step = Step(node, name, grads_arriving, grads_leaving, shapes_from_node)
    task.order.append(node)
    for on_node in WATCHERS:
        on_node(step)

    for i, gradient in enumerate(grads_leaving):
        next_node, input_nr = node.next_functions[i]
        if next_node is None:
            continue
        task.dependencies[next_node] -= 1
        is_ready = task.dependencies[next_node] == 0
        if is_ready:
            del task.dependencies[next_node]
        if task.exec_info and not should_execute(task.exec_info, next_node):
            continue
        next_buffer = task.not_ready.pop(next_node, None) or InputBuffer(number_of_inputs(next_node))
        next_buffer.add(input_nr, gradient)
        if is_ready:
            queue.push(NodeTask(next_node, next_buffer))
        else:
            task.not_ready[next_node] = next_buffer


def call_function(task: GraphTask, node, buffer: InputBuffer) -> tuple[list, list]:
    """call_function: the tensor hooks change the arriving gradients, the
    node computes the gradients of its inputs, validate_outputs fits them to
    the next nodes' inputs. Returns those, and the shapes the node gave.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    inputs = call_tensor_pre_hooks(task, node, list(buffer.buffer))
    inputs = call_pre_hooks(node, inputs)
    if isinstance(node, GraphRoot):
        outputs = list(node.grads)
    elif isinstance(node, BackwardCFunction):
        outputs = call_python_function(node, inputs)
    else:
        outputs = node(*inputs)  # torch's own C++ backward of this node
        outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
    shapes_from_node = [None if g is None else list(g.shape) for g in outputs]
    validate_outputs(node.next_functions, outputs,
                     lambda message: f"Function {node.name()} returned an {message}")
    outputs = call_post_hooks(node, outputs, inputs)
    return outputs, shapes_from_node


def call_pre_hooks(node, inputs: list) -> list:
    """call_pre_hooks: the node's pre-hooks (``node.register_prehook``) see,
    and may replace, the gradients arriving: each is called with the tuple of
    them and returns a new tuple or None (PyFunctionPreHook in python_hook.cpp).
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/python_hook.cpp
    """
    pre_hooks, _ = node_hook_dicts(node)
    if pre_hooks is None:
        return inputs
    return list(call_hooks(pre_hooks, [tuple(inputs)]))


def call_post_hooks(node, outputs: list, inputs: list) -> list:
    """call_post_hooks: the node's hooks (``node.register_hook``) are called
    with the gradients leaving and those arriving, and may replace those
    leaving (PyFunctionPostHook in python_hook.cpp)."""
    _, post_hooks = node_hook_dicts(node)
    if post_hooks is None:
        return outputs
    return list(call_hooks(post_hooks, [tuple(outputs), tuple(inputs)]))


def call_hooks(hooks: dict, args: list):
    """_call_hooks (python_hook.cpp): call every hook in the dict, in the
    order they were registered; a hook that returns something other than None
    replaces ``args[0]`` for the hooks after it. Returns ``args[0]``."""
    for hook in list(hooks.values()):  # a hook may remove itself: the list is taken first
        result = hook(*args)
        if result is None or result is args[0]:
            continue
        if isinstance(args[0], tuple):
            check_result(args[0], result, hook)
        else:
            check_single_result(args[0], result, hook)
        args[0] = result
    return args[0]


def hook_name(hook) -> str:
    return getattr(hook, "__name__", "<unknown>")


def check_result(previous: tuple, result, hook) -> None:
    """check_result (python_hook.cpp): a hook returns a tuple as long as the one it got."""
    if not isinstance(result, tuple):
        raise TypeError(f"expected tuple, but hook returned '{type(result).__name__}'")
    if len(previous) != len(result):
        raise RuntimeError(f"hook '{hook_name(hook)}' has returned an incorrect number of values "
                           f"(got {len(result)}, but expected {len(previous)})")
    for original, value in zip(previous, result):
        check_single_result(original, value, hook)


def check_single_result(original, result, hook) -> None:
    """check_single_result and check_variable_result: a hook may not turn a
    None gradient into a tensor, nor change a gradient's type or size."""
    if result is None:
        return
    if original is None:
        raise RuntimeError("can't replace a None gradient with a non-None value")
    if not isinstance(result, torch.Tensor):
        raise TypeError(f"expected Variable, but hook returned '{type(result).__name__}'")
    if original.type() != result.type():
        raise RuntimeError(f"hook '{hook_name(hook)}' has changed the type of value "
                           f"(was {original.type()} got {result.type()})")
    if original.shape != result.shape:
        raise RuntimeError(f"hook '{hook_name(hook)}' has changed the size of value")


def materialize_grads(node) -> bool:
    """The flag ``ctx.set_materialize_grads`` sets on a custom Function's node.

    torch gives Python a setter for it but no getter, so it is read where C++
    keeps it: a bool inside the node's object, found by ``materialize_flag_offset``.
    """
    offset = materialize_flag_offset()
    if offset is None:
        raise NotMirrored(f"{node.name()}: ctx.set_materialize_grads cannot be read in this torch")
    return ctypes.string_at(id(node) + offset, 1) != b"\x00"


@functools.cache
def materialize_flag_offset() -> int | None:
    """Where in a custom Function's node (THPFunction, python_function.h) the
    ``materialize_grads`` bool lies: on a node of our own, set the flag on and
    off through torch's setter and see which one byte follows it. None if not
    exactly one byte does.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/python_function.h
    """

    class Calibrate(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad

    with torch.inference_mode(False), torch.enable_grad():
        node = Calibrate.apply(torch.zeros(1, requires_grad=True)).grad_fn
    size = torch._C._FunctionBase.__basicsize__
    snapshots = []
    for value in (True, False, True, False):
        node.set_materialize_grads(value)
        snapshots.append(ctypes.string_at(id(node), size))
    changed = [i for i in range(size) if len({snapshot[i] for snapshot in snapshots}) > 1]
    if len(changed) != 1 or [snapshot[changed[0]] for snapshot in snapshots] != [1, 0, 1, 0]:
        return None
    return changed[0]


@functools.lru_cache(maxsize=None)
def derivative_formula(name: str) -> str:
    """The node's derivative formula from derivatives.yaml (traces/below/formulas.py),
    one line per input, or what computes it when it has none."""
    derivative = node_derivative(name.rsplit("::", 1)[-1])  # torch::autograd::AccumulateGrad
    if not derivative.formulas:
        return derivative.summary
    return "; ".join(f"{', '.join(f.inputs)}: {f.formula}" for f in derivative.formulas)


def call_tensor_pre_hooks(task: GraphTask, node, inputs: list) -> list:
    """call_tensor_pre_hooks: the hooks of the tensors this node made
    (``tensor.register_hook``) may replace the gradient; then ``retain_grad``
    keeps a copy in ``tensor.grad``. A leaf's hooks run before its
    AccumulateGrad adds into ``.grad``.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/engine.cpp
    """
    if node.name() == "torch::autograd::AccumulateGrad":
        hooked = [node.variable] if node.variable._backward_hooks else []
        tensors_by_input = {0: hooked}
    else:
        tensors_by_input = {nr: task.tensor_hooks.get((node, nr), []) for nr in range(len(inputs))}
    for nr, tensors in tensors_by_input.items():
        for tensor in tensors:
            for hook in list((tensor._backward_hooks or {}).values()):
                result = hook(inputs[nr])
                if result is not None:
                    inputs[nr] = result
    for nr, tensors in tensors_by_input.items():
        for tensor in tensors:
            if tensor.retains_grad and inputs[nr] is not None:
                retain_grad(tensor, inputs[nr])
    return inputs


def retain_grad(tensor: torch.Tensor, gradient: torch.Tensor) -> None:
    """The hook ``tensor.retain_grad()`` installs (variable.cpp): the first
    gradient is copied into ``.grad``, later ones added."""
    if tensor.grad is None:
        copy = gradient.clone() if gradient.is_sparse else gradient.clone(memory_format=torch.contiguous_format)
        with torch.no_grad():
            tensor.grad = copy
    else:
        tensor.grad = tensor.grad + gradient


def call_python_function(node, inputs: list) -> list:
    """PyNode::apply: a custom ``autograd.Function``'s backward. A missing
    gradient becomes zeros shaped like its output, unless the forward called
    ``ctx.set_materialize_grads(False)``: then backward gets None. The result
    for each forward input that required grad goes to its edge, in order.
    https://github.com/pytorch/pytorch/blob/5c4886908584029761b579af026dcfb627c84070/torch/csrc/autograd/python_function.cpp
    """
    if materialize_grads(node):
        grads = [g if g is not None else torch.zeros(tuple(m.shape), dtype=m.dtype, device=m.device)
                 for g, m in zip(inputs, node._input_metadata)]
    else:
        grads = list(inputs)
    result = node.apply(*grads)
    if not isinstance(result, tuple):
        result = (result,)
    needs = node.needs_input_grad
    if len(result) != len(needs):
        if len(result) < len(needs) or any(r is not None for r in result[len(needs):]):
            raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                               f"(expected {len(needs)}, got {len(result)})")
    from_inputs_that_need_grad = iter(r for r, need in zip(result, needs) if need)
    return [next(from_inputs_that_need_grad) if next_node is not None else None
            for next_node, _ in node.next_functions]
