"""What a training run does, measured without changing it.

* :func:`term_gradient_norms`: each weighted loss term's gradient at the student's logits, at its stage-1 feature
  and over its parameters, with the term's cosine to the cross-entropy's (on copies: the run is untouched);
* :func:`recompute_batchnorm_statistics`: BatchNorm's running statistics re-estimated as the exact average over
  training batches ("precise BN"), to tell a network that learned badly from one whose running statistics lag
  behind its weights;
* :func:`pixel_kl`: mean per-pixel KL(teacher ‖ student), the quantity pixel KD minimises;
* :func:`weight_norms`: the norms of the BatchNorm-normalised convolution weights, whose growth lowers their
  effective learning rate.

Every function takes plain modules and tensors; the loop's ``probes`` argument calls them once per epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from sstkd.distill.losses import DistillationCriterion

GRADIENT_SITES = ("logits", "stage1", "parameters")


def _norm(tensors: Iterable[torch.Tensor | None]) -> torch.Tensor:
    squares = [t.detach().float().pow(2).sum() for t in tensors if t is not None]
    return torch.stack(squares).sum().sqrt() if squares else torch.zeros(())


def term_gradient_norms(student: nn.Module, criterion: DistillationCriterion, teacher: nn.Module | None,
                        images: torch.Tensor, masks: torch.Tensor) -> dict[str, dict[str, float]]:
    """``{term: {"logits", "stage1", "parameters", "cosine_to_cross_entropy"}}`` for one batch.

    Each term is taken with its weight, as the optimiser sees it: the L2 norm of d(weight·term)/d(logits)
    ``(B, K, H, W)``, of d(weight·term)/d(stage-1 feature) ``(B, C1, H/4, W/4)`` (everything that reaches stage 1,
    through the network or directly as the texture terms do), and over the student's parameters; the cosine is
    between the term's parameter gradient and the cross-entropy's. The student and criterion are deep-copied and run
    in train mode, as in a training step, so the real ones' BatchNorm statistics, adapters and critic, and the
    global CPU random state, are left as they were (the loop reseeds every epoch, so a probe between epochs could
    not change a run through the random state anyway; CUDA's generator is not forked). The measurement is in fp32,
    without the loop's bf16 autocast; the teacher is moved to the student's device.
    """
    student, criterion = copy.deepcopy(student).train(), copy.deepcopy(criterion)
    device = next(student.parameters()).device
    images, masks = images.to(device), masks.to(device)
    with torch.random.fork_rng(devices=[]):
        teacher_output = None
        if teacher is not None and criterion.needs_teacher:
            with torch.no_grad():
                teacher_output = teacher.to(device).eval()(images)
        output = student(images)
        _, values = criterion(output, teacher_output, {"images": images, "masks": masks})
        parameters = [p for p in student.parameters() if p.requires_grad]
        sites = [output.logits, output.low_level]
        gradients = {}
        for name, value in values.items():
            grads = torch.autograd.grad(criterion.weights[name] * value, sites + parameters, retain_graph=True,
                                        allow_unused=True)
            gradients[name] = grads
    reference = gradients.get("cross_entropy")
    def flat(grads) -> torch.Tensor:  # float64: the cosine of two long float32 vectors drifts past 1
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().double()
                          for g, p in zip(grads[2:], parameters)])

    ref = flat(reference) if reference is not None else None
    results = {}
    for name, grads in gradients.items():
        vector = flat(grads)
        entry = {"logits": float(_norm([grads[0]])), "stage1": float(_norm([grads[1]])), "parameters": float(vector.norm())}
        if ref is not None:
            entry["cosine_to_cross_entropy"] = float(F.cosine_similarity(vector, ref, dim=0, eps=1e-300))
        results[name] = entry
    return results


@torch.no_grad()
def weight_norms(network: nn.Module) -> dict[str, float]:
    """L2 norms of the convolution weights that a BatchNorm follows (scale-invariant: their gradient, and so their
    effective step, shrinks as the norm grows, as lr/‖w‖²) and of every other weight (classifiers, no BN after)."""
    modules = list(network.modules())
    followed = set()
    for module, after in zip(modules, modules[1:]):
        if isinstance(module, nn.Conv2d) and isinstance(after, nn.modules.batchnorm._BatchNorm):
            followed.add(id(module))
    normalised = [m.weight for m in modules if id(m) in followed]
    others = [m.weight for m in modules if isinstance(m, nn.Conv2d | nn.Linear) and id(m) not in followed]
    return {"batchnormed": float(_norm(normalised)), "other": float(_norm(others))}


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running mean and variance are the exact average over ``batches``
    (each ``(B, 3, H, W)``, fed in train mode without gradients); weights unchanged. Returned in eval mode."""
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts alike
    model.train()
    device = next(model.parameters()).device
    seen = 0
    with torch.random.fork_rng(devices=[]):
        for images in batches:
            model(images.to(device))
            seen += 1
    if not seen:
        raise ValueError("recompute_batchnorm_statistics needs at least one batch")
    return model.eval()


@torch.no_grad()
def pixel_kl(student: nn.Module, teacher: nn.Module, images: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean per-pixel KL(teacher ‖ student) of the class distributions at ``temperature``, in the modules' current
    modes (eval mode: running statistics; train mode: the batch's, on a copy so the running ones stay)."""
    if student.training:
        student = copy.deepcopy(student)
    device = next(student.parameters()).device
    images = images.to(device)
    log_p_student = F.log_softmax(student(images).logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher.to(device)(images).logits.float() / temperature, dim=1)
    return float((log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1).mean())
