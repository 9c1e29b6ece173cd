"""precision=bf16: the network computes in bf16 autocast on CPU as on a GPU, every method trains to fp32's
accuracy, and everything a run keeps (weights, optimiser state, EMA, BatchNorm statistics, checkpoints,
embeddings) stays float32."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from hdl.cli import build_parser, main
from hdl.errors import UserError
from hdl.ssl import REGISTRY
from hdl.track import TrackingOptions
from hdl.training.inference import predict, uses_bf16
from hdl.training.train_cli import build_trainer

DIGITS = [
    "--dataset", "digits", "--labels", "40", "--seed", "0", "--arch", "wrn-10-1", "--threads", "1", "--no-progress",
    "--set", "batch_size=8", "--set", "uratio=1", "--set", "probe_every=0",
]


def digits_trainer(tmp_path, method: str, steps: int, *assignments: str):
    arguments = ["train", *DIGITS, "--method", method, "--steps", str(steps), "--out", str(tmp_path)]
    return build_trainer(build_parser("train").parse_args([*arguments, *(f"--set={value}" for value in assignments)]))


def record_output_dtypes(model: nn.Module) -> set[torch.dtype]:
    """The dtypes the model's convolutions and linear layers compute in, collected as it runs."""
    dtypes: set[torch.dtype] = set()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    return dtypes


def floating_dtypes(state) -> dict[str, torch.dtype]:
    """Every floating-point tensor in a nested state (dicts and lists of tensors), by its path."""
    if isinstance(state, torch.Tensor):
        return {"": state.dtype} if state.is_floating_point() else {}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    return {f"{key}.{path}".rstrip("."): dtype for key, value in items for path, dtype in floating_dtypes(value).items()}


def test_bf16_needs_a_device_whose_autocast_computes_in_it():
    assert uses_bf16("bf16", torch.device("cpu")) and not uses_bf16("fp32", torch.device("cpu"))
    assert not uses_bf16("fp32", torch.device("meta"))  # fp32 asks nothing of the device
    with pytest.raises(UserError, match=r"--set precision=bf16: autocast on meta does not compute in bfloat16.*precision=fp32"):
        uses_bf16("bf16", torch.device("meta"))  # autocast has no meta backend


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine whose CUDA autocast turns itself off")
def test_bf16_where_autocast_turns_itself_off_is_an_error_not_fp32():
    # Without a GPU, autocast on CUDA (fake) tensors warns, turns itself off and computes in fp32.
    with FakeTensorMode(), pytest.raises(UserError, match=r"autocast on cuda does not compute in bfloat16 \(CUDA is not available"):
        uses_bf16("bf16", torch.device("cuda"))


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_bf16_runs_the_network_in_bf16_and_keeps_every_state_float32(tmp_path, method):
    trainer = digits_trainer(tmp_path, method, 3, "precision=bf16")
    trained_in, evaluated_in = record_output_dtypes(trainer.model), record_output_dtypes(trainer.ema.model)
    metrics = trainer.fit(tmp_path, TrackingOptions(), progress=False)
    assert trained_in == evaluated_in == {torch.bfloat16}
    assert all(math.isfinite(row["loss"]) for row in metrics["history"])
    assert {p.grad.dtype for p in trainer.model.parameters() if p.grad is not None} == {torch.float32}
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    kept = {part: floating_dtypes(checkpoint[part]) for part in ("model", "ema_model", "optimizer", "algorithm")}
    assert any("running_var" in path for path in kept["ema_model"]) and any("momentum_buffer" in path for path in kept["optimizer"])
    assert {part: {path for path, dtype in dtypes.items() if dtype != torch.float32} for part, dtypes in kept.items()} == {
        part: set() for part in kept
    }


def test_a_bf16_runs_probe_and_embed_compute_in_bf16_and_write_float32(tmp_path):
    trainer = digits_trainer(tmp_path / "run", "supervised", 3, "precision=bf16", "probe_every=3")
    evaluated_in = record_output_dtypes(trainer.ema.model)
    metrics = trainer.fit(tmp_path / "run", TrackingOptions(), progress=False)
    assert evaluated_in == {torch.bfloat16} and len(metrics["probes"]) == 1  # the evaluation's and the probe's forward

    assert main(["split", "--dataset", "digits", "--labels", "40", "--seed", "0", "--out", str(tmp_path / "split.npz")]) == 0
    out = tmp_path / "embeddings.npz"
    assert main(["embed", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--dataset", "digits",
                 "--split", str(tmp_path / "split.npz"), "--out", str(out), "--threads", "1"]) == 0
    with np.load(out) as embedded:
        embeddings, index = embedded["embeddings"], embedded["index"]
    assert embeddings.dtype == np.float32
    images = trainer.data.train_images[torch.as_tensor(index)]
    expected = {
        bf16: nn.functional.normalize(predict(trainer.ema.model, images, trainer.data.views, 1024, bf16)[1], dim=1).numpy()
        for bf16 in (True, False)
    }
    assert np.allclose(embeddings, expected[True], atol=1e-6) and not np.allclose(embeddings, expected[False], atol=1e-3)


# Digits, 40 labels, 200 steps of 8 labeled (and 8 unlabeled) images. MixMatch's lambda_u is the default grid's 10
# (at 75 it stays near chance for this many steps); ReMixMatch anchors 2 strong views instead of 8, to save time.
# bf16 convolutions on a CPU without native bf16 instructions (AVX-512 BF16, AMX) take several times fp32's time.
LONG_RUN = ["--steps", "200", "--set", "eval_every=200", "--set", "save_every=200"]
METHOD_SETTINGS = {"mixmatch": ["lambda_u=10"], "remixmatch": ["num_strong=2"]}
# A bf16 and an fp32 run from one seed part ways within a few steps, so their accuracies differ as runs from two
# seeds do. Measured on this setting over seeds 0-3 (0-5 for FreeMatch and ReMixMatch), bf16 minus fp32 top-1 ranged
# from -0.067 to +0.039 (mean -0.009, standard deviation 0.03), while fp32 runs from different seeds spanned up to
# 0.098 (FixMatch). 0.1 holds that noise and still fails a bf16 run that trains worse than its method does.
TOP1_MARGIN = 0.1
LEARNED = 0.6  # fp32 reached 0.71-0.91 (chance: 0.1): the comparison is between runs that learned


@pytest.mark.slow
@pytest.mark.ci  # about 2 minutes on 2 cores: CI runs it, a local `make test` leaves it out
@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_trains_in_bf16_to_the_accuracy_of_fp32_from_the_same_seed(tmp_path, method):
    top1 = {}
    for precision in ("fp32", "bf16"):
        settings = [f"--set={value}" for value in [f"precision={precision}", *METHOD_SETTINGS.get(method, [])]]
        # `hdl train` checks every step's loss on CPU and stops with status 2 at the first non-finite one.
        assert main(["train", *DIGITS, *LONG_RUN, *settings, "--method", method, "--out", str(tmp_path / precision)]) == 0
        top1[precision] = json.loads((tmp_path / precision / "metrics.json").read_text())["top1"]
    assert top1["fp32"] > LEARNED, top1
    assert abs(top1["bf16"] - top1["fp32"]) <= TOP1_MARGIN, top1
