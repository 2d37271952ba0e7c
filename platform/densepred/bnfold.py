"""Fold inference-mode BatchNorm into the convolution that feeds it.

``conv -> bn`` in eval mode is one affine map per output channel, so the BN can be folded into the
conv's weight and bias (one op less per layer, same numbers up to fp32 rounding). Which conv feeds
which BN is read from the graph that ``torch.fx`` traces, not guessed from attribute names: our
blocks call ``self.conv1``/``self.bn1`` in ``forward`` and only the traced graph says how they connect.
A module whose ``forward`` does not trace (e.g. it checks the input's shape) keeps its own code and
its children are folded one by one instead.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["FoldReport", "fold_batchnorm", "count_batchnorm"]


@dataclass
class FoldReport:
    """What folding did: ``folded`` BN layers, ``remaining`` ones (not fed by a conv of their own),
    ``how`` (``fx`` = whole model traced, ``fx-per-submodule`` = top level did not trace)."""

    folded: int = 0
    remaining: int = 0
    how: str = "fx"
    untraced: list[str] = field(default_factory=list)   # modules whose own forward did not trace

    def describe(self) -> str:
        where = "whole model traced" if self.how == "fx" else \
            f"per submodule: {', '.join(self.untraced[:3]) or 'top level'} did not trace"
        return f"BN folded {self.folded}/{self.folded + self.remaining} ({where})"


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, FoldReport]:
    """An eval-mode copy of ``model`` with every ``conv -> BatchNorm2d`` pair folded; ``model`` is
    not changed. The copy returns what ``model`` returns (same structure)."""
    work = copy.deepcopy(model).eval()
    report = FoldReport()
    folded = _fold(work, "", report)
    report.remaining = count_batchnorm(folded)
    if report.untraced:
        report.how = "fx-per-submodule"
    return folded, report


def _fold(module: nn.Module, name: str, report: FoldReport) -> nn.Module:
    """``module`` traced and folded, or (when it does not trace) with its children folded."""
    if not any(True for _ in module.children()):
        return module      # a leaf (conv, BN, ...) has nothing to fold inside it
    if type(module).forward is not nn.Module.forward:   # containers (ModuleList/Dict) have no forward
        try:
            gm = fx.symbolic_trace(module)
        except Exception:  # noqa: BLE001 - any tracing failure means: fold the children instead
            report.untraced.append(name or type(module).__name__)
        else:
            n = _fold_graph(gm)
            report.folded += n
            # Nothing to fold: keep the original module (its type, its attributes) untouched.
            return gm if n else module
    for child_name, child in list(module.named_children()):
        setattr(module, child_name, _fold(child, f"{name}.{child_name}" if name else child_name, report))
    return module


def _fold_graph(gm: fx.GraphModule) -> int:
    """Fold, in place, each BN node whose only input is a conv node used by nothing else."""
    modules = dict(gm.named_modules())
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    folded = 0
    for node in list(gm.graph.nodes):
        src = node.args[0] if node.op == "call_module" and node.args else None
        if not _foldable(node, src, modules, calls):
            continue
        conv, bn = modules[src.target], modules[node.target]
        fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
        _set_submodule(gm, src.target, fused)
        modules[src.target] = fused
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded += 1
    if folded:
        gm.graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
    return folded


def _foldable(node: fx.Node, src: object, modules: dict[str, nn.Module], calls: Counter) -> bool:
    if not isinstance(src, fx.Node) or src.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return False
    bn, conv = modules.get(node.target), modules.get(src.target)
    if type(bn) is not nn.BatchNorm2d or bn.running_mean is None or bn.running_var is None:
        return False
    if type(conv) is nn.Conv2d:
        ok = True
    else:  # a transposed conv's weight is (in, out/groups, kh, kw): per-channel scaling needs groups == 1
        ok = type(conv) is nn.ConvTranspose2d and conv.groups == 1
    # The conv's output must feed only this BN, and the conv must not be reused elsewhere.
    return ok and len(src.users) == 1 and calls[src.target] == 1 and conv.out_channels == bn.num_features


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, attr = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)

