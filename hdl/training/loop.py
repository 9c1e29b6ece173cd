"""One training loop for every semi-supervised method.

A method (``hdl.ssl``) only computes a loss on a batch.  The ``Trainer`` holds
the rest: the model and its EMA, SGD, the method and the data streams.  Each
step draws a labeled and an unlabeled batch, sets the LR and the averages'
rates, lets the method compute its loss and steps SGD and the EMA.  The EMA
model is evaluated on the test set every ``eval_every`` steps; everything is
saved every ``save_every`` steps, and a rerun resumes from there exactly.
Between steps HDL labels with the EMA model (``hdl.training.between_steps``):
the label probe scores its labels and the argmax's, the label refresh
replaces stage 2's extra labels with its labels.
The step reads its changing numbers (the method's clock, the averaging rates)
from device tensors and never waits for the device, so the method's loss with
the model can be compiled whole (``compile``, ``hdl.training.compiling``).

Stage 2 (``--init``) continues the method rather than restarting it: the
model, its EMA, the optimiser's momentum and the method's state (thresholds,
class distributions, alignment buffers) come from the stage-1 checkpoint, the
method's own clock keeps counting from stage 1's last step (so ramp-ups stay
finished), and the LR continues from stage 1's last value (``stage2_lr``).
Only the data streams start afresh, because the HDL variant's labeled set
differs; both variants of a cell draw them from the same seeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hdl.errors import UserError
from hdl.files import read_metrics
from hdl.io import write_json
from hdl.nets import build_net
from hdl.ssl import Algorithm, Batch, StepContext, algorithm_class
from hdl.track import Tracker, TrackingOptions
from hdl.training.averaging import EMA, AveragingRates, averaging_rates
from hdl.training.between_steps import LabelingBetweenSteps
from hdl.training.checkpoint import CHECKPOINT_FORMAT, config_differences, load_checkpoint, rng_states, save_checkpoint
from hdl.training.checkpoint import seed_everything, set_rng_states, summarise
from hdl.training.compiling import compile_step
from hdl.training.inference import MixedPrecision, accuracy_metrics, predict, uses_bf16
from hdl.training.optim import cosine_lr, make_optimizer, stage2_learning_rate
from hdl.training.progress import progress_bar
from hdl.training.settings import RunConfig, run_identity
from hdl.training.stop_signal import StopRequest, TrainingStopped
from hdl.training.streams import EpochShuffler, TrainingData, stream_seed, to_device


class Trainer:
    """A model, its EMA, the optimiser, the method and the data streams: ``fit`` trains and checkpoints them."""

    def __init__(self, config: RunConfig, data: TrainingData, device: torch.device):
        self.config = config
        self.data = data
        self.device = device
        train = config.train
        seed_everything(config.seed)
        self.model = build_net(config.arch, data.num_classes, data.train_images.shape[1], train.bn_momentum, device)
        with torch.device(device):  # the method's state and parameters are made on the device
            self.algorithm: Algorithm = algorithm_class(config.method)(
                num_classes=data.num_classes,
                feature_dim=self.model.feature_dim,
                config=config.method_config,
                labeled_distribution=np.bincount(data.host.given_targets, minlength=data.num_classes),
            )
        self.bf16 = uses_bf16(train.precision, device)
        self.forward = MixedPrecision(self.model, enabled=self.bf16)
        self.rates = AveragingRates(self.model, device)
        self.ema = EMA(self.model, train.ema)
        self.clock = torch.zeros((), dtype=torch.int64, device=device)  # the method's global step, as data
        self.method_loss = compile_step(self.uncompiled_method_loss, train.compile, device)
        self.optimizer = make_optimizer(list(self.model.parameters()) + list(self.algorithm.parameters()), train)
        self.uses_unlabeled = self.algorithm.uses_unlabeled and train.uratio > 0
        if self.uses_unlabeled and len(data.unlabeled_index) == 0:
            raise UserError(f"method {config.method} needs unlabeled samples, but the unlabeled set is empty")
        if len(data.labeled_index) == 0:
            raise UserError("the labeled set is empty")
        self.step = 0
        # The method's clock: global step = start_step + step; ramp-ups span method_steps.
        # A run started with --init inherits them (and the LR to continue from) from its init run.
        self.schedule = {"start_step": 0, "method_steps": config.steps, "held_lr": train.lr}
        self.make_streams()
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        self.labeling = LabelingBetweenSteps(config, data, self.bf16)
        self.seconds = 0.0
        self.tracker_id: str | None = None

    def make_streams(self) -> None:
        seed, start = self.config.seed, self.schedule["start_step"]
        self.labeled_stream = EpochShuffler(len(self.data.labeled_index), stream_seed(seed, 0, start))
        self.unlabeled_stream = EpochShuffler(len(self.data.unlabeled_index), stream_seed(seed, 1, start))

    # -- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.as_dict(),
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
            **self.labeling.state_dict(),  # probes, refresh
            "seconds": self.seconds,
            "sizes": self.data.sizes(),
            "tracker_id": self.tracker_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.labeling.load_state_dict(state)
        set_rng_states(state["rng"])
        self.labeled_stream.load_state_dict(state["rng"]["labeled_stream"])
        self.unlabeled_stream.load_state_dict(state["rng"]["unlabeled_stream"])
        self.step = state["step"]
        self.schedule = state["schedule"]
        self.history = state["history"]
        self.last_eval = state["last_eval"]
        self.seconds = state["seconds"]
        self.tracker_id = state["tracker_id"]

    def resume(self, path: Path) -> None:
        """Continue this run from its own checkpoint, which must have been written by the same command."""
        saved = load_checkpoint(path)
        differences = config_differences(run_identity(saved.get("config", {})), run_identity(self.config.as_dict()))
        if differences:
            raise UserError(
                f"{path} belongs to a different run: {'; '.join(differences)}. "
                "Use another --out, or delete the checkpoint to start afresh."
            )
        self.load_state_dict(saved)

    def continue_from(self, path: str | Path) -> None:
        """Continue another run of the same method (HDL's stage 2): its model, EMA, optimiser
        momentum and method state, its clock and its last LR; new data streams."""
        config, train = self.config, self.config.train
        state = load_checkpoint(path)
        init_method = state.get("config", {}).get("method")
        if init_method != config.method:
            raise UserError(
                f"--init {path} is a {init_method!r} run; stage 2 continues the same method, "
                f"so it must be a {config.method!r} run"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.ema.model.load_state_dict(state["ema_model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.algorithm.load_state_dict(state["algorithm"])
            init_schedule, init_steps, last_lr = state["schedule"], state["step"], state["last_lr"]
        except (KeyError, RuntimeError, ValueError) as error:
            raise UserError(f"--init {path} does not fit --arch {config.arch} on {config.dataset}: {error}") from None
        for group, weight_decay in zip(self.optimizer.param_groups, (train.weight_decay, 0.0)):
            group.update(momentum=train.momentum, nesterov=train.nesterov, weight_decay=weight_decay)
        self.schedule = {
            "start_step": init_schedule["start_step"] + init_steps,
            "method_steps": init_schedule["method_steps"],
            "held_lr": last_lr,
        }
        self.make_streams()

    # -- steps

    def next_batch(self) -> Batch:
        data, train = self.data, self.config.train
        labeled = to_device(self.labeled_stream.next(train.batch_size), self.device)
        unlabeled = self.unlabeled_stream.next(train.batch_size * train.uratio if self.uses_unlabeled else 0)
        unlabeled_index = data.unlabeled_index[to_device(unlabeled, self.device)]
        return Batch(
            labeled_images=data.train_images[data.labeled_index[labeled]],
            labeled_targets=data.labeled_targets[labeled],
            labeled_weights=data.labeled_weights[labeled],
            unlabeled_images=data.train_images[unlabeled_index],
            unlabeled_truth=data.train_labels[unlabeled_index],
        )

    def learning_rate(self) -> float:
        train, steps = self.config.train, self.config.steps
        if self.config.init:
            return stage2_learning_rate(train.stage2_lr, train.lr, self.schedule["held_lr"], self.step, steps)
        return cosine_lr(train.lr, self.step, steps)

    def uncompiled_method_loss(self, batch: Batch, clock: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        context = StepContext(step=clock, total_steps=self.schedule["method_steps"], views=self.data.views)
        return self.algorithm.training_step(self.forward, batch, context)

    def train_step(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """One step, with no host synchronisation from drawing the batch to the EMA update: the
        step's changing numbers (clock, averaging rates) are written into device tensors."""
        train = self.config.train
        global_step = self.schedule["start_step"] + self.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.rates.set(*averaging_rates(train.ema, train.bn_momentum, global_step, train.ema_warmup))
        self.clock.fill_(global_step)
        loss, logs = self.method_loss(self.next_batch(), self.clock)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.ema.update(self.rates.ema_decay)
        self.step += 1
        return loss.detach(), logs

    def evaluate(self) -> dict[str, Any]:
        logits, _ = predict(self.ema.model, self.data.test_images, self.data.views, self.config.train.eval_batch_size, self.bf16)
        return accuracy_metrics(logits.argmax(1), self.data.test_labels, self.data.num_classes)

    # -- the loop

    def fit(self, out_dir: str | Path, tracking: TrackingOptions, progress: bool = True, stop: StopRequest | None = None) -> dict[str, Any]:
        """Train to ``steps``, resuming from ``out_dir/checkpoint.pt`` if there is one; write and return the metrics.
        Once ``stop`` has its signal (SLURM's time-limit warning), save at the next step boundary and raise ``TrainingStopped``."""
        train, steps = self.config.train, self.config.steps
        out_dir = Path(out_dir)
        checkpoint_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.json"
        if checkpoint_path.exists():
            self.resume(checkpoint_path)
            if self.step >= steps and metrics_path.exists():
                rewrite = "delete it: rerunning this command rewrites it from checkpoint.pt"
                return read_metrics(metrics_path, self.config.as_dict(), "this run", rewrite)
            print(f"resuming from {checkpoint_path} at step {self.step} of {steps}", flush=True)
        elif self.config.init:
            self.continue_from(self.config.init)

        tracker = Tracker(tracking, out_dir, self.config.as_dict(), run_id=self.tracker_id)
        self.tracker_id = tracker.run_id
        # Non-finite losses are spotted on the device and read back only when the host looks anyway
        # (every step on CPU, where reading is free; at logs, evaluations and saves on a GPU).
        first_nonfinite = torch.full((), -1, dtype=torch.int64, device=self.device)
        check_every = 1 if self.device.type == "cpu" else train.log_every
        started = time.perf_counter()
        bar = progress_bar(steps, self.step, self.config.method, progress)
        self.model.train()
        while self.step < steps:
            loss, logs = self.train_step()
            first_nonfinite = torch.where((first_nonfinite < 0) & ~torch.isfinite(loss), self.step, first_nonfinite)
            bar.update(1)
            done = self.step == steps
            log_due = self.step % train.log_every == 0 or done
            eval_due = self.step % train.eval_every == 0 or done
            stopping = stop is not None and stop.received and not done
            save_due = self.step % train.save_every == 0 or done or stopping
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
            self.labeling.after_step(self, tracker, done)
            if save_due:
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
                save_checkpoint(checkpoint_path, self.state_dict())
                if stopping:
                    raise TrainingStopped(self.step, steps, checkpoint_path)
        bar.close()
        metrics = summarise(self.state_dict())
        write_json(metrics_path, metrics)
        tracker.finish({key: metrics[key] for key in ("top1", "balanced_acc", "best_top1", "median_last20_top1")})
        return metrics
