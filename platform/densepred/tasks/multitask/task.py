"""``MultiTask``: several ordinary tasks trained jointly on one backbone with one head each.

Composition only: every member is a task built through the ``TASKS`` registry from its own
sections (``task.members.<name>``, usually ``config: <task file>``) and keeps its dataset,
transforms, codec, loss, inference, metric and pictures. This class decides what one training
step feeds (``mode``), how the members' losses are combined (``balancing``), which metric picks
the best checkpoint (``best``), and reports every member's metrics (prefixed ``<member>/``) and
Δm against single-task baselines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from ...config import LoadedConfig, parse_section, setting
from ...errors import ConfigError, PlatformError
from ...registry import BALANCERS, TASKS
from ..base import StepContext, Task
from .balancing import build_balancer
from .delta_m import delta_m, format_delta_table
from .sampling import POLICIES, MixedBatches

MODES = ("same_input", "mixed")
DELTA_M = "delta_m"


@dataclass
class MultiTaskSection:
    """``task`` section of a multi-task config."""

    type: str = "MultiTask"
    mode: str = setting("same_input", choices=MODES, hint="same_input: one batch feeds every head; "
                        "mixed: each step draws one member's batch")
    members: dict = field(default_factory=dict)
    balancing: Optional[dict] = None     # {type: fixed|uncertainty|dwa|gradnorm|rlw|famo|db_mtl|aggregator, ...}
    sampling: dict = field(default_factory=dict)  # mixed mode: {type: proportional|ratio|round_robin, ratios}
    best: Optional[str] = None           # "<member>/<metric>" or delta_m; default: first member's metric
    baselines: dict = field(default_factory=dict)  # {"<member>/<metric>": single-task figure} for Δm


@dataclass
class MultiEval:
    """``evaluation`` section of a multi-task config (members' own intervals are not used)."""

    interval: int = setting(5, ge=1)


class MemberConfig(LoadedConfig):
    """A member's config: its errors name ``task.members.<name>.<key>`` in the run's file or the
    member's own task file."""

    parent: Any = None
    prefix: str = ""

    def where(self, key_path: str) -> str:
        inline = (self.parent.where(f"{self.prefix}.{key_path}")
                  if isinstance(self.parent, LoadedConfig) else "config")
        own = self.get("config")
        return f"{own} (as {self.prefix}.{key_path})" if own else inline


@TASKS.register_module()
class MultiTask(Task):
    """Joint training of member tasks on one backbone (see the module docstring)."""

    def validate(self) -> None:
        self.section = parse_section(self.cfg, "task", MultiTaskSection)
        for key in ("data", "inference", "data_root", "bbox_file"):
            if self.cfg.get(key) is not None:
                raise ConfigError(f"{self._where(key)}: top-level '{key}' is not used by a multi-task run; it "
                                  f"belongs to a member (task.members.<name>.{key})")
        self.eval_cfg = parse_section(self.cfg, "evaluation", MultiEval)
        if not self.section.members:
            raise ConfigError(f"{self._where('task.members')}: task.members is empty; name at least two "
                              "member tasks, e.g. {pose: {config: pose_demo.yaml}, mask: {config: "
                              "person_mask_demo.yaml}}")
        self.members: dict[str, Task] = {n: self._build_member(n, m) for n, m in self.section.members.items()}
        self.names = list(self.members)
        self._check_heads_disjoint()
        self.balancer = build_balancer(self.section.balancing, self.names, seed=int(self.cfg.get("seed", 0)))
        if self.section.mode == "mixed" and getattr(self.balancer, "needs_all_losses", False):
            per_batch = "/".join(n for n, c in BALANCERS.module_dict.items() if not c.needs_all_losses)
            raise ConfigError(f"{self._where('task.balancing')}: task.balancing.type "
                              f"{self.section.balancing.get('type')!r} needs every member's loss on the same "
                              f"batch; use task.mode=same_input, or {per_batch} balancing")
        self._check_sampling()
        self._check_metrics()
        self._shared: Optional[nn.Parameter] = None

    # ------------------------------------------------------------------ config
    def _where(self, key: str) -> str:
        return getattr(self.cfg, "where", lambda _k: "config")(key)

    def _build_member(self, name: str, section: Mapping[str, Any]) -> Task:
        from ..base import build_task

        if not isinstance(section, Mapping) or not isinstance(section.get("task"), Mapping):
            raise ConfigError(f"{self._where(f'task.members.{name}')}: task.members.{name} needs a task "
                              f"section: give config: <task file> or task: {{type: ...}}")
        if section["task"].get("type") == "MultiTask":
            raise ConfigError(f"{self._where(f'task.members.{name}')}: member {name} is itself a MultiTask; "
                              "list its members here instead")
        member = MemberConfig({**section, "seed": int(self.cfg.get("seed", 0))})
        member.parent, member.prefix = self.cfg, f"task.members.{name}"
        return build_task(member)

    def _check_heads_disjoint(self) -> None:
        owner: dict[str, str] = {}
        for name, member in self.members.items():
            for head in member.head_names:
                if head in owner:
                    raise ConfigError(f"{self._where('task.members')}: members {owner[head]} and {name} both "
                                      f"train the head '{head}'; a multi-task model has one head per member")
                owner[head] = name

    def _check_sampling(self) -> None:
        s = dict(self.section.sampling or {})
        unknown = set(s) - {"type", "ratios", "max_batches"}
        if unknown:
            raise ConfigError(f"{self._where('task.sampling')}: unknown key(s) {sorted(unknown)} in task.sampling; "
                              "allowed: type, ratios, max_batches")
        self.max_batches = dict(s.get("max_batches") or {})
        bad = [k for k, v in self.max_batches.items() if k not in self.members
               or not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad:
            raise ConfigError(f"{self._where('task.sampling.max_batches')}: task.sampling.max_batches must give a "
                              f"whole number >= 1 per member it names ({', '.join(self.names)}), got "
                              f"{self.max_batches!r}")
        self.policy = s.get("type", "proportional")
        if self.policy not in POLICIES:
            raise ConfigError(f"{self._where('task.sampling.type')}: task.sampling.type must be one of "
                              f"{', '.join(POLICIES)}, got {self.policy!r}")
        self.ratios = dict(s.get("ratios") or {})
        if self.policy == "ratio":
            bad = [k for k, v in self.ratios.items() if k not in self.members
                   or not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0]
            if bad or not self.ratios or sum(self.ratios.values()) <= 0:
                raise ConfigError(f"{self._where('task.sampling.ratios')}: task.sampling.ratios must give a "
                                  f"number >= 0 per member ({', '.join(self.names)}) with a positive sum, "
                                  f"got {self.ratios!r}")

    def _check_metrics(self) -> None:
        """``best`` and ``baselines`` name metrics the members report."""
        known = {f"{n}/{k}" for n, m in self.members.items() for k in (m.metric_names or (m.primary_metric,))}
        first = self.names[0]
        self.primary_metric = self.section.best or f"{first}/{self.members[first].primary_metric}"
        for key in self.section.baselines:
            if key not in known:
                raise ConfigError(f"{self._where('task.baselines')}: task.baselines names {key!r}, which no member "
                                  f"reports; use <member>/<metric>, e.g. {sorted(known)[:3]}")
        if self.primary_metric == DELTA_M and not self.section.baselines:
            raise ConfigError(f"{self._where('task.best')}: task.best=delta_m needs task.baselines (the "
                              "single-task figures, e.g. {pose/AP: 0.62, mask/mIoU: 0.80})")
        if self.primary_metric != DELTA_M and self.primary_metric not in known:
            raise ConfigError(f"{self._where('task.best')}: task.best {self.primary_metric!r} is not a member "
                              f"metric; use delta_m or one of {sorted(known)[:6]}")
        self.greater_is_better = (True if self.primary_metric == DELTA_M
                                  else self._greater(self.primary_metric))
        self.metric_names = tuple(sorted(known)) + ((DELTA_M,) if self.section.baselines else ())

    def _greater(self, metric: str) -> bool:
        """Whether a larger ``<member>/<metric>`` is better: the member says so per metric (depth RMSE
        and angular errors are lower-is-better next to their member's other metrics)."""
        name, _, own = metric.partition("/")
        return bool(self.members[name].higher_is_better(own))

    # ------------------------------------------------------------------ model and data
    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(h for m in self.members.values() for h in m.head_names)

    def weight_transforms(self) -> list:
        return [t for member in self.members.values() for t in member.weight_transforms()]

    def checkpoint_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for member in self.members.values():
            out.update(member.checkpoint_meta())
        return out

    def head_defaults(self) -> dict[str, dict[str, Any]]:
        """Each member's data-dependent head sizes (every member owns its own heads)."""
        out: dict[str, dict[str, Any]] = {}
        for member in self.members.values():
            out.update(member.head_defaults())
        return out

    def build_model(self) -> nn.Module:
        model = super().build_model()
        heads = set(getattr(model, "heads", {}))
        for name, member in self.members.items():
            missing = [h for h in member.head_names if h not in heads]
            if missing:
                raise ConfigError(f"{self._where('model.heads')}: model.heads has no {missing[0]!r} head, which "
                                  f"member {name} ({type(member).__name__}) trains; add it (heads: "
                                  f"{', '.join(sorted(heads)) or 'none'})")
        return model

    def cost_input_size(self) -> tuple[int, int]:
        return self.members[self.names[0]].cost_input_size()

    def check_data(self, report: Any, full: bool = False) -> None:
        """Every member's own data check, its findings prefixed with the member's name."""
        for name, member in self.members.items():
            with report.member(name):
                member.check_data(report, full)

    def preflight(self) -> None:
        for member in self.members.values():
            member.preflight()
        if self.section.mode == "same_input":
            self._shared_input_builder()

    def _shared_input_builder(self) -> Task:
        """The member that builds the one dataset of a same-input run (all must read the same crops)."""
        keys = {n: m.shared_input_key() for n, m in self.members.items()}
        first = self.names[0]
        for name, key in keys.items():
            if key is None or key != keys[first]:
                raise ConfigError(
                    f"{self._where('task.mode')}: task.mode=same_input needs members that read the same "
                    f"training samples, but {first} and {name} differ (data_root, split, input size, "
                    f"augmentation or seed){'' if key is not None else f'; {name} cannot share its input'}; "
                    "align them or use task.mode=mixed")
        return self.members[first]

    def build_dataset(self, split: str, strict_images: bool = False, extra_targets: Sequence[Any] = ()) -> Any:
        """Same-input mode: the first member's dataset carrying every other member's targets."""
        if self.section.mode != "same_input":
            raise PlatformError("a mixed-dataset multi-task run has one dataset per member; "
                                "use the member's own task file to look at one")
        builder = self._shared_input_builder()
        extras = [t for n in self.names[1:] for t in self.members[n].extra_targets(split)]
        return builder.build_dataset(split, strict_images=strict_images, extra_targets=[*extras, *extra_targets])

    def collate(self, samples: list[dict]) -> dict:
        return self.members[self.names[0]].collate(samples)

    def build_train_batches(self, seed: int, rank: int = 0, world: int = 1) -> Any:
        from ...batching import LoaderBatches

        if self.section.mode == "same_input":
            data = self.members[self.names[0]].data
            return LoaderBatches(self.build_dataset("train"), data.batch_size, data.loader_workers, self.collate,
                                 seed, rank, world)
        sources = {n: m.build_train_batches(seed, rank, world) for n, m in self.members.items()}
        return MixedBatches(sources, self.policy, self.ratios, seed, self.max_batches)

    # ------------------------------------------------------------------ training
    def _members_of(self, batch: Mapping[str, Any]) -> list[str]:
        return [batch["member"]] if self.section.mode == "mixed" else list(self.names)

    def member_losses(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Each member's own loss on this batch (one member per batch in mixed mode)."""
        return {n: self.members[n].loss(outputs, batch) for n in self._members_of(batch)}

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """The members' losses summed with the current weights (no balancing update)."""
        weights = self.balancer.weights()
        return sum(weights[n] * v for n, v in self.member_losses(outputs, batch).items())

    def train_loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any],
                   ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """The balanced sum of the members' losses; logs every member's raw loss and weight."""
        losses = self.member_losses(outputs, batch)
        shared = self.shared_parameter(ctx.model, losses) if getattr(self.balancer, "needs_shared", False) else None
        total = self.balancer(losses, shared=shared)
        if ctx.world > 1:
            # DDP needs a gradient for every parameter: heads this batch does not train get zero.
            used = {h for n in losses for h in self.members[n].head_names}
            total = total + sum(0.0 * o.float().sum() for h, o in outputs.items() if h not in used)
        weights = self.balancer.weights()
        logs = {f"loss/{n}": float(v.detach()) for n, v in losses.items()}
        logs.update({f"weight/{n}": float(weights[n]) for n in losses})
        return total, logs

    def backward(self, loss: torch.Tensor, ctx: StepContext,
                 scaler: Optional[torch.amp.GradScaler] = None) -> dict[str, float]:
        """Gradient-aggregating balancers (aggregator, db_mtl) back-propagate the members' losses
        themselves (per-task gradients, see ``aggregation.py``); the others take the plain backward."""
        if getattr(self.balancer, "owns_backward", False):
            return self.balancer.backward({n: self.members[n].head_names for n in self.names}, ctx, scaler)
        return super().backward(loss, ctx, scaler)

    def shared_parameter(self, model: nn.Module, losses: Mapping[str, torch.Tensor]) -> nn.Parameter:
        """The last shared layer for GradNorm: the backbone's last conv weight that every member's
        loss reaches (found once, on the first step)."""
        if self._shared is not None:
            return self._shared
        convs = [p for p in model.backbone.parameters() if p.ndim == 4 and p.requires_grad]
        for p in reversed(convs[-12:]):
            grads = [torch.autograd.grad(v, p, retain_graph=True, allow_unused=True)[0] for v in losses.values()]
            if all(g is not None for g in grads):
                self._shared = p
                return p
        raise PlatformError("gradnorm: no backbone layer among the last 12 is reached by every member's loss")

    def trainable_extras(self) -> Optional[nn.Module]:
        return self.balancer

    def end_epoch(self, epoch: int, mean_logs: Mapping[str, float]) -> dict[str, float]:
        """Epoch-level balancing (DWA) sees each member's mean raw loss; returns the new weights."""
        means = {n: float(mean_logs[f"loss/{n}"]) for n in self.names if f"loss/{n}" in mean_logs}
        self.balancer.end_epoch(means)
        return {f"weight_next/{n}": float(w) for n, w in self.balancer.weights().items()}

    # ------------------------------------------------------------------ evaluation
    @property
    def eval_interval(self) -> int:
        return int(self.eval_cfg.interval)

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None,
                 autocast: Optional[Callable[[], Any]] = None) -> dict[str, float]:
        """Every member's evaluation on its own validation split, metrics prefixed by the member
        name, plus Δm when baselines are known."""
        stats: dict[str, float] = {}
        for name, member in self.members.items():
            sub = out_dir / name if out_dir is not None else None
            part = member.evaluate(model, sub, device, progress=progress, autocast=autocast)
            stats.update({f"{name}/{k}": v for k, v in part.items()})
        if self.section.baselines:
            stats[DELTA_M] = self.delta_m(stats)
        return stats

    def delta_m(self, stats: Mapping[str, float], baselines: Optional[Mapping[str, float]] = None) -> float:
        """Δm (percent) of ``stats`` against ``baselines`` (default: ``task.baselines``)."""
        base = dict(baselines if baselines is not None else self.section.baselines)
        return delta_m(stats, base, {k: self._greater(k) for k in base})

    def format_metrics(self, stats: Mapping[str, float], baselines: Optional[Mapping[str, float]] = None) -> str:
        """Every member's own table, then the Δm table when baselines are known."""
        parts = []
        for name, member in self.members.items():
            own = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith(f"{name}/")}
            parts.append(f"== {name} ({type(member).__name__})\n{member.format_metrics(own)}")
        base = dict(baselines if baselines is not None else self.section.baselines)
        if base:
            parts.append("== multi-task vs single-task\n"
                         + format_delta_table(stats, base, {k: self._greater(k) for k in base}))
        return "\n\n".join(parts)

    def evaluate_file(self, results_file: str | Path, out_dir: Optional[Path] = None) -> dict[str, float]:
        raise PlatformError("a multi-task run is scored with --checkpoint; to score one member's results "
                            "file, run platform eval with that member's own task file")

    # ------------------------------------------------------------------ inspection
    def browse(self, split: str, out_dir: Path, limit: int = 20) -> int:
        """What each head is fed: every member's own browse pictures in ``out_dir/<member>``."""
        return sum(m.browse(split, out_dir / n, limit) for n, m in self.members.items())

    # ------------------------------------------------------------------ prediction
    def predict(self, model: nn.Module | Callable[[], nn.Module], source: str, out_dir: Path,
                boxes: Optional[str] = None, device: torch.device = torch.device("cpu"),
                det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
        """Every member's output drawn on one picture per input (``vis/*.jpg`` or
        ``<video>_multitask.mp4``), plus each member's usual results in ``out_dir/<member>``.
        Person boxes (``boxes`` file, else ``detector``) are shared by pose and mask members."""
        from .predict import run_multitask_prediction

        return run_multitask_prediction(self, model, Path(source), out_dir, boxes, device, det_thr=det_thr,
                                        kpt_thr=kpt_thr, max_megapixels=max_megapixels, detector=detector)
