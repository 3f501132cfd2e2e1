"""The debugger extension's parts, without a debugger: the one-line description of a
tensor (traces/data/tensors.py), saved values read without hooks (traces/data/graph.py), what
a tensor or node expands to, and which frames stepping skips.

test_debug_session.py proves the same through the real debugpy adapter.
"""

import json
import sys
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pydevd_plugins.extensions import stepthrough_session, stepthrough_variables
from pydevd_plugins.extensions.stepthrough_variables import Note
from traces.data.graph import FREED, PACKED, node_hook_dicts, saved_for_backward
from traces.data.tensors import LINE_VALUES, describe
from traces.recorders.tracer import Tracer


class RecordOps(TorchDispatchMode):
    """Every operator that reaches the dispatcher's Python layer while active."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def children(value) -> dict[str, object]:
    return {name: child for name, child, _ in stepthrough_variables.children(value)}


# -- one line per tensor ------------------------------------------------------------------


def test_a_non_leaf_shows_shape_dtype_device_and_grad_fn():
    h = torch.nn.functional.linear(torch.randn(64, 784), torch.randn(512, 784, requires_grad=True), torch.zeros(512))
    assert describe(h) == "Tensor[64, 512] float32 cpu · grad_fn=AddmmBackward0"


def test_a_parameter_shows_leaf_requires_grad_and_its_grads_shape():
    weight = torch.nn.Parameter(torch.randn(512, 784))
    assert describe(weight) == "Parameter[512, 784] float32 cpu · leaf · requires_grad"
    weight.sum().backward()
    assert describe(weight) == "Parameter[512, 784] float32 cpu · leaf · requires_grad · grad [512, 784]"


def test_a_view_names_its_base_and_an_in_place_change_its_version():
    x = torch.tensor([1.0, 2.0, 3.0])
    row = x.unsqueeze(0)
    row.add_(1)
    assert describe(row) == "Tensor[1, 3] float32 cpu = [[2, 3, 4]] · view of [3] · v1"
    assert describe(x) == "Tensor[3] float32 cpu = [2, 3, 4] · v1"


def test_small_tensors_show_their_values_large_ones_do_not():
    assert describe(torch.tensor(6.0)) == "Tensor[] float32 cpu = 6"
    assert describe(torch.arange(LINE_VALUES)) == f"Tensor[{LINE_VALUES}] int64 cpu = {list(range(LINE_VALUES))}"
    assert describe(torch.arange(LINE_VALUES + 1)) == f"Tensor[{LINE_VALUES + 1}] int64 cpu"


def test_retain_grad_shows_and_the_grad_of_a_non_leaf_is_not_read():
    w = torch.ones(2, requires_grad=True)
    kept, dropped = w * 2, w * 3
    kept.retain_grad()
    (kept + dropped).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading dropped.grad would warn
        assert describe(dropped) == "Tensor[2] float32 cpu = [3, 3] · grad_fn=MulBackward0"
        assert describe(kept) == "Tensor[2] float32 cpu = [2, 2] · grad_fn=MulBackward0 · retains_grad · grad [2]"


def test_reading_values_runs_no_operator_that_a_dispatch_mode_or_a_trace_would_see():
    small, large = torch.ones(3), torch.ones(1000, 1000)
    with RecordOps() as recorder:
        assert describe(small) == "Tensor[3] float32 cpu = [1, 1, 1]"
        assert describe(large) == "Tensor[1000, 1000] float32 cpu"
        stepthrough_variables.values_preview(large)
    assert recorder.ops == []
    tracer = Tracer()
    with tracer.recording():
        describe(small)
    assert tracer.trace("t", "cpu", {}).ops == []


@pytest.mark.parametrize(
    "make, line",
    [
        (lambda: torch.zeros(2, 3, device="meta"), "Tensor[2, 3] float32 meta"),
        (lambda: torch.ones(3).to_sparse(), "Tensor[3] float32 cpu sparse_coo"),
        (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged), None),
    ],
    ids=["meta", "sparse", "jagged"],
)
def test_tensors_without_plain_memory_show_no_values(make, line):
    tensor = make()
    text = describe(tensor)
    assert "=" not in text
    if line is not None:
        assert text == line


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_tensor_on_the_gpu_is_described_without_waiting_for_the_gpu():
    small = torch.ones(3, device="cuda", requires_grad=True) * 2
    torch.cuda.set_sync_debug_mode("error")  # any synchronizing call raises
    try:
        line = describe(small)
        preview = stepthrough_variables.values_preview(small)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert line == "Tensor[3] float32 cuda:0 · grad_fn=MulBackward0"
    assert preview == "not read: on cuda:0 (reading would wait for the device)"


def test_a_fake_tensor_and_an_inference_tensor():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.ones(2)
    assert describe(fake) == "FakeTensor[2] float32 cpu"
    with torch.inference_mode():
        made = torch.ones(2)
    assert describe(made) == "Tensor[2] float32 cpu = [1, 1]"  # no version: inference tensors have none


# -- saved for backward, without hooks ------------------------------------------------


def test_saved_values_are_read_without_running_unpack_hooks():
    unpacked = []
    w = torch.ones(3, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: unpacked.append(t) or t):
        y = w.sin()
    assert saved_for_backward(y.grad_fn) == {"self": PACKED}
    assert "packed by a saved-tensor hook" in str(PACKED)
    assert unpacked == []


def test_saved_values_freed_by_backward_and_values_that_are_not_tensors():
    w = torch.ones(2, 3, requires_grad=True)
    y = w.amax(dim=1)
    saved = saved_for_backward(y.grad_fn)
    assert saved["dim"] == (1,) and saved["keepdim"] is False
    assert torch.equal(saved["self"], w.detach()) and saved["result"].shape == (2,)
    y.sum().backward()
    assert saved_for_backward(y.grad_fn)["self"] is FREED


def test_a_tensor_changed_in_place_after_saving_is_still_shown():
    w = torch.ones(3, requires_grad=True)
    x = w * 1
    y = x * x
    x.add_(1)  # y's saved x is now outdated: unpacking it would raise
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.grad_fn._saved_self
    assert saved_for_backward(y.grad_fn)["self"].tolist() == [2.0, 2.0, 2.0]


def test_a_custom_function_saves_a_list_of_tensors():
    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, None)
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    x = torch.ones(2, requires_grad=True)
    [saved_x, nothing] = saved_for_backward(Double.apply(x).grad_fn)["tensors"]
    assert saved_x is x and nothing is None


# -- what a tensor and a node expand to -----------------------------------------------


def test_a_non_leaf_expands_to_what_matters_first_and_every_attribute_last():
    w = torch.ones(3, 4, requires_grad=True)
    y = w[0] * 2
    found = stepthrough_variables.children(y)
    names = [name for name, _, _ in found]
    assert names == [
        "shape", "dtype", "device", "requires_grad", "is_leaf", "grad_fn", "grad", "version",
        "stride", "is_contiguous", "values", "all attributes",
    ]  # fmt: skip
    by_name = {name: (value, evaluate) for name, value, evaluate in found}
    assert by_name["shape"] == (torch.Size([4]), ".shape")
    assert by_name["grad_fn"] == (y.grad_fn, ".grad_fn")
    assert by_name["grad"][0] == "None: not kept for a non-leaf (call retain_grad() before backward)"
    assert by_name["values"][0] == "[2, 2, 2, 2]"
    assert stepthrough_variables.one_line(by_name["all attributes"][0]) == f"{len(dir(y))} attributes"


def test_a_view_expands_to_its_base_and_hooks_show():
    x = torch.ones(3, requires_grad=True)
    row = x.unsqueeze(0)
    row.register_hook(lambda grad: grad)
    found = children(row)
    assert found["base (a view of it)"] is x
    assert list(found["hooks"].values())[0].__name__ == "<lambda>"


def test_a_large_tensor_previews_its_first_values_and_others_say_why_not():
    big = torch.arange(100.0).reshape(10, 10).t()  # not contiguous: still no copy
    assert stepthrough_variables.values_preview(big) == "[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, ...] first 10 of 100"
    assert stepthrough_variables.values_preview(torch.zeros(9, device="meta")) == "not read: a meta tensor has no values"
    assert stepthrough_variables.values_preview(torch.ones(9).to_sparse()) == "not read: sparse_coo layout"


def test_no_attribute_is_a_traceback():
    attributes = children(stepthrough_variables.AllAttributes(torch.ones(3)))
    assert attributes["imag"] == "RuntimeError: imag is not implemented for tensors with non-complex dtypes."
    assert isinstance(attributes["imag"], Note)
    assert attributes["T"].shape == (3,)
    assert all("Traceback" not in str(value) for value in attributes.values() if isinstance(value, str))


def test_a_node_expands_to_its_next_nodes_saved_values_and_hooks():
    w, x = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    y = (w + x) * (w + 1)
    found = children(y.grad_fn)
    assert found["name"] == "MulBackward0"
    assert type(found["next_functions[0]"]).__name__ == "AddBackward0"
    assert found["saved self"].item() == 3.0 and found["saved other"].item() == 2.0
    assert found["hooks"] == "none"
    assert node_hook_dicts(y.grad_fn) == (None, None)  # looking added no hook

    def before(grad_outputs):
        return None

    def after(grad_inputs, grad_outputs):
        return None

    pre, post = y.grad_fn.register_prehook(before), y.grad_fn.register_hook(after)
    assert children(y.grad_fn)["hooks"] == {f"pre-hook {pre.id}": before, f"hook {post.id}": after}
    pre.remove()
    assert children(y.grad_fn)["hooks"] == {f"hook {post.id}": after}
    post.remove()
    assert stepthrough_variables.one_line(y.grad_fn) == "MulBackward0 · next: AddBackward0, AddBackward0"
    y.backward()
    assert children(y.grad_fn)["saved self"] == "freed by backward"
    assert stepthrough_variables.one_line(y.grad_fn).endswith(" · saved values freed")


def test_walking_next_functions_reaches_accumulate_grad_and_its_leaf():
    weight = torch.nn.Parameter(torch.ones(2))
    weight.register_post_accumulate_grad_hook(lambda p: None)
    loss = (weight * 3).sum()
    node = loss.grad_fn
    while type(node).__name__ != "AccumulateGrad":
        node = children(node)["next_functions[0]"]
    assert children(node)["variable"] is weight
    assert stepthrough_variables.one_line(node) == "AccumulateGrad for Parameter[2] float32 cpu = [1, 1]"
    assert [hook.__name__ for hook in children(node)["hooks"].values()] == ["<lambda>"]


def test_which_types_the_extension_presents():
    w = torch.ones(1, requires_grad=True)
    for value in (w, torch.nn.Parameter(w), (w * 2).grad_fn, Note("x")):
        assert stepthrough_variables.has_one_line(type(value)), value
    for value in (1, "text", torch.float32):
        assert not stepthrough_variables.has_one_line(type(value)), value
    # A list, tuple, dict or dataclass: a line of its own only where it holds a tensor.
    assert stepthrough_variables.has_one_line(list) and stepthrough_variables.one_line([w]).startswith("list[1]: ")
    assert stepthrough_variables.one_line(torch.Size([1])) is None and stepthrough_variables.one_line([1, 2]) is None
    assert not stepthrough_variables.has_children(Note)  # a note does not expand


# -- stepping past the tracer ---------------------------------------------------------


def in_traces(source: str, name: str):
    """A function whose code says it is in the traces package (as the tracer's own is)."""
    namespace = {}
    exec(compile(source, stepthrough_session.TRACES_DIRS[0] + "stand_in.py", "exec"), namespace)
    return namespace[name]


def caller_frame():
    return sys._getframe(1)


def program_function():
    return sys._getframe()


def frame_of(name: str, run) -> object:
    """The frame of the first call of a function called ``name`` while ``run()`` runs."""
    found = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == name and not found:
            found.append(frame)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return found[0]


def test_the_tracers_code_and_what_it_calls_are_machinery_the_program_is_not():
    call = in_traces("def call(function, *args):\n    return function(*args)\n", "call")
    assert stepthrough_session.is_tracer_machinery(frame_of("call", lambda: call(len, [])))
    # A library function (here the standard library's) called by the tracer is machinery...
    assert stepthrough_session.is_tracer_machinery(frame_of("dumps", lambda: call(json.dumps, 1)))
    # ...called by the program it is not...
    assert not stepthrough_session.is_tracer_machinery(frame_of("dumps", lambda: json.dumps(1)))
    assert not stepthrough_session.is_tracer_machinery(caller_frame())
    # ...nor is the program's code called by the tracer (python -m traces runs the script).
    assert not stepthrough_session.is_tracer_machinery(call(program_function))


def test_what_a_tracer_function_that_passes_the_call_on_calls_is_the_programs():
    # The backward watch of python -m traces wraps torch.autograd.backward: F11 goes through it into torch.
    source = 'PASSES_CALLS_ON = ("wrapper",)\ndef wrapper(function, *args):\n    return function(*args)\n'
    wrapper = in_traces(source, "wrapper")
    assert stepthrough_session.is_tracer_machinery(frame_of("wrapper", lambda: wrapper(len, [])))  # itself: skipped
    assert not stepthrough_session.is_tracer_machinery(frame_of("dumps", lambda: wrapper(json.dumps, 1)))
    # Not named in PASSES_CALLS_ON: what it calls is machinery.
    call = in_traces('PASSES_CALLS_ON = ("wrapper",)\ndef call(function, *args):\n    return function(*args)\n', "call")
    assert stepthrough_session.is_tracer_machinery(frame_of("dumps", lambda: call(json.dumps, 1)))


def test_the_backward_watch_names_the_functions_that_pass_the_call_on():
    from traces.recorders import any_code

    names = {code.co_name for code in any_code.BackwardWatch._wrap.__code__.co_consts if hasattr(code, "co_name")}
    assert set(any_code.PASSES_CALLS_ON) == {"wrapper", "_record"} and "wrapper" in names
    assert any_code.BackwardWatch._record.__code__.co_name == "_record"


def test_torchs_rule_lookup_for_the_tracers_dispatch_mode_is_machinery():
    found = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == stepthrough_session.DISPATCH_RULE_LOOKUP[0]:
            found.append(stepthrough_session.is_tracer_machinery(frame))

    w = torch.ones(1)
    with RecordOps():
        sys.setprofile(profile)
        try:
            w + 1
        finally:
            sys.setprofile(None)
    tracer = Tracer()
    with tracer.recording():
        sys.setprofile(profile)
        try:
            w + 1
        finally:
            sys.setprofile(None)
    assert found == [False, True]  # a mode of the program's own: stepped into; the tracer's: skipped


def test_the_stepping_hook_asks_pydevd_to_skip_the_tracer():
    dont_trace = type("pydevd_dont_trace", (), {"should_trace_hook": None})
    stepthrough_session.step_past_tracer(dont_trace, per_frame=True)
    hook = dont_trace.should_trace_hook
    traced = in_traces("def f():\n    pass\n", "f")
    assert hook(traced.__code__, traced.__code__.co_filename) is False
    assert hook(caller_frame.__code__, __file__) is True

    refusing = type("pydevd_dont_trace", (), {"should_trace_hook": staticmethod(lambda code, filename: False)})
    stepthrough_session.step_past_tracer(refusing, per_frame=False)
    assert refusing.should_trace_hook(caller_frame.__code__, __file__) is False  # an earlier hook still counts


def test_what_a_tracer_function_that_passes_the_call_on_calls_besides_the_call_is_machinery():
    # The backward watch's `with` around torch.autograd.backward: contextlib's __enter__ and
    # __exit__ run only because the tracer does; the function it passes the call on to is the program's.
    source = (
        "import contextlib\n"
        'PASSES_CALLS_ON = ("wrapper",)\n'
        "def wrapper(function, *args):\n"
        "    with contextlib.nullcontext():\n"
        "        return function(*args)\n"
    )
    wrapper = in_traces(source, "wrapper")
    assert stepthrough_session.is_tracer_machinery(frame_of("__enter__", lambda: wrapper(json.dumps, 1)))
    assert stepthrough_session.is_tracer_machinery(frame_of("__exit__", lambda: wrapper(json.dumps, 1)))
    assert not stepthrough_session.is_tracer_machinery(frame_of("dumps", lambda: wrapper(json.dumps, 1)))
    # Below the program's call, the program's own `with` is the program's (its __exit__ runs first).
    assert not stepthrough_session.is_tracer_machinery(frame_of("__exit__", lambda: wrapper(uses_a_with)))


def uses_a_with():
    import contextlib

    with contextlib.nullcontext():
        return 1


# -- values whose data must not be read ------------------------------------------------------


@pytest.mark.parametrize("size", [4, 100])
def test_a_tensor_whose_storage_was_freed_reads_as_one_line_and_expands_without_reading_it(size):
    freed = torch.ones(size)
    freed.untyped_storage().resize_(0)  # as FSDP frees a parameter; torch's repr of it would crash
    with RecordOps() as mode:
        assert describe(freed) == f"Tensor[{size}] float32 cpu · storage freed (0 bytes)"
        assert children(freed)["values"] == "not read: storage freed (0 bytes)"
    assert mode.ops == []
    assert not stepthrough_variables.repr_is_safe(freed) and stepthrough_variables.repr_is_safe(torch.ones(1))
    shrunk = torch.ones(8)
    shrunk.untyped_storage().resize_(16)
    assert describe(shrunk) == "Tensor[8] float32 cpu · storage too small (16 of 32 bytes)"


def test_meta_fake_functional_and_sparse_tensors_are_described_without_their_data():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.ones(3)
    functional = torch._to_functional_tensor(torch.ones(3))
    sparse = torch.ones(3, 3).to_sparse()
    sparse._values().untyped_storage().resize_(0)  # freed values
    assert children(fake)["values"] == "not read: a FakeTensor: its values are not plain memory"
    assert describe(functional) == "FunctionalTensor[3] float32 cpu"
    assert children(functional)["values"] == "not read: a functional tensor: its values are not plain memory"
    assert describe(sparse) == "Tensor[3, 3] float32 cpu sparse_coo"
    assert children(sparse)["values"] == "not read: sparse_coo layout"
    assert describe(torch.ones(3, device="meta")) == "Tensor[3] float32 meta"


def test_a_plain_subclass_is_plain_memory_read_without_its_torch_function():
    calls = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            calls.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    logged = torch.arange(20.0).as_subclass(Logged)
    calls.clear()
    small = torch.ones(3).as_subclass(Logged)
    calls.clear()
    assert children(logged)["values"] == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...] first 10 of 20"
    assert stepthrough_variables.one_line(small).startswith("Logged[3] float32 cpu = [1, 1, 1]")
    assert calls == []  # the program's __torch_function__ never ran for the debugger's reads


def test_functorch_wrappers_say_what_they_wrap():
    seen = []

    def look(x):
        seen.append((stepthrough_variables.one_line(x), children(x)))
        return x.sin().sum()

    torch.vmap(look, in_dims=1)(torch.ones(3, 5))
    torch.func.grad(look)(torch.ones(3))
    (batched, batched_children), (tracking, tracking_children) = seen
    assert batched == "BatchedTensor[3] float32 cpu · batch dim 1 of Tensor[3, 5] · level 1"
    assert (batched_children["batch dim"], batched_children["level"]) == (1, 1)
    assert batched_children["unwrapped"].shape == (3, 5)
    assert batched_children["values"] == "not read: wrapped by a torch.func transform"
    assert tracking == "GradTrackingTensor[3] float32 cpu · level 1 over Tensor[3] · leaf · requires_grad"
    assert "batch dim" not in tracking_children and tracking_children["unwrapped"].shape == (3,)


# -- limits -------------------------------------------------------------------------------


def test_a_node_with_10000_inputs_has_a_capped_line_and_pages_of_children():
    joined = torch.cat([torch.ones(1, requires_grad=True) for _ in range(10000)])
    line = stepthrough_variables.one_line(joined.grad_fn)
    assert len(line) <= stepthrough_variables.LINE_LIMIT and line.startswith("CatBackward0 · next: AccumulateGrad, ")
    shown = line.count("AccumulateGrad")
    assert line.endswith(f", … ({10000 - shown} more)") and shown > 5
    assert stepthrough_variables.capped("x" * 500) == "x" * 170 + "… (330 more characters)"
    found = stepthrough_variables.children(joined.grad_fn)
    pages = [(name, value) for name, value, _ in found if name.startswith("next_functions")]
    assert len(pages) == 100 and pages[-1][0] == "next_functions[9900] … next_functions[9999]"
    assert stepthrough_variables.one_line(pages[0][1]) == "100 items"
    assert [name for name, _, _ in stepthrough_variables.children(pages[0][1])][:2] == ["next_functions[0]", "next_functions[1]"]
    # A million: pages of pages, never more than 100 children at a level.
    million = stepthrough_variables.paged([(f"x[{i}]", i, None) for i in range(1_000_000)])
    assert len(million) == 100 and million[0][0] == "x[0] … x[9999]"
    assert len(stepthrough_variables.children(million[0][1])) == 100


def test_containers_of_tensors_have_one_line():
    import dataclasses

    @dataclasses.dataclass
    class Batch:
        images: torch.Tensor
        size: int

    line = stepthrough_variables.one_line
    assert line([torch.ones(64, 512), torch.ones(512), 3]) == "list[3]: Tensor[64, 512] float32, Tensor[512] float32, 3"
    assert line((torch.ones(2),)) == "tuple[1]: Tensor[2] float32"
    assert line({"weight": torch.nn.Parameter(torch.ones(2))}) == "dict[1]: 'weight': Parameter[2] float32"
    assert line(Batch(torch.ones(8, 3), 8)) == "Batch: images=Tensor[8, 3] float32, size=8"
    many = line([torch.ones(1)] * 10000)
    assert len(many) <= stepthrough_variables.LINE_LIMIT and many.endswith(", … (9991 more)")


def test_a_saved_dim_of_minus_one_is_minus_one():
    x = torch.ones(4, 3, requires_grad=True)
    assert saved_for_backward(torch.cat([x, x], dim=-1).grad_fn)["dim"] == -1
    assert saved_for_backward(x.sum(dim=-1).grad_fn)["dim"] == (-1,)
    assert saved_for_backward(x.select(-1, 2).grad_fn)["index"] == 2


def test_a_csr_tensors_stride_is_said_and_post_accumulate_grad_hooks_are_listed():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CSR is in beta
        csr = torch.eye(3).to_sparse_csr()
    assert children(csr)["stride"] == "none: a sparse_csr tensor has no strides"
    w = torch.ones(2, requires_grad=True)
    w.register_post_accumulate_grad_hook(lambda tensor: None)
    assert len(children(w)["hooks"]) == 1


# -- a program's own traces -----------------------------------------------------------------------

PRIVATE_LOAD = """
import sys
from pydevd_plugins.extensions import stepthrough_variables
stepthrough_variables.load_library_if_torch_is_here()  # as the extension starts: no torch, nothing loaded
print(sorted(name for name in sys.modules if "traces" in name or name == "torch"))
import torch
stepthrough_variables.load_library_if_torch_is_here()  # as it starts in a program that has torch (an attach)
print(sorted(name for name in sys.modules if "traces" in name))
w = torch.ones(3, requires_grad=True)
print(stepthrough_variables.one_line(w * 2), "|", stepthrough_variables.one_line((w * 2).grad_fn))
print(sorted(name for name in sys.modules if "traces" in name))
import traces
print(traces.OWN)
"""


def test_the_pane_loads_the_library_privately_and_never_a_module_of_the_program(tmp_path):
    """A user's traces.py beside the program is not run, and stays the program's to import;
    only the two modules the pane needs are loaded (not the recorders, nor the formula index)."""
    import subprocess

    from conftest import ROOT

    (tmp_path / "traces.py").write_text('print("the user\'s traces.py ran")\nOWN = "own"\n')
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT)!r}]\n{PRIVATE_LOAD}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[]",
        "['_stepthrough_traces', '_stepthrough_traces.graph', '_stepthrough_traces.tensors']",
        "Tensor[3] float32 cpu = [2, 2, 2] · grad_fn=MulBackward0 | MulBackward0 · next: AccumulateGrad, None",
        "['_stepthrough_traces', '_stepthrough_traces.graph', '_stepthrough_traces.tensors']",
        "the user's traces.py ran",
        "own",
    ]
