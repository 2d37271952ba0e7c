"""Training workers choose their compute threads by a short measurement (threadprobe), run with
sleeping OpenMP waits, and report how long each step waited for data."""
from __future__ import annotations

import torch

from densepred import threadprobe
from densepred.engine import launch, loop
from densepred.engine.runlog import RunLog


def test_probe_decides_the_worker_threads_and_says_so(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    log = RunLog(tmp_path)
    try:
        real = threadprobe.choose_threads(rounds=1, max_threads=2, every_round=False)
        assert real[0] in (1, 2) and set(real[1]["probe_ms"]) == {"1", "2"}
        # A busy neighbour: more threads are not faster, so the worker keeps one.
        monkeypatch.setattr(threadprobe, "choose_threads",
                            lambda **kw: (1, {"probe_ms": {"1": 10.0, "2": 11.0}}))
        assert loop.set_compute_threads(2, True, log) == 1 and torch.get_num_threads() == 1
        assert "compute threads per worker: 1 of 2 CPU(s)" in log.path.read_text()
        # train.thread_probe=false keeps ray.cpus_per_worker threads without measuring.
        assert loop.set_compute_threads(2, False, log) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_workers_get_short_openmp_spins_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    env = launch.ray_init_kwargs()["runtime_env"]["env_vars"]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["GOMP_SPINCOUNT"] == launch.GOMP_SPINCOUNT == "10000"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    env = launch.ray_init_kwargs()["runtime_env"]["env_vars"]
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["GOMP_SPINCOUNT"] == "0"


def test_data_wait_is_the_time_spent_waiting_for_batches():
    def slow_loader():
        import time
        for i in range(3):
            time.sleep(0.02)
            yield {"i": i}

    stats = loop._EpochStats(t0=0.0)
    seen = [i for i, _ in loop.timed_batches(slow_loader(), stats)]
    assert seen == [0, 1, 2] and stats.steps == 3
    assert 0.05 <= stats.data_wait_s < 1.0
    stats.add_loss(torch.tensor(2.0), 4)
    stats.add_loss(torch.tensor(1.0), 4)
    assert stats.loss_sum == 12.0 and stats.n_seen == 8
