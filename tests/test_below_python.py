"""Below Python on the scenarios' traces: formulas on nodes, kernels behind ops, and --native's C++ path."""

import importlib.util
import json

import pytest
import torch

from conftest import ROOT
from scenarios.backward import backward_pass
from scenarios.training_step import training_step
from traces import Tracer
from traces.render.json_file import trace_to_dict
from traces.data.trace import NATIVE_NOT_ASKED, SCHEMA_VERSION

COMMIT = torch.version.git_version


def traced_backward(native: bool = False):
    tracer = Tracer(native=native)
    with tracer.recording():
        facts = backward_pass(tracer=tracer)
    return tracer.trace("backward", "cpu", facts)


@pytest.fixture(scope="module")
def trace():
    return traced_backward()


@pytest.fixture(scope="module")
def native_trace():
    return traced_backward(native=True)


def node(trace, variable):
    return next(n for n in trace.graph.nodes if n.variable == variable)


def kernel(trace, op, phase="forward"):
    return next(k for k in trace.kernels if k.op == op and k.phase == phase)


def test_mul_backward_carries_its_two_formulas(trace):
    y = node(trace, "y").derivative
    assert (y.kind, y.op) == ("formula", "mul.Tensor")
    assert [(f.inputs, f.formula) for f in y.formulas] == [
        (["self"], "mul_tensor_backward(grad, other, self.scalar_type())"),
        (["other"], "mul_tensor_backward(grad, self, other.scalar_type())"),
    ]
    assert y.source.url.startswith(f"https://github.com/pytorch/pytorch/blob/{COMMIT}/tools/autograd/derivatives.yaml#L")


def test_the_adds_and_the_leaves_say_what_computes_their_gradients(trace):
    assert node(trace, "a").derivative.op == node(trace, "b").derivative.op == "add.Tensor"
    assert node(trace, "w").derivative.kind == node(trace, "x").derivative.kind == "c++"
    assert node(trace, "w").derivative.source.path == "torch/csrc/autograd/functions/accumulate_grad.h"


def test_the_saved_values_behind_the_numbers_are_recorded(trace):
    saved = {s.name: s.values for s in node(trace, "y").saved}
    assert saved == {"self": 3.0, "other": 2.0}  # a and b, saved by y = a * b


def test_every_op_has_its_kernel_in_the_order_it_first_ran(trace):
    assert [(k.phase, k.op) for k in trace.kernels] == [
        ("forward", "aten::lift_fresh"),
        ("forward", "aten::add.Tensor"),
        ("forward", "aten::mul.Tensor"),
        ("backward", "aten::ones_like"),
        ("backward", "aten::mul.Tensor"),
        ("backward", "aten::clone"),
        ("backward", "aten::add.Tensor"),
        ("backward", "aten::detach"),
    ]


def test_add_shows_its_structured_delegate_and_cpu_registration(trace):
    add = kernel(trace, "aten::add.Tensor")
    assert add.structured_delegate == "add.out" and add.kernel_entry == "add.out"
    assert add.device_key == "CPU" and add.symbol == "at::native::structured_ufunc_add_CPU::impl"
    assert add.registered.path.startswith("build/aten/src/ATen/RegisterCPU") and add.registered.kind == "generated"
    assert [step.key for step in add.dispatch] == ["AutogradCPU", "ADInplaceOrView", "CPU"]


def test_without_native_there_is_no_cpp_path_and_the_trace_says_why(trace):
    assert all(k.cpp_path is None for k in trace.kernels)
    assert trace.native_skipped == NATIVE_NOT_ASKED


def functions(layers):
    return [f for layer in layers for f in layer.functions]


def test_native_frames_of_w_plus_x_run_from_the_binding_to_the_dispatcher(native_trace):
    path = kernel(native_trace, "aten::add.Tensor").cpp_path
    assert native_trace.native_skipped is None
    assert path[0].layer == "Python" and path[0].functions[0].startswith("scenarios/backward.py:")
    found = functions(path)
    assert "torch::autograd::THPVariable_add" in found
    assert "at::_ops::add_Tensor::call" in found
    assert "torch::autograd::VariableType::(anonymous namespace)::add_Tensor" in found
    layers = [layer.layer for layer in path]
    assert layers.index("Python binding") < layers.index("operator entry") < layers.index("autograd")


def test_native_frames_in_backward_pass_through_the_nodes_formula(native_trace):
    found = functions(kernel(native_trace, "aten::mul.Tensor", "backward").cpp_path)
    assert "torch::autograd::Engine::evaluate_function" in found
    assert "torch::autograd::generated::MulBackward0::apply" in found
    assert "torch::autograd::generated::details::mul_tensor_backward" in found  # the formula's helper


def test_native_does_not_change_what_the_lesson_computes(trace, native_trace):
    assert native_trace.facts == trace.facts


def links(value):
    """Every URL in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("url", "template_url") and item is not None:
                yield item
            else:
                yield from links(item)
    elif isinstance(value, list):
        for item in value:
            yield from links(item)


def test_the_json_holds_formulas_kernels_and_links_at_torchs_commit(native_trace):
    data = json.loads(json.dumps(trace_to_dict(native_trace)))
    assert data["schema_version"] == SCHEMA_VERSION and data["torch_commit"] == COMMIT
    mul = next(n for n in data["graph"]["nodes"] if n["variable"] == "y")
    assert mul["derivative"]["formulas"][0]["plain"] == "grad * other"
    add = next(k for k in data["kernels"] if k["op"] == "aten::add.Tensor")
    assert add["cpp_path"][0]["layer"] == "Python"
    found = list(links(data))
    assert len(found) > 10 and all(COMMIT in url for url in found)


@pytest.fixture(scope="module")
def model_trace(fashion_data):
    tracer = Tracer()
    facts = training_step(data=fashion_data, tracer=tracer)
    return tracer.trace("training_step", "cpu", facts)


@pytest.mark.parametrize(
    ("name", "op"),
    [
        ("AddmmBackward0", "addmm"),
        ("ReluBackward0", "relu"),
        ("NllLossBackward0", "nll_loss_forward"),
        ("LogSoftmaxBackward0", "_log_softmax"),
        ("TBackward0", "t"),
    ],
)
def test_the_models_nodes_carry_their_formulas(model_trace, name, op):
    derivatives = [n.derivative for n in model_trace.graph.nodes if n.name == name]
    assert derivatives and all(d.kind == "formula" and d.op == op and d.formulas for d in derivatives)


# --- what the terminal shows ------------------------------------------------


def rendered(trace) -> str:
    from rich.console import Console

    from traces.render.terminal import render_trace

    console = Console(record=True, width=200)  # wide enough that no table cell wraps
    render_trace(trace, console)
    return console.export_text()


def test_the_backward_view_shows_each_formula_next_to_its_numbers(trace):
    text = rendered(trace)
    for equation in (
        "grad_a = grad * b = 1 * 2 = 2",
        "grad_b = grad * a = 1 * 3 = 3",
        "grad_x = grad * alpha = 2 * 1 = 2",
        "grad_other: none (this input needs no gradient)",
        "w.grad += 5",
    ):
        assert equation in text


def test_the_graph_view_shows_the_formula_per_input_with_its_source(trace):
    text = rendered(trace)
    y = node(trace, "y").derivative
    assert "grad_a = mul_tensor_backward(grad, other, self.scalar_type())  (for real tensors: grad * other)" in text
    assert f"[1] tools/autograd/derivatives.yaml:{y.source.line}: mul.Tensor(Tensor self, Tensor other) -> Tensor" in text
    lines = text.splitlines()
    # The installed copy and the link, each whole on its own line, so that both stay clickable.
    first = lines.index(f"[1] {y.source.wheel_copy()}:{y.source.line}")
    assert lines[first + 1] == f"    {y.source.url}"


def test_the_ops_view_shows_the_kernel_that_ran_and_where_it_is_registered(trace):
    text = rendered(trace)
    add = kernel(trace, "aten::add.Tensor")
    assert "add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor; structured: the kernel is add.out's" in text
    assert "dispatch: AutogradCPU (autograd kernel) → ADInplaceOrView (fallthrough) → CPU (kernel)" in text
    assert "CPU kernel: at::native::structured_ufunc_add_CPU::impl (add.out lists ufunc_add_CPU for CPU)" in text
    assert (
        f"{add.registered.location}\n    written while torch was built, so not in the repository; "
        f"generated from:\n    {add.registered.template_url}\n"
    ) in text
    assert f"C++ path: {NATIVE_NOT_ASKED}" in text


def test_native_from_the_command_line_shows_the_cpp_path(monkeypatch, capsys):
    """What `python scenarios/backward.py --trace --native` prints: its main, in this process
    (to spare a start of torch; the benchmark below runs the same command as a process)."""
    from scenarios.backward import main

    monkeypatch.setenv("COLUMNS", "120")  # as tests/conftest.py's run_script runs a script
    assert main(["--trace", "--native"]) == 0
    out = capsys.readouterr().out
    assert "grad_a = grad * b = 1 * 2 = 2" in out
    assert "C++ path, from the last Python line to the dispatcher" in out
    assert "torch::autograd::THPVariable_add" in out and "at::_ops::add_Tensor::call" in out
    assert "torch::autograd::generated::MulBackward0::apply" in out
    assert "without the trace, the dispatcher calls the CPU kernel here: at::native::structured_mul_out::impl" in out


@pytest.mark.xdist_group("backward_runs")
def test_the_overhead_benchmark_runs_and_writes_its_figures(tmp_path, monkeypatch, capsys, shared_timings):
    """benchmarks/below_python.py --quick: its main in this process; the three runs it times are
    processes, the plain and --trace ones timed once for it and tests/test_benchmarks.py."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when it runs as a script
    spec = importlib.util.spec_from_file_location("below_python", ROOT / "benchmarks" / "below_python.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr(benchmark, "wall_time", shared_timings(benchmark.wall_time))
    output = tmp_path / "below.json"
    assert benchmark.main(["--quick", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    assert figures["runs"] == 1 and set(figures["seconds"]) == {"plain", "--trace", "--trace --native"}
    assert figures["ratio_to_plain"]["plain"] == 1.0
    assert "target --trace / plain <= 1.2: " in capsys.readouterr().out


def test_a_trace_with_an_unwritable_cache_folder_still_shows_the_formulas(tmp_path, monkeypatch, capsys):
    from scenarios.backward import main
    from traces.below import cache

    built = cache.read_cache(cache.cache_file(cache.cache_folder())) or cache.build_index()
    monkeypatch.setattr(cache, "build_index", lambda: built)  # tests/test_native.py tests a real build
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("TORCH_STEPTHROUGH_CACHE", str(blocked / "cache"))  # nothing can be created there
    monkeypatch.setenv("COLUMNS", "200")  # no table cell wraps
    cache.installed_index.cache_clear()
    try:
        assert main(["--trace"]) == 0
        assert cache.installed_index().origin.startswith("built in memory; not cached: ")
    finally:
        cache.installed_index.cache_clear()  # the next test loads the usual cache again
    assert "grad_a = grad * b = 1 * 2 = 2" in capsys.readouterr().out
    assert blocked.read_text() == ""


def test_a_formula_that_computes_several_gradients_is_shown_once_with_all_their_names():
    import traces
    from rich.console import Console

    norm = torch.nn.LayerNorm(4)
    x = torch.randn(2, 4, requires_grad=True)
    with traces.record() as trace:
        y = norm(x).sum()
        y.backward()
    console = Console(record=True, width=300)
    trace.show(console, views=("graph",))
    text = console.export_text()
    shared = "grad_x, grad_weight, grad_bias = grad.defined() ? native_layer_norm_backward_symint(grad, input,"
    assert text.count(shared) == 1 and text.count("native_layer_norm_backward_symint") == 1
