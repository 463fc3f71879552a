"""Execute every ``notebooks/*.ipynb`` (DESIGN.md: notebooks are executed and tested).

One test per notebook, marked ``notebook``: the notebook runs top to bottom in a fresh
kernel of *this* interpreter with ``LSSTDRP_SIM_PRESET=tiny`` (the CI size preset) and
``MPLBACKEND=Agg``; a failing cell fails the test with that cell's source and
traceback. Warnings raised by the notebook's code are errors too, as everywhere else in
the suite (``filterwarnings = error``): a notebook must not show its readers a
``DeprecationWarning``. Outputs are discarded (notebooks are stored without them).

Run one: ``pytest tests/test_notebooks.py -k simulator``; deselect all:
``-m "not notebook"``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

#: Per-cell timeout (s). Generous: at the tiny preset every notebook runs in well under a
#: minute; the limit only keeps a hung kernel from hanging the suite.
CELL_TIMEOUT = 600

#: Run in the kernel before the notebook's first cell (the stored notebook is not
#: changed). Warnings raised by the notebook's code, and by the libraries it calls,
#: become exceptions in the cell that raised them. The kernel's own machinery is left
#: alone: ipykernel warns about its internals outside any cell (e.g. a
#: PendingDeprecationWarning while it shuts down), which says nothing about the notebook.
_WARNINGS_AS_ERRORS = """\
import warnings
warnings.simplefilter("error")
warnings.filterwarnings(
    "default",
    module=r"(ipykernel|IPython|jupyter_client|jupyter_core|zmq|tornado|traitlets|comm|debugpy|matplotlib_inline)\\b",
)
"""


def _kernel_manager_class():
    """An AsyncKernelManager that always starts ipykernel in *this* interpreter.

    The ``python3`` kernelspec that a lookup by name finds need not be this
    interpreter: a user-level one (``~/.local/share/jupyter/kernels/python3``) or one
    from another environment can shadow the spec ipykernel installs into the venv, and
    the notebook would then import some other installation of lsstdrp. So the spec is
    built here from ``sys.executable`` (``python -m ipykernel_launcher``, what ipykernel
    registers) instead of being looked up.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisInterpreterKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} ({sys.executable})",
                    language="python",
                )
            return self._kernel_spec

    return ThisInterpreterKernelManager


@pytest.mark.notebook
# Warnings that jupyter_client and jupyter_core raise in this (the pytest) process while
# they start the kernel and exchange messages with it are about the Jupyter
# installation, not about lsstdrp or the notebook; under `filterwarnings = error` they
# would fail every notebook test (e.g. jupyter_core 5.0-5.2's "Jupyter is migrating its
# paths to use standard platformdirs", a DeprecationWarning raised when jupyter_client
# imports it -- which is also why the imports happen below, after
# JUPYTER_PLATFORM_DIRS=1 is set, and not at collection). With the pinned versions
# (constraints.txt) nothing is raised; the filters keep a newer Jupyter's deprecations
# from breaking the suite. They match only warnings attributed to those two packages:
# anything from lsstdrp, numpy, ... still fails, and the notebook's own warnings are
# errors in the kernel (_WARNINGS_AS_ERRORS).
@pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_core")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this environment. JUPYTER_PLATFORM_DIRS=1 opts in to the
    # platformdirs locations (no migration warning); the runtime (connection files) and
    # IPython directories are private to the test, so parallel xdist workers and a
    # read-only or shared home directory cannot interfere.
    monkeypatch.setenv("LSSTDRP_SIM_PRESET", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_WARNINGS_AS_ERRORS))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},  # the kernel's cwd
    )
    failure = None
    try:
        client.execute()
    except CellExecutionError as exc:
        failure = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the cell's source and traceback
    if failure is not None:  # outside the except: no chained, coloured duplicate
        pytest.fail(f"{path.name}: a cell failed\n{failure}", pytrace=False)
    # every code cell ran (an execution count each) and none left an error output
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: a code cell did not run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
