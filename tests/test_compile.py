"""The training step compiles whole for every method, and compiled runs compute what eager runs compute.

``fullgraph=True`` fails on any graph break, which is where a host
synchronisation (``.item()``, ``.any()``, ``nonzero``, boolean-mask indexing, a
Python branch on a tensor) or a data-dependent shape would sit: this is the
CPU-side proof that the step has none.  The graph check traces with
``aot_eager`` (Dynamo and AOTAutograd, forward and backward, no code
generation) to stay cheap; the equality tests run Inductor.
"""

import json

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from hdl.cli import main
from hdl.ssl import REGISTRY
from hdl.training.compiling import compile_step
from hdl.training.synthetic import random_dataset, random_trainer
from training_fixtures import train_interrupted_at

TINY = ["batch_size=2", "uratio=1"]  # the smallest batch every method runs on
STEPS = 20
# Inductor fuses and reorders float arithmetic; over 20 steps the losses of a
# compiled and an eager run from one seed stay this close (measured: see the test).
LOSS_RTOL = 1e-3


def tiny_trainer(method: str, compile_setting: str, image_size: int = 16):
    torch.manual_seed(0)
    dataset = random_dataset((image_size, image_size, 1), num_classes=4, size=64, test_size=8)
    return random_trainer(method, "wrn-10-1", dataset, torch.device("cpu"), [*TINY, f"compile={compile_setting}"], num_labeled=16)


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_the_methods_loss_and_the_model_compile_without_a_graph_break(method):
    torch._dynamo.reset()
    trainer = tiny_trainer(method, "off")
    whole = torch.compile(trainer.uncompiled_method_loss, backend="aot_eager", fullgraph=True)
    loss, logs = whole(trainer.next_batch(), trainer.clock)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(torch.as_tensor(value)) for value in logs.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())


def losses_over_steps(trainer, steps: int) -> torch.Tensor:
    return torch.stack([trainer.train_step()[0] for _ in range(steps)])


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_compiled_and_eager_runs_give_the_same_losses(method):
    torch._dynamo.reset()
    eager = losses_over_steps(tiny_trainer(method, "off"), STEPS)
    compiled_trainer = tiny_trainer(method, "default")
    compiled = losses_over_steps(compiled_trainer, STEPS)
    assert compiled_trainer.method_loss.failure is None  # compiled indeed, not fallen back to eager
    torch.testing.assert_close(compiled, eager, rtol=LOSS_RTOL, atol=1e-5)
    assert not any(key.startswith("_orig_mod.") for key in compiled_trainer.state_dict()["model"])


@pytest.mark.slow
def test_a_compiled_runs_checkpoint_resumes_exactly_and_loads_in_an_eager_run(tmp_path, monkeypatch):
    arguments = [
        "train", "--dataset", "digits", "--labels", "20", "--seed", "1", "--method", "fixmatch", "--arch", "wrn-10-1",
        "--steps", "20", "--threads", "1", "--no-progress", "--set", "batch_size=4", "--set", "uratio=1",
        "--set", "eval_every=5", "--set", "save_every=10",
    ]
    compiled = [*arguments, "--set", "compile=default"]
    torch._dynamo.reset()
    assert main([*compiled, "--out", str(tmp_path / "uninterrupted")]) == 0
    train_interrupted_at(monkeypatch, 13, [*compiled, "--out", str(tmp_path / "interrupted")])
    checkpoint = torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 10 and checkpoint["config"]["train"]["compile"] == "default"
    assert not [key for part in ("model", "ema_model") for key in checkpoint[part] if "_orig_mod" in key]
    (tmp_path / "eager").mkdir()
    (tmp_path / "eager" / "checkpoint.pt").write_bytes((tmp_path / "interrupted" / "checkpoint.pt").read_bytes())

    assert main([*compiled, "--out", str(tmp_path / "interrupted")]) == 0
    assert main([*arguments, "--set", "compile=off", "--out", str(tmp_path / "eager")]) == 0
    resumed, uninterrupted, eager = (
        json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("interrupted", "uninterrupted", "eager")
    )
    assert resumed["history"] == uninterrupted["history"] and resumed["per_class"] == uninterrupted["per_class"]
    assert [row["step"] for row in eager["history"]] == [5, 10, 15, 20]
    for eager_row, compiled_row in zip(eager["history"], uninterrupted["history"]):
        assert eager_row["loss"] == pytest.approx(compiled_row["loss"], rel=LOSS_RTOL)


class CompilerFailure(RuntimeError):
    pass


def inductor_failing_on(graphs: str, after: int = 0):
    """A stand-in for Inductor's compile_fx that compiles nothing and raises on the ``graphs`` ("forward" or
    "backward") it is handed after its first ``after`` calls; up to then its graphs run as traced."""
    calls = []

    def compile_graph(kind: str):
        def compile(graph, example_inputs):
            calls.append(kind)
            if kind == graphs and calls.count(kind) > after:
                raise CompilerFailure(f"no {kind} kernels today")
            return make_boxed_func(graph.forward)

        return compile

    def compile_fx(graph, example_inputs, **_):
        return aot_autograd(fw_compiler=compile_graph("forward"), bw_compiler=compile_graph("backward"))(graph, example_inputs)

    return compile_fx


@pytest.mark.parametrize("graphs, method", [("forward", "fixmatch"), ("backward", "supervised")])
def test_a_step_that_fails_to_compile_runs_eagerly_with_an_eager_runs_numbers_and_says_why_once(graphs, method, monkeypatch, capsys):
    monkeypatch.setattr("torch._inductor.compile_fx.compile_fx", inductor_failing_on(graphs))
    torch._dynamo.reset()
    eager = tiny_trainer(method, "off")
    eager_losses = losses_over_steps(eager, 3)
    falling_back = tiny_trainer(method, "default")
    losses = losses_over_steps(falling_back, 3)

    assert torch.equal(losses, eager_losses)
    assert all(torch.equal(a, b) for a, b in zip(falling_back.state_dict()["model"].values(), eager.state_dict()["model"].values()))
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if "goes on eagerly" in line] == [falling_back.method_loss.failure] == [
        f"compile=default (default on cpu) failed, so this run goes on eagerly: CompilerFailure: no {graphs} kernels today"
    ]


def test_a_recompile_that_fails_falls_back_from_that_call_on(monkeypatch, capsys):
    monkeypatch.setattr("torch._inductor.compile_fx.compile_fx", inductor_failing_on("forward", after=1))
    torch._dynamo.reset()
    step = compile_step(lambda x: (x * 2).sum(), "default", torch.device("cpu"))
    assert step(torch.ones(3)) == 6 and step.failure is None and capsys.readouterr().err == ""
    assert step(torch.ones(4)) == 8  # a new shape: a recompile, which fails
    assert step(torch.ones(5)) == 10
    assert capsys.readouterr().err.splitlines() == [step.failure] and step.failure.endswith("CompilerFailure: no forward kernels today")
