"""`python -m oxloop script.py` and `python -m oxloop -m module` run programs unchanged on oxloop."""

from __future__ import annotations

import json
import os
import sys

PROGRAM = """\
import asyncio
import json
import sys

import sibling


async def main():
    loop = asyncio.get_running_loop()
    return type(loop).__module__.split(".")[0]


new_loop = asyncio.new_event_loop()
new_loop.close()
print(json.dumps({
    "name": __name__,
    "argv": sys.argv,
    "loop": asyncio.run(main()),
    "new_event_loop": type(new_loop).__module__.split(".")[0],
    "sibling": sibling.VALUE,
}))
sys.exit(int(sys.argv[-1]))
"""


def write_program(directory):
    (directory / "sibling.py").write_text("VALUE = 'imported from the script directory'\n")
    (directory / "prog.py").write_text(PROGRAM)
    return directory / "prog.py"


def test_script(oxloop_module, run_python, tmp_path):
    script = write_program(tmp_path)
    result = run_python([sys.executable, "-m", "oxloop", str(script), "x", "--flag", "3"])
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout) == {
        "name": "__main__",
        "argv": [str(script), "x", "--flag", "3"],
        "loop": "oxloop",
        "new_event_loop": "oxloop",
        "sibling": "imported from the script directory",
    }


def test_module(oxloop_module, run_python, tmp_path):
    script = write_program(tmp_path)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_python(
        [sys.executable, "-m", "oxloop", "-m", "prog", "y", "0"], env={"PYTHONPATH": path}
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "__main__",
        "argv": [str(script), "y", "0"],
        "loop": "oxloop",
        "new_event_loop": "oxloop",
        "sibling": "imported from the script directory",
    }


def test_script_exception_exits_1_with_traceback(oxloop_module, run_python, tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("raise ValueError('from the script')\n")
    result = run_python([sys.executable, "-m", "oxloop", str(script)])
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("ValueError: from the script")


def test_missing_script_or_module(oxloop_module, run_python, tmp_path):
    result = run_python([sys.executable, "-m", "oxloop", str(tmp_path / "missing.py")])
    assert result.returncode == 2
    assert "can't open file" in result.stderr
    result = run_python([sys.executable, "-m", "oxloop", "-m", "no_such_module_here"])
    assert result.returncode == 1
    assert "No module named no_such_module_here" in result.stderr
    result = run_python([sys.executable, "-m", "oxloop", "-m"])
    assert result.returncode == 2
