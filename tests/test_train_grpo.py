"""GRPO loss math on hand-made tensors: group advantages, clipped ratio, k3 KL, masking."""
import math

import numpy as np
import pytest
import torch

from getok_data.masks import mask_to_rle
from getok_data.rewards.core import noop_outside_penalty
from getok_data.tokens import Grid
from getok_data.train.grpo import group_advantages, grpo_loss


def test_group_advantages_normalise_within_each_group():
    r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0], [0.0, 0.0, 2.0]])
    a = group_advantages(r, eps=0.0 + 1e-12)
    s = math.sqrt(2 / 3)  # population std of (1, 2, 3)
    assert torch.allclose(a[0], torch.tensor([-1 / s, 0.0, 1 / s]), atol=1e-6)
    assert torch.allclose(a[1], torch.zeros(3))  # identical rewards: no signal, no NaN
    s2 = math.sqrt(((0 - 2 / 3) ** 2 * 2 + (2 - 2 / 3) ** 2) / 3)
    assert torch.allclose(a[2], torch.tensor([-2 / 3, -2 / 3, 4 / 3]) / s2, atol=1e-6)
    assert torch.allclose(a.mean(1), torch.zeros(3), atol=1e-6)


def test_on_policy_loss_is_minus_the_mean_advantage_and_kl_zero():
    logp = torch.tensor([[-0.5, -1.0, 0.0], [-2.0, -0.1, -0.3]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([2.0, -1.0])
    loss, stats = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, clip=0.2, beta=0.5)
    assert loss.item() == pytest.approx(-(2.0 + -1.0) / 2)
    assert stats["kl"] == pytest.approx(0.0) and stats["ratio"] == pytest.approx(1.0) and stats["clip_frac"] == 0.0
    loss.backward()
    # d loss / d logp_t = -A / |answer| / B for answer tokens, 0 for masked ones
    want = torch.tensor([[-2.0 / 2 / 2, -2.0 / 2 / 2, 0.0], [1.0 / 3 / 2] * 3])
    assert torch.allclose(logp.grad, want)


@pytest.mark.parametrize("adv, ratio, pg, grad", [
    (1.0, 1.5, -1.2, 0.0),    # positive advantage, ratio above 1 + eps: clipped, no gradient
    (1.0, 0.5, -0.5, -0.5),   # positive advantage, ratio below 1 - eps: not clipped (min picks it)
    (-1.0, 1.5, 1.5, 1.5),    # negative advantage, ratio above 1 + eps: not clipped
    (-1.0, 0.5, 0.8, 0.0),    # negative advantage, ratio below 1 - eps: clipped
])
def test_clipped_ratio(adv, ratio, pg, grad):
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).clone().requires_grad_(True)
    loss, stats = grpo_loss(logp, old, logp.detach(), torch.tensor([adv]), torch.ones(1, 1, dtype=torch.bool),
                            clip=0.2, beta=0.0)
    assert loss.item() == pytest.approx(pg)
    loss.backward()
    assert logp.grad.item() == pytest.approx(grad, abs=1e-6)  # d(-ratio * A)/dlogp = -ratio * A
    assert stats["clip_frac"] == 1.0 and stats["ratio"] == pytest.approx(ratio)


def test_k3_kl_value_and_gradient():
    logp = torch.tensor([[math.log(0.25), math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.5), math.log(0.5)]])
    loss, stats = grpo_loss(logp, logp.detach(), ref, torch.tensor([0.0]), torch.ones(1, 2, dtype=torch.bool),
                            clip=0.2, beta=1.0)
    k3 = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1 with d = log(0.5 / 0.25)
    assert loss.item() == pytest.approx(k3 / 2)
    assert stats["kl"] == pytest.approx(k3 / 2)
    loss.backward()
    # d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp) = 1 - 2, averaged over 2 tokens
    assert logp.grad[0, 0].item() == pytest.approx(-1.0 / 2) and logp.grad[0, 1].item() == pytest.approx(0.0)


def test_noop_guard_penalises_keeping_an_anchor_outside_the_gt():
    gt = np.zeros((8, 8), bool)
    gt[0:4, 0:4] = True  # grid points (0, 0), (1, 0), (0, 1), (1, 1) of a 4x4 grid on 8x8 pixels
    target = {"mask_rle": mask_to_rle(gt)}
    grid = Grid(4, 8, 8)
    inside_prev, mixed_prev = "<seg><grid_0_0><grid_1_1></seg>", "<seg><grid_0_0><grid_3_3></seg>"
    keep2 = "<offset><seg><OFF_0_0><OFF_0_0></seg></offset>"
    assert noop_outside_penalty(keep2, inside_prev, target, grid) == 0.0  # nothing to fix
    assert noop_outside_penalty(keep2, mixed_prev, target, grid) == -1.0  # (3, 3) is outside, kept
    assert noop_outside_penalty("<offset><seg><OFF_0_0><DELETE></seg></offset>", mixed_prev, target, grid) == 0.0
    assert noop_outside_penalty("<offset><seg><OFF_0_0></seg></offset>", mixed_prev, target, grid) == -1.0  # count
    assert noop_outside_penalty("<offset><box><OFF_0_0><OFF_0_0></box></offset>", "<box><grid_0_0><grid_3_3></box>",
                                {"mask_rle": mask_to_rle(gt)}, grid) == 0.0  # boxes are judged by box_gain
