"""The project's documentation as the tests read it: the README (the front page), CONTRIBUTING.md
and the reference in docs/, one page per subject. Tests that check what a page says read it here,
so a sentence that moves to another page is looked for where it now lives."""

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^[ \t]*```([\w-]*)\n(.*?)^[ \t]*```", re.M | re.S)  # also indented, in a list item


def pages() -> list[Path]:
    """Every page of documentation: README.md, CONTRIBUTING.md and docs/*.md."""
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def page(name: str) -> str:
    """One page's text: "README.md", "CONTRIBUTING.md", or a page of docs/ such as "traces.md"."""
    path = ROOT / name if name in ("README.md", "CONTRIBUTING.md") else ROOT / "docs" / name
    return path.read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of one language (```bash, ```python, ...), in order, dedented."""
    return [textwrap.dedent(body) for fence_language, body in FENCE.findall(text) if fence_language == language]


def without_code(text: str) -> str:
    """The text with its fenced code blocks and inline code blanked out: links and headings are
    looked for in the prose only (a `#0 ...` line of gdb's output is not a heading)."""
    text = FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)
    return re.sub(r"`[^`\n]*`", lambda match: "code" if match.group(0) != "``" else "", text)


def shell_commands(text: str) -> list[str]:
    """Every command line of the page's ```bash blocks, without its trailing comment."""
    commands = []
    for block in code_blocks(text, "bash"):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    prose = FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)
    for heading in re.findall(r"^#{1,6} (.+?)\s*#*$", prose, re.M):
        anchor = slug(heading)
        candidate, number = anchor, 0
        while candidate in found:
            number += 1
            candidate = f"{anchor}-{number}"
        found.add(candidate)
    return found


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")


def broken_links(path: Path) -> list[str]:
    """Each relative link of a page whose file, or heading in that file, does not exist."""
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(without_code(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, vscode: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken
