"""Every notebook in ``notebooks/`` runs top to bottom and is committed clean.

The notebooks are executed with nbclient on a ``python3`` kernel, with the notebooks folder as
working directory (as a user opening them in Jupyter would have). New notebooks are picked up by
the glob below without touching this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600
KERNEL = "python3"


def test_notebooks_are_found():
    # Guards the parametrisation below: an empty list would silently run nothing.
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.fixture(scope="session")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A ``python3`` kernel spec that runs this very interpreter.

    An installed ``python3`` spec may start ``python`` from PATH, which need not be the
    interpreter (or virtual environment) running the tests and holding atso-med. ipykernel writes
    its own spec, pointing at ``sys.executable``, into a temporary folder; nothing is installed
    for the user.
    """
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / KERNEL)
    manager = KernelSpecManager(kernel_dirs=[str(kernels)])
    spec = manager.get_kernel_spec(KERNEL)
    assert Path(spec.argv[0]) == Path(sys.executable), spec.argv
    return manager


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, kernel_specs: KernelSpecManager):
    notebook = nbformat.read(path, as_version=4)
    manager = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        notebook,
        km=manager,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [output for cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors
    assert all(cell.execution_count is not None for cell in code), "some code cells did not run"
