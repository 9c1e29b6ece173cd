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

What ``auto`` picks, and on what grounds:
- CPU: eager.  Measured (README, figures table, 2026-11-27, 2 cores): the
  compiled step is 1.2-1.5x faster for FixMatch, FreeMatch and supervised but
  0.7-0.8x for MixMatch and ReMixMatch, and compiling takes 5-63 s (WRN-10-1)
  to 19-112 s (WRN-28-2), more than it saves in the default grid's short runs.
- CUDA: ``reduce-overhead`` (CUDA graphs, as the step's shapes are static,
  with ``fallback_random`` and the random draws inside the graph).  Not
  measured: this step has not run on a GPU yet; ``benchmarks/device_check.sh``
  measures it beside eager.  Until it has, a run must not depend on it: a step
  whose compilation fails runs eagerly from then on, after one line on stderr
  saying why (``EagerFallback``), and the run goes on.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

import torch

COMPILE_SETTINGS = ("auto", "off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTO_MODES = {"cpu": "off", "cuda": "reduce-overhead"}

Step = TypeVar("Step", bound=Callable)


def compile_mode(setting: str, device: torch.device) -> str:
    """The ``torch.compile`` mode ``setting`` means on ``device``, or ``off``."""
    return AUTO_MODES.get(device.type, "off") if setting == "auto" else setting


def compile_step(step: Step, setting: str, device: torch.device, fullgraph: bool = False) -> Step:
    """``step`` compiled as ``setting`` asks on ``device``, falling back to eager if that fails (``step`` itself when off)."""
    mode = compile_mode(setting, device)
    if mode == "off":
        return step
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    # The backward compiled with the forward, in the first call, where EagerFallback sees a failure,
    # rather than in the first loss.backward().
    torch._functorch.config.force_non_lazy_backward_lowering = True
    compiled = torch.compile(step, mode=mode, dynamic=False, fullgraph=fullgraph)
    if device.type == "cuda" and mode in ("reduce-overhead", "max-autotune"):
        with_cuda_graphs = compiled

        def compiled(*args, **kwargs):
            # A new training step: the previous step's graph outputs (loss, logs) may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
            return with_cuda_graphs(*args, **kwargs)

    return EagerFallback(compiled, step, f"compile={setting} ({mode} on {device.type})")  # type: ignore[return-value]


class EagerFallback:
    """``compiled``, until a call of it fails: then ``eager``, for that call and every later one, after one line
    on stderr saying why.

    ``torch.compile`` compiles on the first call, and again on a recompile, so every call is guarded.  The
    compiled code runs only once compiled, so a call that falls back computes what an eager call computes.
    A step that fails for a reason of its own fails eagerly too, and stops the run as it would have.
    ``failure`` is that line (None while compiled runs).
    """

    def __init__(self, compiled: Callable, eager: Callable, description: str):
        self.compiled, self.eager, self.description = compiled, eager, description
        self.failure: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failure is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:
                while (cause := getattr(error, "inner_exception", None) or error.__cause__) is not None:
                    error = cause  # the compiler's own error, not torch.compile's wrapper of it
                reason = next((line for line in str(error).splitlines() if line.strip()), "")[:300]
                self.failure = f"{self.description} failed, so this run goes on eagerly: {type(error).__name__}: {reason}"
                print(self.failure, file=sys.stderr, flush=True)
        return self.eager(*args, **kwargs)
