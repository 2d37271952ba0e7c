"""Elastic training on a cluster that shrinks and grows: ``ray.workers: [1, 2]`` starts with the two
workers that fit, continues on one when a node is lost (without waiting for a replacement), grows
back to two when nodes are added, keeps the total batch (accumulation steps recomputed) and trains
every epoch once.

Slow, like tests/test_node_loss.py (whose child-process pattern it follows): a
``ray.cluster_utils.Cluster`` of a 0-CPU head and 1-CPU worker nodes lives in a child process with
its own Ray temp folder, so no other Ray instance on the machine is touched.
"""
from __future__ import annotations

import json

import pytest

from cluster_child import run_cluster_child
from conftest import REPO
from test_node_loss import TINY

pytestmark = pytest.mark.slow

TASK = REPO / "tasks" / "pose_demo.yaml"
EPOCHS = 40  # long enough (about 1 s an epoch) for the nodes to be added and the group to grow
HARD_TIMEOUT_S = 900

# The child script (after cluster_child.PREAMBLE).
CHILD = r'''
import ray
from ray.cluster_utils import Cluster

from densepred import load_config
from densepred.engine.launch import train
from densepred.engine.run_state import read_latest

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
try:
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]   # 2 of the 3 nodes the run may use
    cluster.wait_for_nodes()
    note("cluster_up", f"cluster at {cluster.address}: head + 2 worker nodes of 1 CPU")
    cfg = load_config(params["task"], params["overrides"])

    def run():
        try:
            box["summary"] = train(cfg, address=cluster.address)
        except BaseException as e:
            box["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()

    threading.Thread(target=run, name="train", daemon=True).start()
    wait_for(lambda: (read_latest(run_dir) or {}).get("epoch") == 1, 300, "the epoch-1 checkpoint")
    wait_for(lambda: "epoch 2/" in log_text(), 120, "epoch 2 to start")
    note("remove", "removing a worker node in epoch 2")
    cluster.remove_node(nodes[1], allow_graceful=False)
    wait_for(lambda: "resized: 2 -> 1 worker(s)" in log_text(), params["timeout"], "the shrink to 1 worker")
    note("shrunk", "training continues on 1 worker")
    wait_for(lambda: log_text().count("[resume] continuing after epoch") >= 1
             and "1 of up to 2 worker(s)" in log_text(), params["timeout"], "training on 1 worker")
    note("training_on_one", "1 worker trains with 2 accumulation steps")
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    note("added", "two nodes added")
    wait_for(lambda: "resized: 1 -> 2 worker(s)" in log_text(), params["timeout"], "the growth back to 2 workers")
    note("grown", "grown back to 2 workers")
    while "summary" not in box and "error" not in box:
        time.sleep(0.2)
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
    sys.stdout.flush()
    os._exit(1 if out.get("error") or out["train_error"] else 0)
'''


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory):
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = tmp_path_factory.mktemp("elastic_demo") / "coco"
    make_pose_demo(root, num_train_images=20, num_val_images=3, seed=5, progress=False)
    return root


def test_an_elastic_run_shrinks_on_node_loss_and_grows_back_keeping_the_total_batch(pose_data, tmp_path):
    run_dir = tmp_path / "work" / "elastic"
    params = {"task": str(TASK), "run_dir": str(run_dir), "tag": "elastic", "timeout": 240,
              "overrides": [f"data_root={pose_data}", f"work_dir={tmp_path / 'work'}", *TINY,
                            f"train.epochs={EPOCHS}", "run_name=elastic", "ray.workers=[1, 2]",
                            "ray.resize_interval_s=3", "ray.max_failures=3"]}
    res = run_cluster_child(tmp_path, CHILD, params, HARD_TIMEOUT_S)
    observed, tail = res["observed"], res["tail"]
    assert not res["hung"] and not res["left"], (res["left"], tail)
    assert observed is not None and res["returncode"] == 0 and not observed.get("error") \
        and not observed["train_error"], f"child failed ({res['returncode']}): {observed}\n{tail}"
    ev = observed["events"]
    print(f"\n[elastic] node removed -> 1 worker training again: {ev['training_on_one'] - ev['remove']:.1f}s; "
          f"nodes added -> 2 workers: {ev['grown'] - ev['added']:.1f}s")

    # Every epoch once and in order, whatever the worker count was.
    lines = [json.loads(line) for line in open(run_dir / "logs" / "metrics.jsonl")]
    assert [m["epoch"] for m in lines] == list(range(1, EPOCHS + 1)), [m["epoch"] for m in lines]
    from densepred.checkpoint import read_checkpoint

    for folder in sorted((run_dir / "checkpoints").iterdir()):
        meta = read_checkpoint(folder / "model.pth")["meta"]
        assert meta["total_batch"] == 2, meta  # 1 worker x 2 accumulation steps = 2 workers x 1
    log = (run_dir / "logs" / "train.log").read_text()
    assert "1 of up to 2 worker(s): 2 accumulation step(s) keep the total batch 2" in log
    assert observed["summary"]["metrics"]["epoch"] == EPOCHS
