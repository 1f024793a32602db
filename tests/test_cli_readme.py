"""The README's command lines are ones `ial` accepts: every option they use exists, spelled in full."""
import re
import shlex
from pathlib import Path

import pytest

from ial_ext.cli import build_parser
from ial_export.deploy import build_parser as deploy_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_command_lines() -> list[list[str]]:
    lines = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            line = line.strip().lstrip("$ ").split("  #")[0].strip()
            if re.match(r"(ial|ial-deploy) ", line) or line.startswith("torchrun "):
                lines.append(shlex.split(line))
    return lines


def test_the_readme_shows_ial_commands():
    commands = {words[1] for words in readme_command_lines() if words[0] == "ial"}
    assert {"train", "evaluate", "infer", "export"} <= commands


@pytest.mark.parametrize("words", readme_command_lines(), ids=" ".join)
def test_readme_command_line_parses(words, capsys):
    if words[0] == "torchrun":
        words = ["ial", *words[words.index("ial_ext.cli") + 1:]]
    if "--help" in words:
        return
    if words[0] == "ial-deploy":
        deploy_parser().parse_args(words[1:])
    else:
        build_parser().parse_args(words[1:])
