"""What every semi-supervised algorithm is: a loss on a batch plus its own state.

The trainer (``hdl.training.loop``) owns everything else: data streams, optimiser, EMA,
evaluation, checkpoints.  An algorithm is an ``nn.Module`` so that its state
(thresholds, distribution estimates, an auxiliary head) is saved and restored
with ``state_dict()`` together with the checkpoint; auxiliary parameters it
owns are optimised together with the model.

Adding a method: write ``hdl/ssl/<name>.py`` with a subclass of ``Algorithm``
decorated with ``@register("<name>")``, a nested ``Config`` dataclass holding
its hyperparameters with the published defaults, and ``training_step``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn


class Views(Protocol):
    """Augmented, normalised float views of uint8 (B, C, H, W) images (see ``hdl.data.augment``)."""

    def normalize(self, images: torch.Tensor) -> torch.Tensor: ...

    def weak(self, images: torch.Tensor) -> torch.Tensor: ...

    def strong(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Batch:
    """One training step's data, already on the training device.

    ``labeled_weights`` is 1 for the split's given labels and the per-sample
    weight for pseudo-labels added with ``--extra-labels``.  ``unlabeled_images``
    is empty (0 rows) for algorithms that use no unlabeled data.
    ``unlabeled_truth`` is for logging pseudo-label quality only; an algorithm
    must never use it in its loss.
    """

    labeled_images: torch.Tensor  # uint8 (B, C, H, W)
    labeled_targets: torch.Tensor  # int64 (B,)
    labeled_weights: torch.Tensor  # float32 (B,)
    unlabeled_images: torch.Tensor  # uint8 (uratio * B, C, H, W)
    unlabeled_truth: torch.Tensor  # int64 (uratio * B,)


@dataclass
class StepContext:
    """Where the run is.  The trainer passes ``step`` as a 0-d tensor on the training device, which
    a compiled step reads as data (an int would be a new constant every step); tests may pass ints."""

    step: torch.Tensor | int  # 0-based index of the current optimiser step
    total_steps: int
    views: Views


class Algorithm(nn.Module):
    """Base class: subclasses set ``Config`` and implement ``training_step``."""

    name: ClassVar[str]
    #: whether the trainer should draw an unlabeled stream for this algorithm
    uses_unlabeled: ClassVar[bool] = True
    #: the method's published ratio of unlabeled to labeled batch size
    default_uratio: ClassVar[int] = 7

    @dataclass
    class Config:
        pass

    def __init__(self, num_classes: int, feature_dim: int, config: Any, labeled_distribution: torch.Tensor | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.config = config
        # The split's labeled class distribution (uniform when not given): the class prior an
        # algorithm may align to. Data, not learned state: rebuilt from the split on every start,
        # so pseudo-labels added in stage 2 never change it.
        if labeled_distribution is None:
            labeled_distribution = torch.full((num_classes,), 1.0 / num_classes)
        distribution = torch.as_tensor(labeled_distribution, dtype=torch.float32)
        self.register_buffer("labeled_distribution", distribution / distribution.sum(), persistent=False)

    def training_step(
        self, model: nn.Module, batch: Batch, context: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the scalar loss to minimise and values to log (e.g. ``{"loss_x": ..., "mask": ...}``).

        ``model(x)`` returns ``(logits, features)``: features are the
        penultimate-layer embeddings.  Log values are detached 0-d tensors
        (or floats from the config): the trainer reads them only every
        ``log_every`` steps.  The step must stay compilable whole, with no
        host synchronisation: no ``.item()``, ``.any()``, ``nonzero``,
        boolean-mask indexing or Python branch on a tensor's value
        (tests/test_compile.py compiles every method with ``fullgraph=True``).
        """
        raise NotImplementedError


REGISTRY: dict[str, type[Algorithm]] = {}


def register(name: str):
    def decorate(cls: type[Algorithm]) -> type[Algorithm]:
        if name in REGISTRY:
            raise ValueError(f"algorithm {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return decorate


def config_fields(name: str) -> dict[str, Any]:
    """The hyperparameters of algorithm ``name`` with their defaults."""
    return {field.name: field.default for field in dataclasses.fields(algorithm_class(name).Config)}


def algorithm_class(name: str) -> type[Algorithm]:
    from hdl.errors import UserError

    if name not in REGISTRY:
        raise UserError(f"unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_algorithm(
    name: str,
    num_classes: int,
    feature_dim: int,
    overrides: dict[str, Any] | None = None,
    labeled_distribution: torch.Tensor | None = None,
) -> Algorithm:
    """Instantiate a registered algorithm, applying ``overrides`` (typed like the defaults) to its Config.

    ``labeled_distribution``: the class distribution of the split's given labels (uniform if None).
    """
    cls = algorithm_class(name)
    config = dataclasses.replace(cls.Config(), **(overrides or {}))
    return cls(num_classes=num_classes, feature_dim=feature_dim, config=config, labeled_distribution=labeled_distribution)
