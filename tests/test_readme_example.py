"""The example of tracing a torchvision model (docs/traces.md, once the README's): the script it
shows, run the way it says, prints what it shows (the numbers to within 1%, since CPUs round differently)."""

import contextlib
import io
import math
import re

import pytest
from doc_pages import page

from traces.__main__ import main

PAGE = page("traces.md")  # where the example lives
NUMBER = re.compile(r"(?<=norm )[\d.]+|(?<=norm=)[\d.]+|(?<=^loss )[\d.]+")


def code_block(after: str, language: str) -> str:
    start = PAGE.index(f"```{language}\n", PAGE.index(after)) + len(language) + 4
    return PAGE[start : PAGE.index("```", start)]


def numbers_masked(line: str) -> tuple[str, list[float]]:
    return NUMBER.sub("N", line), [float(number) for number in NUMBER.findall(line)]


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    (folder / "resnet_step.py").write_text(code_block("<!-- resnet_step.py:", "python"))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.chdir(folder)  # as the page runs it: paths relative to the current folder
        patch.setenv("COLUMNS", "100")
        assert main(["resnet_step.py"]) == 0
    return out.getvalue()


def test_the_script_prints_its_loss_first(printed):
    first = printed.splitlines()[0]
    masked, [loss] = numbers_masked(first)
    assert masked == "loss N" and loss == pytest.approx(6.950, abs=0.002)
    assert "prints the script's `loss 6.950`" in PAGE


def test_the_output_begins_as_the_readme_shows(printed):
    shown = code_block("`.venv/bin/python -m traces resnet_step.py` prints", "text").splitlines()
    output = [line.rstrip() for line in printed.splitlines()]
    position = 0
    for line in shown:
        if line.strip() in ("", "...") or line.strip().startswith(".venv/.../"):
            continue  # an elided part, or a path alone (shortened on the page)
        expected = line.split("  .venv/.../")[0].rstrip()  # a path shortened on the page: the rest must match
        masked, numbers = numbers_masked(expected)
        for index in range(position, len(output)):
            found, found_numbers = numbers_masked(output[index])
            if found.startswith(masked) and len(found_numbers) >= len(numbers):
                assert all(math.isclose(a, b, rel_tol=0.01) for a, b in zip(numbers, found_numbers)), line
                position = index + 1
                break
        else:
            pytest.fail(f"not printed (in this order): {line!r}")


def test_it_prints_about_240_lines_at_100_columns(printed):
    assert "then about 240 lines (at 100 columns)" in PAGE
    assert 210 <= len(printed.splitlines()) <= 270


def test_each_module_names_its_parameters_with_their_gradient_norms_as_the_readme_says(printed):
    assert "(under `layer1`'s `0 (BasicBlock)`: `grad norms: conv1.weight 7.312, bn1.weight\n0.2947, ...`)" in PAGE
    line = next(line for line in printed.splitlines() if line.strip().startswith("grad norms: conv1.weight"))
    pairs = re.findall(r"([\w.]+) ([\d.]+)(?:,|$)", line.strip().removeprefix("grad norms: "))
    assert [name for name, _ in pairs[:4]] == ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight"]
    assert [float(norm) for _, norm in pairs[:2]] == pytest.approx([7.312, 0.2947], rel=0.01)
