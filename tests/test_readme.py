"""README.rst holds exactly two set-up commands, the test one is what CI runs, and the
tour's code runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    return text, [ln.strip() for ln in text.splitlines() if re.match(r"^    pip install ", ln)]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    _text, cmds = _commands()
    assert len(cmds) == 2, cmds
    demo, tests = cmds
    assert demo.endswith("python -m lsstdrp.demo")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in [ln.strip() for ln in ci.splitlines()], "the README's test command must appear verbatim in .ci/run"


def test_tour_runs(tmp_path, monkeypatch):
    text, _ = _commands()
    block = text.split(".. code-block:: python", 1)[1]
    lines = []
    for ln in block.splitlines()[1:]:
        if ln and not ln.startswith("    "):
            break
        lines.append(ln[4:])
    code = "\n".join(lines)
    assert "make_survey" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.rst tour", "exec"), namespace)
    assert namespace["exp"].image.dtype.name == "float32"
    assert len(namespace["cats"]) > 0
