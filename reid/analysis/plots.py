"""Figures of the loss library: GPW pair weights vs similarity (GPW paper, Fig. 1, plus MS and Circle) and the
Circle loss decision boundary beside the straight one of losses optimising s_n - s_p (Circle paper, Fig. 1).

Every number plotted comes from the library itself: weights from ``sim_pair_weights`` (autograd through the
loss's ``forward_sim``), boundaries and gradient fields from ``circle_logits`` / ``cosface_logits`` + the
cross-entropy; the analytic curves are drawn on top only as a check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from ..modeling.losses import (BinomialDevianceLoss, ContrastiveLoss, LiftedStructureLoss,  # noqa: E402
                               MultiSimilarityLoss, PairwiseCircleLoss, TripletLoss,
                               circle_logits, cosface_logits, cosine_similarity, pair_masks)
from ..utils.errors import ReIDError  # noqa: E402
from .pair_weights import sim_pair_weights  # noqa: E402

POS_COLOR, NEG_COLOR = "#1a9641", "#2b6cb0"  # GPW paper: green solid = positive pairs, blue dotted = negative
PAIR_WEIGHTS_FILE = "pair_weights.png"
BOUNDARY_FILE = "circle_decision_boundary.png"


@dataclass
class Panel:
    title: str
    loss: nn.Module


def default_panels() -> List[Panel]:
    """The four losses of the GPW paper's Fig. 1, then MS and pair-wise Circle, at the library defaults."""
    return [
        Panel("(a) Contrastive, $\\lambda$ = 0.5", ContrastiveLoss(margin=0.5)),
        Panel("(b) Triplet, batch-hard, margin 0.3\n(Euclidean on unit vectors)", TripletLoss(0.3, normalize=True)),
        Panel("(c) Lifted structure, $\\lambda$ = 1", LiftedStructureLoss(margin=1.0)),
        Panel("(d) Binomial deviance\n$\\alpha$ = 2, $\\beta$ = 50, $\\lambda$ = 0.5", BinomialDevianceLoss()),
        Panel("(e) Multi-Similarity, $\\epsilon$ = 0.1\n$\\alpha$ = 2, $\\beta$ = 50, $\\lambda$ = 0.5",
              MultiSimilarityLoss()),
        Panel("(f) Circle, pair-wise\nm = 0.25, $\\gamma$ = 128", PairwiseCircleLoss(m=0.25, gamma=128.0)),
    ]


def synthetic_batch(num_ids: int = 8, per_id: int = 4, dim: int = 16, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A P x K batch of mixed difficulty: each sample's noise level is drawn from [0.2, 1.4], so positive
    similarities spread over roughly [-0.2, 1] and negative ones over [-0.7, 0.8]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    centers = torch.nn.functional.normalize(torch.randn(num_ids, dim, generator=g, dtype=torch.float64), dim=1)
    noise = 0.2 + 1.2 * torch.rand(len(labels), 1, generator=g, dtype=torch.float64)
    x = centers[labels] + noise * torch.randn(len(labels), dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    return x, labels


def sweep_weights(loss: nn.Module, sim: Tensor, pos: Tensor, neg: Tensor, anchor: int, other: int,
                  grid: Tensor) -> Tensor:
    """Weight of pair (anchor, other) as its similarity sweeps ``grid``, every other pair held fixed."""
    out = []
    for s in grid.tolist():
        swept = sim.clone()
        swept[anchor, other] = swept[other, anchor] = s
        out.append(sim_pair_weights(loss, swept, pos, neg)[anchor, other])
    return torch.stack(out)


def plot_pair_weights(path: Path, panels: Sequence[Panel] | None = None, seed: int = 0,
                      sweep_points: int = 201) -> Path:
    """The GPW paper's Fig. 1 by autograd: per-anchor weight N |dL/ds_ij| against s_ij for a synthetic batch
    (dots) and for one anchor's positive / negative pair swept over [-1, 1] (lines)."""
    panels = list(panels or default_panels())
    x, labels = synthetic_batch(seed=seed)
    sim = cosine_similarity(x)
    pos, neg = pair_masks(labels)
    n = len(labels)
    grid = torch.linspace(-1.0, 1.0, sweep_points, dtype=torch.float64)
    anchor = 0
    probe_pos = int(torch.nonzero(pos[anchor])[0])
    probe_neg = int(torch.argmax(torch.where(neg[anchor], sim[anchor], -torch.inf)))  # its hardest negative

    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.5 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        w = sim_pair_weights(panel.loss, sim, pos, neg) * n
        ax.scatter(sim[pos], w[pos], s=10, color=POS_COLOR, alpha=0.5, linewidths=0, label="positive pairs (batch)")
        ax.scatter(sim[neg], w[neg], s=10, color=NEG_COLOR, alpha=0.4, linewidths=0, marker="s",
                   label="negative pairs (batch)")
        ax.plot(grid, sweep_weights(panel.loss, sim, pos, neg, anchor, probe_pos, grid) * n, color=POS_COLOR,
                lw=2.0, label="one positive pair, swept")
        ax.plot(grid, sweep_weights(panel.loss, sim, pos, neg, anchor, probe_neg, grid) * n, color=NEG_COLOR,
                lw=2.0, ls=":", label="one negative pair, swept")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlim(-1.02, 1.02)
        ax.set_ylim(bottom=-0.03 * max(float(w.max()), 1e-12) if w.max() > 0 else -0.05)
        ax.grid(alpha=0.25)
        ax.set_xlabel("cosine similarity $s_{ij}$")
        ax.set_ylabel("weight $w_{ij} = N\\,|\\partial L / \\partial s_{ij}|$", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, frameon=False, fontsize=9, markerscale=2.5)
    fig.suptitle(f"Pair weights $w = |\\partial L/\\partial s|$ by autograd (GPW, Theorem 3.1) on a synthetic "
                 f"P x K = 8 x 4 batch (seed {seed}), times N = {n} to undo the batch mean.\nDots: every pair of "
                 f"the batch. Lines: one positive / one negative pair of anchor 0 swept over [-1, 1], all other "
                 f"pairs fixed.", fontsize=10.5)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, path)


def _two_pair_field(logit_fn, grid: int = 201) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Over the (s_n, s_p) square: logit difference (target - other) and -grad of the CE, via autograd."""
    axis = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    sn, sp = torch.meshgrid(axis, axis, indexing="xy")
    cosine = torch.stack([sp.flatten(), sn.flatten()], dim=1).requires_grad_(True)
    labels = torch.zeros(len(cosine), dtype=torch.long)
    logits = logit_fn(cosine, labels)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    (g,) = torch.autograd.grad(ce, cosine)
    margin = (logits[:, 0] - logits[:, 1]).detach().reshape(sn.shape)
    return sn, sp, margin, -g[:, 1].reshape(sn.shape), -g[:, 0].reshape(sn.shape)


def push_direction(d_sn: Tensor, d_sp: Tensor) -> Tuple[float, float]:
    """The common direction of a -grad field in (s_n, s_p), scaled so its larger component is 1 (NaN where the
    arrows do not share one direction)."""
    u, v = d_sn.flatten(), d_sp.flatten()
    norm = torch.sqrt(u ** 2 + v ** 2)
    live = norm > 1e-9 * norm.max()  # pairs whose loss has saturated have no direction
    du, dv = u[live] / norm[live], v[live] / norm[live]
    if float((du - du.mean()).abs().max()) > 1e-6 or float((dv - dv.mean()).abs().max()) > 1e-6:
        return math.nan, math.nan
    big = max(abs(float(du.mean())), abs(float(dv.mean())))
    return float(du.mean()) / big, float(dv.mean()) / big


def decision_boundary_figure(m: float = 0.25, gamma: float = 128.0):
    """Left: a loss optimising s_n - s_p (CosFace / AM-softmax, margin m): straight boundary s_p - s_n = m and
    the same gradient direction everywhere. Right: Circle: boundary s_n^2 + (s_p - 1)^2 = 2 m^2 and gradients
    that shrink as a score nears its optimum, all pointing towards T = (0, 1). Returns the pyplot figure."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.0))
    cases = [
        ("(a) $s_n - s_p$ family (CosFace, m = %.2f)" % m, lambda c, y: cosface_logits(c, y, gamma, m), "line"),
        ("(b) Circle loss (m = %.2f, $\\gamma$ = %g)" % (m, gamma), lambda c, y: circle_logits(c, y, m, gamma),
         "circle"),
    ]
    for ax, (title, fn, kind) in zip(axes, cases):
        sn, sp, margin, d_sn, d_sp = _two_pair_field(fn)
        ax.contourf(sn, sp, margin > 0, levels=[-0.5, 0.5, 1.5], colors=["#fde0dd", "#e5f5e0"], alpha=0.8)
        ax.contour(sn, sp, margin, levels=[0.0], colors="k", linewidths=2.0)
        t = torch.linspace(0, 1, 400, dtype=torch.float64)
        if kind == "line":
            ax.plot(t, t + m, "--", color="#d7301f", lw=1.2, label="analytic $s_p - s_n = m$")
            # Read off the arrows themselves, so the note cannot contradict them.
            du, dv = push_direction(d_sn, d_sp)
            note = f"the same push direction\n({du:+.0f}, {dv:+.0f}) in ($s_n$, $s_p$) for every pair"
        else:
            ang = torch.linspace(-math.pi / 2, 0, 400, dtype=torch.float64)
            r = math.sqrt(2) * m
            ax.plot(r * torch.cos(ang), 1 + r * torch.sin(ang), "--", color="#d7301f", lw=1.2,
                    label="analytic $s_n^2 + (s_p - 1)^2 = 2m^2$")
            note = "push $\\propto (-a_n, +a_p)$: stronger\nfor scores far from T"
        step = 20
        q_sn, q_sp = sn[::step, ::step], sp[::step, ::step]
        u, v = d_sn[::step, ::step], d_sp[::step, ::step]
        norm = torch.sqrt(u ** 2 + v ** 2).max()
        ax.quiver(q_sn, q_sp, u / norm, v / norm, color="#444444", angles="xy", scale_units="xy", scale=8,
                  width=0.004)
        ax.plot([0], [1], marker="*", ms=16, color="#fdae61", mec="k", ls="", clip_on=False, zorder=5,
                label="optimum T = (0, 1)")
        ax.text(0.97, 0.40, note, ha="right", va="center", fontsize=9, transform=ax.transAxes,
                bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
        ax.plot([], [], color="k", lw=2, label="decision boundary (computed)")
        ax.plot([], [], color="#444444", marker=r"$\rightarrow$", ls="", ms=12,
                label=r"$-\nabla L$ (scaled, one scale per panel)")
        ax.set(xlim=(-0.02, 1), ylim=(0, 1.02), aspect="equal",
               xlabel="$s_n$ (similarity to the other class / negative)",
               ylabel="$s_p$ (similarity to the own class / positive)", title=title)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.suptitle("Decision boundaries in the ($s_n$, $s_p$) plane; green: $s_p$ wins, red: $s_n$ wins", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def plot_decision_boundary(path: Path, m: float = 0.25, gamma: float = 128.0) -> Path:
    """:func:`decision_boundary_figure` as a PNG."""
    return _save(decision_boundary_figure(m, gamma), path)


def write_figures(output_dir: str | Path, seed: int = 0, sweep_points: int = 201) -> List[Path]:
    """Both figures as PNGs in ``output_dir`` (created if missing)."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ReIDError(f"--output {str(out)!r} is a file; give a folder for the PNGs.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReIDError(f"cannot create the output folder {str(out)!r}: {e.strerror}. "
                        f"Choose a writable path.") from None
    return [plot_pair_weights(out / PAIR_WEIGHTS_FILE, seed=seed, sweep_points=sweep_points),
            plot_decision_boundary(out / BOUNDARY_FILE)]


def _save(fig, path: Path) -> Path:
    try:
        fig.savefig(path, dpi=160)
    except OSError as e:
        raise ReIDError(f"cannot write {str(path)!r}: {e.strerror}.") from None
    finally:
        plt.close(fig)
    return path


__all__ = ["Panel", "default_panels", "synthetic_batch", "sweep_weights", "plot_pair_weights", "push_direction",
           "decision_boundary_figure", "plot_decision_boundary", "write_figures"]
