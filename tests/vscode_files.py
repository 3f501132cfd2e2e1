"""Read the workspace's .vscode files the way VSCode does.

VSCode reads launch.json and settings.json as "JSON with comments": `//` and
`/* */` comments and trailing commas are allowed. ``read_jsonc`` drops both
(never inside a string) and parses the rest as JSON. ``substitute`` replaces the
variables of a launch configuration, as VSCode does before it starts a session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / ".vscode"

# A string (kept as it is), or a comment (dropped).
_STRING_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
# A string (kept as it is), or a comma followed only by whitespace and a closing bracket.
_STRING_OR_TRAILING_COMMA = re.compile(r'"(?:\\.|[^"\\])*"|,(?=\s*[}\]])')
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def parse_jsonc(text: str) -> Any:
    """Parse JSON with comments and trailing commas."""

    def keep_strings(match: re.Match) -> str:
        return match.group() if match.group().startswith('"') else " "

    without_comments = _STRING_OR_COMMENT.sub(keep_strings, text)
    return json.loads(_STRING_OR_TRAILING_COMMA.sub(keep_strings, without_comments))


def read_jsonc(path: Path) -> Any:
    return parse_jsonc(path.read_text(encoding="utf-8"))


def launch_configurations() -> list[dict[str, Any]]:
    """The configurations in .vscode/launch.json, as written."""
    return read_jsonc(VSCODE / "launch.json")["configurations"]


def scenario_configuration(scenario: str) -> dict[str, Any]:
    """The launch configuration whose program is scenarios/<scenario>.py."""
    program = f"${{workspaceFolder}}/scenarios/{scenario}.py"
    matches = [config for config in launch_configurations() if config.get("program") == program]
    if len(matches) != 1:
        raise LookupError(f"launch.json has {len(matches)} configurations for {program}, expected 1")
    return matches[0]


def debug_test_configuration() -> dict[str, Any]:
    """The launch configuration that VSCode's "Debug Test" uses (purpose debug-test)."""
    [config] = [config for config in launch_configurations() if "debug-test" in config.get("purpose", [])]
    return config


def settings() -> dict[str, Any]:
    return read_jsonc(VSCODE / "settings.json")


def substitute(value: Any, workspace_folder: Path = ROOT, file: Path | None = None) -> Any:
    """Replace ${workspaceFolder} and ${file} everywhere in a configuration, as VSCode does.

    Any other variable raises ValueError, so a configuration that needs one is noticed.
    """
    variables = {"workspaceFolder": str(workspace_folder)}
    if file is not None:
        variables["file"] = str(file)

    def replace(match: re.Match) -> str:
        if match.group(1) not in variables:
            raise ValueError(f"no value for ${{{match.group(1)}}}")
        return variables[match.group(1)]

    if isinstance(value, str):
        return _VARIABLE.sub(replace, value)
    if isinstance(value, list):
        return [substitute(item, workspace_folder, file) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, workspace_folder, file) for key, item in value.items()}
    return value
