"""Data-parallel training when the process was started by ``torchrun``: the process group, each
rank's device and share of the batch, and keeping the ranks' copies of the network identical.

The engine is PyTorch's own: ``torchrun`` starts and restarts the processes and sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address; ``torch.distributed`` joins
them (gloo on the CPU, nccl on CUDA GPUs); ``DistributedDataParallel`` averages the gradients.
This module only reads that environment and says what each rank does. Why not skorch's
``AccelerateMixin``: it hands the training step, the device placement and mixed precision to
Hugging Face ``accelerate``, which would replace this engine's own autocast, GradScaler and
checkpoint (whose RNG and sampler state accelerate does not know), for no gain on one node.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
from skorch.callbacks import Callback

__all__ = ["Distributed", "ScoresAgree", "average", "broadcast_buffers", "check_batch_size",
           "gather_objects", "is_main_process", "join_process_group", "launched_rank",
           "launched_world_size", "rank_device", "wrap"]


@dataclass(frozen=True)
class Distributed:
    """One rank of a data-parallel run: ``world_size`` processes, this one numbered ``rank``."""

    world_size: int
    rank: int


def launched_world_size() -> int:
    """How many processes ``torchrun`` started for this run (1 when not started by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def launched_rank() -> int:
    """This process's rank as ``torchrun`` numbered it (0 when not started by it); readable
    before the process group exists, e.g. to let one rank alone print or write."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    try:
        return int(os.environ.get("RANK", "0")) if launched_world_size() > 1 else 0
    except ValueError:
        return 0


def is_main_process() -> bool:
    """True unless this is a rank other than 0 of a data-parallel run: the one process that
    writes checkpoints and model files."""
    return launched_rank() == 0


def _leave_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_device(device: str) -> str:
    """Each rank of a run on CUDA GPUs takes the GPU of its ``LOCAL_RANK``, unless ``device``
    names one."""
    if not device.startswith("cuda") or ":" in device:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return f"cuda:{local_rank}"


def join_process_group(device: str) -> Distributed | None:
    """The run this process is a rank of, joining torch's process group on first use; None when
    the process was not started by ``torchrun`` with more than one process."""
    if launched_world_size() <= 1 or not torch.distributed.is_available():
        return None
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        torch.distributed.init_process_group(backend)
        # Without it torch warns at exit that the group was not destroyed.
        atexit.register(_leave_process_group)
    return Distributed(world_size=torch.distributed.get_world_size(),
                       rank=torch.distributed.get_rank())


def check_batch_size(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global ``batch_size``."""
    if batch_size % world_size or batch_size // world_size < 2:
        raise ValueError(
            f"batch_size={batch_size} is the global batch, split evenly over the "
            f"{world_size} processes of this torchrun run, each needing at least 2 images "
            f"(batch norm): use a multiple of {world_size} of at least {2 * world_size}"
        )
    return batch_size // world_size


def wrap(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """``module`` in DistributedDataParallel, which averages its gradients over the ranks in
    the backward pass and starts every rank from rank 0's weights."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=device_ids)


def average(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the ranks (each rank's training loss of a batch)."""
    total = value.detach().clone()
    torch.distributed.all_reduce(total)
    return total / torch.distributed.get_world_size()


def gather_objects(value, world_size: int) -> list:
    """``value`` of every rank, in rank order, on every rank (``[value]`` in one process)."""
    if world_size == 1:
        return [value]
    values = [None] * world_size
    torch.distributed.all_gather_object(values, value)
    return values


def broadcast_buffers(*modules: torch.nn.Module | None) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank.

    Gradients keep the weights identical, but each rank's batch-norm statistics follow its own
    images; validating, early stopping and the fitted model must see one network.
    """
    for module in modules:
        if module is None:
            continue
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


class ScoresAgree(Callback):
    """Rank 0's validation scores of each epoch in every rank's history, so that early stopping
    stops all ranks at the same epoch and keeps the same one as best.

    The ranks validate the same network on the same images, so their scores agree already up
    to the order of floating-point sums; this makes it exact. It sits after the scorers and
    before early stopping.
    """

    def __init__(self, keys=("valid_loss", "valid_bacc")):
        self.keys = keys

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        present = [key for key in self.keys if row.get(key) is not None]
        if not present:
            return
        values = torch.tensor([float(row[key]) for key in present], dtype=torch.float64,
                              device=net.device)
        torch.distributed.broadcast(values, src=0)
        for key, value in zip(present, values.tolist(), strict=True):
            net.history.record(key, value)
