"""The notebooks under docs/notebooks/ are documentation that runs: each executes in a fresh Jupyter kernel
(in an empty folder, offline) without an error cell, and is committed without outputs."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "docs" / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_of_the_notes():
    assert [path.name for path in NOTEBOOKS] == ["notes.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebooks_are_committed_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_in_a_fresh_kernel(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    # raises CellExecutionError, naming the cell and its traceback, at the first cell that fails
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "padded input (7, 7, 3) -> output (3, 3, 2)" in text  # the notes' CONV demo
    assert "X_col (363, 3025)  W_row (96, 363)" in text  # im2col on AlexNet's first layer
    assert "[[6. 8.]\n [3. 4.]]" in text  # the notes' max-pool example
    assert "parameters: 138,357,544" in text  # VGG16
    shown = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert any("max_pool_backward_naive" in page and "FAIL" in page and "+=" in page for page in shown)
    assert any(page.startswith("<div><div") and "Sequential: 9 layers" in page for page in shown)  # LeNet
    assert any("parameters: 138,357,544" in page and "kept (train)" in page for page in shown)  # VGG16's analysis
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 2  # filters and Grad-CAM
