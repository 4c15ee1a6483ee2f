"""The tutorial notebook, executed headless at smoke size, as the test suite's user would."""
import ast
import json

import nbformat
import pytest
from conftest import REPO
from notebook_runner import execute_notebook, inject_parameters  # tools/

NOTEBOOK = REPO / "Federated_Learning.ipynb"

try:
    from fedlearn.backends.pysyft import require_syft
    require_syft()
    HAVE_SYFT = True
except ImportError:
    HAVE_SYFT = False
# skipped only where syft cannot be installed (Python >= 3.13); in CI a skip is a failure
needs_syft = pytest.mark.skipif(not HAVE_SYFT, reason="syft 0.9.5 not installed")


def smoke_parameters(tmp_path, mnist_dir, **extra):
    return {"IMAGES_PER_OWNER": 1500, "TEST_IMAGES": 1000, "ROUNDS": 2, "BATCH_SIZE": 32,
            "FEDSGD_ROUNDS": 1, "ROBUST_TRAIN_SIZE": 2000, "ROBUST_ROUNDS": 1,
            "PRIVACY_TRAIN_SIZE": 2000, "PRIVACY_ROUNDS": 1,
            "SCALE_TRAIN_SIZE": 2000, "SCALE_ROUNDS": 2, "DATA_DIR": mnist_dir,
            "FIGURES_DIR": str(tmp_path / "figures"),
            "RESULTS_PATH": str(tmp_path / "results.json"), **extra}


@needs_syft
def test_notebook_runs_end_to_end_with_pysyft(tmp_path, mnist_dir):
    params = smoke_parameters(tmp_path, mnist_dir)
    nb = execute_notebook(NOTEBOOK, params, output=tmp_path / "executed.ipynb", timeout=600,
                          cwd=REPO)
    results = json.loads((tmp_path / "results.json").read_text())
    # PySyft for real: otherwise the comparisons below would set in-process against itself
    assert results["backend"] == "pysyft"
    assert results["rounds"] == 2 and results["images_per_owner"] == 1500
    assert results["final_test_accuracy"] > 0.85  # 3,000 images, 2 rounds; chance is 0.10
    assert results["max_abs_weight_diff"] <= 1e-6
    assert results["final_test_accuracy"] == results["inprocess_final_test_accuracy"]
    assert results["network_max_abs_weight_diff"] <= 1e-6  # two server processes, over HTTP
    assert results["fedsgd_test_accuracy"] > 0.5
    comm = results["communication"]
    assert comm["float32"]["upload_MB_per_round"] / comm["8-bit"]["upload_MB_per_round"] >= 3.9
    assert comm["float32"]["upload_MB_per_round"] / comm["top-k 1%"]["upload_MB_per_round"] >= 30
    assert results["dp_epsilon"] > 0
    assert set(results["robust_demo"]) == {"FedAvg, all honest", "FedAvg, owner e sends noise",
                                           "median, owner e sends noise"}
    assert set(results["scale_accuracy"]) == {"FedSGD (E=1, B=all)", "FedAvg (E=5, B=10)",
                                              "FedProx (mu=0.01)", "FedAdam (server lr 0.01)"}
    assert all(a["goal"] == 10 and a["selected"] <= 13 for a in results["availability"])
    assert results["personalization"]["clients"] == 50
    for name in ("learning_curve", "confusion_matrix", "test_predictions", "label_histograms",
                 "scale_curves", "availability", "personalization", "scale_label_histograms"):
        assert (tmp_path / "figures" / f"notebook_{name}.png").stat().st_size > 5000
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def test_notebook_without_pysyft_falls_back_visibly(tmp_path, mnist_dir, monkeypatch):
    # a Python where `import syft` fails, as on 3.13: the kernel inherits this PYTHONPATH
    fake = tmp_path / "no_syft" / "syft"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: syft is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    params = smoke_parameters(tmp_path, mnist_dir, ROUNDS=1, FEDSGD_ROUNDS=1)
    nb = execute_notebook(NOTEBOOK, params, timeout=600, cwd=REPO)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["backend"] == "inprocess" and results["max_abs_weight_diff"] == 0.0
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "NOTE: PySyft is not available" in text and "simulated: syft is not installed" in text


def test_unknown_injected_parameter_fails_loudly():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    with pytest.raises(ValueError, match="ROUNDZ"):
        inject_parameters(nb, {"ROUNDZ": 1})


def test_committed_notebook_has_outputs_of_a_full_run():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code_cells[1:]), \
        "every cell after the parameters has output"
    final = code_cells[-1]["outputs"][-1]["data"]["text/plain"]
    results = ast.literal_eval(final)  # the `results` dict the last cell displays
    assert results["images_per_owner"] == 30_000 and results["backend"] == "pysyft"
    assert results["final_test_accuracy"] >= 0.99
    assert results["max_abs_weight_diff"] <= 1e-6
    assert results["network_max_abs_weight_diff"] <= 1e-6
