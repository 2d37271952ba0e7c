"""The bench's outputs: a text table, the JSON file and a chart (img/s and fraction of peak)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from ..atomicfile import write_text_atomic
from ..charts import new_figure, save_png


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def machine_lines(m: dict[str, Any]) -> list[str]:
    gpus = ", ".join(m["gpus"]) or "none"
    return [f"machine {m['id']}: {m['cpu_model']}; {m['threads']} thread(s); flags "
            f"{', '.join(m['cpu_flags']) or 'none of the AVX2/AVX-512/AMX set'}; GPUs {gpus}",
            f"torch {m['torch']} (oneDNN {m['onednn']}, {m['cpu_capability']}); native bf16 "
            f"{'yes' if m['fast_bf16'] else 'no'}; default training precision {m['default_precision']}; "
            f"load average {m['load_average_1min']}"]


def peak_lines(peak: dict[str, Any]) -> list[str]:
    counts = peak["thread_counts"]
    lines = ["peak GFLOP/s (best of repeats)".ljust(44) + "".join(f"{f'{t} thr':>10s}" for t in counts)]
    keys = dict.fromkeys((r["op"], r["precision"], r["shape"], r["emulated"]) for r in peak["rows"])
    for op, precision, shape, emulated in keys:
        values = {r["threads"]: r["gflops_per_s"] for r in peak["rows"]
                  if (r["op"], r["precision"], r["shape"]) == (op, precision, shape)}
        label = f"  {op} {precision}{' (emulated)' if emulated else ''} {shape}"
        lines.append(label[:44].ljust(44) + "".join(f"{_fmt(values.get(t)):>10s}" for t in counts))
    return lines


def train_lines(train: dict[str, Any]) -> list[str]:
    lines = [f"{'train step (fwd+bwd+Adam)':34s}{'batch':>6s} {'prec':>5s} {'img/s':>8s} {'GFLOP/s':>9s} "
             f"{'of peak':>8s}"]
    official = train.get("official")
    last_compared = max((i for i, r in enumerate(train["rows"]) if "speedup_vs_official_fp32" in r), default=-1)
    for i, r in enumerate(train["rows"]):
        label = f"  {r['model']} {r['input_hw'][0]}x{r['input_hw'][1]}"
        lines.append(f"{label:34s}{r['batch']:>6d} {r['precision']:>5s} {_fmt(r['img_per_s']):>8s} "
                     f"{_fmt(r['achieved_gflops_per_s']):>9s} {r['fraction_of_peak']:>8.0%}"
                     + (f"  {r['speedup_vs_official_fp32']:.3g}x official fp32"
                        if "speedup_vs_official_fp32" in r else ""))
        if i == last_compared:  # the official step right below the rows compared with it
            lines += official_lines(official)
    if last_compared < 0:
        lines += official_lines(official)
    lines.append("  (training FLOPs = 3 x forward FLOPs of densepred.cost.count_gflops)")
    return lines + [threads_line(train)]


def official_lines(official: Any) -> list[str]:
    """The official HRNet code's step (``--official-repo``), when it was timed."""
    if not official:
        return []
    if "error" in official:
        return [f"  official HRNet W32 step: FAILED: {official['error']}"]
    o = official
    label = f"  official W32 {o['input_hw'][0]}x{o['input_hw'][1]} (NCHW)"
    return [f"{label:34s}{o['batch']:>6d} {o['precision']:>5s} {_fmt(o['img_per_s']):>8s} "
            f"{_fmt(o['achieved_gflops_per_s']):>9s} {o['fraction_of_peak']:>8.0%}",
            f"    official code: {o['repo']}; our model with its weights: max |diff| "
            f"{_fmt(o.get('parity_max_abs_diff'), '.2g')} (outputs up to {_fmt(o.get('parity_output_max_abs'))})"]


def threads_line(section: dict[str, Any]) -> str:
    probe = ", ".join(f"{n} thr {_fmt(ms, '.3g')} ms" for n, ms in section["thread_probe"]["probe_ms"].items())
    return f"  threads {section['threads']} (chosen by a small-convolution probe: {probe})"


def infer_lines(infer: dict[str, Any]) -> list[str]:
    lines = [f"{'inference (eager fp32 | optimised)':40s}{'b1 ms':>15s} {'batch':>6s} {'img/s':>15s} "
             f"{'of peak':>13s}"]
    for e in infer["models"]:
        eager, opt = e["eager_fp32"], e["optimised"] or {}
        label = f"  {e['model']} {e['input_hw'][0]}x{e['input_hw'][1]}"

        def pair(key: str, spec: str = ".4g") -> str:
            return f"{_fmt(eager[key], spec)} | {_fmt(opt.get(key), spec)}"

        lines.append(f"{label:40s}{pair('latency_ms_batch1'):>15s} {eager['batch']:>6d} {pair('img_per_s'):>15s} "
                     f"{pair('fraction_of_peak', '.0%'):>13s}")
        official = e.get("official_eager_fp32")
        if official:
            lines.append(f"    official code, eager fp32: {_fmt(official['latency_ms_batch1'], '.4g')} ms (b1); "
                         f"optimised is {_fmt(e.get('speedup_vs_official_b1'), '.3g')}x faster at batch 1")
        if e["optimised"]:
            precision = opt.get("precision", "fp32")
            lines.append(f"    optimised path ({precision}; fraction of the {precision} peak): "
                         f"{str(opt.get('plan'))[:100]}")
        else:
            lines.append(f"    optimised: none ({e['optimised_error'][:100]})")
    return lines + [threads_line(infer)]


def paths_lines(paths: dict[str, Any]) -> list[str]:
    """Per trained checkpoint: each inference path's metric on the validation split and latency."""
    if "skipped" in paths:
        return [f"paths: skipped ({paths['skipped']})"]
    lines = [f"{'inference paths of trained models':40s}{'metric':>14s} {'vs eager':>9s} {'b1 ms':>9s} {'speed-up':>9s}"]
    for m in paths["models"]:
        lines.append(f"  {m['checkpoint']} ({m['task']}, {m['input_hw'][0]}x{m['input_hw'][1]})")
        for r in m["rows"]:
            if "skipped" in r:
                lines.append(f"    {r['path']:36s}skipped: {r['skipped'][:70]}")
                continue
            lines.append(f"    {r['path'] + ' (' + r['precision'] + ')':36s}{r['metric'] + ' ' + _fmt(r['value'], '.4f'):>14s} "
                         f"{r.get('delta_vs_eager', 0.0):>+9.4f} {_fmt(r['latency_ms_batch1'], '.4g'):>9s} "
                         f"{_fmt(r.get('speedup_vs_eager'), '.3g') + 'x':>9s}")
        lines.append(f"    chosen by the precision check: {m['chosen'][:400]}")
    return lines


def data_lines(data: dict[str, Any]) -> list[str]:
    """Per pipeline: its samples/s, the decode-only samples/s and pipeline / decode (README's way round)."""
    lines = [f"{'data pipeline (1 core)':34s}{'samples/s':>10s} {'decode/s':>9s} {'pipeline/decode':>16s}"]
    for r in data["rows"]:
        label = f"  {r['pipeline']} ({r['image_wh'][0]}x{r['image_wh'][1]} {r['format'].split()[0]})"
        lines.append(f"{label:34s}{_fmt(r['samples_per_s_per_core'], '.4g'):>10s} "
                     f"{_fmt(r['decode_samples_per_s_per_core'], '.4g'):>9s} {r['pipeline_over_decode']:>15.3g}x")
    lines.append("  (pipeline/decode = pipeline samples/s / decode-only samples/s; 1.0x: the pipeline costs "
                 "no more than decoding)")
    return lines


def eval_lines(ev: dict[str, Any]) -> list[str]:
    oks, miou = ev["oks"], ev["miou"]
    return ["evaluation",
            f"  OKS AP (pycocotools), {oks['persons']} persons / {oks['images']} images: {oks['total_s']:.3g} s "
            f"(GT load {oks['load_gt_s']:.3g} s, COCOeval {oks['cocoeval_s']:.3g} s)",
            *([f"  OKS AP (faster-coco-eval): COCOeval {oks['faster_cocoeval_s']:.3g} s, "
               f"{oks['pycocotools_over_faster']:.3g}x faster"] if "faster_cocoeval_s" in oks else []),
            f"  mIoU, {miou['images']} x 2048x1024 labelId PNG pairs: {miou['ms_per_image_1_thread']:.4g} ms/image "
            f"(1 thread), {miou['ms_per_image_default_workers']:.4g} (default workers); decode floor "
            f"{miou['decode_ms_per_image']:.4g} ms -> {miou['metric_over_decode']:.3g}x"]


def startup_lines(st: dict[str, Any]) -> list[str]:
    if "skipped" in st:
        return [f"startup: skipped ({st['skipped']})"]
    floor = st.get("ray_floor_s")
    extra = (f"; Ray's own floor (no-op TorchTrainer) {floor:.3g} s, platform's share "
             f"{st['platform_share_s']:.3g} s" if floor is not None else "")
    return [f"startup: `platform train` launch -> first training step {st['first_step_s']:.3g} s "
            f"(whole command {st['command_s']:.3g} s, local Ray){extra}"]


SECTION_LINES = {"peak": peak_lines, "train": train_lines, "infer": infer_lines, "paths": paths_lines,
                 "data": data_lines,
                 "eval": eval_lines, "startup": startup_lines}


def table(result: dict[str, Any]) -> str:
    """The whole result as aligned text: machine first, then each section that ran."""
    lines = machine_lines(result["machine"])
    for name, fmt in SECTION_LINES.items():
        section = result.get(name)
        if section is None:
            continue
        lines.append("")
        lines += [f"{name}: FAILED: {section['error']}"] if "error" in section else fmt(section)
    return "\n".join(lines)


def write_json(path: Path, result: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")


def chart_rows(result: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(label, img/s, fraction of peak) of every training and inference configuration measured."""
    rows: list[tuple[str, float, float]] = []
    for r in (result.get("train") or {}).get("rows", []):
        rows.append((f"train {r['model']} {r['input_hw'][0]}x{r['input_hw'][1]} b{r['batch']} {r['precision']}",
                     r["img_per_s"], r["fraction_of_peak"]))
    o = (result.get("train") or {}).get("official") or {}
    if "img_per_s" in o:
        rows.append((f"train official W32 {o['input_hw'][0]}x{o['input_hw'][1]} b{o['batch']} fp32 NCHW",
                     o["img_per_s"], o["fraction_of_peak"]))
    for e in (result.get("infer") or {}).get("models", []):
        for path in ("eager_fp32", "optimised"):
            m = e.get(path)
            if m:
                precision = m.get("precision", "fp32")
                rows.append((f"infer {e['model']} {e['input_hw'][0]}x{e['input_hw'][1]} b{m['batch']} {path}"
                             + ("" if path == "eager_fp32" else f" {precision}"),
                             m["img_per_s"], m["fraction_of_peak"] or 0.0))
    return rows


def write_chart(path: Path, result: dict[str, Any]) -> bool:
    """Two bar panels (img/s on a log axis, fraction of peak); False when nothing to draw."""
    rows = chart_rows(result)
    if not rows:
        return False
    labels, rates, fractions = zip(*rows)
    fig, (ax_rate, ax_frac) = new_figure(12, 1.2 + 0.45 * len(rows), ncols=2, dpi=100, sharey=True)
    from matplotlib.ticker import NullFormatter

    ys = list(range(len(rows)))
    colours = ["#c44e52" if label.startswith("train") else "#4c72b0" for label in labels]
    _bars(ax_rate, ys, rates, colours, "img/s (log scale)", ".3g")
    ax_rate.set_xscale("log")
    ax_rate.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short log axis overlap
    _bars(ax_frac, ys, fractions, colours,
          "fraction of this machine's peak at the same precision (measured in the same run)", ".0%")
    ax_frac.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax_rate.set_yticks(ys, labels, fontsize=8)
    ax_rate.invert_yaxis()
    m = result["machine"]
    threads = {name: (result.get(name) or {}).get("threads") for name in ("train", "infer")}
    fig.suptitle(f"densepred bench {result['date']}{' (quick)' if result['quick'] else ''}: {m['cpu_model']} "
                 f"({m['threads']} threads available; used: train {threads['train']}, infer {threads['infer']})",
                 fontsize=10)
    save_png(fig, path)
    return True


def _bars(ax: Any, ys: Iterable[int], values: Iterable[float], colours: list[str], title: str,
          spec: str) -> None:
    values = list(values)
    ax.barh(list(ys), values, color=colours)
    for y, v in zip(ys, values):
        ax.annotate(format(v, spec), (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.margins(x=0.15)
