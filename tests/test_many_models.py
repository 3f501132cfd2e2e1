"""What a trace says is true for several models in one program, signed numbers, every backward
pass, autograd.grad, torch.func and tracebacks (issue 24)."""

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

import traces
from traces.__main__ import main
from traces.render.json_file import trace_to_dict
from traces.basics.places import TRACES_DIR


def shown(trace, depth: int | None = None, views=("graph", "backward")) -> str:
    console = Console(file=io.StringIO(), width=200, highlight=False, color_system=None)
    trace.show(console, views=views, depth=depth)
    return console.file.getvalue()


def modules_of(trace) -> dict[str, tuple[str, str | None]]:
    return {info.name: (info.kind, info.parent) for info in trace.graph.modules}


def nodes_by_module(trace) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in trace.graph.nodes:
        found.setdefault(node.module, set()).add(node.variable or node.name)
    return found


def leaf_names(trace) -> set[str | None]:
    return {node.variable for node in trace.graph.nodes if node.is_leaf}


def gan():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    D = nn.Sequential(nn.Linear(4, 1), nn.Tanh())
    return G, D, torch.randn(2, 3)


def test_a_gan_step_with_a_detached_generator_is_filed_under_the_discriminator():
    G, D, x = gan()
    with traces.record() as trace:
        D(G(x).detach()).sum().backward()
    assert modules_of(trace) == {"D": ("Sequential", None), "D.0": ("Linear", "D"), "D.1": ("Tanh", "D")}
    assert nodes_by_module(trace) == {
        "D.1": {"TanhBackward0"},
        "D.0": {"AddmmBackward0", "TBackward0", "D.0.weight", "D.0.bias"},
        None: {"output"},
    }
    for depth in (1, 2, 3):
        out = shown(trace, depth)
        assert "ReLU" not in out and not re.search(r"\bG\b", out)
        assert "D (Sequential)" in out
        assert "D.1 (Tanh)" in out


def test_a_gan_step_through_both_models_names_every_module_and_parameter_by_its_variable():
    G, D, x = gan()
    with traces.record() as trace:
        D(G(x)).sum().backward()
    assert modules_of(trace) == {
        "G": ("Sequential", None), "G.0": ("Linear", "G"), "G.1": ("ReLU", "G"),
        "D": ("Sequential", None), "D.0": ("Linear", "D"), "D.1": ("Tanh", "D"),
    }  # fmt: skip
    by_module = nodes_by_module(trace)
    assert by_module["G.1"] == {"ReluBackward0"} and by_module["D.1"] == {"TanhBackward0"}
    assert by_module["G.0"] == {"AddmmBackward0", "TBackward0", "G.0.weight", "G.0.bias"}
    assert by_module["D.0"] == {"AddmmBackward0", "TBackward0", "D.0.weight", "D.0.bias"}
    assert leaf_names(trace) == {"G.0.weight", "G.0.bias", "D.0.weight", "D.0.bias"}
    deep = shown(trace, 3)
    for label in ("G.0 (Linear)", "G.1 (ReLU)", "D.0 (Linear)", "D.1 (Tanh)"):
        assert label in deep
    top = shown(trace, 1)
    assert "G (Sequential)" in top and "D (Sequential)" in top


def test_checkpoint_sequential_files_each_block_under_its_own_path():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    x = torch.randn(2, 4, requires_grad=True)
    with traces.record() as trace:
        checkpoint_sequential(model, 4, x, use_reentrant=False).sum().backward()
    assert modules_of(trace) == {f"model.{i}": ("Linear", None) for i in range(4)}
    assert leaf_names(trace) == {"x"} | {f"model.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    for depth in (1, 2, 3):
        out = shown(trace, depth)
        assert all(f"model.{i} (Linear)" in out for i in range(4))


def test_an_embedding_and_a_linear_layer_keep_their_parameter_names():
    torch.manual_seed(0)
    embedding, head = nn.Embedding(5, 3), nn.Linear(3, 2)
    with traces.record() as trace:
        head(embedding(torch.tensor([1, 3]))).sum().backward()
    assert leaf_names(trace) == {"embedding.weight", "head.weight", "head.bias"}
    assert modules_of(trace) == {"embedding": ("Embedding", None), "head": ("Linear", None)}


def test_two_heads_on_one_trunk_keep_their_parameter_names():
    torch.manual_seed(0)
    trunk, head_a, head_b = nn.Linear(3, 3), nn.Linear(3, 1), nn.Linear(3, 1)
    with traces.record() as trace:
        h = trunk(torch.randn(2, 3))
        (head_a(h) + head_b(h)).sum().backward()
    names = {f"{m}.{p}" for m in ("trunk", "head_a", "head_b") for p in ("weight", "bias")}
    assert leaf_names(trace) == names
    assert nodes_by_module(trace)["head_b"] == {"AddmmBackward0", "TBackward0", "head_b.weight", "head_b.bias"}


def test_one_model_alone_keeps_its_class_and_attribute_paths():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    with traces.record() as trace:
        net(torch.randn(2, 3)).sum().backward()
    assert modules_of(trace) == {"Sequential": ("Sequential", None), "0": ("Linear", "Sequential"), "1": ("ReLU", "Sequential")}
    assert leaf_names(trace) == {"0.weight", "0.bias"}


def test_two_models_held_by_no_variable_are_numbered_by_class():
    torch.manual_seed(0)
    models = [nn.Linear(2, 2), nn.Linear(2, 1)]
    with traces.record() as trace:
        models[1](models[0](torch.randn(1, 2))).sum().backward()
    assert modules_of(trace) == {"Linear": ("Linear", None), "Linear (2)": ("Linear", None)}
    assert leaf_names(trace) == {"Linear.weight", "Linear.bias", "Linear (2).weight", "Linear (2).bias"}


def test_negative_integers_a_node_saved_read_as_the_user_wrote_them():
    x = torch.randn(3, 4, requires_grad=True)
    with traces.record() as trace:
        loss = F.cross_entropy(x, torch.tensor([1, 2, -100]))
        both = x.softmax(-1).transpose(-2, -1).tril(-1).sum(dim=(-1,))
        (loss + both.sum()).backward()
    saved = {(node.name, s.name): s.value for node in trace.graph.nodes for s in node.saved if s.value is not None}
    assert saved[("NllLossBackward0", "ignore_index")] == "-100"
    assert saved[("SoftmaxBackward0", "dim")] == "-1"
    assert (saved[("TransposeBackward0", "dim0")], saved[("TransposeBackward0", "dim1")]) == ("-2", "-1")
    assert saved[("TrilBackward0", "diagonal")] == "-1"
    assert saved[("SumBackward1", "dim")] == "(-1,)"
    out = shown(trace, views=("graph",))
    assert "ignore_index=-100" in out and "diagonal=-1" in out and "18446744073709551" not in out
    text = json.dumps(trace_to_dict(trace))
    assert '"-100"' in text and "18446744073709551" not in text


def write_script(folder, text: str, name: str = "script.py"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


TWO_PASSES = """
    import torch
    from torch import nn

    w = torch.ones(3, requires_grad=True)
    for step in range(2):
        (w.tanh() * 2).sum().backward()
"""


def ops_rows(out: str) -> list[list[str]]:
    """The ops table's rows, as [phase, op, calls, shapes], the phase carried down."""
    rows, phase = [], ""
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃").split("│")]
        if len(cells) == 4 and cells[1].startswith("aten::"):
            phase = cells[0] or phase
            rows.append([phase, *cells[1:]])
    return rows


def test_backward_2_labels_each_op_with_the_pass_it_belongs_to(tmp_path, capsys):
    script = write_script(tmp_path, TWO_PASSES)
    assert main(["--backward", "2", "--views", "ops", "--save-trace", str(tmp_path / "out"), str(script)]) == 0
    rows = ops_rows(capsys.readouterr().out)
    phases_of = {}
    for phase, op, _, _ in rows:
        phases_of.setdefault(op, []).append(phase)
    assert phases_of["aten::tanh_backward"] == ["backward of pass 1", "backward of pass 2"]
    assert phases_of["aten::tanh"] == ["forward of pass 1", "forward of pass 2"]
    ops = json.loads((tmp_path / "out" / "script.json").read_text())["ops"]
    assert [(op["phase"], op["backward_pass"]) for op in ops if op["op"] == "aten::tanh_backward"] == [
        ("backward", 1),
        ("backward", 2),
    ]


def test_one_pass_keeps_the_plain_phase_labels(tmp_path, capsys):
    script = write_script(tmp_path, TWO_PASSES)
    assert main(["--views", "ops", str(script)]) == 0
    rows = ops_rows(capsys.readouterr().out)
    assert {phase for phase, *_ in rows} == {"forward", "backward"}
    assert ["backward", "aten::tanh_backward"] in [row[:2] for row in rows]


def test_a_modules_line_is_where_the_traced_pass_called_it():
    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    x = torch.randn(1, 2)
    with traces.record(backward=2) as trace:
        net(x).sum().backward()
        net(x).sum().backward()  # the traced pass: this line
    line = sys._getframe().f_lineno - 1
    assert [(info.name, info.line) for info in trace.graph.modules] == [("Linear", line)]


FUNC_ONLY = """
    import torch
    from torch.func import grad

    w = torch.tensor([1.0, 2.0])

    def loss(w):
        return (w.sin() * 3).sum()

    print("grad", grad(loss)(w).tolist())
"""


def test_a_script_that_uses_only_torch_func_is_traced(tmp_path, capsys):
    script = write_script(tmp_path, FUNC_ONLY)
    assert main(["--views", "graph,backward", "--save-trace", str(tmp_path / "out"), str(script)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "grad [1.62090706825" in captured.out and "SinBackward0" in captured.out
    data = json.loads((tmp_path / "out" / "script.json").read_text())
    assert [step["name"] for step in data["backward"]] == ["SumBackward0", "MulBackward0", "SinBackward0"]
    expected = (3 * torch.tensor([1.0, 2.0]).cos()).tolist()
    assert data["backward"][2]["leaving"][0]["values"] == pytest.approx(expected)


def test_record_sees_a_grad_imported_by_name_before_the_block():
    from torch.autograd import grad  # bound before record() wraps torch.autograd.grad

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    with traces.record() as trace:
        y = (w * w).sum()
        (g,) = grad(y, w)
    assert g.tolist() == [2.0, 4.0]
    assert trace.graph is not None
    assert [step.name for step in trace.backward] == ["SumBackward0", "MulBackward0"]
    assert {node.variable for node in trace.graph.nodes} >= {"y", "w"}
    assert torch.autograd._engine_run_backward is torch.autograd.graph._engine_run_backward  # put back


def test_a_backward_imported_by_name_is_counted_once(tmp_path, capsys):
    script = write_script(
        tmp_path,
        """
        import torch
        from torch.autograd import backward

        w = torch.ones(2, requires_grad=True)
        backward((w * 3).sum())
        (w * 2).sum().backward()
        """,
    )
    assert main(["--backward", "3", str(script)]) == 1
    assert "called backward 2 times; --backward 3 asks for the 3rd" in capsys.readouterr().err


RAISES_IN_BACKWARD = """
    import torch


    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            raise ValueError("boom in backward")


    w = torch.ones(2, requires_grad=True)
    Boom.apply(w).sum().backward()
"""


def test_a_traceback_from_the_traced_backward_reads_as_it_does_untraced(tmp_path, capsys):
    script = write_script(tmp_path, RAISES_IN_BACKWARD)
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin"}
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    capsys.readouterr()
    status = main([str(script)])  # python -m traces SCRIPT, in this process: torch is loaded already
    traced_stderr = capsys.readouterr().err
    assert plain.returncode == status == 1
    assert plain.stderr.endswith("ValueError: boom in backward\n")
    assert traced_stderr == plain.stderr


def test_record_leaves_no_tracer_frame_in_the_codes_traceback():
    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            raise ValueError("boom in backward")

    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="boom in backward") as caught:
        with traces.record():
            Boom.apply(w).sum().backward()
    files = [str(entry.path) for entry in caught.traceback]
    assert not [f for f in files if f.startswith(TRACES_DIR + os.sep)]
    assert any(f.endswith(os.path.join("torch", "autograd", "__init__.py")) for f in files)


def test_autograd_grad_says_what_it_did_not_ask_for_and_where_the_gradient_goes():
    w = torch.tensor(3.0, requires_grad=True)
    x = torch.tensor(2.0, requires_grad=True)
    with traces.record() as trace:
        y = w * x
        (grad_x,) = torch.autograd.grad(y, x)
    assert grad_x.item() == 3.0 and x.grad is None and w.grad is None
    by_variable = {node.variable: node for node in trace.graph.nodes}
    assert trace.graph.inputs == [by_variable["x"].id] and trace.graph.returns is True
    out = shown(trace)
    assert "grad_w: none (not asked for: autograd.grad computes only the gradients of its inputs)" in out
    assert "needs no gradient" not in out
    under_w, under_x = out[out.index("w = 3 (leaf") : out.index("x = 2 (leaf")], out[out.index("x = 2 (leaf") :]
    assert "not an input of autograd.grad: no gradient is computed for it, .grad is left as it was" in under_w
    assert "autograd.grad returns this gradient; .grad is left as it was (this node does not run)" in under_x
    assert "returns this gradient" not in under_w
    graph = trace_to_dict(trace)["graph"]
    assert (graph["inputs"], graph["returns"]) == ([by_variable["x"].id], True)


def test_backward_with_inputs_says_which_gradients_it_skipped():
    w = torch.tensor(3.0, requires_grad=True)
    x = torch.tensor(2.0, requires_grad=True)
    with traces.record() as trace:
        y = w * x
        y.backward(inputs=[w])
    assert w.grad.item() == 2.0 and x.grad is None
    out = shown(trace)
    assert "grad_x: none (not asked for: backward(inputs=...) computes only the gradients of its inputs)" in out
    assert "autograd.grad" not in out and trace.graph.returns is False


def test_an_input_that_needs_no_gradient_is_still_said_so():
    w = torch.tensor(3.0, requires_grad=True)
    with traces.record() as trace:
        y = w + torch.tensor(2.0)
        y.backward()
    assert trace.graph.inputs is None
    assert "grad_other: none (this input needs no gradient)" in shown(trace)


class Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2  # not the node's line: apply made the node

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class Triple(torch.autograd.Function):  # the setup_context style: forward takes no ctx
    @staticmethod
    def forward(x):
        return x * 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


def test_a_custom_functions_node_points_at_the_line_that_called_apply():
    w = torch.ones(2, requires_grad=True)
    with traces.record() as trace:
        y = Double.apply(w)
        apply_line = sys._getframe().f_lineno - 1
        z = Triple.apply(y)
        (z.sum()).backward()
    lines = {node.name: node.line for node in trace.graph.nodes}
    assert lines["DoubleBackward"] == apply_line and lines["TripleBackward"] == apply_line + 2


def test_a_full_backward_hooks_output_node_is_filed_under_its_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    net[0].register_full_backward_hook(lambda module, grad_input, grad_output: None)
    with traces.record() as trace:
        net(torch.ones(1, 2, requires_grad=True)).sum().backward()
    hooks = [node.module for node in trace.graph.nodes if node.name == "BackwardHookFunctionBackward"]
    assert hooks == ["0", "0"]  # the output side's and the input side's


def test_one_level_deep_is_said_in_the_singular():
    G, D, x = gan()
    with traces.record() as trace:
        D(G(x)).sum().backward()
    assert "by module, 1 level deep" in shown(trace, 1)
    assert "by module, 2 levels deep" in shown(trace, 2)


def test_a_model_and_its_loss_module_keep_the_models_own_names():
    torch.manual_seed(0)
    net, loss_fn = nn.Sequential(nn.Linear(3, 2)), nn.CrossEntropyLoss()
    with traces.record() as trace:
        loss_fn(net(torch.randn(2, 3)), torch.tensor([0, 1])).backward()
    assert modules_of(trace) == {
        "CrossEntropyLoss": ("CrossEntropyLoss", None), "Sequential": ("Sequential", None), "0": ("Linear", "Sequential"),
    }  # fmt: skip
    assert leaf_names(trace) == {"0.weight", "0.bias"}
