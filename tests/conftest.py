import os
from pathlib import Path

import pytest

from hdl.data.datasets import DEBIAN_FASHION_MNIST

IN_CI = os.environ.get("CI", "").lower() == "true"


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
