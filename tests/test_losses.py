import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course.losses import (
    EPS,
    bce_grad,
    bce_mask_loss,
    composite_loss,
    dice_grad,
    dice_loss,
    dice_loss_loop,
    jaccard_grad,
    jaccard_loss,
    jaccard_loss_loop,
    pick_weighting,
)
from course.masks import mask_dice, mask_iou


def batch(seed, n=3, h=6, w=7, density=0.35, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, h, w, generator=g, dtype=torch.float64)
    targets = torch.rand(n, h, w, generator=g) < density
    return logits, targets


# --- the closed-form gradients --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("eps", [EPS, 0.0, 1e-3, 2.5])
@pytest.mark.parametrize("loss, grad", [(dice_loss, dice_grad), (jaccard_loss, jaccard_grad)])
def test_closed_form_gradient_equals_autograd(seed, eps, loss, grad):
    logits, targets = batch(seed, n=4)
    targets[0] = False  # an empty target
    targets[1] = True  # a full one
    probs = torch.sigmoid(logits).requires_grad_(True)
    value = loss(torch.logit(probs), targets, eps=eps, reduction="sum")
    (auto,) = torch.autograd.grad(value, probs)
    torch.testing.assert_close(grad(probs.detach(), targets, eps=eps), auto, rtol=0, atol=1e-10)


@pytest.mark.parametrize("grad, loss", [(dice_grad, dice_loss), (jaccard_grad, jaccard_loss)])
def test_closed_form_gradient_on_hard_and_tiny_predictions(grad, loss):
    # probabilities 0 and 1 exactly (no logit exists): differentiate the formula in p directly
    targets = torch.zeros(2, 5, 5, dtype=torch.bool)
    targets[0, 1:3, 1:3] = True
    probs = torch.zeros(2, 5, 5, dtype=torch.float64)
    probs[0, 1:3, 2:4] = 1.0
    probs[1, 4, 4] = 1e-9

    def from_probs(p):  # the loss written in p, summed over masks
        inter = (p * targets).flatten(1).sum(1)
        total = p.flatten(1).sum(1) + targets.flatten(1).sum(1)
        if loss is dice_loss:
            return (1 - (2 * inter + EPS) / (total + EPS)).sum()
        return (1 - (inter + EPS) / (total - inter + EPS)).sum()

    leaf = probs.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(from_probs(leaf), leaf)
    torch.testing.assert_close(grad(probs, targets), auto, rtol=0, atol=1e-12)


@pytest.mark.parametrize("loss", [dice_loss, jaccard_loss, bce_mask_loss])
def test_losses_pass_gradcheck(loss):
    logits, targets = batch(7, n=2, h=3, w=4)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, targets, reduction="none"), (logits,))
    assert torch.autograd.gradgradcheck(lambda z: loss(z, targets), (logits,))


def test_composite_loss_passes_gradcheck():
    logits, targets = batch(8, n=2, h=3, w=3)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: composite_loss(z, targets, 0.7, 1.3, 0.5, reduction="none"), (logits,))


def test_bce_gradient_closed_form():
    logits, targets = batch(9)
    probs = torch.sigmoid(logits).requires_grad_(True)
    (auto,) = torch.autograd.grad(bce_mask_loss(torch.logit(probs), targets, reduction="sum"),
                                  probs)
    torch.testing.assert_close(bce_grad(probs.detach(), targets), auto, rtol=1e-9, atol=1e-12)


def test_dice_and_jaccard_gradients_differ_by_a_factor_of_the_overlap():
    logits, targets = batch(10, n=5, h=12, w=12)
    probs = torch.sigmoid(logits)
    inter = (probs * targets).flatten(1).sum(1)
    union = probs.flatten(1).sum(1) + targets.flatten(1).sum(1) - inter
    factor = 2 / (1 + inter / union) ** 2  # [N]
    torch.testing.assert_close(dice_grad(probs, targets, eps=0),
                               factor[:, None, None] * jaccard_grad(probs, targets, eps=0),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("grad", [dice_grad, jaccard_grad])
def test_set_loss_gradients_are_non_local_and_bce_is_local(grad):
    targets = torch.zeros(1, 16, 16, dtype=torch.bool)
    targets[0, 2:6, 2:6] = True
    probs = torch.where(targets, 0.7, 0.05).double()
    moved = probs.clone()
    moved[0, 15, 15] = 0.95  # far from the object and from pixel (3, 3)
    before, after = grad(probs, targets)[0, 3, 3], grad(moved, targets)[0, 3, 3]
    assert abs(after - before) > 0.01 * abs(before)
    assert bce_grad(probs, targets)[0, 3, 3] == bce_grad(moved, targets)[0, 3, 3]


# --- the losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_loop_references_agree(seed):
    logits, targets = batch(seed, n=3, h=5, w=4)
    for eps in (EPS, 0.0, 0.5):
        torch.testing.assert_close(dice_loss(logits, targets, eps, "none"),
                                   dice_loss_loop(logits, targets, eps), rtol=0, atol=1e-14)
        torch.testing.assert_close(jaccard_loss(logits, targets, eps, "none"),
                                   jaccard_loss_loop(logits, targets, eps), rtol=0, atol=1e-14)


def test_hard_predictions_give_one_minus_the_metrics():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((4, 9, 8)) < 0.4, rng.random((4, 9, 8)) < 0.4
    logits = torch.from_numpy(np.where(pred, 60.0, -60.0))
    torch.testing.assert_close(dice_loss(logits, gt, eps=0, reduction="none"),
                               1 - mask_dice(pred, gt).diagonal(), rtol=0, atol=1e-12)
    torch.testing.assert_close(jaccard_loss(logits, gt, eps=0, reduction="none"),
                               1 - mask_iou(pred, gt).diagonal(), rtol=0, atol=1e-12)


def test_bce_is_the_per_mask_mean_of_torch_bce():
    logits, targets = batch(11)
    want = F.binary_cross_entropy_with_logits(logits, targets.double(), reduction="none")
    torch.testing.assert_close(bce_mask_loss(logits, targets, reduction="none"),
                               want.flatten(1).mean(1))


def test_composite_is_the_weighted_sum():
    logits, targets = batch(12)
    want = (0.5 * dice_loss(logits, targets, reduction="none")
            + 2.0 * jaccard_loss(logits, targets, reduction="none")
            + 0.25 * bce_mask_loss(logits, targets, reduction="none"))
    got = composite_loss(logits, targets, w_dice=0.5, w_jaccard=2.0, w_bce=0.25,
                         reduction="none")
    torch.testing.assert_close(got, want)
    assert composite_loss(logits, targets, 0.0, 0.0, 0.0) == 0


@pytest.mark.parametrize("loss", [dice_loss, jaccard_loss, bce_mask_loss, composite_loss])
def test_reductions(loss):
    logits, targets = batch(13)
    per_mask = loss(logits, targets, reduction="none")
    assert per_mask.shape == (3,)
    torch.testing.assert_close(loss(logits, targets, reduction="mean"), per_mask.mean())
    torch.testing.assert_close(loss(logits, targets, reduction="sum"), per_mask.sum())
    torch.testing.assert_close(loss(logits, targets), per_mask.mean())  # the default
    with pytest.raises(ValueError, match="reduction must be one of"):
        loss(logits, targets, reduction="average")


def test_losses_are_bounded_and_rank_predictions():
    targets = torch.zeros(1, 10, 10, dtype=torch.bool)
    targets[0, 3:7, 3:7] = True
    good = torch.where(targets, 4.0, -4.0).double()
    for loss in (dice_loss, jaccard_loss, bce_mask_loss):
        assert 0 <= loss(good, targets) < loss(torch.zeros_like(good), targets) < loss(-good,
                                                                                      targets)
    for loss in (dice_loss, jaccard_loss):
        assert 0 <= loss(-good, targets) <= 1


def test_jaccard_loss_is_at_least_dice_loss():
    logits, targets = batch(14, n=50, h=8, w=8)
    assert bool((jaccard_loss(logits, targets, reduction="none")
                 >= dice_loss(logits, targets, reduction="none") - 1e-15).all())


@pytest.mark.parametrize("loss", [dice_loss, jaccard_loss, composite_loss])
def test_confidently_empty_prediction_on_empty_target(loss):
    logits = torch.full((2, 8, 8), -20.0, dtype=torch.float64, requires_grad=True)
    targets = torch.zeros(2, 8, 8, dtype=torch.bool)
    value = loss(logits, targets)
    value.backward()
    assert 0 <= value.item() < 1e-6
    assert bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("loss", [dice_loss, jaccard_loss, bce_mask_loss, composite_loss])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empty_batch_gives_zero_loss_with_a_gradient(loss, reduction):
    logits = torch.zeros(0, 5, 5, requires_grad=True)
    value = loss(logits, torch.zeros(0, 5, 5, dtype=torch.bool), reduction=reduction)
    assert value.item() == 0 and value.requires_grad
    value.backward()
    assert logits.grad.shape == (0, 5, 5)
    none = loss(logits, torch.zeros(0, 5, 5), reduction="none")
    assert none.shape == (0,)


def test_masks_without_pixels():
    logits = torch.zeros(2, 0, 4)
    targets = torch.zeros(2, 0, 4, dtype=torch.bool)
    for loss in (dice_loss, jaccard_loss, bce_mask_loss):
        assert torch.equal(loss(logits, targets, reduction="none"), torch.zeros(2))


def test_float32_targets_numpy_and_dtypes():
    logits, targets = batch(15)
    want = dice_loss(logits, targets, reduction="none")
    for t in (targets.float(), targets.long(), targets.numpy(), targets.numpy().astype(np.uint8)):
        torch.testing.assert_close(dice_loss(logits, t, reduction="none"), want)
    out32 = dice_loss(logits.float(), targets, reduction="none")
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, want.float())


def test_inputs_are_not_modified():
    logits, targets = batch(16)
    before = logits.clone(), targets.clone()
    composite_loss(logits, targets, 1.0, 1.0, 1.0)
    dice_grad(torch.sigmoid(logits), targets)
    assert torch.equal(logits, before[0]) and torch.equal(targets, before[1])


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [dice_loss, jaccard_loss, bce_mask_loss, composite_loss])
def test_bad_input_is_named(loss):
    logits, targets = batch(17)
    with pytest.raises(ValueError, match=r"targets must have the shape of the predictions"):
        loss(logits, targets[:, :, :-1])
    with pytest.raises(ValueError, match=r"targets must be binary.*0\.5"):
        loss(logits, torch.full_like(logits, 0.5))
    with pytest.raises(ValueError, match=r"targets must be binary.*2"):
        loss(logits, targets.long() * 2)
    bad = logits.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"logits contain NaN at 1 of 126 pixels"):
        loss(bad, targets)
    bad[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"logits contain inf"):
        loss(bad, targets)
    with pytest.raises(ValueError, match=r"logits must have shape \[N, H, W\].*x\[None\]"):
        loss(logits[0], targets[0])
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        loss(targets.long(), targets)
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        loss(logits.numpy(), targets)
    with pytest.raises(TypeError, match="targets must be a torch.Tensor or numpy.ndarray"):
        loss(logits, targets.tolist())


def test_bad_weights_and_eps():
    logits, targets = batch(18)
    with pytest.raises(ValueError, match="w_jaccard must be a finite number >= 0"):
        composite_loss(logits, targets, w_jaccard=-1.0)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        dice_loss(logits, targets, eps=-0.1)
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        dice_grad(logits, targets)
    with pytest.raises(ValueError, match=r"strictly inside \(0, 1\)"):
        bce_grad(targets.double(), targets)


# --- picking a weighting ----------------------------------------------------------------------


def test_pick_weighting():
    ratios = torch.tensor([0.0, 1.0, 2.0])
    clear = torch.tensor([[0.50, 0.52, 0.51], [0.60, 0.61, 0.62], [0.70, 0.71, 0.69]])
    assert pick_weighting(ratios, clear) == 2.0
    assert pick_weighting(ratios.numpy(), clear.numpy()) == 2.0
    overlapping = clear.clone()
    overlapping[1] = torch.tensor([0.60, 0.70, 0.80])  # mean 0.70 +- 0.10 covers the best
    assert pick_weighting(ratios, overlapping) is None
    assert pick_weighting(ratios[:1], clear[:1]) == 0.0  # nothing to beat
    assert pick_weighting(ratios[:2], clear[[1, 1]]) is None  # a tie


def test_pick_weighting_bad_input():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        pick_weighting(torch.tensor([1.0]), torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match=r"ratios must be \[K\] and ious \[K, S\]"):
        pick_weighting(torch.tensor([1.0, 2.0]), torch.ones(3, 3))
    with pytest.raises(ValueError, match="no weightings"):
        pick_weighting(torch.zeros(0), torch.zeros(0, 3))
