import os
from pathlib import Path

import pytest
import torch

from hdl.data.datasets import DEBIAN_FASHION_MNIST

IN_CI = os.environ.get("CI", "").lower() == "true"
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # read before any test or fixture runs a command


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Put back torch's thread count, which a command run with ``--threads`` (``hdl.cli_options.setup_device``,
    and relabel's ``faiss.omp_set_num_threads``: faiss and torch share one OpenMP runtime) sets for the process.

    Left at 1, it made a later compiled FreeMatch run's losses differ from an eager run's by 7e-5 (#34).
    """
    yield
    torch.set_num_threads(TORCH_DEFAULT_THREADS)


@pytest.fixture(scope="session")
def fashion_mnist_available() -> None:
    """Skip locally when Debian's Fashion-MNIST is missing; in CI its absence is a failure, never a skip."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        message = f"Fashion-MNIST not installed at {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
