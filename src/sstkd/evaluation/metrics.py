"""Segmentation metrics: a confusion matrix updated per batch on the device, and boundary quality.

Boundary IoU follows Cheng et al. (CVPR 2021): for each class, the pixels of its mask lying within ``d`` pixels of
the mask's contour, compared between prediction and ground truth. Boundary F-score follows the usual
"trimap" definition: precision/recall of predicted contour pixels matched to ground-truth contour pixels within
``d`` pixels. Both accumulate counts over the dataset (no per-image averaging), like mIoU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sstkd.data.sources import IGNORE_INDEX


class ConfusionMatrix:
    """``update(pred, target)`` with ``(B, H, W)`` int tensors; ignore-index pixels are skipped."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != IGNORE_INDEX
        index = target[valid].long() * self.num_classes + prediction[valid].long()
        self.matrix += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)

    def merge(self, other: torch.Tensor) -> None:
        self.matrix += other.to(self.matrix.device)

    def compute(self) -> dict:
        m = self.matrix.double().cpu()
        true_positive = m.diag()
        gt_total, pred_total = m.sum(1), m.sum(0)
        union = gt_total + pred_total - true_positive
        iou = torch.where(union > 0, true_positive / union.clamp_min(1), torch.full_like(union, float("nan")))
        accuracy = torch.where(gt_total > 0, true_positive / gt_total.clamp_min(1),
                               torch.full_like(gt_total, float("nan")))
        present = gt_total > 0
        return {
            "miou": float(iou[present].nanmean()) if present.any() else float("nan"),
            "pixel_accuracy": float(true_positive.sum() / m.sum().clamp_min(1)),
            "mean_accuracy": float(accuracy[present].nanmean()) if present.any() else float("nan"),
            "per_class_iou": [None if torch.isnan(v) else float(v) for v in iou],
            "confusion_matrix": self.matrix.cpu().tolist(),
        }


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, H, W)`` → ``(B, K, H, W)`` float; ignore pixels are all-zero."""
    valid = labels != IGNORE_INDEX
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    return F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float() * valid.unsqueeze(1)


def _erode(masks: torch.Tensor, radius: int) -> torch.Tensor:
    # Pixels outside the image count as foreground, so the image border is not a contour.
    return -F.max_pool2d(-F.pad(masks, (radius,) * 4, value=1.0), 2 * radius + 1, stride=1)


def _dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(masks, 2 * radius + 1, stride=1, padding=radius)


class BoundaryScores:
    """Accumulates boundary IoU and boundary F-score counts over batches (``radius`` in pixels)."""

    def __init__(self, num_classes: int, radius: int = 2, device: torch.device | str = "cpu"):
        self.num_classes, self.radius = num_classes, radius
        # Rows: boundary intersection, boundary union, matched predicted contour, predicted contour,
        # matched ground-truth contour, ground-truth contour.
        self.counts = torch.zeros(6, num_classes, dtype=torch.float64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        ignore = (target == IGNORE_INDEX).unsqueeze(1)
        prediction = torch.where(ignore.squeeze(1), torch.full_like(prediction, IGNORE_INDEX), prediction)
        gt = _one_hot(target, self.num_classes)
        pred = _one_hot(prediction, self.num_classes)
        r = self.radius
        # Boundary IoU: mask pixels within r of the contour (mask minus its r-erosion).
        gt_band = gt - _erode(gt, r)
        pred_band = pred - _erode(pred, r)
        intersection = (gt_band * pred_band).sum(dim=(0, 2, 3))
        union = ((gt_band + pred_band) > 0).float().sum(dim=(0, 2, 3))
        # Boundary F: one-pixel contours, matched within r.
        gt_contour = gt - _erode(gt, 1)
        pred_contour = pred - _erode(pred, 1)
        matched_pred = (pred_contour * _dilate(gt_contour, r)).sum(dim=(0, 2, 3))
        matched_gt = (gt_contour * _dilate(pred_contour, r)).sum(dim=(0, 2, 3))
        self.counts += torch.stack([intersection, union, matched_pred, pred_contour.sum(dim=(0, 2, 3)),
                                    matched_gt, gt_contour.sum(dim=(0, 2, 3))]).double()

    def compute(self) -> dict:
        intersection, union, matched_pred, pred_total, matched_gt, gt_total = self.counts.cpu()
        present = gt_total > 0
        biou = intersection / union.clamp_min(1)
        precision = matched_pred / pred_total.clamp_min(1)
        recall = matched_gt / gt_total.clamp_min(1)
        fscore = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        return {
            "boundary_iou": float(biou[present].mean()) if present.any() else float("nan"),
            "boundary_fscore": float(fscore[present].mean()) if present.any() else float("nan"),
            "per_class_boundary_iou": [float(v) if p else None for v, p in zip(biou, present)],
            "per_class_boundary_fscore": [float(v) if p else None for v, p in zip(fscore, present)],
        }
