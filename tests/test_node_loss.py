"""Losing a whole node of a Ray cluster in the middle of an epoch: Ray Train starts a new worker
group on the nodes that are left plus a replacement node, and the run finishes from the newest
complete checkpoint with no epoch lost or repeated.

Slow: about 1.5 minutes on 2 quiet cores (3.5 with another Ray test running beside it). The
cluster (``ray.cluster_utils.Cluster``: a head node for the driver and the Train controller, and one
1-CPU node per Ray Train worker) and the training run live in a child process with its own Ray
temp folder, so the test session's shared Ray instance (fixture ``ray_local``) and any other Ray
instance on the machine are left alone. The child shuts its cluster down whatever happens, and a
hard timeout ends it (and everything it started) if it hangs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cluster_child import run_cluster_child
from conftest import REPO

pytestmark = pytest.mark.slow

TASK = REPO / "tasks" / "pose_demo.yaml"
# The tiny pose model of tests/test_faults.py, one image per batch so that an epoch has enough
# iterations (~20 per worker) for the node to be removed while the epoch is still running.
TINY = ["bbox_file=null", "data.input_size=[48, 64]", "data.heatmap_size=[12, 16]", "data.batch_size=1",
        "data.val_batch_size=16", "data.loader_workers=0", "evaluation.interval=1", "evaluation.flip_test=false",
        "train.log_interval=1", "ray.cpus_per_worker=1", "train.channels_last=false",
        "model.backbone.width=8"]
EPOCHS = 3
HARD_TIMEOUT_S = 600  # the whole child process: cluster start, training, recovery, shutdown

# The child script (after cluster_child.PREAMBLE). It prints and records (out) what it did and when.
CHILD = r'''
import ray
import ray.util
from ray.cluster_utils import Cluster

from densepred import load_config
from densepred.engine.launch import train
from densepred.engine.run_state import read_latest

# Head node: no CPUs, so it only hosts the driver and the Train controller (pinned to the
# driver's node); each worker node has 1 CPU, so the 2 workers land on 2 different nodes.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
try:
    nodes = {n.node_id: n for n in (cluster.add_node(num_cpus=1) for _ in range(2))}
    cluster.wait_for_nodes()
    note("cluster_up", f"cluster at {cluster.address}: head node + {len(nodes)} worker nodes of 1 CPU")
    cfg = load_config(params["task"], params["overrides"])

    def run():
        try:
            box["summary"] = train(cfg, workers=2, address=cluster.address)
        except BaseException as e:
            box["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()

    trainer = threading.Thread(target=run, name="train", daemon=True)
    trainer.start()

    # Which node hosts which rank: the worker group's placement group has one bundle per worker,
    # and Ray Train ranks the workers in bundle order (grouped by node). Lose rank 0's node: the
    # worker that writes the checkpoints and the log.
    wait_for(lambda: any(l.split(" ", 2)[-1].startswith("epoch 1/") for l in log_lines()), 300,
             "epoch 1 to start")
    groups = [pg for pg in ray.util.placement_group_table().values()
              if pg["state"] == "CREATED" and len(pg["bundles"]) == 2]
    assert len(groups) == 1, groups
    hosts = [groups[0]["bundles_to_node_id"][i] for i in range(2)]
    assert len(set(hosts)) == 2 and set(hosts) <= set(nodes), (hosts, list(nodes))
    out["rank_nodes"] = hosts
    victim = nodes[hosts[0]]

    wait_for(lambda: (read_latest(run_dir) or {}).get("epoch") == 1, 300, "the epoch-1 checkpoint")
    wait_for(lambda: any(l.split(" ", 2)[-1].startswith("epoch 2/") for l in log_lines()), 120,
             "epoch 2 to start")
    out["latest_before_removal"] = (read_latest(run_dir) or {}).get("epoch")
    note("remove", f"removing node {victim.node_id[:12]} (rank 0) in epoch 2")
    cluster.remove_node(victim, allow_graceful=False)  # abrupt loss: its raylet and workers are killed
    out["latest_at_removal"] = (read_latest(run_dir) or {}).get("epoch")
    out["log_lines_at_removal"] = len(log_lines())
    out["removed_node"] = victim.node_id
    note("removed", f"node removed; newest complete checkpoint: epoch {out['latest_at_removal']}")
    cluster.add_node(num_cpus=1)  # the replacement an autoscaler would bring
    note("replacement", "replacement node added")

    def recovered():
        text = [l.split(" ", 2)[-1] for l in log_lines()[out["log_lines_at_removal"]:]]
        first = lambda pred, start=0: next((i for i in range(start, len(text)) if pred(text[i])), None)
        restart = first(lambda t: "Ray started a new worker group" in t)
        resume = first(lambda t: t.startswith("[resume] continuing after epoch"))
        training = None if resume is None else first(lambda t: t.startswith("epoch ") and "[" in t, resume)
        for event, line in (("restart", restart), ("resume", resume), ("training", training)):
            if line is not None and event not in out["events"]:
                note(event, f"train.log: {text[line]}")
        return "training" in out["events"]

    wait_for(recovered, params["recovery_timeout"], "training to resume")
    out["recovery_s"] = out["events"]["training"] - out["events"]["remove"]
    note("recovered", f"training resumed {out['recovery_s']:.1f}s after the node was removed")
    trainer.join(params["finish_timeout"])
    if trainer.is_alive():
        box["error"] = f"training did not finish within {params['finish_timeout']}s after resuming"
except BaseException as e:
    out["error"] = f"{type(e).__name__}: {e}"
    traceback.print_exc()
finally:
    out["train_error"] = box.get("error")
    out["summary"] = box.get("summary")
    Path(params["out"]).write_text(json.dumps(out, indent=1, default=str))
    try:
        ray.shutdown()
    finally:
        cluster.shutdown()
    print("[node-loss] cluster shut down", flush=True)
    sys.stdout.flush()
    os._exit(1 if out.get("error") or out["train_error"] else 0)
'''


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory):
    """A small COCO-format set with enough people for ~20 one-image iterations per worker and epoch."""
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = tmp_path_factory.mktemp("node_loss_demo") / "coco"
    make_pose_demo(root, num_train_images=20, num_val_images=3, seed=5, progress=False)
    return root


def test_a_lost_node_is_replaced_and_the_run_finishes_from_the_newest_checkpoint(pose_data, tmp_path):
    run_dir = tmp_path / "work" / "nodeloss"
    params = {"task": str(TASK), "run_dir": str(run_dir), "tag": "node-loss",
              "overrides": [f"data_root={pose_data}", f"work_dir={tmp_path / 'work'}", *TINY,
                            f"train.epochs={EPOCHS}", "run_name=nodeloss", "ray.max_failures=2"],
              "recovery_timeout": 240, "finish_timeout": 240}
    res = run_cluster_child(tmp_path, CHILD, params, HARD_TIMEOUT_S)
    observed, tail, elapsed = res["observed"], res["tail"], res["elapsed"]
    assert not res["hung"], f"the child process hung and was killed after {HARD_TIMEOUT_S}s:\n{tail}"
    assert not res["left"], f"processes of the child's Ray cluster outlived it: {res['left']}"
    assert observed is not None, f"the child failed ({res['returncode']}):\n{tail}"
    assert res["returncode"] == 0 and not observed.get("error") and not observed["train_error"], (
        f"child failed ({res['returncode']}): {observed.get('error') or observed['train_error']}\n{tail}")

    ev = observed["events"]
    print(f"\n[node-loss] whole test {elapsed:.0f}s; after removing the node of rank 0: "
          f"new worker group {ev['restart'] - ev['remove']:.1f}s, resumed from the checkpoint "
          f"{ev['resume'] - ev['remove']:.1f}s, training again {observed['recovery_s']:.1f}s "
          f"(replacement node up after {ev['replacement'] - ev['remove']:.1f}s)")

    # The node went while epoch 2 was running: the newest complete checkpoint was epoch 1's.
    assert observed["latest_before_removal"] == observed["latest_at_removal"] == 1, observed
    log = (run_dir / "logs" / "train.log").read_text()
    after = "\n".join(log.splitlines()[observed["log_lines_at_removal"]:])
    assert "a worker failed: Ray started a new worker group (attempt 2 of at most 3)" in after
    resumed = re.findall(r"\[resume\] continuing after epoch (\d+) from (\S+) \(([^)]*)\)", log)
    assert len(resumed) == 1, log
    assert int(resumed[0][0]) == observed["latest_at_removal"]
    assert Path(resumed[0][1]) == run_dir / "checkpoints" / "epoch_0001" / "model.pth"
    # The new workers redo epoch 2 from epoch 1's state: its first batch gives the same loss as before.
    first_batch = re.findall(r"epoch 2/\d+ \[[#.]+\] 1/\d+ loss (\S+)", log)
    assert len(first_batch) == 2 and first_batch[0] == first_batch[1], first_batch

    # Every epoch once and in order; no optimizer step lost or repeated across the restart.
    lines = [json.loads(line) for line in open(run_dir / "logs" / "metrics.jsonl")]
    assert [m["epoch"] for m in lines] == list(range(1, EPOCHS + 1))
    steps_per_epoch = lines[0]["step"]
    assert [m["step"] for m in lines] == [steps_per_epoch * e for e in range(1, EPOCHS + 1)]
    summary = observed["summary"]
    assert summary["metrics"]["epoch"] == EPOCHS
    fp = lines[-1]["weight_fingerprints"]
    assert len(fp) == 2 and fp[0] == pytest.approx(fp[1], rel=1e-12, abs=0)  # the replicas agree

    # The checkpoints folder: the newest 2 epochs, each complete (checksum verified on load) and
    # holding the epoch and step it is named after; latest.json points at the last one; nothing
    # half-written or unaccounted for is left.
    from densepred.checkpoint import read_checkpoint
    from densepred.engine.run_state import read_latest

    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["epoch_0002", "epoch_0003"]
    for name in ckpts:
        epoch = int(name.split("_")[1])
        meta = read_checkpoint(run_dir / "checkpoints" / name / "model.pth")["meta"]
        assert (meta["epoch"] + 1, meta["global_step"], meta["world_size"]) == (epoch, steps_per_epoch * epoch, 2)
    latest = read_latest(run_dir)
    assert (latest["path"], latest["epoch"], latest["global_step"]) == (
        "checkpoints/epoch_0003", EPOCHS, steps_per_epoch * EPOCHS)
    assert summary["last_checkpoint"] == str(run_dir / "checkpoints" / "epoch_0003" / "model.pth")
    if (run_dir / "unregistered.json").exists():
        assert json.loads((run_dir / "unregistered.json").read_text())["dirs"] == []
    assert not list(run_dir.rglob("*.tmp")), list(run_dir.rglob("*.tmp"))
    assert (run_dir / "best.pth").is_file()
