"""The Python engine (traces/mirror/engine.py) against torch's C++ engine.

Each case builds the same computation twice from the same seed: once for
torch's engine, once for the mirror. Every leaf's ``.grad`` (and whatever the
case returns, e.g. ``grad()``'s results) must be bitwise equal, and the nodes
must run in the same order: torch's order is seen with node pre-hooks, the
mirror's with ``engine.watching``; a node is named by its place in one
depth-first walk of the graph, which is the same for both builds.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from traces.mirror import engine


class TorchEngine:
    backward = staticmethod(torch.autograd.backward)
    grad = staticmethod(torch.autograd.grad)


class PythonEngine:
    backward = staticmethod(engine.backward)
    grad = staticmethod(engine.grad)


def walk(roots) -> list:
    """Every node behind the roots, in one fixed depth-first order."""
    seen, order, stack = set(), [], [t.grad_fn or engine.grad_accumulator(t) for t in roots]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        stack.extend(n for n, _ in reversed(node.next_functions) if n is not None)
    return order


def run(case, api):
    """Build the case, run its backward with ``api``; return leaves' grads, results, node order."""
    torch.manual_seed(0)
    leaves, roots, go = case()
    place = {node: i for i, node in enumerate(walk(roots))}
    order: list[int] = []
    if api is TorchEngine:
        handles = [node.register_prehook(lambda g, i=i: order.append(i)) for node, i in place.items()]
        try:
            results = go(api)
        finally:
            for handle in handles:
                handle.remove()
    else:
        def seen(step):
            # Nodes made during backward (create_graph) have no hook on torch's side: not compared.
            if step.node in place:
                order.append(place[step.node])
        with engine.watching(seen):
            results = go(api)
    return [leaf.grad for leaf in leaves], list(results or ()), order


def assert_bitwise_equal(a, b, what):
    if a is None or b is None:
        assert a is None and b is None, what
        return
    assert a.layout == b.layout, what
    if a.is_sparse:
        a, b = a.coalesce(), b.coalesce()
        assert torch.equal(a.indices(), b.indices()), what
        a, b = a.values(), b.values()
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert torch.equal(a.view(-1).view(torch.uint8) if a.is_floating_point() else a,
                       b.view(-1).view(torch.uint8) if b.is_floating_point() else b), what


def check(case):
    torch_grads, torch_results, torch_order = run(case, TorchEngine)
    mirror_grads, mirror_results, mirror_order = run(case, PythonEngine)
    assert mirror_order == torch_order
    assert len(torch_grads) == len(mirror_grads)
    for i, (a, b) in enumerate(zip(torch_grads, mirror_grads)):
        assert_bitwise_equal(a, b, f"leaf {i}")
    for i, (a, b) in enumerate(zip(torch_results, mirror_results)):
        assert_bitwise_equal(a, b, f"result {i}")
    assert any(g is not None for g in torch_grads + torch_results), "nothing to compare"
    return torch_grads, torch_order


# --- the cases --------------------------------------------------------------


def backward_of(loss):
    return lambda api: api.backward(loss)


def model_case(model, *inputs, loss=lambda out: out.sum()):
    def case():
        leaves = list(model.parameters())
        for p in leaves:
            p.grad = None
        out = model(*inputs)
        if isinstance(out, tuple):
            out = out[0]
        value = loss(out)
        return leaves, [value], backward_of(value)
    return case


def note_graph():
    w = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(2.0, requires_grad=True)
    y = (w + x) * (w + 1)
    return [w, x], [y], backward_of(y)


def linear_batch():
    layer = nn.Linear(3, 2)
    y = layer(torch.randn(4, 3)).pow(2).sum()
    return list(layer.parameters()), [y], backward_of(y)


def tied_weights():
    embedding = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight
    y = head(embedding(torch.tensor([1, 2, 3, 1]))).logsumexp(-1).sum()
    return [embedding.weight], [y], backward_of(y)


def hooks_change_a_gradient():
    w = torch.randn(3, requires_grad=True)
    h = w * 3
    h.register_hook(lambda g: g * 10)
    w.register_hook(lambda g: g + 1)
    y = (h * h + w).sum()
    return [w], [y], lambda api: (api.backward(y), h)[1:]


def retain_grad_case():
    w = torch.randn(3, requires_grad=True)
    a = w.sin()
    b = a * a
    a.retain_grad()
    b.retain_grad()
    y = (b + a).sum()

    def go(api):
        api.backward(y)
        return [a.grad, b.grad]
    return [w], [y], go


class Square(torch.autograd.Function):
    """In place: marks its input dirty; its backward cannot be differentiated again."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x.clone())
        ctx.scale = scale
        ctx.mark_dirty(x)
        return x.mul_(x).mul_(scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * x * ctx.scale, None


def custom_function():
    w = torch.randn(5, requires_grad=True)
    y = Square.apply(w * 1.5, 3.0).sum()
    return [w], [y], backward_of(y)


def double_backward():
    w = torch.randn(4, requires_grad=True)
    y = (w ** 3).sum()

    def go(api):
        (g,) = api.grad(y, w, create_graph=True)
        (gg,) = api.grad(g.sum(), w)
        return [g.detach(), gg]
    return [w], [y], go


def checkpoint_case():
    layer1, layer2 = nn.Linear(6, 6), nn.Linear(6, 2)
    x = torch.randn(3, 6)
    h = checkpoint(lambda t: layer1(t).tanh(), x, use_reentrant=False)
    y = layer2(h).sum()
    return [*layer1.parameters(), *layer2.parameters()], [y], backward_of(y)


def sparse_embedding():
    embedding = nn.Embedding(10, 3, sparse=True)
    y = embedding(torch.tensor([[1, 2, 1], [4, 1, 9]])).pow(2).sum()
    return [embedding.weight], [y], backward_of(y)


def inputs_only():
    layer = nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    y = layer(x).sum()
    return [layer.weight, layer.bias, x], [y], lambda api: api.backward(y, inputs=[layer.weight, x])


def several_roots():
    w = torch.randn(3, requires_grad=True)
    y1, y2 = (w * 2).sum(), (w.exp()).sum()
    return [w], [y1, y2], lambda api: api.backward([y1, y2], [torch.tensor(1.0), torch.tensor(0.5)])


def lstm():
    model = nn.LSTM(4, 5, num_layers=2)
    return model_case(model, torch.randn(6, 2, 4))()


def transformer_encoder():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    return model_case(model, torch.randn(5, 2, 8))()


def node_hooks_on_every_node():
    """Every node of an LSTM gets a pre-hook that halves the gradients
    arriving and a hook that adds 1 to those leaving (C++ nodes' own hooks)."""
    model = nn.LSTM(3, 4)
    y = model(torch.randn(5, 2, 3))[0].pow(2).sum()

    def halve(grad_outputs):
        return tuple(None if g is None else g * 0.5 for g in grad_outputs)

    def add_one(grad_inputs, grad_outputs):
        return tuple(None if g is None else g + 1 for g in grad_inputs)

    for node in walk([y]):
        node.register_prehook(halve)
        node.register_hook(add_one)
    return list(model.parameters()), [y], backward_of(y)


CASES = [note_graph, linear_batch, tied_weights, hooks_change_a_gradient, node_hooks_on_every_node,
         retain_grad_case, custom_function, double_backward, checkpoint_case, sparse_embedding, inputs_only,
         several_roots, lstm, transformer_encoder]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_mirror_equals_torch(case):
    grads, order = check(case)
    assert order, "no node ran"


def test_note_graph_gives_w_grad_five_as_torch_does():
    grads, _ = check(note_graph)
    assert [g.item() for g in grads] == [5.0, 2.0]


def test_hook_changed_gradient_is_seen_by_both():
    grads, _ = check(hooks_change_a_gradient)
    torch.manual_seed(0)
    w = torch.randn(3)
    assert torch.allclose(grads[0], 2 * 3 * w * 10 * 3 + 1 + 1)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121", "vit_b_16"])
def test_torchvision_models(name):
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    if name == "vit_b_16":
        model = models.vit_b_16(weights=None, image_size=32)
    else:
        model = getattr(models, name)(weights=None)
    model.eval()  # eval: batch norm uses its running statistics, no dropout: both builds compute the same
    check(model_case(model, torch.randn(2, 3, 32, 32)))


def test_resnet18_in_training_mode():
    """Batch norm's training backward (batch statistics) too: each build's forward sees the same batch."""
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = models.resnet18(weights=None).train()
    _grads, order = check(model_case(model, torch.randn(2, 3, 32, 32)))
    assert len(order) > 100


# --- what the mirror refuses, and torch's own errors ------------------------


def test_reentrant_checkpoint_is_refused_before_anything_runs():
    layer = nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    y = checkpoint(layer, x, use_reentrant=True).sum()
    with pytest.raises(engine.NotMirrored, match="^CheckpointFunctionBackward: a reentrant checkpoint"):
        engine.backward(y)
    assert layer.weight.grad is None and x.grad is None  # nothing ran
    y.backward()  # torch's own engine still can
    assert layer.weight.grad is not None


def test_a_distributed_data_parallel_model_is_refused_before_anything_runs(monkeypatch):
    """DDP's reducer all-reduces each parameter's gradient in a hook registered only in C++."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", 0, 1, True)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # init_process_group replaces it: put it back after
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(3, 2)))
        loss = model(torch.randn(4, 3)).sum()
        with pytest.raises(engine.NotMirrored) as refused:
            engine.backward(loss, retain_graph=True)
        assert all(p.grad is None for p in model.parameters())  # nothing ran
        loss.backward()  # torch's own engine still can
        assert all(p.grad is not None for p in model.parameters())
    finally:
        dist.destroy_process_group()
    assert str(refused.value) in (
        f"torch::autograd::AccumulateGrad: a DistributedDataParallel parameter ({name}, {shape}); DDP averages its "
        "gradient across ranks in a hook registered only in C++, which the mirror cannot see or run"
        for name, shape in [("0.weight", (2, 3)), ("0.bias", (2,))]
    )
    # Without a live DDP model the same parameters are mirrored.
    plain = nn.Linear(3, 2)
    engine.backward(plain(torch.randn(4, 3)).sum())
    assert plain.weight.grad is not None


class WrongShape(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return torch.ones(7)


def test_wrong_gradient_shape_gives_torchs_message():
    x = torch.randn(3, requires_grad=True)
    messages = []
    for api in (torch.autograd.backward, engine.backward):
        with pytest.raises(RuntimeError) as error:
            api(WrongShape.apply(x).sum())
        messages.append(str(error.value).splitlines()[0])
    assert messages[0] == messages[1]
    assert messages[1] == ("Function WrongShapeBackward returned an invalid gradient at index 0 - got [7] "
                           "but expected shape compatible with [3]")


def test_second_backward_without_retain_graph_fails_with_torchs_message():
    w = torch.tensor(1.0, requires_grad=True)
    y = (w + 2) * (w + 1)
    engine.backward(y)
    with pytest.raises(RuntimeError, match="^Trying to backward through the graph a second time"):
        engine.backward(y)
    assert w.grad.item() == 5.0  # the refused second backward added nothing


def test_retain_graph_lets_gradients_add_up():
    w = torch.tensor(1.0, requires_grad=True)
    y = (w + 2) * (w + 1)
    engine.backward(y, retain_graph=True)
    engine.backward(y)
    assert w.grad.item() == 10.0


def test_grad_of_an_unused_input_needs_allow_unused():
    w, unused = torch.randn(2, requires_grad=True), torch.randn(2, requires_grad=True)
    y = (w * 2).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        engine.grad(y, [w, unused], retain_graph=True)
    assert engine.grad(y, [w, unused], allow_unused=True)[1] is None


def test_docstrings_link_engine_cpp_at_the_installed_commit():
    link = f"https://github.com/pytorch/pytorch/blob/{torch.version.git_version}/torch/csrc/autograd/engine.cpp"
    for function in (engine.compute_dependencies, engine.evaluate_function, engine.call_function,
                     engine.validate_outputs, engine.thread_main, engine.execute, engine.ReadyQueue):
        assert link in function.__doc__, function.__name__


# --- the scenarios, whole, under both engines --------------------------------

SCENARIOS = ["backward", "leaf_gradients", "unsqueeze", "in_place", "saved_tensors", "frozen_parameters",
             "inference_mode", "training_step"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_scenario_prints_the_same_facts_when_its_backward_runs_in_the_mirror(name, capsys, request, tmp_path):
    """Every fact a scenario prints (gradients, errors, what was freed) is the
    same when Tensor.backward and autograd.grad run in the mirror."""
    import importlib

    from scenarios._record import DATA_SCENARIOS, quick_options

    scenario = importlib.import_module(f"scenarios.{name}")
    # The data made once for the session (not into the checkout, and not "generated now" in one run only).
    data = request.getfixturevalue("fashion_data") if name in DATA_SCENARIOS else tmp_path
    argv = quick_options(name, data, tmp_path)
    assert scenario.main(argv) == 0
    by_torch = capsys.readouterr().out
    steps = []
    with engine.installed(), engine.watching(steps.append):
        assert scenario.main(argv) == 0
    assert capsys.readouterr().out == by_torch
    assert steps, "the mirror ran no node"


def test_the_dynamic_graph_scenario_sees_saved_tensors_the_mirror_cannot_free():
    """Known difference: the scenario reads a saved tensor after backward to show
    it freed; the mirror cannot free it (it only makes a second backward fail)."""
    from scenarios.dynamic_graph import main

    with engine.installed(), pytest.raises(AssertionError, match="a saved tensor should be unreadable after backward"):
        main([])
