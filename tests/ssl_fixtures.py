"""Small stand-ins shared by the algorithm tests: a tiny model, views and a random batch."""

from __future__ import annotations

import torch
from torch import nn

from hdl.ssl import Batch, StepContext, build_algorithm

NUM_CLASSES = 3
IMAGE_SIZE = 8
CHANNELS = 1


class TinyNet(nn.Module):
    """conv -> BatchNorm -> ReLU -> pool -> linear, returning (logits, features) like hdl.nets."""

    feature_dim = 6

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(CHANNELS, self.feature_dim, 3, padding=1),
            nn.BatchNorm2d(self.feature_dim),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(self.feature_dim, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(features), features


class PixelNet(nn.Module):
    """Features linear in the pixels, then a linear classifier: predictions that vary from image to image.

    Without BatchNorm a sample's output never depends on the rest of its
    batch, so a reference test can recompute a loss with its own forward
    passes, grouped however it likes.
    """

    feature_dim = 6

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(CHANNELS * IMAGE_SIZE**2, self.feature_dim), nn.Tanh())
        self.classifier = nn.Linear(self.feature_dim, NUM_CLASSES)
        with torch.no_grad():
            self.classifier.weight.mul_(4.0)  # top probabilities from about 0.4 to 1 on random images

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(features), features


def gradients(loss: torch.Tensor, parameters: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d parameters, leaving ``.grad`` alone; a reference test compares these to see which targets are held constant."""
    return list(torch.autograd.grad(loss, parameters, allow_unused=True, materialize_grads=True))


def papers_mixup(inputs: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MixMatch's mixup as its paper writes it (arXiv 1905.02249, eqs. 8-11), for the reference tests.

    W = Shuffle(Concat(X_hat, U_hat)); X'_i = MixUp(X_hat_i, W_i); U'_i = MixUp(U_hat_i, W_{i + |X_hat|}), with
    lambda' = max(lambda, 1 - lambda), lambda ~ Beta(alpha, alpha): one lambda for the batch, as USB draws it.
    Draws lambda, then the shuffle, from torch's global RNG.
    """
    lam = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample()
    lam = torch.maximum(lam, 1 - lam)
    shuffle = torch.randperm(len(inputs))
    return lam * inputs + (1 - lam) * inputs[shuffle], lam * targets + (1 - lam) * targets[shuffle], lam


class StandInViews:
    """Normalise to [-1, 1]; weak adds a random horizontal flip, strong also noise.

    Both draw from torch's global RNG: reseeding it and calling them in the
    same order gives the same views again.
    """

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 127.5 - 1.0

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        flip = torch.rand(x.shape[0]) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        x = self.weak(images)
        return x + 0.3 * torch.randn_like(x)


def random_batch(num_labeled: int, uratio: int) -> Batch:
    num_unlabeled = num_labeled * uratio
    return Batch(
        labeled_images=torch.randint(0, 256, (num_labeled, CHANNELS, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8),
        labeled_targets=torch.arange(num_labeled) % NUM_CLASSES,
        labeled_weights=torch.ones(num_labeled),
        unlabeled_images=torch.randint(0, 256, (num_unlabeled, CHANNELS, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8),
        unlabeled_truth=torch.randint(0, NUM_CLASSES, (num_unlabeled,)),
    )


def train_a_few_steps(method: str, steps: int = 3, num_labeled: int = 8, **overrides):
    """Run ``steps`` SGD steps (past any ramp-up) of ``method`` on random images; return the algorithm and the last loss and logs."""
    torch.manual_seed(0)
    model = TinyNet()
    algorithm = build_algorithm(method, NUM_CLASSES, TinyNet.feature_dim, overrides)
    optimizer = torch.optim.SGD([*model.parameters(), *algorithm.parameters()], lr=0.03)
    views = StandInViews()
    for step in range(steps):
        batch = random_batch(num_labeled, algorithm.default_uratio)
        optimizer.zero_grad()
        loss, logs = algorithm.training_step(model, batch, StepContext(step=steps + step, total_steps=steps, views=views))
        assert torch.isfinite(loss), logs
        loss.backward()
        gradient = sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None)
        assert gradient > 0
        optimizer.step()
    return model, algorithm, loss, logs
