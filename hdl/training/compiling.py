"""``torch.compile`` for the training step (``TrainConfig.compile``).

What is compiled is the method's loss with the model's forward inside it
(``Algorithm.training_step``: augmentations, forward passes, the method's
state updates, the loss); its backward follows through AOTAutograd.  The
optimiser and the EMA update stay eager: they are single fused/foreach kernels
already, and the LR, a new Python float every step, would otherwise be a new
constant to compile for.  The model itself is never wrapped, so checkpoints
hold the plain module's ``state_dict`` (no ``_orig_mod.`` keys) and load in
eager runs and compiled runs alike.

Same numbers as eager: random draws inside a compiled graph (augmentations,
mixup) use Inductor's own generator unless ``fallback_random`` is set; it is
set whenever a step is compiled, so a compiled run draws exactly what an eager
run from the same seed draws, and only floating-point rounding separates the
two (tests/test_compile.py states the tolerance).

``auto`` picks per device type what measured best (README, figures table):
on CPU eager, as compile time (about a minute per run on 2 cores) outweighs
what it saves in the default grid's short runs; on CUDA ``reduce-overhead``
(CUDA graphs: the step's shapes are static).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

COMPILE_SETTINGS = ("auto", "off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTO_MODES = {"cpu": "off", "cuda": "reduce-overhead"}

Step = TypeVar("Step", bound=Callable)


def compile_mode(setting: str, device: torch.device) -> str:
    """The ``torch.compile`` mode ``setting`` means on ``device``, or ``off``."""
    return AUTO_MODES.get(device.type, "off") if setting == "auto" else setting


def compile_step(step: Step, setting: str, device: torch.device, fullgraph: bool = False) -> Step:
    """``step`` compiled as ``setting`` asks on ``device`` (or ``step`` itself when off)."""
    mode = compile_mode(setting, device)
    if mode == "off":
        return step
    torch._inductor.config.fallback_random = True
    compiled = torch.compile(step, mode=mode, dynamic=False, fullgraph=fullgraph)
    if device.type != "cuda" or mode not in ("reduce-overhead", "max-autotune"):
        return compiled

    def step_with_cuda_graphs(*args, **kwargs):
        # A new training step: the previous step's graph outputs (loss, logs) may be overwritten.
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return step_with_cuda_graphs  # type: ignore[return-value]
