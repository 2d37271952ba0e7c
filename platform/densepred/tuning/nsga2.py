"""Optuna's NSGA-II sampler in a form Ray Tune can save: optuna 5.1 keeps a thread lock in the
sampler, and Tune pickles the search algorithm into ``tuner.pkl`` before the first trial ("cannot
pickle '_thread.lock' object"). The lock only guards the sampler within one process, so it is
left out of the pickle and made anew when the sampler is loaded. Imported only for Optuna sweeps."""
from __future__ import annotations

import threading

import optuna


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """``NSGAIISampler`` that pickles without its thread lock."""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()
