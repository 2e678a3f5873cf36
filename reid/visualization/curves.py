"""Plots of a run: CMC curves, training curves from ``train_log.jsonl``, the ROC and distances of true vs false
matches (the histogram the evaluation counted in its own pass: this module only draws).

Figures are made with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), so they can
be drawn from a training process, a thread or a notebook alike.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..evaluation.histogram import DistanceHistogram
from ..evaluation.verification import VerificationResult

logger = logging.getLogger("reid")

MATCH_COLOR, FALSE_COLOR = "#1a9641", "#d7191c"
PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096")  # one colour per dataset / metric
DPI = 110


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _epoch_axis(ax, epochs: Sequence[int]) -> None:
    """Whole epochs on the x axis: each one on short runs (no 0.95 .. 1.05 ticks around a single epoch)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    if 0 < len(set(epochs)) <= 12:
        ax.set_xticks(sorted(set(epochs)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


# -- CMC ---------------------------------------------------------------------------------------------------------

@dataclass
class Curve:
    label: str
    cmc: np.ndarray
    rerank: bool = False


def plot_cmc(curves: Sequence[Curve], path: str | Path, title: str = "CMC") -> Path:
    """CMC curves (rank 1..len(cmc)), one line per curve; re-ranked curves dashed in their dataset's colour.

    Rank-1 / 5 / 10 are marked and written in the legend.
    """
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    colors = {}
    for c in curves:
        base = c.label.replace(" +rerank", "")
        color = colors.setdefault(base, PALETTE[len(colors) % len(PALETTE)])
        cmc = 100 * np.asarray(c.cmc, dtype=np.float64)
        ranks = np.arange(1, len(cmc) + 1)
        marks = [k for k in (1, 5, 10) if k <= len(cmc)]
        desc = ", ".join(f"R{k} {cmc[k - 1]:.1f}" for k in marks)
        ax.plot(ranks, cmc, ls="--" if c.rerank else "-", color=color, lw=1.8, label=f"{c.label}  ({desc})")
        ax.plot(marks, [cmc[k - 1] for k in marks], "o", color=color, ms=4, mfc="white" if c.rerank else color)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    top = max((len(c.cmc) for c in curves), default=1)
    ax.set_xlim(1, max(top, 2))
    lows = [100 * float(np.min(c.cmc)) for c in curves if len(c.cmc)]
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 5), 100.5)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


# -- training log ------------------------------------------------------------------------------------------------

@dataclass
class TrainLog:
    """Per-epoch records (loss terms, lr, speed) and evaluation records (``{"epoch", "eval"}``) of a run."""

    epochs: List[dict] = field(default_factory=list)
    evals: List[dict] = field(default_factory=list)
    skipped: int = 0


def read_train_log(path: str | Path) -> TrainLog:
    """Read ``train_log.jsonl``; unreadable lines (a run killed mid-write) are skipped and counted.

    A resumed run logs an epoch again: the last record of each epoch wins.
    """
    epochs: Dict[int, dict] = {}
    evals: Dict[int, dict] = {}
    skipped = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                epoch = int(rec["epoch"])
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            if isinstance(rec.get("eval"), dict):
                evals[epoch] = rec
            else:
                epochs[epoch] = rec
    if skipped:
        logger.warning("%s: skipped %d unreadable line(s)", path, skipped)
    return TrainLog([epochs[e] for e in sorted(epochs)], [evals[e] for e in sorted(evals)], skipped)


_METRICS = (("rank1", "rank-1"), ("mAP", "mAP"), ("mINP", "mINP"))


def plot_training_curves(log: TrainLog, path: str | Path, title: str = "Training") -> Optional[Path]:
    """Loss terms, learning rate and (when evaluated) rank-1 / mAP / mINP against the epoch; None if empty."""
    fig = training_curves_figure(log, title)
    return None if fig is None else _save(fig, path)


def training_curves_figure(log: TrainLog, title: str = "Training"):
    """The figure of :func:`plot_training_curves` (None for an empty log)."""
    if not log.epochs and not log.evals:
        return None
    panels = 2 + (1 if log.evals else 0)
    fig = _figure(4.2 * panels, 3.8)
    ep = np.array([r["epoch"] for r in log.epochs])
    marker = "o" if len(ep) <= 30 else None
    ax = fig.add_subplot(1, panels, 1)
    terms = sorted({k for r in log.epochs for k in r if k.startswith("loss_") and k != "loss_total"})
    for k in terms + (["loss_total"] if any("loss_total" in r for r in log.epochs) else []):
        ys = np.array([r.get(k, np.nan) for r in log.epochs], dtype=np.float64)
        ax.plot(ep, ys, marker=marker, ms=3, lw=2.2 if k == "loss_total" else 1.4,
                color="black" if k == "loss_total" else None, label=k[5:] if k != "loss_total" else "total")
    ax.set_title("loss per term (epoch mean)")
    _epoch_axis(ax, ep.tolist())
    positive = [r.get(k) for r in log.epochs for k in terms if isinstance(r.get(k), (int, float))]
    if positive and min(positive) > 0 and max(positive) / max(min(positive), 1e-12) > 50:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if terms:
        ax.legend(fontsize=8)
    ax = fig.add_subplot(1, panels, 2)
    lr = np.array([r.get("lr", np.nan) for r in log.epochs], dtype=np.float64)
    ax.plot(ep, lr, marker=marker, ms=3, color="#2b6cb0")
    ax.set_title("learning rate (end of epoch)")
    _epoch_axis(ax, ep.tolist())
    if np.nanmin(lr, initial=np.inf) > 0 and np.nanmax(lr, initial=0) / np.nanmin(lr, initial=np.inf) > 20:
        ax.set_yscale("log")
    if ax.get_yscale() == "linear":  # "3.50e-04" on each tick: no "1e-4" offset text next to the title
        from matplotlib.ticker import FormatStrFormatter

        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2e"))
    ax.grid(True, alpha=0.3)
    if log.evals:
        ax = fig.add_subplot(1, panels, 3)
        e_ep = [r["epoch"] for r in log.evals]
        datasets = list(dict.fromkeys(d for r in log.evals for d in r["eval"]))
        for di, name in enumerate(datasets):
            for mi, (key, label) in enumerate(_METRICS):
                for rerank in (False, True):
                    ys = []
                    for r in log.evals:
                        m = r["eval"].get(name, {})
                        m = m.get("rerank", {}) if rerank else m
                        ys.append(100 * m[key] if isinstance(m.get(key), (int, float)) else np.nan)
                    if all(math.isnan(y) for y in ys):
                        continue
                    lab = label + (" +rerank" if rerank else "") + (f" {name}" if len(datasets) > 1 else "")
                    ax.plot(e_ep, ys, marker="o", ms=3, ls="--" if rerank else "-",
                            color=PALETTE[mi], alpha=1.0 / (1 + di), label=lab)
        ax.set_title("evaluation (%)")
        _epoch_axis(ax, e_ep)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    # The speed goes into the title: inside a panel it collided with the curves and tick labels of short runs.
    speed = [r.get("images_per_s") for r in log.epochs if isinstance(r.get("images_per_s"), (int, float))]
    fig.suptitle(title + (f"  ·  {np.median(speed):.0f} images/s (median epoch)" if speed else ""), fontsize=11)
    return fig


# -- distance histogram ------------------------------------------------------------------------------------------

def _rebin(h: DistanceHistogram, target: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges and counts over the populated range only, merged into about ``target`` bins."""
    total = h.true_counts + h.false_counts
    nz = np.flatnonzero(total)
    if len(nz) == 0:
        return h.edges[:2], np.zeros(1), np.zeros(1)
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    if target <= 0:  # fewer bins for few pairs: about 2 sqrt(n) of the rarer kind, 20..60
        rare = min(x for x in (h.num_true, h.num_false) if x > 0)
        target = int(np.clip(2 * math.sqrt(rare), 20, 60))
    step = max(1, math.ceil((hi - lo) / target))
    hi = min(len(total), lo + step * math.ceil((hi - lo) / step))
    n = (hi - lo) // step
    t = h.true_counts[lo:lo + n * step].reshape(n, step).sum(1)
    f = h.false_counts[lo:lo + n * step].reshape(n, step).sum(1)
    return h.edges[lo:lo + n * step + 1:step], t, f


def plot_distance_histogram(hist: DistanceHistogram, path: str | Path, title: str = "Distances",
                            xlabel: str = "distance", thresholds: Optional[Dict[str, float]] = None) -> Path:
    """True vs false match distances as densities (each kind sums to 1), with the verification thresholds
    (``thresholds``: FAR key -> distance, from a :class:`~reid.evaluation.verification.VerificationResult`) or,
    without them, the histogram's equal-error threshold."""
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    edges, t, f = _rebin(hist)
    widths = np.diff(edges)
    for counts, color, label, n in ((f, FALSE_COLOR, "false matches", hist.num_false),
                                    (t, MATCH_COLOR, "true matches", hist.num_true)):
        if n:
            dens = counts / (n * widths)
            ax.stairs(dens, edges, fill=True, alpha=0.35, color=color)
            ax.stairs(dens, edges, color=color, lw=1.5, label=f"{label} ({n:,} pairs)")
    marks = {k: v for k, v in (thresholds or {}).items() if v is not None and math.isfinite(v)}
    for (far, value), style in zip(sorted(marks.items(), key=lambda kv: kv[1]), itertools.cycle([":", "--", "-."])):
        ax.axvline(value, color="#444444", ls=style, lw=1.2, label=f"threshold at FAR {far}: d = {value:.4f}")
    eer = None if marks else hist.equal_error()
    if eer is not None:
        ax.axvline(eer[0], color="#444444", ls=":", lw=1.2,
                   label=f"equal error at d = {eer[0]:.3f} ({100 * eer[1]:.1f}% each)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    sub = "" if hist.num_queries == hist.num_query_total else \
        f" ({hist.num_queries} of {hist.num_query_total} queries)"
    ax.set_title(title + sub, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


# -- ROC ---------------------------------------------------------------------------------------------------------

def plot_roc(curves: Sequence[Tuple[str, VerificationResult]], path: str | Path, title: str = "ROC") -> Path:
    """TAR against FAR (log scale) of each labelled verification result, the thresholds' FARs and the EER marked.

    The exact ROC polyline has two vertices per distinct true distance; at most a few thousand (chosen on a
    logarithmic FAR grid and a linear TAR grid) are drawn.
    """
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    low = 1.0
    for (label, ver), color in zip(curves, itertools.cycle(PALETTE)):
        if ver.num_true == 0 or ver.num_false == 0:
            continue
        far, tar = _thin_roc(ver.roc_far, ver.roc_tar)
        positive = far > 0
        low = min(low, float(far[positive].min()) if positive.any() else low)
        ax.plot(far[positive], 100 * tar[positive], color=color, lw=1.6,
                label=f"{label}  (AUC {100 * ver.auc:.2f}, EER {100 * ver.eer:.2f}%)")
        for key, value in ver.tar_at_far.items():
            ax.plot([float(key)], [100 * value], "o", color=color, ms=4)
            ax.annotate(f"{100 * value:.1f}", (float(key), 100 * value), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=color)
        ax.plot([ver.eer], [100 * (1 - ver.eer)], "x", color=color, ms=6)
    ax.set_xscale("log")
    ax.set_xlim(max(low, 1e-7), 1.0)
    ax.set_ylim(0, 100.5)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR, %)")
    ax.set_title(title + " (o: TAR at the thresholds' FARs, x: equal error rate)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _thin_roc(far: np.ndarray, tar: np.ndarray, points: int = 2000) -> Tuple[np.ndarray, np.ndarray]:
    """At most about 2 x ``points`` vertices of a ROC polyline: the first vertex reaching each point of a log FAR
    grid and of a linear TAR grid, plus the ends."""
    if len(far) <= 2 * points:
        return far, tar
    grid = np.concatenate([np.searchsorted(far, np.logspace(-9, 0, points)),
                           np.searchsorted(tar, np.linspace(0, 1, points)), [0, len(far) - 1]])
    keep = np.unique(np.clip(grid, 0, len(far) - 1))
    return far[keep], tar[keep]
