"""One run across processes (torch.distributed): each process's place, its group, the wrapped model.

A run on K processes is the one-process run split K ways: every process draws the same global
batch (same seed, same data order) and trains on its 1/K share; DDP averages the gradients (equal
shares, so the average is the global batch's gradient), FSDP2 (`fully_shard`) does the same while
sharding parameters, gradients and optimizer state. Evaluation splits the held-out windows and
sums across processes. Only the main process (rank 0) writes records, logs and checkpoint metadata.
Backend: NCCL on CUDA, gloo on CPU. Processes come from `distributed.nproc=K` (spawned here), or
from torchrun or srun (their environment says the rank).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.config import DistributedConfig
from harness.errors import HarnessError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    strategy: str = "ddp"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


ALONE = Dist()


def launched() -> tuple[int, int, int] | None:
    """(rank, world, local rank) that torchrun or srun set for this process; None when run alone."""
    e = os.environ
    if "RANK" in e and "WORLD_SIZE" in e:
        return int(e["RANK"]), int(e["WORLD_SIZE"]), int(e.get("LOCAL_RANK", e["RANK"]))
    if "SLURM_PROCID" in e and int(e.get("SLURM_NTASKS", "1")) > 1:
        _slurm_rendezvous()
        return int(e["SLURM_PROCID"]), int(e["SLURM_NTASKS"]), int(e.get("SLURM_LOCALID", "0"))
    return None


def _slurm_rendezvous() -> None:
    """srun sets ranks but no rendezvous: the job's first node and a port from the job id."""
    e = os.environ
    if "MASTER_ADDR" not in e:
        nodes = e.get("SLURM_JOB_NODELIST") or e.get("SLURM_NODELIST") or "127.0.0.1"
        first = nodes.split(",")[0]
        if "[" in first:  # node[01-04] -> node01
            prefix, rest = first.split("[", 1)
            first = prefix + rest.split("-")[0].split(",")[0].rstrip("]")
        e["MASTER_ADDR"] = first
    e.setdefault("MASTER_PORT", str(20000 + int(e.get("SLURM_JOB_ID", "0")) % 20000))


def init(d: DistributedConfig, device: torch.device, rank: int, world: int, local_rank: int) -> Dist:
    """Join the process group (once per process) and return this process's place."""
    if world > 1 and not dist.is_initialized():
        backend = d.backend if d.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend, rank=rank, world_size=world)
    return Dist(rank, world, local_rank, d.strategy)


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(net: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """DDP or FSDP2 around the model (each transformer block its own FSDP unit, then the root)."""
    if not d.on:
        return net
    if d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    blocks = [m for m in net.modules() if type(m).__name__ in ("GPT2Block", "LlamaDecoderLayer")]
    smallest = min(p.numel() for p in net.parameters())
    if not blocks or smallest < d.world:
        raise HarnessError(f"distributed.strategy=fsdp: the model is too small to shard over {d.world} processes "
                           f"(a parameter of {smallest} elements); use distributed.strategy=ddp")
    mesh = init_device_mesh(device.type, (d.world,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(net, mesh=mesh)
    return net


def sum_(values: list[float], d: Dist, device: torch.device) -> list[float]:
    """Elementwise sum over processes (float64 on the wire)."""
    if not d.on:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj, d: Dist):
    """The main process's `obj`, on every process."""
    if not d.on:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
