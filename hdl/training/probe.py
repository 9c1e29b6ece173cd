"""Label quality through training: the EMA model's logits against its embeddings.

Every ``probe_every`` steps the trainer hands its EMA model to a ``LabelProbe``,
which labels the run's unlabeled training samples twice and scores both against
their true labels: the classifier's argmax (confidence: its max probability) and
HDL on the L2-normalised embeddings, seeded with the split's given labels only
(stage 2's extra labels do not seed it), labeled by ``hdl.labeling.pipeline.relabel``
with the run's HDL options (``RunConfig.labeling``, those of `hdl relabel`: the
workflow passes its ``hdl`` block to both; k candidates at or above the samples
probed are left out), and its labels ranked by the confidence the stage-2
selection uses (``RunConfig.selection``).  Each is scored at full coverage
and at its own top 50, 30 and 10% (``COVERAGES``), overall and per true class;
where the given labels' class counts differ (long-tailed data) also as the mean
per-class accuracy of the head and tail classes (``evaluate.head_and_tail``): the third of the classes
(C // 3, at least one) with the most given labels, and the third with the fewest,
ties going to the lower class index.

The probe reads the model between steps, at its own cadence, like the test-set
evaluation; it draws from no global random generator, so a run trains the same
with it on or off.  Where there are more than ``probe_samples`` unlabeled samples
it scores a fixed subsample of them, drawn from the run's seed (the same in
stage 1 and stage 2).  The trainer's 10,000 put the standard error of an accuracy
at most 0.5 points at full coverage and 1.6 points at 10%, and keep HDL's k-NN
graph on the exact search (``hdl.labeling.knn.EXACT_MAX_SIZE``).  The cost is
the forward pass (HDL with adaptive k takes under a second at 10,000): about a
test-set evaluation of as many images.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from hdl.errors import UserError
from hdl.labeling import baselines, pipeline
from hdl.labeling.evaluate import head_and_tail, score_labeler, scored
from hdl.training.inference import model_outputs
from hdl.training.streams import TrainingData, stream_seed

COVERAGES = (1.0, 0.5, 0.3, 0.1)
SUBSAMPLE_STREAM = 2  # stream_seed's stream of the probe's subsample (0 and 1 are the data streams)
LABELERS = ("argmax", "hdl")


def coverage_key(coverage: float) -> str:
    """How a coverage names its scores in a probe row: "full", "top50", "top30", "top10"."""
    return "full" if coverage == 1.0 else f"top{round(100 * coverage)}"


class LabelProbe:
    """Scores the argmax and HDL labels of a model on a run's unlabeled samples (see the module docstring)."""

    def __init__(
        self,
        data: TrainingData,
        seed: int,
        labeling: pipeline.LabelingOptions,
        selection: pipeline.SelectionOptions,
        max_unlabeled: int,
        batch_size: int,
        bf16: bool,
    ):
        given = data.host.given_index
        unlabeled = np.setdiff1d(data.host.unlabeled_index, given)
        if len(unlabeled) > max_unlabeled:
            rng = np.random.default_rng(stream_seed(seed, SUBSAMPLE_STREAM))
            unlabeled = np.sort(rng.choice(unlabeled, max_unlabeled, replace=False))
        positions = np.concatenate([given, unlabeled])
        self.positions = torch.as_tensor(positions, device=data.train_images.device)
        self.labels = np.concatenate([data.host.given_targets, np.full(len(unlabeled), -1)]).astype(np.int64)
        self.truth = data.host.train_labels[positions]
        self.evaluated = self.labels < 0
        n = len(self.labels)
        if labeling.k is not None and not labeling.k < n:
            raise UserError(f"--k {labeling.k}: must be below the {n} samples the label probe labels; lower it, or --k auto")
        candidates = tuple(c for c in labeling.k_candidates if c < n) or (n - 1,)
        # The probe scores HDL's own labels whichever labeler stage 2 trains on.
        self.labeling = dataclasses.replace(labeling, k_candidates=candidates, labeler="hdl")
        # The probe ranks HDL's labels and selects none: no thresholds to calibrate.
        self.selection = dataclasses.replace(selection, rule="all")
        self.data, self.batch_size, self.bf16 = data, batch_size, bf16
        self.groups = head_and_tail(np.bincount(self.labels[~self.evaluated], minlength=data.num_classes))

    def __call__(self, model: torch.nn.Module, step: int, global_step: int) -> dict[str, Any]:
        """One probe row: the run's ``step``, the method's ``global_step`` (stage 2 continues stage 1's),
        HDL's k, the samples scored, the seconds it took and, per labeler and coverage, its scores."""
        started = time.perf_counter()
        embeddings, probs = (values.cpu().numpy() for values in self.outputs(model))
        relabeling = pipeline.relabel(embeddings, self.labels, self.data.num_classes, probs, self.labeling, self.selection)
        labelings = {
            "argmax": baselines.argmax_labels(probs, self.labels),
            "hdl": baselines.Labeling(relabeling.chosen.result.labels, relabeling.confidence),
        }
        scores = {
            name: {coverage_key(coverage): self._score(labeling, coverage) for coverage in COVERAGES}
            for name, labeling in labelings.items()
        }
        return {
            "step": step,
            "global_step": global_step,
            "k": relabeling.chosen.k,
            "n_unlabeled": int(self.evaluated.sum()),
            "n_scored": int(scored(self.evaluated, self.truth).sum()),  # those with a true label: a pool's have none
            "hdl_confidence": self.selection.confidence,
            "seconds": time.perf_counter() - started,
            **scores,
        }

    def outputs(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's embeddings and probabilities of the probed samples, on the device (``model_outputs``)."""
        return model_outputs(model, self.data.train_images[self.positions], self.data.views, self.batch_size, self.bf16)

    def _score(self, labeling: baselines.Labeling, coverage: float) -> dict[str, Any]:
        score = score_labeler(labeling, self.truth, self.evaluated, coverage, n_classes=self.data.num_classes)
        # plain floats: the checkpoint keeps the rows, and it loads nothing but plain types
        per_class = [None if value is None else float(value) for value in score["per_class"].values()]
        row = {"accuracy": score["accuracy"], "coverage": score["coverage"], "per_class": per_class}
        for group, classes in self.groups.items():
            values = [per_class[c] for c in classes if per_class[c] is not None]
            row[group] = float(np.mean(values)) if values else None
        return row

    @staticmethod
    def tracked_values(row: dict[str, Any]) -> dict[str, float]:
        """A probe row's accuracies for the tracker: probe/<labeler>/<coverage>[/head|/tail]."""
        values = {}
        for labeler in LABELERS:
            for coverage, score in row[labeler].items():
                for key, name in (("accuracy", ""), ("head", "/head"), ("tail", "/tail")):
                    if score.get(key) is not None:
                        values[f"probe/{labeler}/{coverage}{name}"] = score[key]
        return values
