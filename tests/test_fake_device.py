"""Every tensor of a run on the GPU, proven without one: the whole training step of every method, both
augmentations, `hdl embed`'s inference and the label probe's forward run on fake CUDA tensors
(tests/fake_cuda.py), where an op that mixes devices, or makes the host wait for the device, fails and names
itself and the line of hdl/ that ran it.

Fake tensors have no values, so sizes cost nothing: the step runs at its published batch sizes, on CIFAR's
32x32x3.  What they cannot check: values (tests/test_compile.py and the method tests do), and bf16, whose CUDA
autocast turns itself off where torch sees no GPU.
"""

import numpy as np
import pytest
import torch

from fake_cuda import CUDA, DeviceCheckFailed, fake_cuda
from hdl.data.augment import RANDAUGMENT_OPS, Augmenter
from hdl.nets import build_net
from hdl.ssl import REGISTRY
from hdl.training.embed_cli import ema_model
from hdl.training.inference import images_to_tensor, model_outputs
from hdl.training.synthetic import random_dataset, random_trainer

SHAPE = (32, 32, 3)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
# What a step runs, by one op of each part: the weak views' crop, the network forward and backward, BatchNorm's
# running statistics, the EMA of the parameters and of the buffers, and SGD.
STEP_OPS = {
    "aten.gather", "aten.convolution", "aten.convolution_backward", "aten.native_batch_norm",
    "aten.native_batch_norm_backward", "aten.lerp_", "aten._foreach_lerp_", "aten._foreach_copy_", "aten._fused_sgd_",
}


def on_the_gpu(*tensors: torch.Tensor) -> bool:
    return all(tensor.device.type == "cuda" for tensor in tensors)


def fake_trainer(method: str, assignments=()):
    """A trainer of ``method`` on CUDA at its default batch sizes (to be called under ``fake_cuda``)."""
    dataset = random_dataset(SHAPE, num_classes=10, size=512, test_size=64)
    return random_trainer(method, "wrn-10-1", dataset, CUDA, ["compile=off", *assignments], num_labeled=40)


def tensors_of(trainer) -> dict[str, torch.Tensor]:
    """Every tensor a trainer keeps from step to step, by name."""
    named = {
        **{f"model.{name}": value for name, value in trainer.model.state_dict().items()},
        **{f"ema.{name}": value for name, value in trainer.ema.model.state_dict().items()},
        **{f"algorithm.{name}": value for name, value in trainer.algorithm.state_dict().items()},
        **{f"grad of {name}": p.grad for name, p in trainer.model.named_parameters() if p.grad is not None},
        **{f"grad of algorithm.{name}": p.grad for name, p in trainer.algorithm.named_parameters() if p.grad is not None},
        "clock": trainer.clock,
        "bn_momentum": trainer.rates.bn_momentum,
    }
    for group, parameters in enumerate(trainer.optimizer.param_groups):
        for position, parameter in enumerate(parameters["params"]):
            for key, value in trainer.optimizer.state.get(parameter, {}).items():
                named[f"optimizer group {group} parameter {position} {key}"] = value
    return named


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_the_whole_training_step_keeps_every_tensor_on_the_device_and_never_waits_for_it(method):
    with fake_cuda() as checks:
        trainer = fake_trainer(method)
        with checks.no_host_syncs():
            for _ in range(2):  # the second step: SGD with momentum buffers, streams past their first batch
                loss, logs = trainer.train_step()

    assert on_the_gpu(loss, *(value for value in logs.values() if isinstance(value, torch.Tensor))) and loss.dim() == 0
    tensors = tensors_of(trainer)
    assert [name for name, value in tensors.items() if not on_the_gpu(value)] == []
    momentum_buffers = [name for name in tensors if name.endswith("momentum_buffer")]
    assert len(momentum_buffers) == len([name for name in tensors if name.startswith("grad of")]) > 0
    assert STEP_OPS <= set(checks.ops_on_cuda), STEP_OPS - set(checks.ops_on_cuda)


def test_both_augmentations_with_every_randaugment_op_run_on_the_device():
    views = Augmenter(CIFAR_MEAN, CIFAR_STD)
    with fake_cuda() as checks:
        images = torch.randint(0, 256, (4 * len(RANDAUGMENT_OPS), 3, 32, 32), dtype=torch.uint8, device=CUDA)
        with checks.no_host_syncs():
            weak, strong = views.weak(images), views.strong(images)
    assert on_the_gpu(weak, strong) and weak.shape == strong.shape == images.shape
    # the flip and crop's gather, the warp of the geometric ops, Equalize's histogram, Cutout's square
    assert {"aten.gather", "aten.grid_sampler_2d", "aten.scatter_add", "aten.where"} <= set(checks.ops_on_cuda)


def test_hdl_embed_runs_a_cpu_checkpoint_on_the_device():
    state = {"config": {"arch": "wrn-10-1"}, "ema_model": build_net("wrn-10-1", 10, 3).state_dict()}  # as saved: on the CPU
    images = np.random.default_rng(0).integers(0, 256, (100, *SHAPE), dtype=np.uint8)
    with fake_cuda() as checks:
        model = ema_model(state, 10, 3, CUDA)
        embeddings, probs = model_outputs(model, images_to_tensor(images, CUDA), Augmenter(CIFAR_MEAN, CIFAR_STD), batch_size=64)
    assert on_the_gpu(*model.parameters(), *model.buffers())
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert on_the_gpu(embeddings, probs)
    assert embeddings.shape == (100, model.feature_dim) and probs.shape == (100, 10)
    assert checks.ops_on_cuda["aten.convolution"] == 2 * 9  # two batches through WRN-10-1's nine convolutions


def test_the_label_probes_forward_runs_on_the_device_without_waiting_for_it():
    with fake_cuda() as checks:
        trainer = fake_trainer("fixmatch", ["probe_every=1"])
        with checks.no_host_syncs():
            embeddings, probs = trainer.labeling.probe.outputs(trainer.ema.model)
    assert on_the_gpu(probs, embeddings)
    assert len(probs) == len(embeddings) == len(trainer.labeling.probe.labels) == 512
    assert checks.ops_on_cuda["aten.convolution"] > 0


def plant_a_cpu_buffer_in_freematchs_state(trainer, monkeypatch):
    trainer.algorithm.p_model = torch.full((10,), 0.1)


def draw_the_batch_without_moving_its_indices(trainer, monkeypatch):
    monkeypatch.setattr("hdl.training.loop.to_device", lambda indices, device: indices)


def hold_the_ema_decay_on_the_device(trainer, monkeypatch):
    update = trainer.ema.update
    monkeypatch.setattr(trainer.ema, "update", lambda decay: update(torch.full((), decay, device=CUDA)))


def copy_the_normalisation_constants_from_the_host(trainer, monkeypatch):
    monkeypatch.setattr("hdl.data.augment.filled_in", lambda values, device: torch.tensor(values, device=device))


@pytest.mark.parametrize(
    "method, plant, failure",
    [
        ("freematch", plant_a_cpu_buffer_in_freematchs_state, r"aten\.add_\.Tensor mixes cpu and cuda:0 at hdl/ssl/freematch\.py"),
        ("fixmatch", draw_the_batch_without_moving_its_indices, r"aten\.index\.Tensor mixes cuda:0 and cpu at hdl/training/loop\.py"),
        ("mixmatch", hold_the_ema_decay_on_the_device, r"aten\._local_scalar_dense\.default reads a value .* at hdl/training/averaging\.py"),
        ("supervised", copy_the_normalisation_constants_from_the_host, r"aten\._to_copy\.default copies cpu -> cuda:0 .* at hdl/data/augment\.py"),
    ],
)
def test_a_cpu_tensor_or_a_host_sync_planted_in_the_step_fails_naming_the_op_and_the_line(method, plant, failure, monkeypatch):
    with pytest.raises(DeviceCheckFailed, match=failure):
        with fake_cuda() as checks:
            trainer = fake_trainer(method)
            plant(trainer, monkeypatch)
            with checks.no_host_syncs():
                trainer.train_step()
