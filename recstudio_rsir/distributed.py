"""Several processes, one run: ``torchrun --nproc_per_node N run_recstudio.py ...``.

A :class:`Dist` record is what the rest of the plugin knows about the processes: its rank, how
many there are, and the few collective operations the loop needs.  One process is ``SINGLE``,
whose operations return their input, so every code path is the same with and without torchrun.

What each part does with several processes (the contracts the tests check):

* training (:func:`recstudio_rsir.algorithm.training.fit`): every process reads the same shuffled
  global batch and takes its slice (``Dist.shard``); the step runs under
  ``DistributedDataParallel`` (gradients all-reduced and averaged) with the loss scaled so that the
  averaged gradient is the one-process gradient of the whole batch.  The RNG states of rank 0 are
  copied to every rank at the start of each epoch (same shuffle on every rank) and are what the
  resume state holds, so a killed run resumes exactly.
* evaluation: the users' batches are dealt out over the ranks, the metric sums all-reduced.
* generation: the trajectory batches are dealt out over the ranks and gathered in order; all
  randomness is pre-drawn per trajectory, so the rows equal a one-process run's from the same model.
* files: only rank 0 writes (:func:`recstudio_rsir.atomic.set_writer`); the others hold the same
  state in memory and wait at barriers where they read what rank 0 wrote.

``gloo`` serves CPU runs, ``nccl`` CUDA runs (each process on ``cuda:<LOCAL_RANK>``).
"""
import os
from dataclasses import dataclass
from typing import Any, List, Sequence

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def all_sum(self, values: Sequence[float]) -> List[float]:
        """Element-wise sums over the ranks, in float64 (every rank gets the same numbers)."""
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> List[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn):
        """``fn()`` run by rank 0 (e.g. reading a file it just wrote), its result on every rank."""
        return self.broadcast(fn() if self.is_main else None)

    # ------------------------------------------------------------------ data

    def mine(self, index: int) -> bool:
        """Whether item ``index`` of a sequence dealt out round-robin belongs to this rank."""
        return index % self.world == self.rank

    def shard(self, batch: dict) -> dict:
        """This rank's contiguous slice of a collated global batch: every tensor whose first
        dimension is the batch size is split into ``world`` near-equal parts."""
        if not self.active:
            return batch
        sizes = {v.shape[0] for v in batch.values() if torch.is_tensor(v) and v.dim() > 0}
        B = max(sizes) if sizes else 0
        return {k: torch.tensor_split(v, self.world)[self.rank] if torch.is_tensor(v) and v.dim() > 0
                and v.shape[0] == B else v for k, v in batch.items()}


SINGLE = Dist()
_OWN_GROUP = False      # whether setup() joined the process group (then shutdown() leaves it)


def _comm_device():
    backend = torch.distributed.get_backend()
    return torch.device('cuda', torch.cuda.current_device()) if backend == 'nccl' else torch.device('cpu')


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def setup(device: str):
    """(Dist, device) of this process.  Under torchrun the process group is joined once
    (``gloo`` for CPU, ``nccl`` for CUDA) and a CUDA device becomes ``cuda:<LOCAL_RANK>``; files are
    written by rank 0 only."""
    from . import atomic
    if not launched():
        return SINGLE, torch.device(device)
    cuda = str(device).startswith('cuda')
    local = int(os.environ.get('LOCAL_RANK', '0'))
    if cuda:
        torch.cuda.set_device(local)
    global _OWN_GROUP
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='nccl' if cuda else 'gloo')
        _OWN_GROUP = True
    d = Dist(rank=torch.distributed.get_rank(), world=torch.distributed.get_world_size())
    atomic.set_writer(d.is_main)
    return d, torch.device('cuda', local) if cuda else torch.device(device)


def shutdown() -> bool:
    """Leave the process group that :func:`setup` joined, after a barrier; True if it did.

    Call it once at the end of a process that finished its work without an error (the command line does;
    a script that calls ``SelfImprovingTrainer(...).fit()`` under torchrun should too).  A process that
    exits with the group still alive can be aborted while the interpreter shuts down (SIGABRT,
    "terminate called without an active exception": gloo's worker threads outlive Python; seen once
    under load on the 2-core machine, 2026-12-06), which turns a finished run into a failed torchrun
    job.  Not called after an error: another rank may still be inside a collective, and tearing down
    then can hang.  A group the caller created itself is left alone; one process: nothing to do."""
    global _OWN_GROUP
    if not (_OWN_GROUP and torch.distributed.is_initialized()):
        return False
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    _OWN_GROUP = False
    return True
