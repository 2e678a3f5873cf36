"""reid.analysis.pair_weights: Theorem 3.1 of the GPW paper for every registered pair loss, and the weights it reads
equal the closed forms the GPW paper derives (eqs. 6, 10-11, 13-16)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid.analysis import pair_weights, sim_pair_weights
from reid.config import get_cfg
from reid.modeling.losses import (LOSS_REGISTRY, BinomialDevianceLoss, ContrastiveLoss, CrossEntropyLoss,
                                  LiftedStructureLoss, MultiSimilarityLoss, PairwiseCircleLoss, TripletLoss,
                                  pair_masks)
from reid.modeling.losses.mining import MultiSimilarityMiner
from reid.utils.errors import ReIDError

N_ANCHORS = 16


def batch(seed: int = 0, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(4)
    x = torch.randn(4, dim, generator=g, dtype=torch.float64)[labels] + torch.randn(N_ANCHORS, dim, generator=g,
                                                                                   dtype=torch.float64)
    return x, labels


def pair_losses():
    """Every registered pair loss at its config defaults (the triplet on normalised features, so on S)."""
    cfg = get_cfg()
    cfg.MODEL.LOSSES.TRIPLET.NORM_FEAT = True
    losses = [LOSS_REGISTRY.get(n).from_config(cfg) for n in LOSS_REGISTRY]
    return [loss for loss in losses if loss.kind == "pair"]


@pytest.mark.parametrize("loss", pair_losses(), ids=lambda l: type(l).__name__)
def test_theorem_3_1(loss):
    """grad_X L == grad_X [ sum W_neg S_neg - sum W_pos S_pos ] with W = |dL/dS| detached."""
    x, labels = batch(1)
    x.requires_grad_(True)
    (g_loss,) = torch.autograd.grad(loss(x, labels), x)
    sim, w = pair_weights(loss, x, labels)
    pos, neg = pair_masks(labels)
    assert torch.all(w.diagonal() == 0) and torch.all(w[~(pos | neg)] == 0)
    assert w.sum() > 0
    unit = F.normalize(x, dim=1)
    s_live = unit @ unit.t()
    torch.testing.assert_close(s_live.detach(), sim)
    surrogate = (w * neg * s_live).sum() - (w * pos * s_live).sum()
    (g_surrogate,) = torch.autograd.grad(surrogate, x)
    torch.testing.assert_close(g_surrogate, g_loss, rtol=1e-10, atol=1e-12)


def _weights(loss, seed=2):
    x, labels = batch(seed)
    sim, w = pair_weights(loss, x, labels)
    pos, neg = pair_masks(labels)
    return sim, w * N_ANCHORS, pos, neg  # undo the 1/m average: per-anchor weights as in the GPW paper


def test_contrastive_weights_are_indicators():  # GPW paper eq. 6, Fig. 1a
    sim, w, pos, neg = _weights(ContrastiveLoss(margin=0.5))
    torch.testing.assert_close(w[pos], torch.ones_like(w[pos]))
    torch.testing.assert_close(w[neg], (sim[neg] > 0.5).double())


def test_binomial_weights_are_sigmoids():  # GPW paper eqs. 13-14, Fig. 1d (with the alpha, beta factors)
    sim, w, pos, neg = _weights(BinomialDevianceLoss(alpha=2.0, beta=50.0, base=0.5))
    n_pos, n_neg = pos.sum(1, keepdim=True).double(), neg.sum(1, keepdim=True).double()
    expected_pos = 2.0 / n_pos * torch.sigmoid(2.0 * (0.5 - sim))
    expected_neg = 50.0 / n_neg * torch.sigmoid(50.0 * (sim - 0.5))
    torch.testing.assert_close(w[pos], expected_pos.expand_as(w)[pos])
    torch.testing.assert_close(w[neg], expected_neg.expand_as(w)[neg])


def test_lifted_weights_are_softmaxes():  # GPW paper eqs. 10-11, Fig. 1c
    sim, w, pos, neg = _weights(LiftedStructureLoss(margin=1.0))
    for i in range(N_ANCHORS):
        p, n = pos[i], neg[i]
        torch.testing.assert_close(w[i, p], torch.softmax(-sim[i, p], 0))
        torch.testing.assert_close(w[i, n], torch.softmax(sim[i, n], 0))


def test_ms_weights_are_raw_on_mined_pairs():  # GPW paper eqs. 15-16 (RAW) on the VTHM-mined pairs
    sim, w, pos, neg = _weights(MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, epsilon=0.1))
    pos_m, neg_m = MultiSimilarityMiner(0.1)(sim, pos, neg)
    assert torch.all(w[(pos & ~pos_m) | (neg & ~neg_m)] == 0)
    for i in range(N_ANCHORS):
        for j in torch.nonzero(pos_m[i]).flatten():
            rel = torch.exp(2.0 * (sim[i, j] - sim[i, pos_m[i]])).sum()
            assert w[i, j].item() == pytest.approx((1 / (rel + torch.exp(2.0 * (sim[i, j] - 0.5)))).item())
        for k in torch.nonzero(neg_m[i]).flatten():
            rel = torch.exp(-50.0 * (sim[i, k] - sim[i, neg_m[i]])).sum()
            assert w[i, k].item() == pytest.approx((1 / (rel + torch.exp(-50.0 * (sim[i, k] - 0.5)))).item())


def test_triplet_weights_sit_on_the_hardest_pairs():  # GPW paper eq. 8 on d = sqrt(2 - 2s): weight 1/d
    sim, w, pos, neg = _weights(TripletLoss(margin=0.3, normalize=True))
    dist = (2 - 2 * sim).sqrt()
    for i in range(N_ANCHORS):
        jp = torch.where(pos[i], sim[i], torch.inf).argmin()
        kn = torch.where(neg[i], sim[i], -torch.inf).argmax()
        active = float(dist[i, jp] - dist[i, kn] + 0.3 > 0)
        assert w[i, jp].item() == pytest.approx(active / dist[i, jp].item())
        assert w[i, kn].item() == pytest.approx(active / dist[i, kn].item())
        assert (w[i] > 0).sum() == 2 * active


def test_circle_weights_are_self_paced():
    """Circle (Sun et al. 2020, eq. 4 / GPW view): w = sigmoid(z) * softmax share * gamma * a, with
    a_p = [1 + m - s_p]_+ and a_n = [s_n + m]_+: the further a score from its optimum, the larger its weight."""
    m, gamma = 0.25, 128.0
    sim, w, pos, neg = _weights(PairwiseCircleLoss(m=m, gamma=gamma))
    for i in range(N_ANCHORS):
        sp, sn = sim[i, pos[i]], sim[i, neg[i]]
        a_p, a_n = torch.relu(1 + m - sp), torch.relu(sn + m)
        zp, zn = -gamma * a_p * (sp - 1 + m), gamma * a_n * (sn - m)
        sig = torch.sigmoid(torch.logsumexp(zp, 0) + torch.logsumexp(zn, 0))
        torch.testing.assert_close(w[i, pos[i]], sig * torch.softmax(zp, 0) * gamma * a_p)
        torch.testing.assert_close(w[i, neg[i]], sig * torch.softmax(zn, 0) * gamma * a_n)


def test_weights_from_a_given_similarity_matrix():
    """sim_pair_weights accepts any S (sweeps for plots), not only one realised by embeddings."""
    labels = torch.tensor([0, 0, 1, 1])
    pos, neg = pair_masks(labels)
    sim = torch.full((4, 4), 0.7, dtype=torch.float64)
    sim.fill_diagonal_(1.0)
    w = sim_pair_weights(ContrastiveLoss(margin=0.5), sim, pos, neg)
    torch.testing.assert_close(w * 4, (pos | neg).double())


def test_errors_are_clear():
    x, labels = batch()
    with pytest.raises(ReIDError, match="normalize=True"):
        pair_weights(TripletLoss(normalize=False), x, labels)
    with pytest.raises(ReIDError, match="not one"):
        pair_weights(CrossEntropyLoss(), x, labels)


def test_float32_input_and_no_positive_batch():
    x, _ = batch()
    sim, w = pair_weights(PairwiseCircleLoss(), x.float(), torch.arange(N_ANCHORS))
    assert sim.dtype == torch.float32 and torch.all(w == 0)


def test_figures_are_written(tmp_path):
    from reid.analysis.plots import write_figures

    paths = write_figures(tmp_path / "figs", sweep_points=9)
    assert [p.name for p in paths] == ["pair_weights.png", "circle_decision_boundary.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_decision_boundary_notes_say_where_the_arrows_point():
    """Panel (a)'s note names the direction its arrows point; panel (b)'s arrows are (-a_n, +a_p) as noted."""
    import matplotlib.pyplot as plt
    from matplotlib.quiver import Quiver

    from reid.analysis.plots import decision_boundary_figure

    m = 0.25
    fig = decision_boundary_figure(m=m)
    try:
        for ax, expected in zip(fig.axes, ("(-1, +1)", "(-a_n, +a_p)")):
            (arrows,) = [c for c in ax.collections if isinstance(c, Quiver)]
            u, v = np.asarray(arrows.U, dtype=float), np.asarray(arrows.V, dtype=float)
            sn, sp = np.asarray(arrows.X, dtype=float), np.asarray(arrows.Y, dtype=float)
            live = np.hypot(u, v) > 1e-6
            assert live.sum() > 20 and np.all(u[live] < 0) and np.all(v[live] > 0)  # s_n down, s_p up
            notes = [t.get_text().replace("$", "").replace("\\propto ", "") for t in ax.texts]
            assert any(expected in n for n in notes), notes
            if expected == "(-1, +1)":  # the same direction everywhere: equal and opposite components
                np.testing.assert_allclose(-u[live], v[live], rtol=1e-6)
            else:  # Circle: -grad = c (-a_n, +a_p), a_n = s_n + m, a_p = 1 + m - s_p
                np.testing.assert_allclose(-u[live] / v[live], (sn[live] + m) / (1 + m - sp[live]), rtol=1e-6)
    finally:
        plt.close(fig)


def test_plot_cli_reports_errors(tmp_path, capsys):
    from reid.cli.parser import run_tool
    from reid.cli.plot_pair_weights import main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exit_:
        run_tool(main, ["--output", str(blocker)])
    assert exit_.value.code == 1
    assert "is a file" in capsys.readouterr().err
