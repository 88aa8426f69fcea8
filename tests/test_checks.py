"""Each checker passes a correct answer, fails plausible wrong ones, and fails an answer that
only calls the library. The stored fixtures are what the fixture script makes today."""

import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import course.ap
import course.boxes
import course.data
import course.fpn
import course.fusion
import course.losses
import course.masks
import course.model.anchors
import course.model.assign
import course.model.box_coding
import course.pq
import course.roi_align
from course import checks, matching
from course.masks import mask_iou

ROOT = Path(__file__).resolve().parent.parent


# --- correct answers, written the way a learner would ------------------------------------


def area_ok(masks):
    return masks.flatten(1).sum(1)


def iou_ok(a, b):
    a, b = a.bool().flatten(1).long(), b.bool().flatten(1).long()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter.double() / union.clamp(min=1).double(), 0.0)


def dice_ok(a, b):
    a, b = a.bool().flatten(1).long(), b.bool().flatten(1).long()
    inter = a @ b.T
    total = a.sum(1)[:, None] + b.sum(1)[None, :]
    return torch.where(total > 0, 2 * inter.double() / total.clamp(min=1).double(), 0.0)


def counts_ok(iou, pred_labels, gt_labels, threshold):
    tp = 0
    for c in set(pred_labels.tolist()) & set(gt_labels.tolist()):
        sub = iou[pred_labels == c][:, gt_labels == c]
        weights = torch.where(sub >= threshold, sub, 0.0).numpy()
        rows, cols = linear_sum_assignment(weights, maximize=True)
        tp += int((sub[rows, cols] >= threshold).sum())
    return tp, len(pred_labels) - tp, len(gt_labels) - tp


def greedy_ok(iou, scores, threshold):
    taken, pairs = set(), []
    for d in sorted(range(len(scores)), key=lambda i: -scores[i]):  # sorted() is stable
        best, match = threshold, None
        for g in range(iou.shape[1]):
            if g not in taken and iou[d, g] >= best:
                best, match = iou[d, g], g
        if match is not None:
            taken.add(match)
            pairs.append((d, match))
    return pairs


# --- chapter 09: anchors, box coding, anchor labels ----------------------------------------


def anchors_ok(size, ratios, stride, height, width):
    rows = []
    for i in range(height):
        for j in range(width):
            cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
            for r in ratios.tolist():
                w, h = size / math.sqrt(r), size * math.sqrt(r)
                rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(rows)


def anchors_corner(size, ratios, stride, height, width):  # torchvision's centres, j * s
    return anchors_ok(size, ratios, stride, height, width) - stride / 2


def anchors_ratio_as_width(size, ratios, stride, height, width):  # ratio = w / h
    return anchors_ok(size, 1 / ratios, stride, height, width)


def anchors_ratio_first(size, ratios, stride, height, width):  # ratio-major order
    a = anchors_ok(size, ratios, stride, height, width).view(height * width, len(ratios), 4)
    return a.transpose(0, 1).reshape(-1, 4)


def _centre_size(b):
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return b[:, 0] + w / 2, b[:, 1] + h / 2, w, h


def encode_ok(boxes, reference, weights):
    wx, wy, ww, wh = (float(v) for v in weights)
    cx, cy, w, h = _centre_size(boxes)
    rx, ry, rw, rh = _centre_size(reference)
    return torch.stack([wx * (cx - rx) / rw, wy * (cy - ry) / rh, ww * torch.log(w / rw),
                        wh * torch.log(h / rh)], 1)


def encode_corners(boxes, reference, weights):  # offsets of the corners, not the centre
    wx, wy, ww, wh = (float(v) for v in weights)
    _, _, rw, rh = _centre_size(reference)
    _, _, w, h = _centre_size(boxes)
    return torch.stack([wx * (boxes[:, 0] - reference[:, 0]) / rw,
                        wy * (boxes[:, 1] - reference[:, 1]) / rh, ww * torch.log(w / rw),
                        wh * torch.log(h / rh)], 1)


def encode_no_log(boxes, reference, weights):
    out = encode_ok(boxes, reference, weights)
    _, _, rw, rh = _centre_size(reference)
    _, _, w, h = _centre_size(boxes)
    out[:, 2], out[:, 3] = weights[2] * (w / rw - 1), weights[3] * (h / rh - 1)
    return out


def encode_unweighted(boxes, reference, weights):
    return encode_ok(boxes, reference, (1.0, 1.0, 1.0, 1.0))


def decode_ok(deltas, reference, weights):
    wx, wy, ww, wh = (float(v) for v in weights)
    rx, ry, rw, rh = _centre_size(reference)
    limit = math.log(1000 / 16)
    cx, cy = rx + deltas[:, 0] / wx * rw, ry + deltas[:, 1] / wy * rh
    w = torch.exp((deltas[:, 2] / ww).clamp(max=limit)) * rw
    h = torch.exp((deltas[:, 3] / wh).clamp(max=limit)) * rh
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def decode_unclamped(deltas, reference, weights):
    rx, ry, rw, rh = _centre_size(reference)
    cx, cy = rx + deltas[:, 0] / weights[0] * rw, ry + deltas[:, 1] / weights[1] * rh
    w, h = torch.exp(deltas[:, 2] / weights[2]) * rw, torch.exp(deltas[:, 3] / weights[3]) * rh
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def decode_times_weights(deltas, reference, weights):
    return decode_ok(deltas * weights * weights, reference, weights)


def decode_clamp_after_weights(deltas, reference, weights):
    d = deltas.clone()
    d[:, 2:] = d[:, 2:].clamp(max=math.log(1000 / 16))
    return decode_unclamped(d, reference, weights)


def labels_ok(iou, high, low):
    labels = torch.full((iou.shape[1],), -1)
    if iou.shape[0] == 0:
        return labels.fill_(0)
    best = iou.max(0).values
    labels[best >= high] = 1
    labels[best < low] = 0
    best_of_object = iou.max(1, keepdim=True).values
    labels[((iou == best_of_object) & (best_of_object > 0)).any(0)] = 1
    return labels


def labels_argmax(iou, high, low):  # one best anchor per object: ties lost, zero rows win
    labels = labels_ok(iou, high, low)
    if iou.shape[0]:
        labels = torch.full((iou.shape[1],), -1)
        best = iou.max(0).values
        labels[best >= high] = 1
        labels[best < low] = 0
        labels[iou.argmax(1)] = 1
    return labels


def labels_no_low_quality(iou, high, low):
    labels = torch.zeros(iou.shape[1], dtype=torch.long)
    if iou.shape[0]:
        best = iou.max(0).values
        labels = torch.where(best >= high, 1, torch.where(best < low, 0, -1))
    return labels



# --- chapter 11: fusion ----------------------------------------------------------------------


def paste_ok(masks, scores):
    order = torch.sort(scores, descending=True, stable=True).indices
    out = torch.zeros(masks.shape[1:], dtype=torch.int64)
    for k in order.flip(0).tolist():
        out[masks[k]] = k + 1
    return out


def paste_in_order(masks, scores):  # ignores the scores: the last mask painted wins
    out = torch.zeros(masks.shape[1:], dtype=torch.int64)
    for k in range(len(masks)):
        out[masks[k]] = k + 1
    return out


def paste_lowest_wins(masks, scores):
    return paste_ok(masks, -scores)


def paste_ties_to_later(masks, scores):  # unstable: equal scores go to the later mask
    out = torch.zeros(masks.shape[1:], dtype=torch.int64)
    best = torch.full(masks.shape[1:], -float("inf"), dtype=torch.float64)
    for k in range(len(masks)):
        better = masks[k] & (float(scores[k]) >= best)
        out[better], best[better] = k + 1, float(scores[k])
    return out


def paste_zero_based(masks, scores):
    return torch.where(paste_ok(masks, scores) > 0, paste_ok(masks, scores) - 1, 0)


def paste_via_fusion(masks, scores):
    return course.fusion.paste_by_score(masks, scores)


def protect_ok(masks, semantic, protected, threshold):
    forbidden = torch.zeros(semantic.shape[1:], dtype=torch.bool)
    for c in protected.tolist():
        forbidden |= semantic[c] > threshold
    return masks & ~forbidden


def protect_at_or_above(masks, semantic, protected, threshold):
    forbidden = torch.zeros(semantic.shape[1:], dtype=torch.bool)
    for c in protected.tolist():
        forbidden |= semantic[c] >= threshold
    return masks & ~forbidden


def protect_argmax(masks, semantic, protected, threshold):  # the most probable class, no bar
    return masks & ~torch.isin(semantic.argmax(0), protected)


def protect_first_channel_only(masks, semantic, protected, threshold):
    return protect_ok(masks, semantic, protected[:1], threshold)


def protect_via_library(masks, semantic, protected, threshold):
    return masks & ~course.fusion.protected_pixels(semantic, protected.tolist(), threshold)


# --- plausible wrong answers --------------------------------------------------------------


def area_uint8(masks):  # sums in the masks' own small integer type
    return masks.numpy().astype(np.uint8).reshape(len(masks), -1).sum(1, dtype=np.uint8)


def area_one_axis(masks):
    return masks.sum(dim=1)[:, 0] if masks.numel() else torch.zeros(len(masks))


def iou_float32(a, b):  # ratios in float32, cast up at the end
    a, b = a.bool().flatten(1).float(), b.bool().flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), 0.0).double()


def iou_nan_on_empty(a, b):
    a, b = a.bool().flatten(1).long(), b.bool().flatten(1).long()
    inter = a @ b.T
    return inter.double() / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter).double()


def iou_transposed(a, b):
    return iou_ok(b, a)


def dice_as_iou(a, b):
    return iou_ok(a, b)


def dice_float32(a, b):
    return dice_ok(a, b).float().double()


def counts_ignoring_class(iou, pred_labels, gt_labels, threshold):
    return counts_ok(iou, torch.zeros_like(pred_labels), torch.zeros_like(gt_labels), threshold)


def counts_strict(iou, pred_labels, gt_labels, threshold):
    return counts_ok(iou, pred_labels, gt_labels, threshold + 1e-12)


def counts_not_one_to_one(iou, pred_labels, gt_labels, threshold):
    same = pred_labels[:, None] == gt_labels[None, :]
    tp = int(((iou >= threshold) & same).any(1).sum())
    return tp, len(pred_labels) - tp, max(len(gt_labels) - tp, 0)


def counts_threshold_after_matching(iou, pred_labels, gt_labels, threshold):
    tp = 0  # the Hungarian algorithm on the raw IoU, thresholded afterwards
    for c in set(pred_labels.tolist()) & set(gt_labels.tolist()):
        sub = iou[pred_labels == c][:, gt_labels == c]
        rows, cols = linear_sum_assignment(sub.numpy(), maximize=True)
        tp += int((sub[rows, cols] >= threshold).sum())
    return tp, len(pred_labels) - tp, len(gt_labels) - tp


def greedy_strict(iou, scores, threshold):
    return greedy_ok(iou, scores, math.nextafter(threshold, math.inf))


def greedy_takes_below(iou, scores, threshold):  # the best free object is taken, then checked
    taken, pairs = set(), []
    for d in sorted(range(len(scores)), key=lambda i: -scores[i]):
        free = [g for g in range(iou.shape[1]) if g not in taken]
        if free:
            g = max(free, key=lambda g: iou[d, g])
            taken.add(g)
            if iou[d, g] >= threshold:
                pairs.append((d, g))
    return pairs


def greedy_index_order(iou, scores, threshold):
    return greedy_ok(iou, torch.zeros_like(scores), threshold)


def greedy_first_above(iou, scores, threshold):
    taken, pairs = set(), []
    for d in sorted(range(len(scores)), key=lambda i: -scores[i]):
        for g in range(iou.shape[1]):
            if g not in taken and iou[d, g] >= threshold:
                taken.add(g)
                pairs.append((d, g))
                break
    return pairs


def greedy_reuses(iou, scores, threshold):
    pairs = []
    for d in range(iou.shape[0]):
        if iou.shape[1] and iou[d].max() >= threshold:
            pairs.append((d, int(iou[d].argmax())))
    return pairs


# --- answers that only call the library ---------------------------------------------------


def iou_via_module(a, b):
    return course.masks.mask_iou(a, b)


def iou_via_import(a, b):
    return mask_iou(a, b)


def counts_via_library(iou, pred_labels, gt_labels, threshold):
    r = matching.tp_fp_fn(iou, pred_labels, gt_labels, threshold)
    return r.tp, r.fp, r.fn


def counts_via_hungarian(iou, pred_labels, gt_labels, threshold):  # hides the class loop only
    tp = 0
    for c in set(pred_labels.tolist()):
        tp += matching.hungarian_match(iou[pred_labels == c][:, gt_labels == c], threshold).tp
    return tp, len(pred_labels) - tp, len(gt_labels) - tp


def greedy_via_library(iou, scores, threshold):
    try:  # a broad except in the learner's code must not hide the call
        return matching.greedy_match(iou, scores, threshold).pairs
    except Exception:
        return []


# --- chapters 06-07: losses, receptive fields, FPN levels ---------------------------------


def dice_loss_ok(logits, targets):
    p = torch.sigmoid(logits).flatten(1)
    g = targets.flatten(1).to(p.dtype)
    inter = (p * g).sum(1)
    return 1 - (2 * inter + 1) / (p.sum(1) + g.sum(1) + 1)


def dice_loss_eps_below_only(logits, targets):
    p, g = torch.sigmoid(logits).flatten(1), targets.flatten(1).double()
    return 1 - 2 * (p * g).sum(1) / (p.sum(1) + g.sum(1) + 1)


def dice_loss_no_sigmoid(logits, targets):
    return dice_loss_ok(torch.logit(logits.clamp(0.001, 0.999)), targets)


def dice_loss_whole_batch(logits, targets):
    one = dice_loss_ok(logits.reshape(1, -1, 1), targets.reshape(1, -1, 1))
    return one.expand(len(logits))


def dice_loss_float32(logits, targets):
    return dice_loss_ok(logits.float(), targets).double()


def dice_grad_ok(probs, target, k):
    inter, total = (probs * target).sum(), probs.sum() + target.sum()
    return float(-(2 * target[k] * (total + 1) - (2 * inter + 1)) / (total + 1) ** 2)


def dice_grad_local_only(probs, target, k):
    return float(-2 * target[k] / (probs.sum() + target.sum() + 1))


def dice_grad_of_the_coefficient(probs, target, k):
    return -dice_grad_ok(probs, target, k)


def dice_grad_wrt_logit(probs, target, k):
    return dice_grad_ok(probs, target, k) * float(probs[k] * (1 - probs[k]))


def pick_ok(ratios, ious):
    mean, std = ious.mean(1), ious.std(1)
    best = int(mean.argmax())
    for k in range(len(mean)):
        if k != best and not mean[best] - mean[k] > std[best] + std[k]:
            return None
    return float(ratios[best])


def pick_best_mean(ratios, ious):
    return float(ratios[int(ious.mean(1).argmax())])


def pick_population_std(ratios, ious):
    mean, std = ious.mean(1), ious.std(1, unbiased=False)
    best = int(mean.argmax())
    ok = all(mean[best] - mean[k] > std[best] + std[k] for k in range(len(mean)) if k != best)
    return float(ratios[best]) if ok else None


def pick_runner_up_only(ratios, ious):
    mean, std = ious.mean(1), ious.std(1)
    order = mean.argsort(descending=True)
    if len(order) == 1:
        return float(ratios[0])
    a, b = int(order[0]), int(order[1])
    return float(ratios[a]) if mean[a] - mean[b] > std[a] + std[b] else None


def rf_ok(layers):
    size, jump = 1, 1
    for kernel, stride, dilation in layers.tolist():
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return size, jump


def rf_no_dilation(layers):
    return rf_ok(torch.cat([layers[:, :2], torch.ones_like(layers[:, :1])], 1))


def rf_stride_first(layers):
    size, jump = 1, 1
    for kernel, stride, dilation in layers.tolist():
        jump *= stride
        size += dilation * (kernel - 1) * jump
    return size, jump


def rf_sum_of_kernels(layers):
    return 1 + int((layers[:, 0] - 1).sum()), int(layers[:, 1].prod())


def out_size_ok(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def out_size_no_dilation(size, kernel, stride, padding, dilation):
    return out_size_ok(size, kernel, stride, padding, 1)


def out_size_ceil(size, kernel, stride, padding, dilation):
    return -(-(size + 2 * padding - dilation * (kernel - 1) - 1) // stride) + 1


def out_size_one_side_padding(size, kernel, stride, padding, dilation):
    return out_size_ok(size - padding, kernel, stride, padding, dilation)


def level_ok(boxes, k_min, k_max, canonical_size, canonical_level):
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = torch.floor(canonical_level + torch.log2(area.sqrt() / canonical_size) + 1e-6)
    return k.clamp(k_min, k_max).long()


def level_from_width(boxes, k_min, k_max, canonical_size, canonical_level):
    k = torch.floor(canonical_level + torch.log2((boxes[:, 2] - boxes[:, 0]) / canonical_size))
    return k.clamp(k_min, k_max).long()


def level_rounded(boxes, k_min, k_max, canonical_size, canonical_level):
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = torch.round(canonical_level + torch.log2(area.sqrt() / canonical_size))
    return k.clamp(k_min, k_max).long()


def level_unclamped(boxes, k_min, k_max, canonical_size, canonical_level):
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = torch.floor(canonical_level + torch.log2(area.sqrt() / canonical_size) + 1e-6)
    return k.clamp(-100, 100).long()


# --- chapters 04-05: Panoptic Quality, failure modes ---------------------------------------


def pq_counts_ok(gt_ids, gt_segments, pred_ids, pred_segments, *, void_too=True,
                 strict=True, summed=True, crowd_is_fn=False):
    stats = {}
    for c, _ in [*gt_segments.values(), *pred_segments.values()]:
        stats.setdefault(c, [0.0, 0, 0, 0])
    on_void = {p: int(((pred_ids == p) & (gt_ids == 0)).sum()) for p in pred_segments}
    hit_gt, hit_pred = set(), set()
    for g, (gc, crowd) in gt_segments.items():
        gm = gt_ids == g
        for p, (pc, _) in pred_segments.items():
            if gc != pc or crowd:
                continue
            pm = pred_ids == p
            inter = int((gm & pm).sum())
            union = int(gm.sum()) + int(pm.sum()) - inter - (on_void[p] if void_too else 0)
            if inter and (2 * inter > union if strict else 2 * inter >= union):
                stats[gc][0] += inter / union
                stats[gc][1] += 1
                hit_gt.add(g)
                hit_pred.add(p)
    for g, (gc, crowd) in gt_segments.items():
        if g not in hit_gt and (crowd_is_fn or not crowd):
            stats[gc][3] += 1
    crowd_of = {gc: g for g, (gc, crowd) in gt_segments.items() if crowd}  # the last one listed
    for p, (pc, _) in pred_segments.items():
        if p in hit_pred:
            continue
        pm = pred_ids == p
        on_crowd = int((pm & (gt_ids == crowd_of[pc])).sum()) if pc in crowd_of else 0
        area = int(pm.sum())
        if summed:
            ignored = 2 * (on_void[p] + on_crowd) > area
        else:
            ignored = 2 * on_void[p] > area or 2 * on_crowd > area
        if not ignored:
            stats[pc][2] += 1
    return stats


def pq_counts_plain_union(*args):
    return pq_counts_ok(*args, void_too=False)


def pq_counts_half_is_enough(*args):
    return pq_counts_ok(*args, strict=False)


def pq_counts_void_and_crowd_apart(*args):
    return pq_counts_ok(*args, summed=False)


def pq_counts_crowd_missed(*args):
    return pq_counts_ok(*args, crowd_is_fn=True)


def pq_from_counts_ok(iou_sum, tp, fp, fn):
    keep = (tp + fp + fn) > 0
    iou, tp, fp, fn = (x[keep].double() for x in (iou_sum, tp, fp, fn))
    denominator = tp + fp / 2 + fn / 2
    sq = torch.where(tp > 0, iou / tp.clamp(min=1), 0.0)
    return (iou / denominator).mean().item(), sq.mean().item(), (tp / denominator).mean().item()


def pq_from_mean_sq_times_mean_rq(iou_sum, tp, fp, fn):
    _, sq, rq = pq_from_counts_ok(iou_sum, tp, fp, fn)
    return sq * rq, sq, rq


def pq_from_counts_all_classes(iou_sum, tp, fp, fn):
    denominator = (tp + fp / 2 + fn / 2).double().clamp(min=0.5)
    sq = torch.where(tp > 0, iou_sum / tp.clamp(min=1), 0.0)
    return ((iou_sum / denominator).mean().item(), sq.mean().item(),
            (tp / denominator).mean().item())


def pq_from_counts_sq_over_found_classes(iou_sum, tp, fp, fn):
    pq, _, rq = pq_from_counts_ok(iou_sum, tp, fp, fn)
    return pq, (iou_sum[tp > 0] / tp[tp > 0]).mean().item(), rq


def failures_ok(inter, gt_area, pred_area):
    covers = 2 * inter > gt_area[:, None]
    labels = []
    for g in range(len(gt_area)):
        merged = any(covers[g, p] and covers[:, p].sum() >= 2 for p in range(len(pred_area)))
        pieces = sum(2 * inter[g, p] > pred_area[p] for p in range(len(pred_area)))
        matched = any(2 * inter[g, p] > gt_area[g] + pred_area[p] - inter[g, p]
                      for p in range(len(pred_area)))
        labels.append("merge" if merged else "split" if pieces >= 2 else
                      "match" if matched else "miss")
    return labels


def failures_iou_only(inter, gt_area, pred_area):
    union = gt_area[:, None] + pred_area[None, :] - inter
    return ["match" if bool(row.any()) else "miss" for row in 2 * inter > union]


def failures_match_first(inter, gt_area, pred_area):
    labels = failures_ok(inter, gt_area, pred_area)
    union = gt_area[:, None] + pred_area[None, :] - inter
    found = (2 * inter > union).any(1).tolist()
    return ["match" if f else lab for lab, f in zip(labels, found)]


def failures_one_piece_is_a_split(inter, gt_area, pred_area):
    labels = failures_ok(inter, gt_area, pred_area)
    inside = (2 * inter > pred_area[None, :]).sum(1).tolist()
    return ["split" if lab == "miss" and k >= 1 else lab for lab, k in zip(labels, inside)]


def min_size_ok(stride, coverage):
    d = 1
    while (d / 2) ** 2 <= coverage * stride**2:
        d += 1
    return d


def min_size_ceil(stride, coverage):
    return math.ceil(2 * stride * math.sqrt(coverage))


def min_size_best_place(stride, coverage):  # the square centred in a cell, not the worst place
    return math.floor(stride * math.sqrt(coverage)) + 1


def min_size_sqrt2(stride, coverage):
    return math.floor(math.sqrt(2) * stride) + 1


# --- chapter 08 (ROIAlign) ---------------------------------------------------------------


def bilinear_ok(feature, y, x):
    height, width = feature.shape[-2:]
    if y < -1 or y > height or x < -1 or x > width:
        return torch.zeros(feature.shape[:-2], dtype=feature.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = min(int(y), height - 1), min(int(x), width - 1)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    ly = y - y0 if y0 < height - 1 else 0.0
    lx = x - x0 if x0 < width - 1 else 0.0
    return ((1 - ly) * (1 - lx) * feature[..., y0, x0] + (1 - ly) * lx * feature[..., y0, x1]
            + ly * (1 - lx) * feature[..., y1, x0] + ly * lx * feature[..., y1, x1])


def bilinear_zero_padding(feature, y, x):  # neighbours off the map read 0, no clamping
    padded = torch.nn.functional.pad(feature, (1, 1, 1, 1))
    y, x = y + 1, x + 1
    if not (0 <= y <= padded.shape[-2] - 1 and 0 <= x <= padded.shape[-1] - 1):
        return torch.zeros(feature.shape[:-2], dtype=feature.dtype)
    y0, x0 = min(int(y), padded.shape[-2] - 2), min(int(x), padded.shape[-1] - 2)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * padded[..., y0, x0] + (1 - ly) * lx * padded[..., y0, x0 + 1]
            + ly * (1 - lx) * padded[..., y0 + 1, x0] + ly * lx * padded[..., y0 + 1, x0 + 1])


def bilinear_swapped(feature, y, x):
    return bilinear_ok(feature, x, y)


def bilinear_strictly_inside(feature, y, x):  # no [-1, 0) or (H - 1, H] margin
    if y < 0 or y > feature.shape[-2] - 1 or x < 0 or x > feature.shape[-1] - 1:
        return torch.zeros(feature.shape[:-2], dtype=feature.dtype)
    return bilinear_ok(feature, y, x)


def bilinear_via_roi_align(feature, y, x):  # a point box: one sample at (y, x)
    f = feature.reshape(-1, *feature.shape[-2:])[None]  # [1, C, H, W]
    box = torch.tensor([[0, x + 0.5, y + 0.5, x + 0.5, y + 0.5]], dtype=f.dtype)
    return course.roi_align.roi_align(f, box, 1, 1.0, 1)[0, :, 0, 0].reshape(feature.shape[:-2])


def weights_ok(start, bin_size, grid, bins, size, centre=0.5, inside_only=False, clamp=False,
               mean=True):
    weights = torch.zeros(bins, size, dtype=torch.float64)
    for p in range(bins):
        inside = 0
        for k in range(grid):
            y = start + p * bin_size + (k + centre) * bin_size / grid
            if y < -1 or y > size:
                if not clamp:
                    continue
                y = min(max(y, 0.0), size - 1.0)  # read the edge row instead of nothing
            inside += 1
            y = max(y, 0.0)
            y0 = min(int(y), size - 1)
            y1 = min(y0 + 1, size - 1)
            ly = y - y0 if y0 < size - 1 else 0.0
            weights[p, y0] += 1 - ly
            weights[p, y1] += ly
        if mean:
            weights[p] /= max(inside if inside_only else grid, 1)
    return weights


def weights_at_part_starts(*args):  # samples at the start of each part, not its middle
    return weights_ok(*args, centre=0.0)


def weights_mean_of_inside(*args):  # divides by the samples inside the map only
    return weights_ok(*args, inside_only=True)


def weights_clamped(*args):  # samples outside [-1, H] read the edge row
    return weights_ok(*args, clamp=True)


def weights_summed(*args):  # the sum over the samples, not their mean
    return weights_ok(*args, mean=False)


def weights_via_interpolation(start, bin_size, grid, bins, size):  # a one-hot map per row
    eye = torch.eye(size, dtype=torch.float64)[:, :, None]  # [H (channels), H, 1]
    weights = torch.zeros(bins, size, dtype=torch.float64)
    for p in range(bins):
        for k in range(grid):
            y = start + p * bin_size + (k + 0.5) * bin_size / grid
            weights[p] += course.roi_align.bilinear_interpolate(eye, y, 0.0) / grid
    return weights


def weights_via_matrix(start, bin_size, grid, bins, size):
    return course.roi_align.interpolation_matrix(
        torch.tensor([float(start)], dtype=torch.float64),
        torch.tensor([float(bin_size)], dtype=torch.float64), torch.tensor([grid]), bins, size)[0]


def multiscale_ok(features, boxes, output_size, aligned=True, in_level_order=False):
    level = course.boxes.fpn_level(boxes[:, 1:], 2, 5)
    pooled, order = [], []
    for k in range(2, 6):
        index = torch.where(level == k)[0]
        pooled.append(course.roi_align.roi_align(features[k - 2], boxes[index], output_size,
                                                 1 / 2**k, 2, aligned))
        order.append(index)
    pooled = torch.cat(pooled)
    return pooled if in_level_order else pooled[torch.argsort(torch.cat(order))]


def multiscale_level_order(features, boxes, output_size):
    return multiscale_ok(features, boxes, output_size, in_level_order=True)


def multiscale_unaligned(features, boxes, output_size):  # torchvision's pooler's convention
    return multiscale_ok(features, boxes, output_size, aligned=False)


def multiscale_all_on_p2(features, boxes, output_size):
    return course.roi_align.roi_align(features[0], boxes, output_size, 1 / 4, 2)


# --- chapter 03: COCO Average Precision ------------------------------------------------


def pr_ok(tp, num_gt):
    hits = torch.cumsum(tp.long(), 0).double()
    return hits / torch.arange(1, len(tp) + 1, dtype=torch.float64), hits / num_gt


def pr_swapped(tp, num_gt):
    precision, recall = pr_ok(tp, num_gt)
    return recall, precision


def pr_not_cumulative(tp, num_gt):  # whether this detection is a hit, not the hits so far
    return tp.double(), tp.double() / num_gt


def pr_recall_over_list(tp, num_gt):
    precision, _ = pr_ok(tp, num_gt)
    return precision, torch.cumsum(tp.long(), 0).double() / max(len(tp), 1)


def _sampled_ap(precision, recall, points, side="left", envelope=True):
    p, r = np.asarray(precision, dtype=float), np.asarray(recall, dtype=float)
    if not len(p):
        return 0.0
    if envelope:
        p = np.maximum.accumulate(p[::-1])[::-1]
    first = np.searchsorted(r, points, side=side)
    return float(np.mean([p[i] if i < len(p) else 0.0 for i in first]))


def ap_ok(precision, recall):
    return _sampled_ap(precision, recall, np.linspace(0, 1, 101))


def ap_no_envelope(precision, recall):
    return _sampled_ap(precision, recall, np.linspace(0, 1, 101), envelope=False)


def ap_11_points(precision, recall):
    return _sampled_ap(precision, recall, np.linspace(0, 1, 11))


def ap_right_side(precision, recall):
    return _sampled_ap(precision, recall, np.linspace(0, 1, 101), side="right")


def ap_area_under_curve(precision, recall):
    steps = np.diff(np.concatenate([[0.0], np.asarray(recall, dtype=float)]))
    return float(np.sum(steps * np.asarray(precision, dtype=float)))


def ap_thresholds_ok(iou, scores, thresholds=None, order=None, strict=False, reuse=False):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i])) if order is None else order
    aps = []
    for t in np.linspace(0.5, 0.95, 10) if thresholds is None else thresholds:
        taken, tp = set(), []
        for d in order:
            best, match = t, None
            for g in range(iou.shape[1]):
                good = iou[d, g] > best if strict else iou[d, g] >= best
                if (reuse or g not in taken) and good:
                    best, match = float(iou[d, g]), g
            if match is not None:
                taken.add(match)
            tp.append(match is not None)
        hits = np.cumsum(tp)
        precision = hits / np.arange(1, len(tp) + 1)
        aps.append(_sampled_ap(precision, hits / iou.shape[1], np.linspace(0, 1, 101)))
    return float(np.mean(aps))


def ap_thresholds_at_half_only(iou, scores):
    return ap_thresholds_ok(iou, scores, thresholds=[0.5])


def ap_thresholds_row_order(iou, scores):
    return ap_thresholds_ok(iou, scores, order=range(len(scores)))


def ap_thresholds_strict(iou, scores):
    return ap_thresholds_ok(iou, scores, strict=True)


def ap_thresholds_reuse_objects(iou, scores):
    return ap_thresholds_ok(iou, scores, reuse=True)


def ap_thresholds_via_library_steps(iou, scores):  # writes the matching, borrows the rest
    order = torch.argsort(-scores, stable=True)
    aps = []
    for t in np.linspace(0.5, 0.95, 10):
        matched = matching.greedy_match(iou, scores, t).pairs[:, 0].tolist()
        tp = torch.tensor([int(d) in matched for d in order], dtype=torch.bool)
        aps.append(course.ap.average_precision(*course.ap.precision_recall(tp, iou.shape[1])))
    return float(np.mean(aps))


CHECKERS = {
    "mask_area": (checks.check_mask_area, area_ok, [area_uint8, area_one_axis],
                  [lambda m: course.masks.mask_area(m)]),
    "mask_iou": (checks.check_mask_iou, iou_ok, [iou_float32, iou_nan_on_empty, iou_transposed],
                 [iou_via_module, iou_via_import]),
    "mask_dice": (checks.check_mask_dice, dice_ok, [dice_as_iou, dice_float32],
                  [lambda a, b: course.masks.mask_dice(a, b),
                   lambda a, b: 2 * iou_via_module(a, b) / (1 + iou_via_module(a, b))]),
    "tp_fp_fn": (checks.check_tp_fp_fn, counts_ok,
                 [counts_ignoring_class, counts_strict, counts_not_one_to_one,
                  counts_threshold_after_matching],
                 [counts_via_library, counts_via_hungarian]),
    "greedy_match": (checks.check_greedy_match, greedy_ok,
                     [greedy_index_order, greedy_first_above, greedy_reuses, greedy_strict,
                      greedy_takes_below],
                     [greedy_via_library]),
    # chapter 06
    "dice_loss": (checks.check_dice_loss, dice_loss_ok,
                  [dice_loss_eps_below_only, dice_loss_no_sigmoid, dice_loss_whole_batch,
                   dice_loss_float32],
                  [lambda z, t: course.losses.dice_loss(z, t, reduction="none"),
                   lambda z, t: course.losses.composite_loss(z, t, 1.0, 0.0, 0.0,
                                                             reduction="none")]),
    "dice_grad_pixel": (checks.check_dice_grad_pixel, dice_grad_ok,
                        [dice_grad_local_only, dice_grad_of_the_coefficient, dice_grad_wrt_logit],
                        [lambda p, g, k: float(course.losses.dice_grad(p[None, None],
                                                                       g[None, None])[0, 0, k])]),
    "pick_weighting": (checks.check_pick_weighting, pick_ok,
                       [pick_best_mean, pick_population_std, pick_runner_up_only],
                       [lambda r, i: course.losses.pick_weighting(r, i)]),
    # chapter 07
    "receptive_field": (checks.check_receptive_field, rf_ok,
                        [rf_no_dilation, rf_stride_first, rf_sum_of_kernels],
                        [lambda layers: tuple(course.fpn.receptive_field(layers))]),
    "conv_output_size": (checks.check_conv_output_size, out_size_ok,
                         [out_size_no_dilation, out_size_ceil, out_size_one_side_padding],
                         [lambda *args: course.fpn.conv_output_size(*args)]),
    "fpn_level": (checks.check_fpn_level, level_ok,
                  [level_from_width, level_rounded, level_unclamped],
                  [lambda b, *params: course.boxes.fpn_level(b, *params)]),
    # chapters 04-05
    "pq_stats": (checks.check_pq_stats, pq_counts_ok,
                 [pq_counts_plain_union, pq_counts_half_is_enough,
                  pq_counts_void_and_crowd_apart, pq_counts_crowd_missed],
                 [lambda *args: course.pq.pq_stats(*args).as_dict(),
                  lambda *args: course.pq.pq_stats_loop(*args)]),
    "pq_from_counts": (checks.check_pq_from_counts, pq_from_counts_ok,
                       [pq_from_mean_sq_times_mean_rq, pq_from_counts_all_classes,
                        pq_from_counts_sq_over_found_classes],
                       [lambda *counts: course.pq.pq_from_counts(*counts)]),
    "classify_failures": (checks.check_classify_failures, failures_ok,
                          [failures_iou_only, failures_match_first,
                           failures_one_piece_is_a_split],
                          [lambda *args: course.pq.classify_failures(*args)]),
    "min_resolvable_size": (checks.check_min_resolvable_size, min_size_ok,
                            [min_size_ceil, min_size_best_place, min_size_sqrt2],
                            [lambda s, c: course.data.min_resolvable_size(s, c)]),
    # chapter 08
    "bilinear_interpolate": (checks.check_bilinear_interpolate, bilinear_ok,
                             [bilinear_zero_padding, bilinear_swapped, bilinear_strictly_inside],
                             [lambda f, y, x: course.roi_align.bilinear_interpolate(f, y, x),
                              bilinear_via_roi_align]),
    "roi_align_weights": (checks.check_roi_align_weights, weights_ok,
                          [weights_at_part_starts, weights_mean_of_inside, weights_clamped,
                           weights_summed],
                          [weights_via_interpolation, weights_via_matrix]),
    "multiscale_roi_align": (checks.check_multiscale_roi_align, multiscale_ok,
                             [multiscale_level_order, multiscale_unaligned, multiscale_all_on_p2],
                             [lambda f, b, s: course.roi_align.multiscale_roi_align(f, b, s)]),
    # chapter 09
    "grid_anchors": (checks.check_grid_anchors, anchors_ok,
                     [anchors_corner, anchors_ratio_as_width, anchors_ratio_first],
                     [lambda *args: course.model.anchors.grid_anchors(*args)]),
    "encode_boxes": (checks.check_encode_boxes, encode_ok,
                     [encode_corners, encode_no_log, encode_unweighted],
                     [lambda *args: course.model.box_coding.encode_boxes(*args)]),
    "decode_boxes": (checks.check_decode_boxes, decode_ok,
                     [decode_unclamped, decode_times_weights, decode_clamp_after_weights],
                     [lambda *args: course.model.box_coding.decode_boxes(*args)]),
    "label_anchors": (checks.check_label_anchors, labels_ok,
                      [labels_argmax, labels_no_low_quality],
                      [lambda iou, h, lo: course.model.assign.match_boxes(iou, h, lo,
                                                                          True).label]),
    # chapter 11
    "paste_by_score": (checks.check_paste_by_score, paste_ok,
                       [paste_in_order, paste_lowest_wins, paste_ties_to_later, paste_zero_based],
                       [paste_via_fusion]),
    "protect": (checks.check_protect, protect_ok,
                [protect_at_or_above, protect_argmax, protect_first_channel_only],
                [protect_via_library]),
    # chapter 03
    "precision_recall": (checks.check_precision_recall, pr_ok,
                         [pr_swapped, pr_not_cumulative, pr_recall_over_list],
                         [lambda tp, n: course.ap.precision_recall(tp, n)]),
    "average_precision": (checks.check_average_precision, ap_ok,
                          [ap_no_envelope, ap_11_points, ap_right_side, ap_area_under_curve],
                          [lambda p, r: course.ap.average_precision(p, r),
                           lambda p, r: ap_ok(course.ap.precision_envelope(p), r)]),
    "ap_over_thresholds": (checks.check_ap_over_thresholds, ap_thresholds_ok,
                           [ap_thresholds_at_half_only, ap_thresholds_row_order,
                            ap_thresholds_strict, ap_thresholds_reuse_objects],
                           [lambda iou, s: course.ap.ap_over_thresholds(iou, s),
                            ap_thresholds_via_library_steps]),
}


@pytest.mark.parametrize("name", CHECKERS)
def test_checker_passes_a_correct_answer(name, capsys):
    checker, correct, _, _ = CHECKERS[name]
    checker(correct)
    n = len(checks.load_cases(name))
    assert capsys.readouterr().out == f"{name}: {n}/{n} checks passed\n"


@pytest.mark.parametrize("name, wrong", [(name, w) for name, c in CHECKERS.items() for w in c[2]])
def test_checker_fails_a_plausible_wrong_answer(name, wrong):
    checker = CHECKERS[name][0]
    with pytest.raises(AssertionError, match=rf"^{name}: \d+/\d+ checks passed\n  - case \d+ '"):
        checker(wrong)


@pytest.mark.parametrize("name, cheat", [(name, w) for name, c in CHECKERS.items() for w in c[3]])
def test_checker_fails_an_answer_that_calls_the_library(name, cheat):
    checker = CHECKERS[name][0]
    with pytest.raises(AssertionError, match="calls the library's course"):
        checker(cheat)


def test_library_is_restored_after_a_check():
    original = course.masks.mask_iou
    with pytest.raises(AssertionError):
        checks.check_mask_iou(iou_via_module)
    assert course.masks.mask_iou is original and mask_iou is original
    assert course.masks.mask_iou(np.ones((1, 2, 2), bool), np.ones((1, 2, 2), bool)).item() == 1.0


def test_failure_message_names_case_shapes_and_hint_but_not_the_answer():
    def float32_on_thin_masks(a, b):  # wrong only on the two [1, 3, 10] ratio cases
        return iou_float32(a, b) if a.shape[1:] == (3, 10) else iou_ok(a, b)

    with pytest.raises(AssertionError) as info:
        checks.check_mask_iou(float32_on_thin_masks)
    message = str(info.value)
    assert "a ratio of exactly 7 / 10" in message
    assert "[1, 3, 10] bool" in message and "Hint: count pixels as integers" in message
    assert "precision" in message
    assert "0.7" not in message and "tensor(" not in message


def test_a_crashing_answer_is_reported_as_a_failed_case():
    def crashes(a, b):
        raise IndexError("oops")

    with pytest.raises(AssertionError, match=r"raised IndexError: oops"):
        checks.check_mask_iou(crashes)


def test_checker_wants_a_function():
    with pytest.raises(TypeError, match="expects your function"):
        checks.check_mask_iou(None)


def test_inputs_are_fresh_copies_for_each_case(monkeypatch):
    # Serve the same stored arrays to every call, as a cache would, so that an edit in place
    # that reached them would show in the second call and in the arrays themselves.
    stored = checks.load_cases("mask_iou")
    pristine = [[a.copy() for a in case.args] for case in stored]
    monkeypatch.setattr(checks, "load_cases", lambda exercise: stored)

    def clobbers(a, b):
        result = iou_ok(a, b)
        a.zero_()
        b.zero_()
        return result

    checks.check_mask_iou(clobbers)
    checks.check_mask_iou(clobbers)  # fails if the first call zeroed the stored masks
    for case, args in zip(stored, pristine, strict=True):
        for got, want in zip(case.args, args, strict=True):
            assert np.array_equal(got, want), case.name


def test_fixtures_are_what_the_script_makes_today():
    path = ROOT / "scripts" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_fixtures", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert set(script.BUILDERS) == {p.stem for p in (ROOT / "course/fixtures").glob("*.npz")}
    for name, build in script.BUILDERS.items():
        stored, fresh = checks.load_cases(name), build()
        assert len(stored) == len(fresh), name
        for s, f in zip(stored, fresh):
            assert (s.name, s.hint) == (f.name, f.hint)
            assert len(s.args) == len(f.args) and s.expected.keys() == f.expected.keys()
            for x, y in zip(s.args + list(s.expected.values()),
                            f.args + list(f.expected.values())):
                x, y = np.asarray(x), np.asarray(y)
                assert x.dtype == y.dtype and np.array_equal(x, y), f"{name}: {s.name}"


# --- conventions: each wrong one is named, with a hint about the right property ------------


@pytest.mark.parametrize("checker, wrong, detected, hint", [
    (checks.check_tp_fp_fn, counts_threshold_after_matching, "threshold is applied afterwards",
     "a pair below the threshold cannot match, so it must not take part in the assignment"),
    (checks.check_tp_fp_fn, counts_strict, "IoU exactly at the threshold was not matched",
     "a pair whose IoU equals the threshold is a match"),
    (checks.check_tp_fp_fn, counts_ignoring_class, "objects of other classes",
     "a prediction matches only objects of its own class"),
    (checks.check_greedy_match, greedy_strict, "IoU exactly at the threshold is missing",
     "a pair whose IoU equals the threshold is a match"),
    (checks.check_greedy_match, greedy_index_order, "visiting the predictions in row order",
     "visit the predictions by descending score"),
    (checks.check_greedy_match, greedy_takes_below, "stayed taken by a prediction that did not",
     "an object stays free unless a prediction matches it"),
    (checks.check_greedy_match, greedy_first_above, "took the first free object",
     "take the free object with the highest IoU"),
])
def test_a_wrong_convention_is_named_with_its_own_hint(checker, wrong, detected, hint):
    with pytest.raises(AssertionError) as info:
        checker(wrong)
    message = str(info.value)
    assert detected in message and f"Hint: {hint}" in message


def test_the_hungarian_on_raw_iou_fails_where_the_library_finds_two_matches():
    iou, labels = torch.tensor([[0.5, 0.95], [0.49, 0.5]], dtype=torch.float64), torch.ones(2)
    assert counts_threshold_after_matching(iou, labels, labels, 0.5)[0] == 1
    assert matching.tp_fp_fn(iou, labels, labels, 0.5).tp == 2 == counts_ok(iou, labels,
                                                                              labels, 0.5)[0]


# --- a hint belongs to the fault detected, not to the case where it showed ------------------


def _message(checker, fn):
    with pytest.raises(AssertionError) as info:
        checker(fn)
    return str(info.value)


def test_a_wrong_dtype_gets_the_dtype_hint_not_the_case_hint():
    message = _message(checks.check_mask_iou, lambda a, b: iou_ok(a, b).float())
    first = message.split("\n")[1]
    assert "case 1 " in first and "returned dtype torch.float32" in first
    assert "Hint: divide integer counts in float64" in first
    assert "rows are the first argument" not in message  # case 1's own hint


def test_a_nan_on_empty_masks_points_to_empty_masks():
    message = _message(checks.check_mask_iou, iou_nan_on_empty)
    assert "contains NaN. Hint: check the case of empty masks" in message


def test_a_transposed_answer_is_called_transposed():
    message = _message(checks.check_mask_iou, iou_transposed)
    assert "the transpose of the expected" in message
    assert "Hint: rows follow the first argument, columns the second" in message


def test_a_missing_return_is_named():
    message = _message(checks.check_mask_iou, lambda a, b: None)
    assert "returned a NoneType" in message and "return statement" in message


def test_counts_that_wrap_around_are_named():
    message = _message(checks.check_mask_area, area_uint8)
    assert "wrapped around at 256" in message and "Hint: an integer type of 8 bits" in message


def test_a_wrong_value_gets_the_case_hint():
    def wrong_on_ratios(a, b):  # right everywhere but on the 7 / 10 case, by a lot
        out = iou_ok(a, b)
        return out / 2 if a.shape[1:] == (3, 10) and int(a.sum()) == 10 else out

    message = _message(checks.check_mask_iou, wrong_on_ratios)
    assert "a ratio of exactly 7 / 10" in message and "1 of 1 entries are wrong" in message
    assert "Hint: count pixels as integers and divide once in float64" in message


def test_hints_never_state_an_answer_formula():
    hints = [case.hint for exercise in checks._COURSE_FUNCTIONS
             for case in checks.load_cases(exercise)]
    texts = hints + [(ROOT / "course" / "checks.py").read_text()]
    for formula in ("(2 I + 1) / (S + 1)", "dL/dp_k", "floor((size", "d (k - 1) + 1", "2 d + 1",
                    "d (k - 1) times", "PQ = iou_sum", "(d / 2)**2", "2 s sqrt(c)", "TP_k / k",
                    "(j + 0.5) s", "size / sqrt(ratio)", "max(count, 1)", "product of the"):
        assert not any(formula in text for text in texts), formula


# --- other libraries' implementations are switched off during a check ------------------------


def iou_via_pycocotools(a, b):
    import pycocotools.mask as coco_mask  # imported before the check too: it must not matter

    def rle(m):
        return coco_mask.encode(np.asfortranarray(m.bool().permute(1, 2, 0).numpy()
                                                  .astype(np.uint8)))

    ious = coco_mask.iou(rle(a), rle(b), [0] * len(b)) if len(a) and len(b) else []
    return torch.as_tensor(np.asarray(ious, dtype=np.float64).reshape(len(a), len(b)))


def bilinear_via_torchvision(feature, y, x):
    import torchvision

    f = feature.reshape(-1, *feature.shape[-2:])[None]  # [1, C, H, W]
    box = torch.tensor([[0, x + 0.5, y + 0.5, x + 0.5, y + 0.5]], dtype=f.dtype)
    return torchvision.ops.roi_align(f, box, 1, 1.0, 1, True)[0, :, 0, 0].reshape(
        feature.shape[:-2])


def out_size_via_conv2d(size, kernel, stride, padding, dilation):
    conv = torch.nn.Conv2d(1, 1, kernel, stride, padding, dilation)
    return conv(torch.zeros(1, 1, size, size)).shape[-1]


def out_size_via_functional(size, kernel, stride, padding, dilation):
    weight = torch.zeros(1, 1, kernel, kernel)
    return torch.nn.functional.conv2d(torch.zeros(1, 1, size, size), weight, None, stride,
                                      padding, dilation).shape[-1]


def out_size_via_torch_conv2d(size, kernel, stride, padding, dilation):
    weight = torch.zeros(1, 1, kernel, kernel)
    return torch.conv2d(torch.zeros(1, 1, size, size), weight, None, stride, padding,
                        dilation).shape[-1]


def out_size_via_sliding_windows(size, kernel, stride, padding, dilation):
    reach = dilation * (kernel - 1) + 1
    windows = np.lib.stride_tricks.sliding_window_view(np.zeros(size + 2 * padding), reach)
    return len(windows[::stride])


def bilinear_via_compiled_kernel(feature, y, x):
    f = feature.reshape(-1, *feature.shape[-2:])[None]  # [1, C, H, W]
    box = torch.tensor([[0, x + 0.5, y + 0.5, x + 0.5, y + 0.5]], dtype=f.dtype)
    return torch.ops.torchvision.roi_align(f, box, 1.0, 1, 1, 1, True)[0, :, 0, 0].reshape(
        feature.shape[:-2])


def greedy_via_scipy(iou, scores, threshold):
    rows, cols = linear_sum_assignment(iou.numpy(), maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= threshold]


def boxes_via_torchvision_import(a, b):
    from torchvision.ops import masks_to_boxes

    return masks_to_boxes(a)


def iou_swallowing_the_block(a, b):
    try:
        import pycocotools.mask  # noqa: F401
    except BaseException:  # hides everything, even the checker's signal
        pass
    return iou_ok(a, b)


OTHER_LIBRARIES = [
    (checks.check_mask_iou, iou_via_pycocotools, "pycocotools"),
    (checks.check_mask_iou, boxes_via_torchvision_import, "torchvision.ops"),
    (checks.check_mask_iou, iou_swallowing_the_block, "pycocotools"),
    (checks.check_bilinear_interpolate, bilinear_via_torchvision, "torchvision.ops.roi_align"),
    (checks.check_bilinear_interpolate, bilinear_via_compiled_kernel,
     "torch.ops.torchvision.roi_align"),
    (checks.check_conv_output_size, out_size_via_conv2d, "torch.nn.Conv2d"),
    (checks.check_conv_output_size, out_size_via_functional, "conv2d"),
    (checks.check_conv_output_size, out_size_via_torch_conv2d, "conv2d"),
    (checks.check_conv_output_size, out_size_via_sliding_windows, "sliding_window_view"),
    (checks.check_greedy_match, greedy_via_scipy, "linear_sum_assignment"),
]


@pytest.mark.parametrize("checker, cheat, name", OTHER_LIBRARIES)
def test_checker_fails_an_answer_that_calls_another_library(checker, cheat, name):
    pytest.importorskip("pycocotools")
    with pytest.raises(AssertionError, match="calls another library's implementation") as info:
        checker(cheat)
    assert name in str(info.value) and "which this exercise asks you to write yourself" in str(
        info.value)


def test_a_reference_bound_in_the_notebook_before_the_check_is_caught():
    coco_mask = pytest.importorskip("pycocotools.mask")
    import torchvision.ops

    notebook = {"mu": coco_mask, "torch": torch, "np": np, "box_iou": torchvision.ops.box_iou,
                "iou": coco_mask.iou}
    exec("def via_module(a, b):\n    return mu.iou([], [], [])\n"
         "def via_name(a, b):\n    return iou([], [], [])\n"
         "def via_box_iou(a, b):\n    return box_iou(a.flatten(1)[:, :4], b.flatten(1)[:, :4])\n",
         notebook)
    for name in ("via_module", "via_name", "via_box_iou"):
        with pytest.raises(AssertionError, match="another library's implementation"):
            checks.check_mask_iou(notebook[name])
    assert notebook["iou"] is coco_mask.iou and notebook["box_iou"] is torchvision.ops.box_iou


def test_a_function_kept_in_a_list_or_a_default_argument_is_switched_off_too():
    import torchvision.ops

    notebook = {"hoard": [course.masks.mask_iou], "torchvision": torchvision}
    exec("def via_list(a, b):\n    return hoard[0](a, b)\n"
         "def via_default(a, b, iou=hoard[0]):\n    return iou(a, b)\n"
         "def via_dict(a, b, ops={'iou': torchvision.ops.box_iou}):\n"
         "    return ops['iou'](a.flatten(1)[:, :4].double(), b.flatten(1)[:, :4].double())\n",
         notebook)
    for name, library in (("via_list", "the library's course.masks.mask_iou"),
                          ("via_default", "the library's course.masks.mask_iou"),
                          ("via_dict", "another library's implementation (torchvision.ops")):
        with pytest.raises(AssertionError, match=re.escape(library)):
            checks.check_mask_iou(notebook[name])
    a = torch.ones(1, 2, 2, dtype=torch.bool)
    assert notebook["via_list"](a, a).item() == 1.0  # the code is back after the check


def test_other_libraries_are_back_after_the_check_even_on_error():
    coco_mask = pytest.importorskip("pycocotools.mask")
    import torchvision.ops

    before = (coco_mask.iou, torchvision.ops.roi_align, torch.nn.Conv2d, torch.conv2d,
              linear_sum_assignment, list(sys.meta_path))
    for name in ("check_mask_iou", "check_conv_output_size", "check_greedy_match"):
        with pytest.raises(RuntimeError), checks.library_disabled(iou_ok,
                                                                   checks.targets_for(name)):
            assert "pycocotools.mask" not in sys.modules
            raise RuntimeError("the learner's code failed")
    assert sys.modules["pycocotools.mask"] is coco_mask
    assert sys.modules["torchvision.ops"] is torchvision.ops
    after = (coco_mask.iou, torchvision.ops.roi_align, torch.nn.Conv2d, torch.conv2d,
             linear_sum_assignment, list(sys.meta_path))
    assert after == before
    assert torch.nn.Conv2d(1, 1, 3)(torch.zeros(1, 1, 5, 5)).shape[-1] == 3
    import pycocotools.mask as again

    assert again is coco_mask


def test_convolutions_and_scipy_are_switched_off_only_where_the_exercise_asks():
    def rf_with_a_conv(layers):  # a convolution is fine outside the output-size exercise
        torch.nn.Conv2d(1, 1, 3)(torch.zeros(1, 1, 4, 4))
        return rf_ok(layers)

    checks.check_receptive_field(rf_with_a_conv)
    checks.check_tp_fp_fn(counts_ok)  # the exercise asks for linear_sum_assignment
    targets = checks.targets_for("check_conv_output_size")
    assert torch.nn.Conv2d in targets and torch.nn.functional.conv2d in targets
    assert linear_sum_assignment in checks.targets_for("check_greedy_match")
    assert linear_sum_assignment not in checks.targets_for("check_tp_fp_fn")


# --- for a grader that runs the learner's function elsewhere ---------------------------------


def test_targets_for_names_the_course_functions_a_checker_switches_off():
    assert checks.targets_for("check_mask_iou")[:2] == [course.masks.mask_iou,
                                                        course.masks.mask_iou_loop]
    assert checks.targets_for("mask_iou") == checks.targets_for("check_mask_iou")
    with pytest.raises(ValueError, match="check_name: no checker named 'check_nothing'"):
        checks.targets_for("check_nothing")
    for name in dir(checks):
        if name.startswith("check_"):
            assert checks.targets_for(name), name


def test_library_disabled_blocks_as_the_check_does():
    coco_mask = pytest.importorskip("pycocotools.mask")
    targets = checks.targets_for("check_mask_iou")
    a = torch.ones(1, 2, 2, dtype=torch.bool)
    for cheat in (iou_via_module, iou_via_pycocotools):
        with checks.library_disabled(cheat, targets) as calls:
            with pytest.raises(checks.LibraryCalled):
                cheat(a, a)
        assert calls
    with checks.library_disabled(iou_ok, targets) as calls:
        assert iou_ok(a, a).item() == 1.0
    assert not calls and coco_mask.iou is sys.modules["pycocotools.mask"].iou


class Proxy:
    """Stands for a function that runs in another process: no ``__globals__``, and attribute
    lookups that fail loudly."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args, **kwargs):
        assert not kwargs, "checkers call with positional arguments only"
        return self._fn(*args)

    def __getattr__(self, name):
        raise RuntimeError(f"no attribute {name} through the proxy")


def test_checkers_take_any_callable():
    checks.check_mask_iou(Proxy(iou_ok))
    checks.check_pq_stats(Proxy(pq_counts_ok))
    checks.check_multiscale_roi_align(Proxy(multiscale_ok))

    def blocked_elsewhere(*args):
        raise checks.LibraryCalled("pycocotools.mask.iou")  # as a proxy passes it on

    with pytest.raises(AssertionError, match=r"another library's implementation \(pycocotools"):
        checks.check_mask_iou(Proxy(blocked_elsewhere))


def _stored_comparisons(monkeypatch):
    """(exercise, case, compare) for every stored case of every checker, without running."""
    seen = []
    monkeypatch.setattr(checks, "_run_one", lambda exercise, fn, args, case, targets, compare:
                        seen.append((exercise, case, compare)))
    for name in sorted(n for n in dir(checks) if n.startswith("check_")):
        getattr(checks, name)(lambda *args: None)
    return seen


def _poisoned(value, where):
    """``value`` as a learner would return it, with NaN at one or at every float entry."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
        bad = value.copy()
        bad.reshape(-1)[slice(None) if where == "all" else slice(0, 1)] = np.nan
        return torch.from_numpy(bad), True
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(value.copy()), False
    if isinstance(value, np.ndarray):
        return (value.tolist() if value.ndim else value.item()), False
    return value, False


@pytest.mark.parametrize("where", ["one", "all"])
def test_no_checker_accepts_or_crashes_on_nan(monkeypatch, where, capsys):
    """The right answer with a NaN in place of a float fails with a message, on every case."""
    accepted, crashed, poisoned = [], [], 0
    for exercise, case, compare in _stored_comparisons(monkeypatch):
        keys = ["value"] if "value" in case.expected else [
            k for k in case.expected if not k.startswith("fault/")]
        parts = [_poisoned(case.expected[k], where) for k in keys]
        if not any(changed for _, changed in parts):
            continue
        poisoned += 1
        out = parts[0][0] if keys == ["value"] else tuple(v for v, _ in parts)
        try:
            if compare(out, case) is None:
                accepted.append(f"{exercise}: {case.name}")
        except Exception as err:  # a checker must answer with a Fault, not crash
            crashed.append(f"{exercise}: {case.name}: {type(err).__name__}: {err}")
    assert poisoned > 100
    assert not accepted, accepted
    assert not crashed, crashed
