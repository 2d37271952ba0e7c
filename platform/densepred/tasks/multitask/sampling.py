"""Mixed-dataset batches: each step draws one batch from one member's own loader.

Every worker follows the same member schedule (drawn from the run seed and the epoch, not the
rank), so all workers run the same head and loss at each step, as DDP needs; each member's loader
splits its own dataset over the workers.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

import numpy as np

from ...batching import TrainBatches

POLICIES = ("proportional", "ratio", "round_robin")


def member_schedule(lengths: Mapping[str, int], policy: str, ratios: Optional[Mapping[str, float]],
                    seed: int, epoch: int) -> list[str]:
    """The member of every step of one epoch. An epoch has as many steps as all members' loaders
    together. ``proportional``: shuffled so each member appears once per its batch (each dataset
    is seen once per epoch); ``ratio``: drawn at random with the given relative frequencies;
    ``round_robin``: members in turn."""
    names = list(lengths)
    steps = sum(int(lengths[n]) for n in names)
    if policy == "round_robin":
        return [names[i % len(names)] for i in range(steps)]
    rng = np.random.default_rng([int(seed), int(epoch), 7919])
    if policy == "proportional":
        order = [n for n in names for _ in range(int(lengths[n]))]
        return [order[i] for i in rng.permutation(len(order))]
    p = np.array([float((ratios or {}).get(n, 0.0)) for n in names])
    p = p / p.sum()
    return [names[i] for i in rng.choice(len(names), size=steps, p=p)]


class MixedBatches(TrainBatches):
    """Interleaves the members' batch sources; every batch gets ``member`` (the member's name)."""

    def __init__(self, sources: Mapping[str, TrainBatches], policy: str = "proportional",
                 ratios: Optional[Mapping[str, float]] = None, seed: int = 0,
                 max_batches: Optional[Mapping[str, int]] = None):
        self.sources = dict(sources)
        self.policy, self.ratios, self.seed = policy, dict(ratios or {}), int(seed)
        # the most batches a member adds to an epoch's length: exactly its share under
        # proportional sampling (its loader reshuffles every epoch, so a capped member sees another
        # part of its data each epoch); ratio and round_robin draw without regard to lengths
        self.max_batches = dict(max_batches or {})
        self.epoch = 0
        self.num_samples = sum(s.num_samples for s in self.sources.values())
        self.batch_size = max(s.batch_size for s in self.sources.values())
        self.datasets = [getattr(s, "dataset", None) for s in self.sources.values()]
        self._iters: dict[str, Iterator[dict]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for s in self.sources.values():
            s.set_epoch(epoch)
        self._iters = {}

    def _lengths(self) -> dict[str, int]:
        return {n: min(len(s), self.max_batches.get(n, len(s))) for n, s in self.sources.items()}

    def schedule(self) -> list[str]:
        return member_schedule(self._lengths(), self.policy, self.ratios, self.seed, self.epoch)

    def _next(self, name: str) -> dict:
        """The member's next batch; a member that runs out (ratio draws) starts another pass."""
        for _ in range(2):
            if name not in self._iters:
                self._iters[name] = iter(self.sources[name])
            try:
                return next(self._iters[name])
            except StopIteration:
                del self._iters[name]
        raise RuntimeError(f"the training loader of member '{name}' yields no batch")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._iters = {}
        for name in self.schedule():
            batch = dict(self._next(name))
            batch["member"] = name
            yield batch

    def __len__(self) -> int:
        return sum(self._lengths().values())

    def describe(self) -> str:
        parts = ", ".join(f"{n}: {s.num_samples} samples in batches of {s.batch_size}"
                          + (f", at most {self.max_batches[n]} batches an epoch" if n in self.max_batches else "")
                          for n, s in self.sources.items())
        return f"mixed {self.policy} sampling ({parts})"
