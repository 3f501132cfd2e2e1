"""Below Python (traces/below/): formulas, native functions, the dispatcher, links, C++ frames, the cache."""

import ast
import errno
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from traces.below import cache, dispatcher, formulas, frames, links
from traces.data.graph import AutogradNode, SavedValue
from traces.data.tensors import TensorSummary

COMMIT = torch.version.git_version


@pytest.fixture(scope="module")
def index():
    return cache.installed_index()


def formulas_of(index, node):
    return {tuple(f.inputs): f.formula for f in formulas.node_derivative(node, index).formulas}


# --- derivatives.yaml -------------------------------------------------------


def test_mul_backward_has_one_formula_per_input_as_derivatives_yaml_writes_them(index):
    mul = formulas.node_derivative("MulBackward0", index)
    assert mul.kind == "formula" and mul.op == "mul.Tensor"
    assert mul.schema == "mul.Tensor(Tensor self, Tensor other) -> Tensor"
    assert mul.inputs == ["self", "other"]
    assert [(f.inputs, f.formula, f.plain) for f in mul.formulas] == [
        (["self"], "mul_tensor_backward(grad, other, self.scalar_type())", "grad * other"),
        (["other"], "mul_tensor_backward(grad, self, other.scalar_type())", "grad * self"),
    ]


def test_the_models_nodes_have_their_formulas(index):
    assert formulas.node_derivative("AddmmBackward0", index).inputs == ["self", "mat1", "mat2"]
    assert formulas_of(index, "AddmmBackward0") == {
        ("self",): "maybe_multiply(grad, beta.conj())",
        ("mat1",): "mm_mat1_backward(grad, mat2, mat1.sym_sizes(), mat1.sym_strides(), mat1.layout(), alpha)",
        ("mat2",): "mm_mat2_backward(grad, mat1, mat2.sym_sizes(), mat2.sym_strides(), mat2.layout(), alpha)",
    }
    assert formulas_of(index, "ReluBackward0") == {("self",): "threshold_backward(grad, result, 0)"}
    assert formulas_of(index, "TBackward0") == {("self",): "grad.t()"}
    assert formulas_of(index, "LogSoftmaxBackward0") == {
        ("self",): "_log_softmax_backward_data(grad, result, dim, self.scalar_type())"
    }
    nll = formulas.node_derivative("NllLossBackward0", index)
    assert nll.op == "nll_loss_forward"
    assert formulas_of(index, "NllLossBackward0")[("self",)].startswith("nll_loss_backward_symint(grad, self, target")


def test_the_formulas_line_is_the_entry_in_the_wheels_derivatives_yaml(index):
    source = formulas.node_derivative("MulBackward0", index).source
    assert source.path == "tools/autograd/derivatives.yaml" and source.kind == "repository"
    lines = source.wheel_copy().read_text().splitlines()
    assert lines[source.line - 1].startswith("- name: mul.Tensor(Tensor self, Tensor other)")
    assert source.url == f"https://github.com/pytorch/pytorch/blob/{COMMIT}/tools/autograd/derivatives.yaml#L{source.line}"


def test_every_plain_form_belongs_to_a_formula_of_this_torch(index):
    written = {f["formula"] for entry in index.nodes.values() for f in entry["formulas"]}
    assert set(formulas.PLAIN_FORMULAS) - written == set()


def test_nodes_without_a_formula_say_what_they_are(index):
    accumulate = formulas.node_derivative("AccumulateGrad", index)
    assert accumulate.kind == "c++" and not accumulate.formulas
    assert ".grad" in accumulate.summary
    header = accumulate.source.wheel_copy().read_text().splitlines()
    assert header[accumulate.source.line - 1].startswith("struct TORCH_API AccumulateGrad")
    assert formulas.node_derivative("CopySlices", index).summary.startswith("written in C++, no formula: an in-place")
    custom = formulas.node_derivative("SquareBackward", index)
    assert custom.kind == "custom" and "torch.autograd.Function (Square)" in custom.summary
    assert formulas.node_derivative("CompiledFunctionBackward", index).kind == "compiled"
    unknown = formulas.node_derivative("SomethingElse", index)
    assert (unknown.kind, unknown.summary) == ("unknown", "not in derivatives.yaml: a node defined in C++ by torch or an extension")


def test_every_hand_written_node_is_found_in_its_installed_header(index):
    for name, entry in index.cpp_nodes.items():
        assert entry["line"] is not None, name


def test_a_real_custom_function_node_is_named_as_the_description_expects(index):
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

        @staticmethod
        def backward(ctx, grad):
            return grad

    node = Square.apply(torch.ones(1, requires_grad=True)).grad_fn
    assert formulas.node_derivative(type(node).__name__, index).kind == "custom"


def test_without_an_index_a_node_says_why_it_has_no_formula():
    empty = cache.Index(origin="not built", problem="torchgen cannot load derivatives.yaml here (no yaml)")
    derivative = formulas.node_derivative("MulBackward0", empty)
    assert derivative.kind == "unknown"
    assert derivative.summary == "no formula: the formula index is unavailable (torchgen cannot load derivatives.yaml here (no yaml))"


# --- equations with numbers --------------------------------------------------


def scalar(value):
    return TensorSummary([], "float32", values=value)


def mul_node():
    saved = [SavedValue("other", [], "float32", values=2.0), SavedValue("self", [], "float32", values=3.0)]
    return AutogradNode("n0", "MulBackward0", variable="y", saved=saved)


def test_the_mul_equations_show_names_then_numbers_then_the_result(index):
    step = SimpleNamespace(arriving=[scalar(1.0)], leaving=[scalar(2.0), scalar(3.0)])
    derivative = formulas.node_derivative("MulBackward0", index)
    lines = formulas.gradient_equations(derivative, mul_node(), step, {0: "a", 1: "b"})
    assert lines == ["grad_a = grad * b = 1 * 2 = 2", "grad_b = grad * a = 1 * 3 = 3"]


def test_an_input_without_a_name_keeps_the_formulas_name(index):
    step = SimpleNamespace(arriving=[scalar(1.0)], leaving=[scalar(2.0), scalar(3.0)])
    lines = formulas.gradient_equations(formulas.node_derivative("MulBackward0", index), mul_node(), step, {})
    assert lines == ["grad_self = grad * other = 1 * 2 = 2", "grad_other = grad * self = 1 * 3 = 3"]


def test_an_input_that_needs_no_gradient_says_so(index):
    node = AutogradNode("n1", "AddBackward0", variable="b", saved=[SavedValue("alpha", value="1")])
    step = SimpleNamespace(arriving=[scalar(3.0)], leaving=[scalar(3.0), None])
    lines = formulas.gradient_equations(formulas.node_derivative("AddBackward0", index), node, step, {0: "w"})
    assert lines == ["grad_w = grad = 3", "grad_other: none (this input needs no gradient)"]


def test_large_tensors_show_their_shapes_in_the_equation(index):
    node = AutogradNode("n2", "AddmmBackward0", saved=[SavedValue("mat2", [512, 10], "float32"), SavedValue("alpha", value="1")])
    big = TensorSummary([64, 10], "float32", norm=3.0)
    step = SimpleNamespace(arriving=[big], leaving=[None, TensorSummary([64, 512], "float32", norm=1.0), None])
    lines = formulas.gradient_equations(formulas.node_derivative("AddmmBackward0", index), node, step, {1: "h"})
    assert lines[1] == "grad_h = alpha * (grad @ mat2.T) = 1 * (float32[64, 10] @ float32[512, 10].T) = float32[64, 512]"


def test_a_gradient_summed_back_over_broadcast_dimensions_says_so(index):
    node = AutogradNode("n5", "AddmmBackward0", saved=[SavedValue("beta", value="1")])
    step = SimpleNamespace(
        arriving=[TensorSummary([64, 10], "float32", norm=1.0)],
        leaving=[TensorSummary([10], "float32", norm=1.0), None, None],
    )
    lines = formulas.gradient_equations(formulas.node_derivative("AddmmBackward0", index), node, step, {0: "bias"})
    assert lines[0] == (
        "grad_bias = grad * beta = float32[64, 10] * 1 = float32[10] (summed over the dimensions broadcasting added in forward)"
    )


def test_a_formula_without_a_plain_form_is_shown_as_written(index):
    node = AutogradNode("n3", "TBackward0")
    step = SimpleNamespace(arriving=[scalar(1.0)], leaving=[scalar(1.0)])
    assert formulas.gradient_equations(formulas.node_derivative("TBackward0", index), node, step, {}) == [
        "grad_self = grad.t() = 1"
    ]


def test_a_value_freed_before_it_was_read_leaves_the_numbers_out(index):
    node = AutogradNode("n0", "MulBackward0", saved=[SavedValue("other", freed=True), SavedValue("self", freed=True)])
    step = SimpleNamespace(arriving=[scalar(1.0)], leaving=[scalar(2.0), scalar(3.0)])
    lines = formulas.gradient_equations(formulas.node_derivative("MulBackward0", index), node, step, {0: "a", 1: "b"})
    assert lines == ["grad_a = grad * b = 2", "grad_b = grad * a = 3"]


def test_a_formula_for_several_inputs_is_written_once_and_a_long_one_cut_short(index):
    derivative = formulas.node_derivative("NativeLayerNormBackward0", index)
    [formula] = derivative.formulas  # input, weight, bias: one call returns all three gradients
    assert formula.inputs == ["input", "weight", "bias"] and len(formula.formula) > formulas.LONGEST_FORMULA
    node = AutogradNode("n6", "NativeLayerNormBackward0")
    out, weight = TensorSummary([2, 4], "float32", norm=1.0), TensorSummary([4], "float32", norm=1.0)
    step = SimpleNamespace(arriving=[out], leaving=[out, weight, weight])
    lines = formulas.gradient_equations(derivative, node, step, {1: "ln.weight"})
    cut = formula.formula[: formulas.LONGEST_FORMULA - 2]
    assert lines == [
        f"grad_input = {cut} … = float32[2, 4]",
        "grad_ln.weight = (the formula of grad_input) = float32[4]",
        "grad_bias = (the formula of grad_input) = float32[4]",
    ]


def test_accumulate_grad_adds_into_the_leafs_grad(index):
    leaf = AutogradNode("n4", "AccumulateGrad", variable="w", leaf=scalar(1.0))
    step = SimpleNamespace(arriving=[scalar(5.0)], leaving=[])
    assert formulas.gradient_equations(formulas.node_derivative("AccumulateGrad", index), leaf, step, {}) == ["w.grad += 5"]


# --- native_functions.yaml and the dispatcher --------------------------------


def cpu_keys():
    return dispatcher.tensor_keys([torch.ones(1, requires_grad=True)])


def test_add_is_structured_and_delegates_to_add_out(index):
    add = dispatcher.describe_op("aten::add.Tensor", cpu_keys(), index)
    assert add.schema == "add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"
    assert add.structured_delegate == "add.out"
    lines = add.source.wheel_copy().read_text().splitlines()
    assert lines[add.source.line - 1] == "- func: add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"
    assert (add.device_key, add.kernel_entry, add.kernel_key) == ("CPU", "add.out", "CPU")
    assert (add.kernel, add.symbol) == ("ufunc_add_CPU", "at::native::structured_ufunc_add_CPU::impl")


def test_the_cpu_kernel_is_registered_in_a_generated_file_named_as_such(index):
    add = dispatcher.describe_op("aten::add.Tensor", cpu_keys(), index)
    registered = add.registered
    assert registered.kind == "generated" and registered.url is None
    assert registered.path.startswith("build/aten/src/ATen/RegisterCPU") and registered.line > 0
    assert registered.template == "aten/src/ATen/templates/RegisterDispatchKey.cpp"
    assert COMMIT in registered.template_url


def test_a_call_goes_through_autograd_then_the_backend_kernel(index):
    mul = dispatcher.describe_op("aten::mul.Tensor", cpu_keys(), index)
    assert [(step.key, step.kernel, step.fallthrough) for step in mul.dispatch] == [
        ("AutogradCPU", "autograd kernel", False),
        ("ADInplaceOrView", "backend fallback", True),
        ("CPU", "kernel", False),
    ]
    assert mul.dispatch[0].registered.template == "tools/autograd/templates/VariableType.cpp"
    assert mul.dispatch[1].registered.path == "aten/src/ATen/core/VariableFallbackKernel.cpp"
    assert mul.dispatch[1].registered.url.startswith(f"https://github.com/pytorch/pytorch/blob/{COMMIT}/aten/src/")


def test_a_composite_op_stops_at_its_math_kernel(index):
    linear = dispatcher.describe_op("aten::linear", cpu_keys(), index)
    assert [(step.key, step.kernel) for step in linear.dispatch] == [("AutogradCPU", "math kernel")]
    assert (linear.kernel_key, linear.symbol) == ("CompositeImplicitAutograd", "at::native::linear")


def test_an_op_outside_native_functions_yaml_says_where_it_is_registered(index):
    op = dispatcher.describe_op("profiler::_record_function_enter_new", cpu_keys(), index)
    assert op.schema is None and op.kernel is None
    assert op.note.startswith("not in native_functions.yaml: profiler::_record_function_enter_new is registered")
    assert op.registered.path == "torch/csrc/autograd/record_function_ops.cpp" and COMMIT in op.registered.url


def test_without_an_index_an_op_still_has_its_dispatch_path_and_says_what_is_missing():
    empty = cache.Index(origin="not built", problem="this torch install has no copy of tools/autograd/derivatives.yaml")
    mul = dispatcher.describe_op("aten::mul.Tensor", cpu_keys(), empty)
    assert mul.note == "native_functions.yaml could not be read: this torch install has no copy of tools/autograd/derivatives.yaml"
    assert mul.symbol is None and [step.key for step in mul.dispatch] == ["AutogradCPU", "ADInplaceOrView", "CPU"]


def test_an_unknown_op_has_no_dispatch_table():
    assert dispatcher.dispatch_table("aten::no_such_op") == {}


def test_autocast_keys_count_only_while_autocast_is_on():
    assert cpu_keys() == ["CPU", "ADInplaceOrView", "AutogradCPU"]
    with torch.autocast("cpu"):
        assert "AutocastCPU" in cpu_keys()


NM = shutil.which("nm")


@pytest.mark.skipif(NM is None, reason="nm (binutils) is not installed")
def test_every_kernel_symbol_of_the_scenarios_ops_is_defined_in_libtorch_cpu(index):
    library = links.TORCH_DIR / "lib" / "libtorch_cpu.so"
    if not library.exists():
        pytest.skip("no libtorch_cpu.so in this torch (not a Linux wheel)")
    listing = subprocess.run([NM, "-DC", "--defined-only", library], capture_output=True, text=True, timeout=120)
    defined = {line.split(" ", 2)[2].split("(")[0] for line in listing.stdout.splitlines() if line.count(" ") >= 2}
    ops = ["add.Tensor", "mul.Tensor", "addmm", "relu", "t", "_log_softmax", "nll_loss_forward", "mm",
           "threshold_backward", "ones_like", "detach", "sum", "unsqueeze", "unsqueeze_", "_local_scalar_dense"]  # fmt: skip
    symbols = {op: dispatcher.describe_op(f"aten::{op}", cpu_keys(), index).symbol for op in ops}
    assert {op: symbol for op, symbol in symbols.items() if symbol not in defined} == {}


# --- links ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "path", "kind"),
    [
        ("/__w/pytorch/pytorch/aten/src/ATen/core/PythonFallbackKernel.cpp", "aten/src/ATen/core/PythonFallbackKernel.cpp", "repository"),
        ("/pytorch/build/aten/src/ATen/RegisterCPU_0.cpp", "build/aten/src/ATen/RegisterCPU_0.cpp", "generated"),
        ("/var/lib/jenkins/pytorch/torch/csrc/autograd/generated/VariableType_2.cpp", "torch/csrc/autograd/generated/VariableType_2.cpp", "generated"),
        ("/home/me/.venv/lib/python3.11/site-packages/torch/_meta_registrations.py", "torch/_meta_registrations.py", "repository"),
        ("/home/me/my_ops.cpp", "/home/me/my_ops.cpp", "elsewhere"),
    ],
)  # fmt: skip
def test_paths_the_dispatcher_reports_become_repository_paths(reported, path, kind):
    link = links.link_for_build_path(reported, 12)
    assert (link.path, link.line, link.kind) == (path, 12, kind)
    assert (link.url is not None) == (kind == "repository")
    if kind == "repository":
        assert link.url == f"https://github.com/pytorch/pytorch/blob/{COMMIT}/{path}#L12"


@pytest.mark.parametrize(
    ("generated", "template"),
    [
        ("build/aten/src/ATen/RegisterCPU_0.cpp", "aten/src/ATen/templates/RegisterDispatchKey.cpp"),
        ("build/aten/src/ATen/RegisterCompositeImplicitAutograd_0.cpp", "aten/src/ATen/templates/RegisterDispatchKey.cpp"),
        ("build/aten/src/ATen/RegisterFunctionalization_3.cpp", "aten/src/ATen/templates/RegisterFunctionalization.cpp"),
        ("build/aten/src/ATen/UfuncCPU_add.cpp", "aten/src/ATen/templates/UfuncCPU.cpp"),
        ("torch/csrc/autograd/generated/VariableType_2.cpp", "tools/autograd/templates/VariableType.cpp"),
        ("torch/csrc/autograd/generated/TraceType_4.cpp", "tools/autograd/templates/TraceType.cpp"),
        ("build/something/else.cpp", None),
    ],
)
def test_a_generated_file_names_the_template_it_comes_from(generated, template):
    assert links.template_of(generated) == template


def test_every_template_linked_is_in_the_wheels_copy_of_the_repository():
    missing = [t for t in links.TEMPLATES.values() if links.repository_link(t).wheel_copy() is None]
    assert missing == []


def test_links_use_the_release_tag_when_the_build_names_no_commit(monkeypatch):
    monkeypatch.setattr(torch.version, "git_version", "Unknown")
    monkeypatch.setattr(torch, "__version__", "2.14.1+cu130")
    assert links.github_url("tools/autograd/derivatives.yaml", 3) == (
        "https://github.com/pytorch/pytorch/blob/v2.14.1/tools/autograd/derivatives.yaml#L3"
    )


# --- C++ frames -------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "short"),
    [
        ("torch::autograd::THPVariable_add(_object*, _object*, _object*)", "torch::autograd::THPVariable_add"),
        ("_object* torch::autograd::TypeError_to_NotImplemented_<&torch::autograd::THPVariable_add>(_object*, _object*, _object*)",
         "torch::autograd::TypeError_to_NotImplemented_"),
        ("torch::autograd::VariableType::(anonymous namespace)::add_Tensor(c10::DispatchKeySet, at::Tensor const&)",
         "torch::autograd::VariableType::(anonymous namespace)::add_Tensor"),
        ("torch::detail::(anonymous namespace)::ConcretePyInterpreterVTable::dispatch(c10::OperatorHandle const&) const",
         "torch::detail::(anonymous namespace)::ConcretePyInterpreterVTable::dispatch"),
        ("void c10::BoxedKernel::make_boxed_function<&(anonymous namespace)::pythonTLSSnapshotFallback>(c10::OperatorKernel*)",
         "c10::BoxedKernel::make_boxed_function"),
        ("THPEngine_run_backward(_object*, _object*, _object*)", "THPEngine_run_backward"),
    ],
)  # fmt: skip
def test_short_names_drop_return_types_templates_and_parameters(symbol, short):
    assert frames.short_name(symbol) == short


def frame(name, filename="libtorch_cpu.so"):
    return {"filename": filename, "line": 0, "name": name}


def test_frames_are_grouped_into_layers_with_plumbing_folded(tmp_path):
    tracer = tmp_path / "traces"
    stack = [
        frame("_start", "??"),
        frame("pymain_main", "Modules/main.c"),
        {"filename": "/work/scenario.py", "line": 7, "name": "lesson"},
        frame("binary_op1", "Objects/abstract.c"),
        frame("_object* torch::autograd::TypeError_to_NotImplemented_<&torch::autograd::THPVariable_add>(_object*)"),
        frame("torch::autograd::THPVariable_add(_object*, _object*, _object*)"),
        frame("at::_ops::add_Tensor::call(at::Tensor const&, at::Tensor const&, c10::Scalar const&)"),
        frame("c10::impl::BoxedKernelWrapper<at::Tensor (at::Tensor const&), void>::call(c10::BoxedKernel const&)"),
        frame("torch::autograd::VariableType::(anonymous namespace)::add_Tensor(c10::DispatchKeySet)"),
        frame("at::_ops::add_Tensor::redispatch(c10::DispatchKeySet, at::Tensor const&)"),
        frame("(anonymous namespace)::pythonFallback(c10::OperatorHandle const&)"),
        frame("torch::handle_torch_function_no_python_arg_parser(c10::ArrayRef<_object*>)"),
        frame("callmethod", "Objects/call.c"),
        {"filename": str(tracer / "ops.py"), "line": 80, "name": "__torch_dispatch__"},
        frame("pybind11::cpp_function::dispatcher(_object*)"),
        frame("torch::CapturedTraceback::gather(bool, bool, bool)"),
        frame("torch::unwind::unwind()"),
    ]
    layers = frames.cpp_layers(stack, str(tracer))
    assert [(layer.layer, layer.functions, layer.folded) for layer in layers] == [
        ("Python", ["/work/scenario.py:7 lesson"], 0),
        ("Python binding", ["torch::autograd::THPVariable_add"], 1),
        ("operator entry", ["at::_ops::add_Tensor::call"], 0),
        ("dispatch", [], 1),
        ("autograd", ["torch::autograd::VariableType::(anonymous namespace)::add_Tensor"], 0),
        ("dispatch", ["at::_ops::add_Tensor::redispatch"], 0),
        ("handed to the trace", ["(anonymous namespace)::pythonFallback", "torch::handle_torch_function_no_python_arg_parser"], 0),
    ]


def test_a_platform_without_cpp_unwinding_is_a_stated_reason_not_a_failure(monkeypatch):
    from torch.utils._traceback import CapturedTraceback

    def unsupported(**kwargs):
        raise RuntimeError("unwinding is not supported on this platform")

    monkeypatch.setattr(CapturedTraceback, "extract", staticmethod(unsupported))
    call = dispatcher.observe_call([torch.ones(1)], capture_cpp=True)
    assert call.traceback is None and call.keys[0] == "CPU"
    assert call.problem == "C++ frames could not be captured here: unwinding is not supported on this platform"


# --- the cache --------------------------------------------------------------


def test_a_missing_cache_is_built_with_torchgen_and_saved(tmp_path, index_data):
    index = cache.load_index(tmp_path)
    path = cache.cache_file(tmp_path)
    assert index.origin == f"built and cached in {path}"
    assert path.name.startswith(f"below-python-{torch.__version__}-{COMMIT[:12]}-v{cache.INDEX_FORMAT}")
    first, _, rest = path.read_bytes().partition(b"\n")
    assert json.loads(rest) == index_data and first == b"sha256 " + hashlib.sha256(rest).hexdigest().encode()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_cached_index_is_read_not_built(tmp_path, built):
    cache.load_index(tmp_path)
    again = cache.load_index(tmp_path)
    assert len(built) == 1
    assert again.origin == f"read from {cache.cache_file(tmp_path)}"
    assert again.nodes["MulBackward0"]["op"] == "mul.Tensor"


def test_the_cache_folder_follows_xdg_cache_home_and_can_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_STEPTHROUGH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_folder() == tmp_path / "xdg" / "torch-stepthrough"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_folder() == tmp_path / "home" / ".cache" / "torch-stepthrough"
    monkeypatch.setenv("TORCH_STEPTHROUGH_CACHE", str(tmp_path / "mine"))
    assert cache.cache_folder() == tmp_path / "mine"


def test_a_damaged_cache_is_rebuilt_and_replaced(tmp_path, built):
    path = cache.cache_file(tmp_path)
    path.write_text('{"format": 1, "nodes": {"MulBack')  # cut short, as by a crash of something else
    index = cache.load_index(tmp_path)
    assert len(built) == 1 and index.nodes["MulBackward0"]["op"] == "mul.Tensor"
    assert cache.read_cache(path) is not None


def test_a_cache_of_another_format_is_ignored(tmp_path, built, index_data):
    path = cache.cache_file(tmp_path)
    path.write_text(json.dumps({**index_data, "format": cache.INDEX_FORMAT + 1}))
    cache.load_index(tmp_path)
    assert len(built) == 1


def test_an_unwritable_cache_folder_never_fails_a_run(tmp_path, built):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    index = cache.load_index(blocked / "cache")  # its parent is a file: nothing can be written there
    assert index.nodes["MulBackward0"]["op"] == "mul.Tensor"
    assert index.origin.startswith("built in memory; not cached: ")
    assert blocked.read_text() == "not a folder"


def test_a_full_disk_never_fails_a_run(tmp_path, built, monkeypatch):
    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "write_atomically", full)
    index = cache.load_index(tmp_path)
    assert index.origin == f"built in memory; not cached: No space left on device ({cache.cache_file(tmp_path)})"
    assert index.functions["add.Tensor"]["structured_delegate"] == "add.out"
    assert list(tmp_path.iterdir()) == []


def test_without_torchgens_loader_the_index_is_empty_with_the_reason(tmp_path, monkeypatch):
    def unavailable():
        raise cache.IndexUnavailable("torchgen cannot load derivatives.yaml here (No module named 'yaml')")

    monkeypatch.setattr(cache, "build_index", unavailable)
    index = cache.load_index(tmp_path)
    assert (index.nodes, index.problem) == ({}, "torchgen cannot load derivatives.yaml here (No module named 'yaml')")
    assert list(tmp_path.iterdir()) == []


# --- the rooms of traces/below/ ---------------------------------------------

# Each room imports only rooms before it, and of the rest of traces only its floor below,
# traces.basics (the cache writer's write_atomically).
ROOMS = ["links", "schema", "nodes", "cache", "formulas", "frames", "dispatcher"]


def traces_imports(room):
    tree = ast.parse((Path(links.__file__).parent / f"{room}.py").read_text())
    found = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    found += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    return sorted(name for name in found if name.split(".")[0] == "traces")


def test_each_room_below_python_imports_only_the_rooms_before_it():
    rooms = sorted(path.stem for path in Path(links.__file__).parent.glob("*.py") if path.stem != "__init__")
    assert rooms == sorted(ROOMS)
    for position, room in enumerate(ROOMS):
        allowed = {f"traces.below.{earlier}" for earlier in ROOMS[:position]}
        allowed |= {name for name in traces_imports(room) if name.startswith("traces.basics.")}
        assert set(traces_imports(room)) <= allowed, room
    assert traces_imports("cache") == ["traces.basics.saving", "traces.below.links", "traces.below.nodes", "traces.below.schema"]
