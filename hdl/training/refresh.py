"""Stage 2's extra labels refreshed during training (`hdl train --refresh-every E`).

The workflow labels once, between stage 1 and stage 2: `hdl embed` writes the
stage-1 EMA model's embeddings and probabilities of the split's labeled and
unlabeled samples, `hdl relabel` selects the labels stage 2 trains with.  The
paper's labeling is "dynamic", and Iscen et al. (CVPR 2019) recompute their
pseudo-labels from the embeddings every epoch, so a run given ``--refresh-every E``
does the same every E steps (not at its last): a ``LabelRefresh`` labels the
very samples `hdl embed` embeds, in the same order, from the current EMA model's
L2-normalised embeddings and softmax probabilities, with the one labeling path
``hdl.labeling.pipeline.relabel`` and the run's HDL and selection options (the
workflow passes its ``hdl`` block to `hdl relabel` and `hdl train` alike).
HDL's seeds are the split's given labels only, never the extra labels of the
moment.  The new selection replaces the extra labels; the trainer then draws
the labeled stream afresh (the compiled step sees the same batch shapes, only
other indices).

Each refresh appends a record to metrics.json's ``refreshes``: the run's step,
the method's global step, HDL's k, the seconds it took and
``pipeline.selection_summary`` of the selection (coverage = kept / unlabeled,
true and estimated accuracy, kept and disputed labels per class).  The current
extra labels and the records are in the checkpoint, so a resumed run goes on
as if never stopped.  The refresh draws from no global random generator.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from hdl.errors import UserError
from hdl.labeling import pipeline
from hdl.labeling.inputs import check_k
from hdl.training.inference import embeddings_and_probabilities
from hdl.training.streams import TrainingData


class LabelRefresh:
    """Relabels a run's samples from a model and replaces ``data``'s extra labels (see the module docstring)."""

    def __init__(
        self,
        data: TrainingData,
        every: int,
        labeling: pipeline.LabelingOptions,
        selection: pipeline.SelectionOptions,
        batch_size: int,
        bf16: bool,
    ):
        given = data.host.given_index
        # `hdl embed`'s samples and labels: the split's labeled and unlabeled samples in index order
        self.index = np.union1d(given, data.host.unlabeled_index)
        self.truth = data.host.train_labels[self.index]
        self.labels = np.where(np.isin(self.index, given), self.truth, -1).astype(np.int64)
        check_k([labeling.k] if labeling.k is not None else list(labeling.k_candidates), len(self.index))
        self.positions = torch.as_tensor(self.index, device=data.train_images.device)
        self.data, self.every, self.labeling, self.selection = data, every, labeling, selection
        self.batch_size, self.bf16 = batch_size, bf16
        self.records: list[dict[str, Any]] = []

    def due(self, step: int, steps: int) -> bool:
        """Whether to refresh after ``step`` of a run of ``steps``: every ``every`` steps, never after the last."""
        return step % self.every == 0 and step < steps

    def __call__(self, model: torch.nn.Module, step: int, global_step: int) -> dict[str, Any]:
        """Relabel with ``model``, make the selection the extra labels, and return (and keep) the record."""
        started = time.perf_counter()
        images = self.data.train_images[self.positions]
        embeddings, probs = embeddings_and_probabilities(model, images, self.data.views, self.batch_size, self.bf16)
        n_classes = self.data.num_classes
        try:
            relabeling = pipeline.relabel(embeddings, self.labels, n_classes, probs, self.labeling, self.selection)
        except pipeline.NothingToCalibrate:
            raise UserError(
                "--refresh-every with --selection confident needs hidden given labels to calibrate on, but no class "
                "has two labels; pass --selection all"
            ) from None
        selection = relabeling.selection
        self.data.replace_extra_labels(self.index[selection.positions], selection.labels, selection.weights)
        record = {
            "step": step,
            "global_step": global_step,
            "k": relabeling.chosen.k,
            **pipeline.selection_summary(relabeling, self.labels, n_classes, probs, self.truth),
            "seconds": time.perf_counter() - started,
        }
        self.records.append(record)
        return record

    @staticmethod
    def tracked_values(record: dict[str, Any]) -> dict[str, float]:
        """A record's numbers for the tracker: refresh/coverage, refresh/accuracy."""
        return {f"refresh/{key}": record[key] for key in ("coverage", "accuracy") if record[key] is not None}

    def state_dict(self) -> dict[str, Any]:
        """The records and the extra labels of the moment (tensors and plain types, for the checkpoint)."""
        extra = slice(len(self.data.labeled_index) - self.data.num_extra, None)
        return {
            "records": self.records,
            "index": self.data.labeled_index[extra].cpu(),
            "label": self.data.labeled_targets[extra].cpu(),
            "weight": self.data.labeled_weights[extra].cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = state["records"]
        self.data.replace_extra_labels(state["index"].numpy(), state["label"].numpy(), state["weight"].numpy())
