"""The Task interface: what the engine needs from a task, and nothing about Ray or training loops."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class StepContext:
    """What a task's training loss and backward may need beyond outputs and batch (GradNorm needs
    the model to reach its last shared layer; gradient aggregation needs the step's shape)."""

    model: nn.Module       # the bare model (not the DDP wrapper): same parameters
    epoch: int             # 0-based
    global_step: int       # optimizer steps done so far
    world: int = 1         # training workers
    accumulate: int = 1    # batches per optimizer step (train.accumulate)
    step_end: bool = True  # this batch completes an optimizer step (DDP reduces gradients now)


class Task:
    """A task bundles its datasets, loss, inference and evaluation around a ``DensePredictor``.

    Subclasses register in ``TASKS`` and are built from the ``task`` section of a config, with the
    whole config passed as ``cfg``.
    """

    #: name of the metric used to pick the best checkpoint, and whether larger is better
    primary_metric: str = "score"
    greater_is_better: bool = True
    #: every metric the task's evaluation reports (sweeps may optimise any of them)
    metric_names: tuple[str, ...] = ()
    #: metrics where a smaller value is better (depth RMSE, angular errors); Δm flips their sign
    lower_is_better: frozenset[str] = frozenset()

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg

    def validate(self) -> None:
        """Parse the config sections the task owns; raise ConfigError on mistakes."""

    def higher_is_better(self, metric: str) -> bool:
        """The direction of one of the task's metrics (for Δm, checkpoint-best and sweeps)."""
        if metric in self.lower_is_better:
            return False
        return bool(self.greater_is_better) if metric == self.primary_metric else True

    def build_model(self) -> nn.Module:
        """The model of the config, its heads' data-dependent sizes left ``null`` filled in from
        ``head_defaults`` (e.g. the pose head's keypoints from the data set)."""
        from ..model import build_model

        return build_model(self.cfg, head_defaults=self.head_defaults())

    def weight_transforms(self) -> list:
        """``checkpoint.Transform``s that adapt initial weights (``train.load_from``) to this task's
        heads, e.g. pose head rows by joint name."""
        return []

    def load_initial_weights(self, model: nn.Module, path: str) -> Any:
        """Load ``train.load_from`` into ``model``: what fits, through ``weight_transforms``; returns
        the ``LoadReport``."""
        from ..checkpoint import load_checkpoint

        return load_checkpoint(model, path, strict=False, transforms=self.weight_transforms())

    def checkpoint_meta(self) -> dict[str, Any]:
        """What the run's checkpoints record about the data besides the config (the pose joints'
        names, so that a later fine-tuning can transfer by name)."""
        return {}

    def head_defaults(self) -> dict[str, dict[str, Any]]:
        """Per head name, the constructor arguments that follow from the data when the config
        leaves them ``null`` (``{"pose": {"num_keypoints": 21}}``)."""
        return {}

    def task_section(self, allowed: tuple[str, ...] = ("type", "loss")) -> dict:
        """The ``task`` mapping of the config, with unknown keys rejected."""
        from ..errors import ConfigError

        section = dict(self.cfg.get("task") or {})
        unknown = set(section) - set(allowed)
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in 'task' for {type(self).__name__}; "
                              f"allowed: {', '.join(allowed)}")
        return section

    @property
    def data_root(self) -> str:
        """The dataset root folder (absolute once the config was loaded: ``config.PATH_KEYS``)."""
        from ..errors import ConfigError

        root = self.cfg.get("data_root")
        if not root:
            raise ConfigError(f"data_root is not set for {type(self).__name__}; give the dataset root folder "
                              "(--set data_root=...)")
        return root

    def preflight(self) -> None:
        """Cheap checks on the driver before any worker starts (e.g. the data root exists)."""
        from ..errors import DataError

        root = self.cfg.get("data_root")
        if root and not Path(root).is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root (--set data_root=...) "
                            "or make the demo sets with `platform data demo`")

    def check_data(self, report: Any, full: bool = False) -> None:
        """Read the configured splits as training and evaluation will and put what is wrong into
        ``report`` (a ``densepred.datacheck.DataReport``): errors would break the run, warnings
        weaken it. ``full`` reads every file (`platform data check`); otherwise only what is cheap
        (the annotation index, file listings, a few labels: `platform train` before Ray starts)."""
        for split in ("train", "val"):
            with report.catching():
                dataset = self.build_dataset(split)
                report.say(f"{split}: {len(dataset)} samples")

    def cost_input_size(self) -> tuple[int, int]:
        """``(H, W)`` of one network input, the size at which a model's cost (GFLOPs, latency) is
        measured (see ``densepred.cost``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define cost_input_size()")

    def precision_settings(self) -> Any:
        """The ``inference`` keys that govern reduced precision (``precision_check.PrecisionSettings``)."""
        from ..precision_check import precision_settings

        return precision_settings(self.cfg)

    def calibration(self, settings: Any) -> Optional[Any]:
        """Validation inputs and the comparison of decoded outputs that decide whether reduced
        precision may serve this task's model (``precision_check.Calibration``); None: the raw
        output tolerance decides."""
        return None

    def build_dataset(self, split: str) -> Dataset:
        """``split`` is ``train`` (augmented) or ``val``."""
        raise NotImplementedError

    def collate(self, samples: list[dict]) -> dict:
        return torch.utils.data.default_collate(samples)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None) -> dict[str, float]:
        """Run inference on the validation split and compute the task's metrics."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training hooks
    # The engine's loop calls these; the defaults are one dataset and one loss. A composed task
    # (MultiTask) replaces them with several sources, per-member losses and loss balancing.

    @property
    def eval_interval(self) -> int:
        """Epochs between evaluations during training (``evaluation.interval``)."""
        return int(getattr(getattr(self, "eval_cfg", None), "interval", 1) or 1)

    @property
    def head_names(self) -> tuple[str, ...]:
        """The model heads this task's loss, inference and evaluation read."""
        return ()

    def build_train_batches(self, seed: int, rank: int = 0, world: int = 1) -> Any:
        """The training batch source (``densepred.batching.TrainBatches``) of one worker."""
        from ..batching import LoaderBatches

        data = getattr(self, "data", None)
        return LoaderBatches(self.build_dataset("train"), int(getattr(data, "batch_size", 32)),
                             int(getattr(data, "loader_workers", 0)), self.collate, seed, rank, world)

    def train_loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any],
                   ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to back-propagate and named figures to log with it (averaged per epoch)."""
        return self.loss(outputs, batch), {}

    def backward(self, loss: torch.Tensor, ctx: StepContext,
                 scaler: Optional[torch.amp.GradScaler] = None) -> dict[str, float]:
        """Back-propagate one batch's loss; returns figures to log with ``train_loss``'s.

        The engine calls this once per batch whose loss is finite, right after ``train_loss`` on
        the same batch, with ``loss`` already divided by ``ctx.accumulate``. The default is the
        plain ``loss.backward()`` through the AMP ``scaler`` when there is one (DDP all-reduces
        the gradients on the batch with ``ctx.step_end``).

        A task that overrides it (multi-task gradient aggregation) owns the gradients of the step.
        By the end of the batch with ``ctx.step_end`` it must have added to ``.grad`` of the
        parameters it trains the update for the optimizer: equal on every worker, multiplied by
        the scaler's scale. Gradients computed with ``torch.autograd.grad`` (through
        ``ctx.model``, the bare module) are not reduced by DDP, so such a task all-reduces them
        itself. The engine clears ``.grad`` (set to None) after every optimizer step and when it
        drops one.
        """
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return {}

    def trainable_extras(self) -> Optional[nn.Module]:
        """Parameters outside the model that the optimizer trains with it (e.g. learned loss
        weights); the engine keeps them equal on all workers and saves them with the run."""
        return None

    def end_epoch(self, epoch: int, mean_logs: Mapping[str, float]) -> dict[str, float]:
        """Called on every worker after each epoch with the epoch means of ``train_loss``'s figures
        over all workers; returns figures to log (e.g. new loss weights)."""
        return {}

    def extra_targets(self, split: str) -> Sequence[Any]:
        """Image-aligned targets this task adds to a dataset of ``split`` it shares with another
        task (same-input multi-task); see ``shared_input_key``."""
        return ()

    def shared_input_key(self) -> Optional[tuple]:
        """Tasks with equal keys read the same training samples (same files, crops and
        augmentation), so one dataset can feed them all; None: this task shares no input."""
        return None

    #: a multi-task `platform predict` shows this task as a panel of its own beside the combined
    #: picture, through ``member_predictor`` (dense outputs that cannot be drawn over the image)
    draws_panel: bool = False

    def member_predictor(self, name: str, out_dir: Path, is_video: bool) -> Any:
        """This task's share of a multi-task predict when ``draws_panel``: an object with ``run``,
        ``draw``, ``panel``, ``problem`` and ``finish`` (see tasks/multitask/predictors.py)."""
        raise NotImplementedError(f"{type(self).__name__} draws no panel")


def build_task(cfg: Mapping[str, Any]) -> Task:
    """Build the task named in ``cfg['task']['type']``."""
    from ..errors import ConfigError
    from ..registry import TASKS, lookup
    from . import boundary, depth, multitask, normals, person_mask, pose, segmentation  # noqa: F401  (registers tasks)

    section = cfg.get("task") or {}
    if "type" not in section:
        raise ConfigError(f"{getattr(cfg, 'source', 'config')}: no task.type set (e.g. task: {{type: PoseTask}})")
    task = lookup(TASKS, section["type"], "task.type")(cfg)
    task.validate()
    return task
