"""``--threads`` sets torch's thread count for the whole process, and the suite runs the commands in one process:
a test that runs one must not leave its count to the tests after it.  Torch's count decides how Inductor's
kernels split their reductions, which sets the last bits of a compiled loss."""

import argparse
import subprocess
import sys

import torch

from hdl.cli_options import setup_device


def test_threads_sets_torchs_thread_count():
    other_count = torch.get_num_threads() + 1
    setup_device(argparse.Namespace(threads=other_count, device="cpu"))
    assert torch.get_num_threads() == other_count


# Passes alone whatever the fix; it checks the leak when it runs after the test above, as pytest orders them.
def test_a_test_after_one_that_set_threads_runs_on_torchs_default_thread_count():
    fresh_process = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                   capture_output=True, text=True, check=True)
    assert torch.get_num_threads() == int(fresh_process.stdout)
