"""One training loop for every semi-supervised method: streams, SGD, EMA, evaluation, checkpoints.

A method (``hdl.ssl``) only computes a loss on a batch.  Everything else lives
here: the labeled and unlabeled index streams, SGD with nesterov momentum and
FixMatch's cosine decay ``lr * cos(7 pi t / 16 T)``, the EMA model that is
evaluated and embedded, and atomic checkpoints from which a killed run resumes
exactly (on CPU, bit for bit).

Labeled stream: epoch-shuffled (every labeled sample once per pass, a fresh
order each pass), as the references' samplers do; unlabeled likewise.  Each
stream has its own generator seeded from the run's seed; augmentation draws
from torch's global generator.  All of them are saved in the checkpoint.

The LR is a pure function of the step, so the step stands in for a
scheduler's state.

Stage 2 (``--init``) continues the method rather than restarting it: the
model, its EMA, the optimiser's momentum and the method's state (thresholds,
class distributions, alignment buffers) come from the stage-1 checkpoint, the
method's own clock keeps counting from stage 1's last step (so ramp-ups stay
finished), and the LR continues from stage 1's last value (``stage2_lr``).
Only the data streams start afresh, because the HDL variant's labeled set
differs; both variants of a cell draw them from the same seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from hdl.errors import UserError
from hdl.io import atomic_path, write_json
from hdl.nets import build_net
from hdl.ssl import Algorithm, Batch, StepContext, Views, algorithm_class, build_algorithm, config_fields
from hdl.track import Tracker, TrackingOptions

CHECKPOINT_FORMAT = 1


@dataclass
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

    ``precision``: ``bf16`` runs the network in bf16 autocast on a GPU
    (augmentations and losses stay float32); ``fp32``, the default, is what
    the published numbers used.  CPU always runs fp32.

    ``stage2_lr``: the LR of a run started with ``--init``.  ``hold`` keeps the
    LR the init run ended with (the method simply trained longer); ``anneal``
    decays from it with the same cosine shape over the new run; ``restart``
    starts a fresh cosine from ``lr`` (a restart, as before).

    ``extra_labels_leave_unlabeled``: whether ``--extra-labels`` samples also
    leave the unlabeled stream.  Off by default: HDL usually labels every
    reachable sample, so leaving would empty the stream and silence the base
    method's unlabeled loss; kept, stage 2 differs from its paired baseline
    only by the extra labels.
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
    eval_batch_size: int = 1024
    ema_warmup: bool = True
    precision: str = "fp32"
    stage2_lr: str = "hold"
    extra_labels_leave_unlabeled: bool = False


PRECISIONS = ("fp32", "bf16")
STAGE2_LR_RULES = ("hold", "anneal", "restart")
WARMUP_OFFSET = 10  # TensorFlow's ExponentialMovingAverage: decay <= (1 + t) / (10 + t)


# ---------------------------------------------------------------- configuration


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


def resolve_settings(method: str, assignments: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``key=value`` strings to the trainer's and the method's defaults (one shared namespace)."""
    train = dataclasses.asdict(TrainConfig(uratio=algorithm_class(method).default_uratio))
    method_config = config_fields(method)
    shared = train.keys() & method_config.keys()
    if shared:
        raise ValueError(f"method {method!r} reuses trainer keys {sorted(shared)} in its Config")
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        target = train if key in train else method_config if key in method_config else None
        if not sep or target is None:
            raise UserError(
                f"--set {assignment!r}: expected key=value with a known key; trainer keys: {', '.join(train)}; "
                f"{method} keys: {', '.join(method_config) or '(none)'}"
            )
        target[key] = parse_value(key, text, target[key])
    for key in ("batch_size", "eval_every", "save_every", "log_every", "eval_batch_size"):
        if train[key] < 1:
            raise UserError(f"--set {key}={train[key]}: must be at least 1")
    if train["uratio"] < 0 or not 0 <= train["ema"] <= 1:
        raise UserError(f"uratio must be >= 0 and ema in [0, 1]; got uratio={train['uratio']}, ema={train['ema']}")
    for key, allowed in (("precision", PRECISIONS), ("stage2_lr", STAGE2_LR_RULES)):
        if train[key] not in allowed:
            raise UserError(f"--set {key}={train[key]}: must be one of {', '.join(allowed)}")
    return train, method_config


def config_differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    keys = sorted(saved.keys() | wanted.keys())
    differences = []
    for key in keys:
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key} ({old!r} in the checkpoint, {new!r} now)")
    return differences


# ---------------------------------------------------------------- data


@dataclass
class TrainingData:
    """Everything a run reads, as tensors on the training device; images stay uint8 (N, C, H, W)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    labeled_index: torch.Tensor  # into the training set: the split's labeled samples, then the extra ones
    labeled_targets: torch.Tensor
    labeled_weights: torch.Tensor
    unlabeled_index: torch.Tensor
    num_classes: int
    views: Views
    num_extra: int = 0

    @classmethod
    def build(
        cls,
        dataset,
        labeled_index: np.ndarray,
        unlabeled_index: np.ndarray,
        views: Views,
        device: torch.device,
        extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        extra_leave_unlabeled: bool = False,
    ) -> "TrainingData":
        """``extra`` = (index, label, weight) of pseudo-labeled samples: they join the labeled stream
        and, with ``extra_leave_unlabeled``, leave the unlabeled one."""
        targets = dataset.train_labels[labeled_index]
        weights = np.ones(len(labeled_index), dtype=np.float32)
        if extra is not None:
            extra_index, extra_labels, extra_weights = extra
            clash = np.intersect1d(extra_index, labeled_index)
            if len(clash):
                raise UserError(
                    f"{len(clash)} extra-label indices (e.g. {clash[:5].tolist()}) are labeled samples of the split already; "
                    "extra labels must be for unlabeled samples"
                )
            if extra_leave_unlabeled:
                unlabeled_index = np.setdiff1d(unlabeled_index, extra_index)
            labeled_index = np.concatenate([labeled_index, extra_index])
            targets = np.concatenate([targets, extra_labels])
            weights = np.concatenate([weights, extra_weights.astype(np.float32)])

        def longs(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(array, dtype=np.int64), device=device)

        return cls(
            train_images=images_to_tensor(dataset.train_images, device),
            train_labels=longs(dataset.train_labels),
            test_images=images_to_tensor(dataset.test_images, device),
            test_labels=longs(dataset.test_labels),
            labeled_index=longs(labeled_index),
            labeled_targets=longs(targets),
            labeled_weights=torch.as_tensor(weights, device=device),
            unlabeled_index=longs(unlabeled_index),
            num_classes=dataset.num_classes,
            views=views,
            num_extra=0 if extra is None else len(extra[0]),
        )


def images_to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) array -> uint8 (N, C, H, W) tensor on ``device`` (a copy: loaders may hand out read-only arrays)."""
    return torch.from_numpy(np.array(images.transpose(0, 3, 1, 2), order="C")).to(device)


class EpochShuffler:
    """Endless batches of positions in [0, size): each pass visits every position once, in a fresh random order."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(size, generator=self.generator)
        self.position = 0

    def next(self, batch_size: int) -> torch.Tensor:
        parts = []
        while batch_size > 0:
            if self.position == self.size:
                self.order = torch.randperm(self.size, generator=self.generator)
                self.position = 0
            take = min(batch_size, self.size - self.position)
            parts.append(self.order[self.position : self.position + take])
            self.position += take
            batch_size -= take
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.position = state["position"]


def stream_seed(seed: int, stream: int, start_step: int = 0) -> int:
    """Seed of one data stream; a run continuing another (``start_step`` > 0) draws new orders."""
    entropy = [seed, stream] + ([start_step] if start_step else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# ---------------------------------------------------------------- model pieces


class EMA:
    """An exponential moving average of a model's parameters; buffers (BatchNorm statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self._pairs = [list(self.model.parameters()), list(model.parameters())]
        self._buffer_pairs = [list(self.model.buffers()), list(model.buffers())]

    @torch.no_grad()
    def update(self, decay: float | None = None) -> None:
        """Move the average towards the model by ``1 - decay`` (default: the constructor's decay)."""
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1.0 - (self.decay if decay is None else decay))
        torch._foreach_copy_(self._buffer_pairs[0], self._buffer_pairs[1])


def warmed_up_decay(decay: float, step: int) -> float:
    """``decay`` capped by (1 + t) / (10 + t) at global step t: fast averages early, ``decay`` later."""
    return min(decay, (1 + step) / (WARMUP_OFFSET + step))


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


class MixedPrecision(nn.Module):
    """The model's forward in bf16 autocast when ``enabled`` (GPU), returning float32 logits and features.

    Only the network runs in bf16: augmentations (whose sampling grids bf16
    would shift) and the losses (thresholds such as 0.95) stay in float32.
    """

    def __init__(self, model: nn.Module, enabled: bool):
        super().__init__()
        self.model = model
        self.enabled = enabled

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.enabled):
            logits, features = self.model(images)
        return logits.float(), features.float()


def make_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.SGD:
    """SGD with weight decay on weight matrices and kernels only: never on biases or BatchNorm."""
    decayed = [p for p in parameters if p.ndim > 1]
    undecayed = [p for p in parameters if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": undecayed, "weight_decay": 0.0}],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    return base_lr * math.cos(7 * math.pi * step / (16 * total_steps))


def stage2_learning_rate(rule: str, base_lr: float, held_lr: float, step: int, total_steps: int) -> float:
    """LR at ``step`` of a run that continues another whose last LR was ``held_lr`` (see TrainConfig.stage2_lr)."""
    if rule == "hold":
        return held_lr
    if rule == "anneal":
        return cosine_lr(held_lr, step, total_steps)
    return cosine_lr(base_lr, step, total_steps)


def uses_bf16(precision: str, device: torch.device) -> bool:
    return precision == "bf16" and device.type == "cuda"


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, views: Views, batch_size: int, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and features (float32) of uint8 images, in batches, with the model in eval mode."""
    was_training = model.training
    model.eval()
    forward = MixedPrecision(model, enabled=bf16)
    logits, features = [], []
    for chunk in images.split(batch_size):
        chunk_logits, chunk_features = forward(views.normalize(chunk))
        logits.append(chunk_logits)
        features.append(chunk_features)
    model.train(was_training)
    return torch.cat(logits), torch.cat(features)


def accuracy_metrics(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    correct = (predictions == labels).double()
    per_class = torch.bincount(labels, weights=correct, minlength=num_classes) / torch.bincount(
        labels, minlength=num_classes
    ).clamp_min(1)
    return {"top1": correct.mean().item(), "balanced_acc": per_class.mean().item(), "per_class": per_class.tolist()}


# ---------------------------------------------------------------- RNG states


def rng_states() -> dict[str, Any]:
    """Every global RNG's state, as tensors and plain numbers (loadable with ``weights_only=True``)."""
    _, python_state, python_gauss = random.getstate()
    _, numpy_keys, numpy_position, numpy_has_gauss, numpy_gauss = np.random.get_state()
    return {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": python_gauss,
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_position": int(numpy_position),
        "numpy_gauss": [int(numpy_has_gauss), float(numpy_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate((3, tuple(states["python"].tolist()), states["python_gauss"]))
    has_gauss, gauss = states["numpy_gauss"]
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), states["numpy_position"], has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- checkpoints and metrics


def load_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn, foreign or corrupt file: say which and what to do
        raise UserError(f"cannot read checkpoint {path}: {error}. Delete it to start the run afresh.") from None


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def summarise(state: dict) -> dict[str, Any]:
    """metrics.json's content, from a finished run's checkpoint state."""
    config, history, final = state["config"], state["history"], state["last_eval"]
    top1s = [row["top1"] for row in history]
    return {
        "top1": final["top1"],
        "balanced_acc": final["balanced_acc"],
        "per_class": final["per_class"],
        "best_top1": max(top1s),
        "median_last20_top1": statistics.median(top1s[-20:]),
        "steps": state["step"],
        "seconds": state["seconds"],
        **{key: config[key] for key in ("method", "arch", "dataset", "labels", "imbalance", "seed")},
        **state["sizes"],
        "config": config,
        "history": history,
    }


# ---------------------------------------------------------------- the loop


class Trainer:
    """A model, its EMA, the optimiser, the method and the data streams: ``fit`` trains and checkpoints them."""

    def __init__(self, config: dict, data: TrainingData, device: torch.device):
        self.config = config
        self.data = data
        self.device = device
        self.settings = TrainConfig(**config["train"])
        self.total_steps = config["steps"]
        seed_everything(config["seed"])
        in_channels = data.train_images.shape[1]
        self.model = build_net(config["arch"], data.num_classes, in_channels, self.settings.bn_momentum).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        given_targets = data.labeled_targets[: len(data.labeled_targets) - data.num_extra]
        self.algorithm: Algorithm = build_algorithm(
            config["method"],
            data.num_classes,
            self.model.feature_dim,
            config["method_config"],
            labeled_distribution=torch.bincount(given_targets.cpu(), minlength=data.num_classes).float(),
        ).to(device)
        self.bf16 = uses_bf16(self.settings.precision, device)
        self.forward = MixedPrecision(self.model, enabled=self.bf16)
        self.ema = EMA(self.model, self.settings.ema)
        self.optimizer = make_optimizer(list(self.model.parameters()) + list(self.algorithm.parameters()), self.settings)
        self.uses_unlabeled = self.algorithm.uses_unlabeled and self.settings.uratio > 0
        if self.uses_unlabeled and len(data.unlabeled_index) == 0:
            raise UserError(f"method {config['method']} needs unlabeled samples, but the unlabeled set is empty")
        if len(data.labeled_index) == 0:
            raise UserError("the labeled set is empty")
        self.step = 0
        # The method's clock: global step = start_step + step; ramp-ups span method_steps.
        # A run started with --init inherits them (and the LR to continue from) from its init run.
        self.schedule = {"start_step": 0, "method_steps": self.total_steps, "held_lr": self.settings.lr}
        self.make_streams()
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        self.seconds = 0.0
        self.tracker_id: str | None = None

    def make_streams(self) -> None:
        seed, start = self.config["seed"], self.schedule["start_step"]
        self.labeled_stream = EpochShuffler(len(self.data.labeled_index), stream_seed(seed, 0, start))
        self.unlabeled_stream = EpochShuffler(len(self.data.unlabeled_index), stream_seed(seed, 1, start))

    # -- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config,
            "step": self.step,
            "schedule": self.schedule,
            "last_lr": self.optimizer.param_groups[0]["lr"],
            "model": self.model.state_dict(),
            "ema_model": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "rng": {
                **rng_states(),
                "labeled_stream": self.labeled_stream.state_dict(),
                "unlabeled_stream": self.unlabeled_stream.state_dict(),
            },
            "history": self.history,
            "last_eval": self.last_eval,
            "seconds": self.seconds,
            "sizes": self.sizes(),
            "tracker_id": self.tracker_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.algorithm.load_state_dict(state["algorithm"])
        set_rng_states(state["rng"])
        self.labeled_stream.load_state_dict(state["rng"]["labeled_stream"])
        self.unlabeled_stream.load_state_dict(state["rng"]["unlabeled_stream"])
        self.step = state["step"]
        self.schedule = state["schedule"]
        self.history = state["history"]
        self.last_eval = state["last_eval"]
        self.seconds = state["seconds"]
        self.tracker_id = state["tracker_id"]

    def continue_from(self, path: str | Path) -> None:
        """Continue another run of the same method (HDL's stage 2): its model, EMA, optimiser
        momentum and method state, its clock and its last LR; new data streams."""
        state = load_checkpoint(path)
        init_config = state.get("config", {})
        if init_config.get("method") != self.config["method"]:
            raise UserError(
                f"--init {path} is a {init_config.get('method')!r} run; stage 2 continues the same method, "
                f"so it must be a {self.config['method']!r} run"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.ema.model.load_state_dict(state["ema_model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.algorithm.load_state_dict(state["algorithm"])
            init_schedule, init_steps, last_lr = state["schedule"], state["step"], state["last_lr"]
        except (KeyError, RuntimeError, ValueError) as error:
            raise UserError(f"--init {path} does not fit --arch {self.config['arch']} on {self.config['dataset']}: {error}") from None
        for group, weight_decay in zip(self.optimizer.param_groups, (self.settings.weight_decay, 0.0)):
            group.update(momentum=self.settings.momentum, nesterov=self.settings.nesterov, weight_decay=weight_decay)
        self.schedule = {
            "start_step": init_schedule["start_step"] + init_steps,
            "method_steps": init_schedule["method_steps"],
            "held_lr": last_lr,
        }
        self.make_streams()

    def sizes(self) -> dict[str, int]:
        return {
            "num_labeled": len(self.data.labeled_index) - self.data.num_extra,
            "num_extra": self.data.num_extra,
            "num_unlabeled": len(self.data.unlabeled_index),
        }

    # -- steps

    def next_batch(self) -> Batch:
        data = self.data
        labeled = self.labeled_stream.next(self.settings.batch_size).to(self.device)
        unlabeled = self.unlabeled_stream.next(self.settings.batch_size * self.settings.uratio if self.uses_unlabeled else 0)
        unlabeled_index = data.unlabeled_index[unlabeled.to(self.device)]
        return Batch(
            labeled_images=data.train_images[data.labeled_index[labeled]],
            labeled_targets=data.labeled_targets[labeled],
            labeled_weights=data.labeled_weights[labeled],
            unlabeled_images=data.train_images[unlabeled_index],
            unlabeled_truth=data.train_labels[unlabeled_index],
        )

    def learning_rate(self) -> float:
        if self.config["init"]:
            rule = self.settings.stage2_lr
            return stage2_learning_rate(rule, self.settings.lr, self.schedule["held_lr"], self.step, self.total_steps)
        return cosine_lr(self.settings.lr, self.step, self.total_steps)

    def train_step(self) -> tuple[torch.Tensor, dict[str, Any]]:
        settings = self.settings
        global_step = self.schedule["start_step"] + self.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        ema_decay = warmed_up_decay(settings.ema, global_step) if settings.ema_warmup else settings.ema
        bn_momentum = max(settings.bn_momentum, 1.0 - warmed_up_decay(1.0, global_step)) if settings.ema_warmup else settings.bn_momentum
        set_bn_momentum(self.model, bn_momentum)
        context = StepContext(step=global_step, total_steps=self.schedule["method_steps"], views=self.data.views)
        loss, logs = self.algorithm.training_step(self.forward, self.next_batch(), context)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.ema.update(ema_decay)
        self.step += 1
        return loss.detach(), logs

    def evaluate(self) -> dict[str, Any]:
        logits, _ = predict(self.ema.model, self.data.test_images, self.data.views, self.settings.eval_batch_size, self.bf16)
        return accuracy_metrics(logits.argmax(1), self.data.test_labels, self.data.num_classes)

    # -- the loop

    def fit(self, out_dir: str | Path, tracking: TrackingOptions, progress: bool = True) -> dict[str, Any]:
        """Train to ``steps``, resuming from ``out_dir/checkpoint.pt`` if there is one; write and return the metrics."""
        from tqdm import tqdm

        out_dir = Path(out_dir)
        checkpoint_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.json"
        if checkpoint_path.exists():
            saved = load_checkpoint(checkpoint_path)
            differences = config_differences(saved.get("config", {}), self.config)
            if differences:
                raise UserError(
                    f"{checkpoint_path} belongs to a different run: {'; '.join(differences)}. "
                    "Use another --out, or delete the checkpoint to start afresh."
                )
            self.load_state_dict(saved)
            if self.step >= self.total_steps and metrics_path.exists():
                return json.loads(metrics_path.read_text())
        elif self.config["init"]:
            self.continue_from(self.config["init"])

        tracker = Tracker(tracking, out_dir, self.config, run_id=self.tracker_id)
        self.tracker_id = tracker.run_id
        settings = self.settings
        # Non-finite losses are spotted on the device and read back only when the host looks anyway
        # (every step on CPU, where reading is free; at logs, evaluations and saves on a GPU).
        first_nonfinite = torch.full((), -1, dtype=torch.int64, device=self.device)
        check_every = 1 if self.device.type == "cpu" else settings.log_every
        started = time.perf_counter()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.config["method"],
            disable=not progress,
            mininterval=0.1 if sys.stderr.isatty() else 30,
            dynamic_ncols=True,
        )
        self.model.train()
        while self.step < self.total_steps:
            loss, logs = self.train_step()
            first_nonfinite = torch.where((first_nonfinite < 0) & ~torch.isfinite(loss), self.step, first_nonfinite)
            bar.update(1)
            done = self.step == self.total_steps
            log_due = self.step % settings.log_every == 0 or done
            eval_due = self.step % settings.eval_every == 0 or done
            save_due = self.step % settings.save_every == 0 or done
            if self.step % check_every == 0 or log_due or eval_due or save_due:
                bad_step = int(first_nonfinite)
                if bad_step >= 0:
                    bar.close()
                    raise UserError(
                        f"the loss became NaN or infinite at step {bad_step}; the run stopped without saving it. "
                        "Lower lr (--set lr=...) or check the data."
                    )
            if log_due:
                values = {"loss": float(loss), **{key: float(value) for key, value in logs.items()}}
                tracker.log({f"train/{key}": value for key, value in values.items()} | {"train/lr": self.optimizer.param_groups[0]["lr"]}, self.step)
                bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
            if eval_due:
                self.last_eval = self.evaluate()
                row = {"step": self.step, "top1": self.last_eval["top1"], "balanced_acc": self.last_eval["balanced_acc"],
                       "loss": float(loss), "lr": self.optimizer.param_groups[0]["lr"]}
                row.update({key: float(value) for key, value in logs.items()})
                self.history.append(row)
                tracker.log({"eval/top1": row["top1"], "eval/balanced_acc": row["balanced_acc"]}, self.step)
                bar.write(f"step {self.step}: top1 {row['top1']:.4f}  balanced_acc {row['balanced_acc']:.4f}")
            if save_due:
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
                save_checkpoint(checkpoint_path, self.state_dict())
        bar.close()
        metrics = summarise(self.state_dict())
        write_json(metrics_path, metrics)
        tracker.finish({key: metrics[key] for key in ("top1", "balanced_acc", "best_top1", "median_last20_top1")})
        return metrics
