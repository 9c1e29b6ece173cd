"""What a training run is, parsed once from the command line into typed settings.

``hdl train --set key=value`` assignments share one namespace: the trainer's
keys (``TrainConfig``) and the method's (the ``Config`` dataclass of its
module in ``hdl/ssl/``).  ``resolve_settings`` types every value like its
default; the dataclasses check themselves.  A ``RunConfig`` then travels to the
trainer; checkpoints and metrics.json keep its plain form, ``as_dict()``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from hdl.errors import UserError
from hdl.ssl import algorithm_class, config_fields
from hdl.training.compiling import COMPILE_SETTINGS

PRECISIONS = ("fp32", "bf16")
#: images per forward pass when only predicting (evaluation, the label probe and refresh, `hdl embed`): on a CPU,
#: channels_last WRN-10-1 predicted 1.3x faster in batches of 256 than of 1,024 (benchmarks/bench_predict.py, README)
INFERENCE_BATCH_SIZE = 256
STAGE2_LR_RULES = ("hold", "anneal", "restart")


@dataclass(frozen=True)
class TrainConfig:
    """Trainer hyperparameters; defaults are FixMatch's (Sohn et al. 2020, sec. 4), which USB's configs share.

    CIFAR-100 uses weight_decay 1e-3 (FixMatch, TorchSSL).  ``uratio`` defaults
    to the method's ``default_uratio``.  ``ema`` 0.999 and ``bn_momentum``
    0.001 are USB's.  FixMatch evaluates every 64 kimg, i.e. every 1024 steps
    of 64; the run is always evaluated and saved at its last step too.

    ``ema_warmup``: the averages start fast and slow down to ``ema`` and
    ``bn_momentum`` as the run goes on, as TensorFlow's
    ExponentialMovingAverage with ``num_updates`` does: at global step t the
    EMA decay is min(ema, (1 + t) / (10 + t)) and the BatchNorm momentum
    max(bn_momentum, 1 - (1 + t) / (10 + t)).  A 300-step run then evaluates
    a trained model, while a 2^20-step run spends all but its first
    ten thousand steps at the published 0.999 / 0.001.

    ``precision``: ``bf16`` runs the network in bf16 autocast, on CPU and GPU
    alike (``hdl.training.inference.MixedPrecision``): augmentations, losses,
    parameters, optimiser state, the EMA, BatchNorm statistics and checkpoints
    stay float32; evaluation, the label probe and ``hdl embed`` run the
    network in bf16 too.  A device whose autocast cannot compute in bf16 is a
    UserError.  ``fp32``, the default, is what the published numbers used.
    A CPU without native bf16 instructions (AVX-512 BF16, AMX) runs bf16
    convolutions on a slow path: on an AVX2 CPU FixMatch trained 9 to 20
    times slower in bf16 than in fp32 (benchmarks/bench_train.py, README).

    ``stage2_lr``: the LR of a run started with ``--init``.  ``hold`` keeps the
    LR the init run ended with (the method simply trained longer); ``anneal``
    decays from it with the same cosine shape over the new run; ``restart``
    starts a fresh cosine from ``lr`` (a restart, as before).

    ``compile``: ``torch.compile`` the method's loss with the model's forward
    (and so its backward): ``off``, a ``torch.compile`` mode (``default``,
    ``reduce-overhead`` for CUDA graphs, ``max-autotune``,
    ``max-autotune-no-cudagraphs``), or ``auto`` (``hdl.training.compiling``):
    eager on CPU, measured best there (README, figures table), and
    ``reduce-overhead`` on CUDA, not measured yet.  A step that fails to
    compile runs eagerly, after one line saying why.  It changes how a run
    computes, not what: a checkpoint resumes under any setting.

    ``extra_labels_leave_unlabeled``: whether ``--extra-labels`` samples also
    leave the unlabeled stream.  Off by default: HDL usually labels every
    reachable sample, so leaving would empty the stream and silence the base
    method's unlabeled loss; kept, stage 2 differs from its paired baseline
    only by the extra labels.

    ``probe_every``: every this many steps (and at the last) the label probe
    (``hdl.training.probe``) scores the EMA model's argmax and HDL on its
    embeddings against the true labels of the unlabeled training samples; 0
    turns it off.  HDL labels there with the run's HDL options (``RunConfig.labeling``)
    and ranks its labels by the selection's confidence (``RunConfig.selection``).
    ``probe_samples``: at most this many unlabeled samples are scored (a fixed
    subsample drawn from the seed where there are more).
    """

    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 64
    uratio: int = 7
    ema: float = 0.999
    bn_momentum: float = 0.001
    eval_every: int = 1024
    save_every: int = 1024
    log_every: int = 50
    eval_batch_size: int = INFERENCE_BATCH_SIZE
    ema_warmup: bool = True
    precision: str = "fp32"
    stage2_lr: str = "hold"
    extra_labels_leave_unlabeled: bool = False
    probe_every: int = 1024
    probe_samples: int = 10_000
    compile: str = "auto"

    def __post_init__(self) -> None:
        for key in ("batch_size", "eval_every", "save_every", "log_every", "eval_batch_size", "probe_samples"):
            if getattr(self, key) < 1:
                raise UserError(f"--set {key}={getattr(self, key)}: must be at least 1")
        if self.probe_every < 0:
            raise UserError(f"--set probe_every={self.probe_every}: must be at least 0 (0: no label probe)")
        if self.uratio < 0 or not 0 <= self.ema <= 1:
            raise UserError(f"uratio must be >= 0 and ema in [0, 1]; got uratio={self.uratio}, ema={self.ema}")
        for key, allowed in (("precision", PRECISIONS), ("stage2_lr", STAGE2_LR_RULES), ("compile", COMPILE_SETTINGS)):
            if getattr(self, key) not in allowed:
                raise UserError(f"--set {key}={getattr(self, key)}: must be one of {', '.join(allowed)}")


@dataclass(frozen=True)
class RunConfig:
    """One run: its grid cell, method, backbone and length, the files it starts from, and its hyperparameters."""

    dataset: str
    labels: int
    imbalance: float
    seed: int
    method: str
    arch: str
    steps: int
    split: str | None  # split .npz; None: made from dataset, labels, imbalance and seed
    init: str | None  # checkpoint this run continues (stage 2)
    extra_labels: str | None  # .npz of pseudo-labels joining the labeled stream
    train: TrainConfig
    method_config: Any  # the method's Config dataclass
    labeling: Any  # hdl.labeling.pipeline.LabelingOptions: how HDL labels in the label probe and the refresh
    selection: Any  # hdl.labeling.pipeline.SelectionOptions: the probe's confidence, the refresh's selection
    refresh_every: int  # relabel and replace the extra labels every this many steps; 0: never

    def as_dict(self) -> dict[str, Any]:
        """The plain form kept in checkpoints and metrics.json, JSON's types only (tuples become
        lists), so that it compares equal after either round trip; a resumed run must match it key by key."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A run's plain config (``RunConfig.as_dict``) without the settings that change how it computes, not what
    (``compile``): what a resumed run must match."""
    train = {key: value for key, value in config.get("train", {}).items() if key != "compile"}
    return {**config, "train": train}


def parse_value(key: str, text: str, default: Any) -> Any:
    """Parse ``text`` to the type of ``default``."""
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        return type(default)(text)
    except ValueError:
        raise UserError(f"--set {key}={text}: expected a {type(default).__name__} like the default {default!r}") from None


def resolve_settings(method: str, assignments: Sequence[str]) -> tuple[TrainConfig, Any]:
    """The trainer's and the method's settings: their defaults with ``key=value`` strings applied (one shared namespace)."""
    method_class = algorithm_class(method)
    train_defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    train_defaults["uratio"] = method_class.default_uratio
    method_defaults = config_fields(method)
    shared = train_defaults.keys() & method_defaults.keys()
    if shared:
        raise ValueError(f"method {method!r} reuses trainer keys {sorted(shared)} in its Config")
    defaults = train_defaults | method_defaults
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or key not in defaults:
            raise UserError(
                f"--set {assignment!r}: expected key=value with a known key; trainer keys: {', '.join(train_defaults)}; "
                f"{method} keys: {', '.join(method_defaults) or '(none)'}"
            )
        values[key] = parse_value(key, text, defaults[key])
    train = TrainConfig(**{key: values.get(key, default) for key, default in train_defaults.items()})
    method_config = method_class.Config(**{key: value for key, value in values.items() if key in method_defaults})
    return train, method_config
