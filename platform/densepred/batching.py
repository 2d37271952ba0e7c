"""Training batch sources: what a worker's epoch loop iterates over.

A task gives the engine a ``TrainBatches`` (``Task.build_train_batches``): one data loader for an
ordinary task, several interleaved loaders for a mixed-dataset multi-task run. The engine only
needs ``set_epoch``, iteration, ``len`` (batches per epoch) and a one-line description.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from .imageio import loader_worker_init


class TrainBatches:
    """Interface of a batch source; every batch is a dict with at least ``image`` (N, 3, H, W)."""

    #: samples in the training set(s), for the start-up line
    num_samples: int = 0
    #: nominal samples per batch on one worker (for the total-batch line and fault fractions)
    batch_size: int = 1

    def set_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.num_samples} training samples"


class LoaderBatches(TrainBatches):
    """One dataset through one DataLoader: shuffled with a seeded generator on one worker, split by
    a ``DistributedSampler`` over several; the dataset's augmentation follows ``set_epoch``."""

    def __init__(self, dataset: Dataset, batch_size: int, workers: int, collate: Callable[[list], Any],
                 seed: int, rank: int = 0, world: int = 1):
        self.dataset, self.seed, self.batch_size = dataset, seed, int(batch_size)
        self.num_samples = len(dataset)
        if world > 1:
            self.sampler: Any = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                   seed=seed, drop_last=True)
        else:
            self.sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        self.loader = DataLoader(dataset, batch_size=self.batch_size, sampler=self.sampler,
                                 drop_last=len(dataset) >= self.batch_size * world, num_workers=workers,
                                 worker_init_fn=loader_worker_init, collate_fn=collate,
                                 persistent_workers=workers > 0)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        else:
            self.sampler.generator.manual_seed(self.seed * 1000 + epoch)
        set_epoch: Optional[Callable[[int], None]] = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.loader)

    def __len__(self) -> int:
        return max(1, len(self.loader))

    def describe(self) -> str:
        return f"{self.num_samples} training samples"
