"""The README's example of the ops runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def ops_example() -> str:
    section = README.read_text().split("## The ops\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's 'The ops' section has no python example"
    return match.group(1)


def test_readme_ops_example_runs():
    namespace = {}
    exec(compile(ops_example(), "README.md (The ops)", "exec"), namespace)
    assert namespace["refined"].shape == (2, 21, 64, 64)
    assert namespace["guidance"].grad is not None
    assert namespace["means"].shape == (2, 50, 21)
