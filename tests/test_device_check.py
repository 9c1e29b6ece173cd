"""benchmarks/device_check.sh --cpu-smoke: the device check's every step at tiny sizes on CPU, so that it works
the first time a GPU is there, and without the packages the device machine lacks."""

import os
import subprocess
import sys

import pytest

BLOCKED = ("faiss", "wandb", "snakemake", "tqdm", "sklearn")  # absent on the device machine (torchvision too, but hdl.data.randaugment needs it)


@pytest.mark.slow
@pytest.mark.ci
def test_the_device_check_runs_on_cpu_without_the_packages_the_device_machine_lacks(tmp_path, repo_root):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # None in sys.modules: `import faiss` fails as for a missing package, and importlib.util.find_spec says None.
    (blocker / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({BLOCKED!r}))\n")
    environment = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{repo_root}", "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    result = subprocess.run(
        ["bash", "benchmarks/device_check.sh", "--cpu-smoke"], cwd=repo_root, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "out" / "device_check.txt").read_text()
    assert table.strip().endswith("s") and result.stdout.rstrip().endswith(table.rstrip().splitlines()[-1])
    for method in ("fixmatch", "freematch", "mixmatch", "remixmatch", "supervised"):
        for precision in ("fp32", "bf16"):
            assert any(line.split()[:2] == [method, precision] and " yes " in line for line in table.splitlines()), (method, precision)
    assert "28x28x1  wrn-10-1  fixmatch" in table
    # step 2 on CPU: the fake-CUDA tests pass, those that need a GPU skip
    assert any(line.startswith("CUDA tests") and " passed, " in line and " skipped" in line for line in table.splitlines())


@pytest.mark.parametrize("command", ["train", "embed"])
def test_the_commands_the_device_check_runs_import_none_of_the_packages_the_device_machine_lacks(command, repo_root):
    # The slow test above finds this too, but only in CI; this one fails in a second, in every `make test`.
    needed_by_torch_if_there = {"tqdm"}  # torch.hub imports it when installed, and does without
    lacking = sorted(set(BLOCKED) - needed_by_torch_if_there)
    probe = f"import sys; from hdl.cli import build_parser; build_parser({command!r}); print(sorted(set({lacking!r}) & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
