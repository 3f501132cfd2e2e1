"""A node's own hooks, a freed graph, and materialized gradients: the Python
engine (traces/mirror/engine.py) against torch's C++ engine on the same program.

Each test builds the same computation once per engine and compares what the
two did: gradients bitwise, hook calls in order, errors word for word.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from test_engine_mirror import assert_bitwise_equal
from traces.mirror import engine

ENGINES = {"torch": torch.autograd.backward, "mirror": engine.backward}


# --- hooks registered from Python on C++ nodes ------------------------------


def hooked_linear(log: list):
    """A Linear whose AddmmBackward0 has pre-hooks and a hook that change the
    gradients, one pre-hook removed again, a tensor hook and retain_grad on its
    output, and a hook on a leaf's AccumulateGrad."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    h = layer(x)
    h.retain_grad()
    h.register_hook(lambda g: (log.append("tensor hook on h"), g * 2)[1])
    y = h.tanh().sum()
    addmm = h.grad_fn
    assert addmm.name() == "AddmmBackward0"
    addmm.register_prehook(lambda go: (log.append("pre-hook 1"), (go[0] + 1,))[1])
    removed = addmm.register_prehook(lambda go: log.append("removed pre-hook"))
    addmm.register_hook(lambda gi, go: (log.append(("hook", [g is None for g in gi], go[0].sum().item())),
                                        tuple(None if g is None else g * 3 for g in gi))[1])
    addmm.register_prehook(lambda go: log.append(("pre-hook 2 sees", go[0].sum().item())))
    removed.remove()
    accumulate = addmm.next_functions[0][0]  # the bias's AccumulateGrad
    accumulate.register_prehook(lambda go: log.append(("AccumulateGrad pre-hook", go[0].tolist())))
    accumulate.register_hook(lambda gi, go: log.append(("AccumulateGrad hook", len(gi), len(go))))
    return [layer.weight, layer.bias, x], y, h


def test_hooks_on_cpp_nodes_run_as_in_torch():
    runs = {}
    for name, backward in ENGINES.items():
        log: list = []
        leaves, y, h = hooked_linear(log)
        backward(y)
        runs[name] = log, [leaf.grad for leaf in leaves] + [h.grad]
    (torch_log, torch_grads), (mirror_log, mirror_grads) = runs["torch"], runs["mirror"]
    assert mirror_log == torch_log
    assert [entry if isinstance(entry, str) else entry[0] for entry in torch_log] == [
        "tensor hook on h", "pre-hook 1", "pre-hook 2 sees", "hook",
        "AccumulateGrad pre-hook", "AccumulateGrad hook"]
    assert "removed pre-hook" not in mirror_log
    for i, (a, b) in enumerate(zip(torch_grads, mirror_grads)):
        assert_bitwise_equal(a, b, f"gradient {i}")
    # The hooks changed the gradients: h's doubled by the tensor hook, +1 by pre-hook 1, *3 by the hook.
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    h = layer(x)
    plain = (1 - h.tanh() ** 2) * 2
    assert torch.allclose(mirror_grads[1], (plain + 1).sum(0) * 3)
    assert torch.allclose(mirror_grads[3], plain)  # retain_grad: after the tensor hook, before the node's


def test_hooks_on_a_custom_functions_node_run_as_in_torch():
    from test_engine_mirror import Square

    runs = {}
    for name, backward in ENGINES.items():
        log: list = []
        w = torch.arange(1.0, 4.0, requires_grad=True)
        y = Square.apply(w * 1.5, 3.0)
        y.grad_fn.register_prehook(lambda go: (log.append(("pre-hook", go[0].tolist())), (go[0] * 2,))[1])
        y.grad_fn.register_hook(lambda gi, go: (log.append(("hook", gi[0].tolist(), go[0].tolist())),
                                                (gi[0] + 1,))[1])
        backward(y.sum())
        runs[name] = log, w.grad
    assert runs["mirror"][0] == runs["torch"][0] == [
        ("pre-hook", [1.0, 1.0, 1.0]), ("hook", [18.0, 36.0, 54.0], [2.0, 2.0, 2.0])]
    assert_bitwise_equal(runs["mirror"][1], runs["torch"][1], "w.grad")
    assert runs["mirror"][1].tolist() == [28.5, 55.5, 82.5]  # (2 * 2 * 1.5w * 3 + 1) * 1.5


def test_the_probe_adds_nothing_to_the_node():
    w = torch.randn(3, requires_grad=True)
    y = (w * 2).sum()
    node = y.grad_fn.next_functions[0][0]
    assert engine.node_hook_dicts(node) == (None, None)
    assert engine.node_hook_dicts(node) == (None, None)  # had the probe added a dict, it would be found now
    calls = []
    handle = node.register_hook(lambda gi, go: calls.append("hook"))
    for _ in range(3):
        pre_hooks, post_hooks = engine.node_hook_dicts(node)
    assert pre_hooks is None and list(post_hooks) == [handle.id]  # the user's one hook, nothing more
    assert torch.autograd.Function._register_hook is torch.autograd.function._HookMixin._register_hook
    y.backward()
    assert calls == ["hook"]  # torch's engine runs the hook once: the probes left nothing behind
    assert torch.equal(w.grad, torch.full((3,), 2.0))


def test_a_probe_that_cannot_see_hooks_refuses_before_anything_runs(monkeypatch):
    class NotTheOneTorchCalls(torch.autograd.Function):
        """As if torch no longer called Function._register_hook: the probe patches the wrong class."""

        _register_hook = staticmethod(torch.autograd.Function._register_hook)

    w = torch.randn(3, requires_grad=True)
    y = (w * 2).sum()
    monkeypatch.setattr(torch.autograd, "Function", NotTheOneTorchCalls)
    with pytest.raises(engine.NotMirrored, match=r"^SumBackward0: its hooks cannot be found from Python"):
        engine.backward(y)
    monkeypatch.undo()
    assert w.grad is None  # nothing ran
    assert engine.node_hook_dicts(y.grad_fn) == ({}, {})  # the hooks torch added were removed again
    y.backward()
    assert torch.equal(w.grad, torch.full((3,), 2.0))


@pytest.mark.parametrize("kind, hook, message", [
    ("pre", lambda go: go[0], "TypeError: expected tuple, but hook returned 'Tensor'"),
    ("pre", lambda go: (go[0], go[0]), "RuntimeError: hook '<lambda>' has returned an incorrect number of values "
                                       "(got 2, but expected 1)"),
    ("pre", lambda go: (go[0].sum(),), "RuntimeError: hook '<lambda>' has changed the size of value"),
    ("pre", lambda go: (go[0].double(),), "RuntimeError: hook '<lambda>' has changed the type of value "
                                          "(was torch.FloatTensor got torch.DoubleTensor)"),
    ("pre", lambda go: ("x",), "TypeError: expected Variable, but hook returned 'str'"),
    ("post", lambda gi, go: tuple(torch.ones(3) if g is None else g for g in gi),
     "RuntimeError: can't replace a None gradient with a non-None value"),
])
def test_a_hook_returning_the_wrong_thing_gets_torchs_error(kind, hook, message):
    messages = []
    for backward in ENGINES.values():
        x = torch.randn(3, requires_grad=True)
        y = x * torch.randn(3)  # MulBackward0: no gradient for the constant
        register = y.grad_fn.register_prehook if kind == "pre" else y.grad_fn.register_hook
        register(hook)
        with pytest.raises((TypeError, RuntimeError)) as error:
            backward(y.sum())
        messages.append(f"{type(error.value).__name__}: {error.value}")
    assert messages[0] == messages[1] == message


# --- a second backward through a graph run without retain_graph -------------


def two_paths():
    """``(b * c).sum()`` saves b and c in its MulBackward0; ``a.sum()``, made
    later and so run first, saves nothing."""
    a, b, c = (torch.full((2,), v, requires_grad=True) for v in (1.0, 2.0, 3.0))
    return [a, b, c], (b * c).sum() + a.sum()


@pytest.mark.parametrize("first, second", [(f, s) for f in ENGINES for s in ENGINES])
def test_second_backward_fails_as_torchs_own_does(first, second):
    leaves, loss = two_paths()
    ENGINES[first](loss)
    with pytest.raises(RuntimeError) as error:
        ENGINES[second](loss)
    assert str(error.value) == engine.SECOND_BACKWARD_ERROR
    # Both engines fail in MulBackward0, after a's AccumulateGrad ran again (it saved nothing).
    assert [leaf.grad.tolist() for leaf in leaves] == [[2.0, 2.0], [3.0, 3.0], [2.0, 2.0]]


def test_a_node_that_saved_nothing_runs_twice_in_both_engines():
    for backward in ENGINES.values():
        w = torch.tensor(1.0, requires_grad=True)
        s = w + 2  # AddBackward0 saves no tensor
        backward(s, retain_graph=False)
        backward(s)
        assert w.grad.item() == 2.0


def released_by_torch(node) -> bool:
    """Whether ``node`` fails with torch's second-backward error when called now."""
    grads = [torch.zeros(tuple(m.shape), dtype=m.dtype) for m in node._input_metadata]
    try:
        node.apply(*grads) if isinstance(node, torch.autograd.function.BackwardCFunction) else node(*grads)
    except RuntimeError as error:
        if str(error) == engine.SECOND_BACKWARD_ERROR:
            return True
        raise
    return False


class SavesNone(torch.autograd.Function):
    """Its ctx.saved_tensors fails once released, though it saved no tensor."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(None)
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        ctx.saved_tensors
        return grad * 2


def saves_undefined_or_none():
    """addcmul of constants saves undefined tensors: never released. SavesNone is."""
    w = torch.randn(4, requires_grad=True)
    y = SavesNone.apply(torch.addcmul(w, torch.randn(4), torch.randn(4))).sum()
    return [w], [y], None


def saved_tensors_hooks():
    """Saved tensors packed by hooks into None (the unpack hook knows where
    the tensor is): nothing kept on the node, but released all the same."""
    w = torch.randn(4, requires_grad=True)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t), lambda _none: kept[0]):
        y = (w * w).sum()
    return [w], [y], None


@pytest.mark.parametrize("case_name", ["linear_batch", "lstm", "transformer_encoder", "custom_function",
                                       "checkpoint_case", "saves_undefined_or_none", "saved_tensors_hooks",
                                       "resnet18"])
def test_the_mirror_releases_the_nodes_torch_releases(case_name):
    import test_engine_mirror as cases
    if case_name == "resnet18":
        models = pytest.importorskip("torchvision.models")

        def case():
            return cases.model_case(models.resnet18(weights=None).eval(), torch.randn(2, 3, 32, 32))()
    else:
        case = globals().get(case_name) or getattr(cases, case_name)
    nodes_by_engine = {}
    for name, backward in ENGINES.items():
        torch.manual_seed(0)
        _leaves, roots, _go = case()
        nodes = cases.walk(roots)
        backward(roots)
        nodes_by_engine[name] = nodes
    by_torch = [released_by_torch(node) for node in nodes_by_engine["torch"]]
    by_mirror = [engine.released(node) for node in nodes_by_engine["mirror"]]
    assert by_mirror == by_torch
    assert any(by_torch) and not all(by_torch)
    names = [node.name() for node in nodes_by_engine["mirror"]]
    if case_name == "saves_undefined_or_none":
        assert dict(zip(names, by_mirror)) == {"SumBackward0": False, "SavesNoneBackward": True,
                                               "AddcmulBackward0": False, "torch::autograd::AccumulateGrad": False}


def test_retain_graph_releases_nothing():
    leaves, loss = two_paths()
    engine.backward(loss, retain_graph=True)
    mul = loss.grad_fn.next_functions[0][0].next_functions[0][0]
    assert mul.name() == "MulBackward0" and not engine.released(mul)
    loss.backward()  # torch's engine too runs it again
    assert leaves[1].grad.tolist() == [6.0, 6.0]


def test_the_guard_runs_after_the_users_pre_hooks_as_torchs_failure_does():
    logs = {}
    for name, backward in ENGINES.items():
        leaves, loss = two_paths()
        mul = loss.grad_fn.next_functions[0][0].next_functions[0][0]
        log = logs[name] = []
        mul.register_prehook(lambda go: log.append("user pre-hook"))
        mul.register_hook(lambda gi, go: log.append("user hook"))
        backward(loss)
        with pytest.raises(RuntimeError, match="^Trying to backward through the graph a second time"):
            backward(loss)
        pre_hooks, post_hooks = engine.node_hook_dicts(mul)
        assert len(post_hooks) == 1  # the guard is a pre-hook, and only the mirror's own:
        assert len(pre_hooks) == (2 if name == "mirror" else 1)
        assert engine.released(mul) == (name == "mirror")
    assert logs["mirror"] == logs["torch"] == ["user pre-hook", "user hook", "user pre-hook"]


# --- ctx.set_materialize_grads ----------------------------------------------


def two_outputs(materialize: bool, seen: list):
    """A custom Function with two outputs, only the first used: the second's
    gradient is undefined, and reaches backward as zeros or as None."""

    class TwoOutputs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(materialize)
            return x * 2, x.double() * 3

        @staticmethod
        def backward(ctx, grad_a, grad_b):
            seen.append([None if g is None else (g.dtype, tuple(g.shape), g.abs().sum().item())
                         for g in (grad_a, grad_b)])
            return grad_a * 2 + (0 if grad_b is None else grad_b.float() * 3)

    return TwoOutputs


@pytest.mark.parametrize("materialize", [True, False])
def test_set_materialize_grads_is_followed(materialize):
    runs = {}
    for name, backward in ENGINES.items():
        seen: list = []
        x = torch.arange(3.0, requires_grad=True)
        a, _b = two_outputs(materialize, seen).apply(x)
        backward((a * a).sum())
        runs[name] = seen, x.grad
    assert runs["mirror"][0] == runs["torch"][0] == [
        [(torch.float32, (3,), 12.0), (torch.float64, (3,), 0.0) if materialize else None]]
    assert_bitwise_equal(runs["mirror"][1], runs["torch"][1], "x.grad")


def test_the_materialize_flag_is_read_from_the_node():
    x = torch.ones(2, requires_grad=True)
    node = two_outputs(True, []).apply(x)[0].grad_fn
    assert engine.materialize_grads(node) is True
    node.set_materialize_grads(False)
    assert engine.materialize_grads(node) is False
    offset = engine.materialize_flag_offset()
    engine.materialize_flag_offset.cache_clear()
    with torch.inference_mode():  # found on a node of its own, wherever the first custom node is met
        assert engine.materialize_flag_offset() == offset
    assert isinstance(offset, int)


class WithIndices(torch.autograd.Function):
    """Returns values and their integer indices (non-differentiable)."""

    @staticmethod
    def forward(ctx, x, materialize):
        ctx.set_materialize_grads(materialize)
        values, indices = x.sort()
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_values, grad_indices):
        (indices,) = ctx.saved_tensors
        return torch.zeros_like(grad_values).scatter(0, indices, grad_values), None


def test_a_non_differentiable_output_torch_would_fill_with_zeros_is_refused():
    x = torch.tensor([3.0, 1.0, 2.0], requires_grad=True)
    values, _indices = WithIndices.apply(x, True)
    loss = (values * torch.tensor([1.0, 10.0, 100.0])).sum()
    with pytest.raises(engine.NotMirrored, match=r"^WithIndicesBackward: output 1 gets no gradient and may be "
                                                 r"non-differentiable"):
        engine.backward(loss)
    assert x.grad is None  # refused before anything ran
    loss.backward()  # torch's engine (it passes zeros shaped like the indices: int64, [3])
    assert x.grad.tolist() == [100.0, 1.0, 10.0]


def test_a_non_differentiable_output_gets_none_without_materializing_in_both():
    grads = []
    for backward in ENGINES.values():
        x = torch.tensor([3.0, 1.0, 2.0], requires_grad=True)
        values, _indices = WithIndices.apply(x, False)
        backward((values * torch.tensor([1.0, 10.0, 100.0])).sum())
        grads.append(x.grad)
    assert_bitwise_equal(grads[0], grads[1], "x.grad")
    assert grads[1].tolist() == [100.0, 1.0, 10.0]


# --- AccumulateGrad: torch may take the gradient itself; the mirror copies it ---------


class Doubled(torch.autograd.Function):
    """Notes where the gradient it returns lives, keeping no reference to it."""

    returned_at: list[int] = []

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        out = grad * 2
        Doubled.returned_at.append(out.data_ptr())
        return out


@pytest.mark.parametrize("run", ["torch", "mirror"])
def test_a_fresh_gradient_is_taken_by_torch_and_copied_by_the_mirror(run):
    """AccumulateGrad (accumulate_grad.h) takes a gradient nobody else holds as ``.grad``
    without copying it. The mirror calls the same node, but from Python, where the gradient's
    tensor object is a second reference, so the node copies: the same numbers, other memory
    (docs/engine.md). Adding into an existing ``.grad`` is in place in both."""
    backward = torch.autograd.backward if run == "torch" else engine.backward
    x = torch.randn(5, requires_grad=True)
    Doubled.returned_at.clear()
    backward(Doubled.apply(x).sum())
    assert torch.equal(x.grad, torch.full((5,), 2.0))
    assert (x.grad.data_ptr() == Doubled.returned_at[0]) is (run == "torch")
    first = x.grad.data_ptr()
    backward(Doubled.apply(x).sum())
    assert torch.equal(x.grad, torch.full((5,), 4.0)) and x.grad.data_ptr() == first
