"""Training on several processes: PyTorch's DistributedDataParallel, started by torchrun.

    finebert train DATA --output DIR --nproc 2                      # N local processes (torchrun underneath)
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-endpoint HOST:29500 -m finebert train DATA --output DIR

Every process reads and tokenizes the data, draws the same batches and trains on its share of each;
DDP averages the gradients (gloo on CPUs, nccl on GPUs), so all processes hold the same weights.
Validation, checkpoints, the progress bar and the saved model are the lead process's (rank 0);
decisions that end a run (the time budget, Ctrl-C) are shared so that no process waits forever.
"""

from __future__ import annotations

import os


def setup() -> tuple[int, int]:
    """(rank, world size): (0, 1) for a plain run; under torchrun, joins the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model, device):
    """DistributedDataParallel around the bare model (whose parameters the optimizer already holds)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def any_of(world: int, *flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true on any process (one small all-reduce)."""
    if world == 1:
        return tuple(bool(f) for f in flags)
    import torch
    import torch.distributed as dist

    values = torch.tensor([float(f) for f in flags])
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())


def finish() -> None:
    """Waits for every process, then leaves the process group (nothing to do for a plain run)."""
    import sys

    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Runs `finebert <argv>` as `nproc` local processes under torchrun; returns the exit code."""
    from torch.distributed.run import main as torchrun

    from finebert.engines import usable_cores

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))  # the cores shared out, not oversubscribed
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "-m", "finebert", *argv])
    except SystemExit as e:
        return int(e.code or 0)
    except Exception:  # torchrun's ChildFailedError: the workers' own errors went to stderr already
        return 1
    return 0
