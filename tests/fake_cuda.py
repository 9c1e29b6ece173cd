"""CUDA tensors on a machine without a GPU: PyTorch's fake tensors, which carry a device, a shape and a dtype but
no values, and raise on an op that mixes devices.

``fake_cuda()`` enters ``FakeTensorMode``, where tensors made with ``device="cuda"`` are fake CUDA tensors, and
adds what the mode lacks for a whole training step:

- A backward pass.  ``Tensor.backward`` needs the autograd engine, which asks the CUDA driver for a context and
  fails without one; so does every route through the engine (``torch.autograd.grad``, ``torch.func.grad``,
  ``make_fx`` of a joint graph).  ``backward_without_the_engine`` walks the same backward graph from Python
  instead, node by node once all of a node's gradients are in: every backward kernel (convolution, batch norm,
  cross-entropy, ...) runs on fake tensors and has its devices checked, and each parameter reached gets its
  gradient, of its shape, on its device.  Invented gradients for every parameter would skip those kernels.
- Ops with no fake kernel, which the mode would otherwise run on a real GPU: ``_pin_memory`` (its copy stays on
  the CPU), ``_sample_dirichlet`` (mixup's Beta draw: a tensor like its input) and ``_fused_sgd_`` (in place).
  Here they get their devices checked like any other op.
- ``copy.deepcopy`` (the EMA model is one).  PyTorch's copies a fake tensor's attributes, its fake mode among them,
  and leaves the heap corrupt (a crash at the next garbage collection); ``deepcopy_fake`` copies what it copies
  of a real tensor: the values (here none), ``requires_grad`` and being a parameter.
- Indexing with an index on another device, which fake tensors allow, as CUDA does: there the index is copied
  over first, and the host waits for the device.

Inside ``DeviceChecks.no_host_syncs()`` (around a training step) it also refuses copies that make the host wait
for a GPU: any copy to the host, and a copy from it unless non-blocking from pinned memory (``torch.tensor(...,
device=...)`` copies from the host, blocking).  Reading a value (``.item()``, ``int()``, a shape that depends on
the data) fails everywhere: fake tensors have no values to read.

Each ends in ``DeviceCheckFailed``, naming the op and the line of ``hdl/`` that ran it.

Private APIs (``torch._subclasses.fake_tensor``, ``torch.utils._python_dispatch``, ``torch.utils._pytree``,
autograd nodes' ``_input_metadata``): only those that torch 2.11 (the GPU machines') and 2.14 (this project's pin)
both have.  A device mix is told by the op's tensors, not by the mode's error, which 2.14 raises as
``FakeTensorDeviceMismatchError`` and 2.11 as a plain ``RuntimeError``.
"""

from __future__ import annotations

import collections
import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten
CUDA = torch.device("cuda")
PACKAGE = Path(__file__).resolve().parents[1] / "hdl"
INDEXING = (aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default)
COPIES = (aten._to_copy.default, aten.copy_.default, aten.copy.default)


class DeviceCheckFailed(AssertionError):
    """An op mixed devices or made the host wait for the device: the op, why, and the line of ``hdl/`` that ran it."""


class DeviceMismatch(RuntimeError):
    """An op whose tensors are on two devices: the op, the first device among them, then another."""

    def __init__(self, func, first: torch.device, other: torch.device):
        super().__init__(f"{func} mixes {first} and {other}")


def mixed_devices(tensors: list[torch.Tensor]) -> list[torch.device]:
    """The devices of ``tensors`` in the order they come, zero-dim CPU tensors aside (a CUDA kernel takes those as
    numbers), or [] where there is only one."""
    devices = list(dict.fromkeys(t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)))
    return devices if len(devices) > 1 else []


class HostSync(RuntimeError):
    """A copy between host and device that makes the host wait."""


class DeviceChecks(TorchDispatchMode):
    """Above ``FakeTensorMode``: stand-ins for the ops it has no kernel for, the checks the module docstring lists,
    and a count of the ops that ran with all their tensors on CUDA (``ops_on_cuda``, by op name)."""

    def __init__(self):
        super().__init__()
        self.ops_on_cuda: collections.Counter = collections.Counter()
        self.pinned = WeakTensorKeyDictionary()  # the tensors _pin_memory returned
        self.refuse_host_syncs = False

    @contextlib.contextmanager
    def no_host_syncs(self) -> Iterator[None]:
        self.refuse_host_syncs = True
        try:
            yield
        finally:
            self.refuse_host_syncs = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [value for value in tree_leaves((args, kwargs)) if isinstance(value, torch.Tensor)]
        if func in INDEXING:
            indexed, *indices = tensors
            for index in indices:
                if index.device != indexed.device:
                    raise DeviceMismatch(func, indexed.device, index.device)
        if tensors and all(tensor.device.type == "cuda" for tensor in tensors):
            self.ops_on_cuda[str(func.overloadpacket)] += 1
        if func is aten._pin_memory.default:
            pinned = torch.empty_like(args[0])
            self.pinned[pinned] = True
            return pinned
        try:
            if func in (aten._sample_dirichlet.default, aten._fused_sgd_.default):
                FakeTensor._find_common_device(func, tensors)
                return torch.empty_like(args[0]) if func is aten._sample_dirichlet.default else None
            result = func(*args, **kwargs)
        except RuntimeError as error:  # the mode's device error, or a fake kernel's own, which may not name the op
            if devices := mixed_devices(tensors):
                raise DeviceMismatch(func, *devices[:2]) from error
            raise
        if self.refuse_host_syncs and func in COPIES:
            self.check_copy(func, args, kwargs, result)
        return result

    def check_copy(self, func, args: tuple, kwargs: dict, result: torch.Tensor) -> None:
        if func is aten._to_copy.default:
            source, target, non_blocking = args[0], result, kwargs.get("non_blocking", False)
        else:  # copy(self, src, non_blocking) and copy_: from src into self
            target, source = args[:2]
            non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
        if source.device == target.device:
            return
        if target.device.type == "cpu":
            raise HostSync(f"{func} copies {source.device} -> cpu, which waits for the device")
        if not (non_blocking and source in self.pinned):
            raise HostSync(f"{func} copies cpu -> {target.device} blocking or from memory that is not pinned, which waits for the device")


def deepcopy_fake(tensor: torch.Tensor, memo: dict) -> torch.Tensor:
    """``copy.deepcopy`` of a fake tensor: a detached copy, with its ``requires_grad``, a parameter if it was one."""
    if id(tensor) not in memo:
        with torch.no_grad():
            copied = tensor.clone()
        copied = torch.nn.Parameter(copied, tensor.requires_grad) if isinstance(tensor, torch.nn.Parameter) else copied
        memo[id(tensor)] = copied.requires_grad_(tensor.requires_grad)
    return memo[id(tensor)]


def backward_without_the_engine(loss: torch.Tensor, *_, **__) -> None:
    """``loss.backward()``, run from Python: each node of ``loss``'s backward graph once all its gradients are in."""
    waiting = collections.Counter()
    found, stack = {loss.grad_fn}, [loss.grad_fn]
    while stack:
        for child, _ in stack.pop().next_functions:
            if child is not None:
                waiting[child] += 1
                if child not in found:
                    found.add(child)
                    stack.append(child)
    gradients = {loss.grad_fn: [torch.ones_like(loss)]}
    ready = [loss.grad_fn]
    with torch.no_grad():
        while ready:
            node = ready.pop()
            inputs = gradients.pop(node)
            if type(node).__name__ == "AccumulateGrad":
                (gradient,) = inputs
                variable = node.variable
                variable.grad = gradient if variable.grad is None else variable.grad + gradient
                continue
            outputs = node(*inputs)
            for (child, slot), gradient in zip(node.next_functions, outputs if isinstance(outputs, tuple) else (outputs,)):
                if child is None:
                    continue
                slots = gradients.setdefault(child, [None] * len(child._input_metadata))
                if gradient is not None:
                    gradient = as_the_engine_passes_it(gradient, child._input_metadata[slot], node)
                    slots[slot] = gradient if slots[slot] is None else slots[slot] + gradient
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)


def as_the_engine_passes_it(gradient: torch.Tensor, metadata, node) -> torch.Tensor:
    """``gradient`` summed to the shape and cast to the dtype its next node expects, as the engine does
    (``validate_outputs``); on another device, an error, as there."""
    if gradient.device != metadata.device and not (gradient.device.type == "cpu" and gradient.dim() == 0):
        raise DeviceMismatch(type(node).__name__, metadata.device, gradient.device)
    if gradient.shape != metadata.shape:
        gradient = gradient.sum_to_size(metadata.shape)
    return gradient.to(metadata.device, metadata.dtype)


def package_line(error: BaseException) -> str:
    """The innermost line of ``hdl/`` in ``error``'s traceback."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename).is_relative_to(PACKAGE)]
    if not frames:
        return "outside hdl/"
    frame = frames[-1]
    return f"{Path(frame.filename).relative_to(PACKAGE.parent)}:{frame.lineno} ({frame.line})"


def failure(error: BaseException) -> str:
    if isinstance(error, (DeviceMismatch, HostSync)):
        return str(error)
    return f"{error.func} reads a value the device computed, which waits for the device"


@contextlib.contextmanager
def fake_cuda() -> Iterator[DeviceChecks]:
    """Fake CUDA for the block (see the module docstring); yields its ``DeviceChecks``.

    Real CPU tensors from outside the block (a CPU checkpoint, say) may come in, as they may on a GPU, and are
    checked like the rest.
    """
    checks = DeviceChecks()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "backward", backward_without_the_engine)
        patch.setattr(FakeTensor, "__deepcopy__", deepcopy_fake, raising=False)
        try:
            with FakeTensorMode(allow_non_fake_inputs=True), checks:
                yield checks
        except (DeviceMismatch, HostSync, DataDependentOutputException, DynamicOutputShapeException) as error:
            raise DeviceCheckFailed(f"{failure(error)} at {package_line(error)}") from error
