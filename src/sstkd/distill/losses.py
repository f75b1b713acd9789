"""Every training loss behind one call shape: ``loss(student, teacher, batch) -> scalar tensor``.

Teacher outputs are always detached inside the losses, so no gradient can reach the teacher even when a caller
forgets ``torch.no_grad()``.

``student``/``teacher`` are :class:`~sstkd.models.segmenter.SegmentationOutput` (``teacher`` is ``None`` when no
teacher is used), ``batch`` is ``{"images": (B, 3, H, W), "masks": (B, H, W)}``. A method ("baseline",
"pixel_kd", "skd", "cwd", "sstkd", ...) is nothing but a set of named terms with weights, built by
:func:`build_criterion` from configuration.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sstkd.data.sources import IGNORE_INDEX
from sstkd.distill.contourlet import ContourletDecomposition, standardize_channels
from sstkd.distill.related_methods import (
    AttentionTransfer,
    CrossImageRelationDistillation,
    DISTRelation,
    FitNetHint,
    IntraClassFeatureVariation,
)
from sstkd.distill.texture_statistics import (
    FEATURE_PREPARATIONS,
    DenoisedTextureEqualization,
    texture_importance,
)
from sstkd.models.segmenter import SegmentationOutput


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on the ground truth (ignore 255) + ``aux_weight`` × the auxiliary head's; optional OHEM.

    OHEM keeps the pixels whose ground-truth probability is below ``ohem_threshold``, and at least
    ``ohem_min_kept`` of the hardest ones.
    """

    needs_teacher = False

    def __init__(self, aux_weight: float = 0.4, ohem: bool = False, ohem_threshold: float = 0.7,
                 ohem_min_kept: int = 10000, class_weights: list[float] | None = None):
        super().__init__()
        self.aux_weight, self.ohem = aux_weight, ohem
        self.ohem_threshold, self.ohem_min_kept = ohem_threshold, ohem_min_kept
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)

    def _single(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        per_pixel = F.cross_entropy(logits, masks, weight=self.class_weights, ignore_index=IGNORE_INDEX,
                                    reduction="none").flatten()
        valid = (masks != IGNORE_INDEX).flatten()
        if not self.ohem:
            # F.cross_entropy's "mean" divides by the (weighted) count of valid pixels: 0/0 = NaN for a crop
            # that is all ignore (ADE20K's "other"). Such a batch contributes exactly 0, with a zero gradient
            # that still reaches the logits (DDP and backward need the graph); otherwise identical to "mean".
            weights = valid.to(per_pixel.dtype)
            if self.class_weights is not None:
                weights = weights * self.class_weights[masks.flatten().clamp_max(len(self.class_weights) - 1)]
            return per_pixel.sum() / weights.sum().clamp_min(torch.finfo(per_pixel.dtype).tiny)
        with torch.no_grad():
            target_prob = torch.exp(-per_pixel)
            target_prob = torch.where(valid, target_prob, torch.ones_like(target_prob))
            kept = min(self.ohem_min_kept, int(valid.numel()))
            # Threshold = max(ohem_threshold, kept-th smallest probability): no host sync, no data-dependent shape.
            kth = target_prob.kthvalue(max(kept, 1)).values
            threshold = torch.maximum(kth, target_prob.new_tensor(self.ohem_threshold))
            selected = valid & (target_prob <= threshold)
        return (per_pixel * selected).sum() / selected.sum().clamp_min(1)

    def forward(self, student: SegmentationOutput, teacher, batch) -> torch.Tensor:
        loss = self._single(student.logits, batch["masks"])
        if student.aux_logits is not None and self.aux_weight:
            loss = loss + self.aux_weight * self._single(student.aux_logits, batch["masks"])
        return loss


class PixelwiseDistillation(nn.Module):
    """KL(teacher ‖ student) of per-pixel class distributions at temperature T, × T², averaged over pixels."""

    needs_teacher = True

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        t = self.temperature
        log_p_student = F.log_softmax(student.logits.float() / t, dim=1)
        log_p_teacher = F.log_softmax(teacher.logits.detach().float() / t, dim=1)
        kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
        return kl.mean() * t * t


class PairwiseDistillation(nn.Module):
    """SKD's pair-wise term: cosine-similarity graphs over max-pooled nodes of a feature map, matched by MSE.

    ``feature``: ``backbone`` (the last stage, SKD's code) or ``head`` (the head's feature, CIRKD's code). Nodes are
    ``scale``-sized patches of the map (SKD: 0.5, so the graph has 4 nodes whatever the size), or ``kernel``×
    ``kernel`` pixels when ``kernel`` is set (CIRKD: 2). The graph is channel-count independent.
    """

    needs_teacher = True

    def __init__(self, scale: float = 0.5, feature: str = "backbone", kernel: int | None = None):
        super().__init__()
        if feature not in ("backbone", "head"):
            raise ValueError(f"pairwise.feature must be 'backbone' or 'head', got {feature!r}")
        if kernel is not None and kernel < 1:
            raise ValueError(f"pairwise.kernel must be >= 1, got {kernel}")
        self.scale, self.feature, self.kernel = scale, feature, kernel

    def _graph(self, features: torch.Tensor) -> torch.Tensor:
        height, width = features.shape[-2:]
        kernel = ((self.kernel, self.kernel) if self.kernel else
                  (max(1, int(height * self.scale)), max(1, int(width * self.scale))))
        nodes = F.max_pool2d(features.float(), kernel, stride=kernel, ceil_mode=True).flatten(2)  # (B, C, N)
        nodes = F.normalize(nodes, dim=1)
        return nodes.transpose(1, 2) @ nodes

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        if self.feature == "head":
            return F.mse_loss(self._graph(student.head_features), self._graph(teacher.head_features.detach()))
        return F.mse_loss(self._graph(student.high_level), self._graph(teacher.high_level.detach()))


def channelwise_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """CWD's divergence: per channel, KL of spatial softmax distributions at temperature T, × T², mean over (B, C)."""
    s = F.log_softmax(student.float().flatten(2) / temperature, dim=2)
    p = F.log_softmax(teacher.detach().float().flatten(2) / temperature, dim=2)
    return (p.exp() * (p - s)).sum(dim=2).mean() * temperature * temperature


class ChannelwiseDistillation(nn.Module):
    """CWD (Shu et al., 2021): per channel, KL of spatial softmax distributions of logits at temperature T, × T²."""

    needs_teacher = True

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        return channelwise_kl(student.logits, teacher.logits, self.temperature)


class ChannelwiseFeatureDistillation(nn.Module):
    """CWD on the head's feature (CIRKD's ``--lambda-cwd-fea``): the student's feature through a trained 1×1 conv
    (no bias) to the teacher's width when the widths differ, then :func:`channelwise_kl`."""

    needs_teacher = True

    def __init__(self, student_head_channels: int, teacher_head_channels: int, temperature: float = 4.0):
        super().__init__()
        self.temperature = temperature
        self.adapter = (nn.Conv2d(student_head_channels, teacher_head_channels, 1, bias=False)
                        if student_head_channels != teacher_head_channels else nn.Identity())

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        return channelwise_kl(self.adapter(student.head_features.float()), teacher.head_features, self.temperature)


class Discriminator(nn.Module):
    """A small WGAN critic on (class probabilities ⊕ image), as SKD conditions its critic on the input."""

    def __init__(self, num_classes: int, channels: int = 64):
        super().__init__()
        layers, in_channels = [], num_classes + 3
        for out_channels in (channels, channels * 2, channels * 4):
            layers += [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(in_channels, 1, 3, padding=1)

    def forward(self, probabilities: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(torch.cat([probabilities, images], dim=1))).mean(dim=(1, 2, 3))


class AdversarialDistillation(nn.Module):
    """SKD's holistic term (WGAN-GP). ``forward`` gives the student's generator loss ``-D(student)``;
    :meth:`discriminator_loss` the critic's ``D(student) - D(teacher) + λ_gp·GP``, trained by its own optimiser
    (``lr``, Adam β = (0.9, 0.99) as SKD)."""

    needs_teacher = True

    def __init__(self, num_classes: int, channels: int = 64, lr: float = 4e-4, gradient_penalty: float = 10.0,
                 downsample: int = 4):
        super().__init__()
        self.discriminator = Discriminator(num_classes, channels)
        self.lr, self.gradient_penalty, self.downsample = lr, gradient_penalty, downsample

    def _inputs(self, output: SegmentationOutput, batch) -> tuple[torch.Tensor, torch.Tensor]:
        # The critic judges the score map at 1/downsample resolution (SKD's sees stride-8 logits): the
        # double backward of the gradient penalty at full resolution cost more than the student's own step.
        probabilities, images = output.logits.float().softmax(dim=1), batch["images"].float()
        if self.downsample > 1:
            probabilities = F.avg_pool2d(probabilities, self.downsample, ceil_mode=True)
            images = F.avg_pool2d(images, self.downsample, ceil_mode=True)
        return probabilities, images

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        for parameter in self.discriminator.parameters():
            parameter.requires_grad_(False)  # the generator step must not accumulate critic gradients
        score = self.discriminator(*self._inputs(student, batch)).mean()
        for parameter in self.discriminator.parameters():
            parameter.requires_grad_(True)
        return -score

    def discriminator_loss(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        fake, images = self._inputs(student, batch)
        real, _ = self._inputs(teacher, batch)
        fake, real = fake.detach(), real.detach()
        alpha = torch.rand(fake.shape[0], 1, 1, 1, device=fake.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        grad = torch.autograd.grad(self.discriminator(mixed, images).sum(), mixed, create_graph=True)[0]
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        wasserstein = self.discriminator(fake, images).mean() - self.discriminator(real, images).mean()
        return wasserstein + self.gradient_penalty * penalty


def interior(features: torch.Tensor, border: int) -> torch.Tensor:
    """``(B, C, H, W)`` without ``border`` pixels at each edge (all of it when ``border`` is 0)."""
    if border == 0:
        return features
    if min(features.shape[-2:]) <= 2 * border:
        raise ValueError(f"structural.border = {border} leaves nothing of a {tuple(features.shape[-2:])} feature map")
    return features[..., border:-border, border:-border]


def feature_adapter(student_channels: int, teacher_channels: int, adapter: bool) -> nn.Module:
    """The student's stage-1 feature mapped to the teacher's channels: a trained 1×1 conv, or (``adapter: false``)
    the feature itself, channel ``i`` matched to the teacher's channel ``i`` (a FitNets-style identity hint).
    Why offer the identity: the trained adapter can absorb a texture loss without moving the student's own
    stage 1 (issue 9 measured that the adapter alone removes 73% of L_sta and 36% of L_str for a frozen student).
    """
    if adapter:
        return nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
    if student_channels != teacher_channels:
        raise ValueError(f"adapter: false needs as many student as teacher stage-1 channels, got "
                         f"{student_channels} and {teacher_channels}")
    return nn.Identity()


class StructuralTextureLoss(nn.Module):
    """L_str: the student's contourlet sub-bands of its (adapted) stage-1 feature vs the teacher's.

    Both features are standardised per channel first. For each level ``l`` and direction ``d`` the squared error
    is divided by the teacher sub-band's energy, then averaged over directions and weighted by ``level_weights``.
    Why the energy normalisation: the directional bank is a tight frame, so a plain MSE summed over directions
    equals the MSE of the band itself and the directions would change nothing; normalising per sub-band makes a
    weak orientation count as much as a dominant one — which is what "mimic the directional texture" asks.
    ``normalize="none"`` gives the plain MSE for comparison. ``recompute=True`` keeps only the student's stage-1
    feature for backward and recomputes the pyramid and spectra there (less memory, a second texture forward).
    ``border`` drops that many pixels at each edge of the stage-1 features before anything else: the loss is over
    the valid interior only. Why: the networks' zero padding puts ~40% of the finest band-pass energy of stage-1
    features in the outer 2 pixels, and the energy normalisation would make the student spend its effort there.
    ``offset`` rotates the directional wedges (see ``contourlet.directional_masks``). ``adapter`` (see
    :func:`feature_adapter`): a trained 1×1 conv (default) or none.
    """

    needs_teacher = True

    def __init__(self, student_channels: int, teacher_channels: int, levels: int = 3, directions: int = 8,
                 level_weights: list[float] | None = None, transition: float = 0.5, normalize: str = "energy",
                 recompute: bool = False, border: int = 0, offset: float = 0.5, adapter: bool = True):
        super().__init__()
        if normalize not in ("energy", "none"):
            raise ValueError(f"structural.normalize must be 'energy' or 'none', got {normalize!r}")
        if border < 0:
            raise ValueError(f"structural.border must be >= 0, got {border}")
        self.adapter = feature_adapter(student_channels, teacher_channels, adapter)
        self.decompose = ContourletDecomposition(levels, directions, transition, offset)
        self.border = int(border)
        weights = level_weights if level_weights is not None else [1.0] * levels
        if len(weights) != levels:
            raise ValueError(f"structural.level_weights has {len(weights)} entries for {levels} levels")
        self.level_weights, self.normalize, self.recompute = [float(w) for w in weights], normalize, recompute

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        with torch.autocast(student.low_level.device.type, enabled=False):  # pyramid and FFTs in fp32
            return self._loss(student, teacher)

    def _loss(self, student: SegmentationOutput, teacher: SegmentationOutput) -> torch.Tensor:
        pyramid = self.decompose.pyramid
        with torch.no_grad():
            teacher_bands, _ = pyramid(standardize_channels(interior(teacher.low_level.detach(), self.border)))
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(self._against, student.low_level, *teacher_bands, use_reentrant=False)
        return self._against(student.low_level, *teacher_bands)

    def _against(self, student_low_level: torch.Tensor, *teacher_bands: torch.Tensor) -> torch.Tensor:
        # Sub-band errors are computed spectrally (DirectionalFilterBank.energy): since the bank is linear,
        # ||S_d - T_d||² is the directional energy of the band difference; no sub-band is materialised.
        pyramid, bank = self.decompose.pyramid, self.decompose.filter_bank
        adapted = self.adapter(interior(student_low_level.float(), self.border))
        student_bands, _ = pyramid(standardize_channels(adapted))
        total = student_bands[0].new_zeros(())
        for weight, s, t in zip(self.level_weights, student_bands, teacher_bands):
            pixels = t.shape[1] * t.shape[2] * t.shape[3]
            error = bank.energy(s - t).sum(dim=2) / pixels  # (B, D): mean squared error per direction
            if self.normalize == "energy":
                with torch.no_grad():
                    reference = bank.energy(t).sum(dim=2) / pixels
                error = error / (reference + 1e-6)
            total = total + weight * error.mean()
        return total / sum(self.level_weights)


class StatisticalTextureLoss(nn.Module):
    """L_sta: DTIEM statistics of the student's (adapted) stage-1 feature vs the teacher's, averaged over the
    quantisation granularities:

    * ``intensity_weight`` × L1 between equalised intensity maps (rank-normalised texture intensity per pixel);
    * ``histogram_weight`` × the 1-D Wasserstein distance between denoised level histograms (L1 of their CDFs / N);
    * ``descriptor_weight`` × MSE between level descriptors, the student's computed on the *teacher's* levels,
      so both describe the same pixel groups.

    Features are prepared by ``normalize``: ``rms`` divides each channel by its spatial RMS without centring
    (default; centring per channel makes the cosine intensity measure rounding noise), ``joint`` standardises over
    C·H·W at once. ``denoise`` picks the histogram denoiser (``threshold`` or CLAHE's ``clip_limit``, see
    ``texture_statistics``). ``importance`` (0..1) weighs pixels by the teacher's local texture energy in the
    histograms and the intensity term (the paper's importance sampler; 0 = off). ``recompute=True`` recomputes
    the student's statistics in backward instead of keeping them. ``adapter`` (see :func:`feature_adapter`): a
    trained 1×1 conv (default) or none.
    """

    needs_teacher = True

    def __init__(self, student_channels: int, teacher_channels: int, levels=(8, 16, 32),
                 noise_threshold: float = 0.005, intensity_weight: float = 1.0, histogram_weight: float = 1.0,
                 descriptor_weight: float = 1.0, recompute: bool = False, normalize: str = "rms",
                 denoise: str = "threshold", clip_limit: float = 0.5, importance: float = 0.0,
                 adapter: bool = True):
        super().__init__()
        if normalize not in FEATURE_PREPARATIONS:
            raise ValueError(f"statistical.normalize must be one of {sorted(FEATURE_PREPARATIONS)}, got {normalize!r}")
        if not 0 <= importance <= 1:
            raise ValueError(f"statistical.importance must be in [0, 1], got {importance}")
        self.adapter = feature_adapter(student_channels, teacher_channels, adapter)
        self.module = DenoisedTextureEqualization(levels, noise_threshold, denoise, clip_limit)
        self.prepare = FEATURE_PREPARATIONS[normalize]
        self.weights = (intensity_weight, histogram_weight, descriptor_weight)
        self.recompute, self.importance = recompute, importance

    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        with torch.autocast(student.low_level.device.type, enabled=False):  # cosines and histograms in fp32
            return self._loss(student, teacher)

    def _loss(self, student: SegmentationOutput, teacher: SegmentationOutput) -> torch.Tensor:
        with torch.no_grad():
            teacher_features = self.prepare(teacher.low_level.detach())
            pixel_weights = texture_importance(teacher_features, self.importance) if self.importance else None
            teacher_stats = self.module(teacher_features, pixel_weights=pixel_weights)
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(self._against, student.low_level, teacher_stats, pixel_weights, use_reentrant=False)
        return self._against(student.low_level, teacher_stats, pixel_weights)

    def _against(self, student_low_level: torch.Tensor, teacher_stats, pixel_weights) -> torch.Tensor:
        student_features = self.prepare(self.adapter(student_low_level.float()))
        student_stats = self.module(student_features, encoding_from=teacher_stats, pixel_weights=pixel_weights)
        total = student_features.new_zeros(())
        for s, t in zip(student_stats, teacher_stats):
            levels = s.cdf.shape[1]
            intensity_error = (s.equalized - t.equalized).abs()
            if pixel_weights is not None:
                intensity_error = intensity_error * pixel_weights
            histogram = (s.denoised.cumsum(1) - t.denoised.cumsum(1)).abs().sum(1).mean() / levels
            descriptor = (s.descriptors - t.descriptors).pow(2).mean()
            w_int, w_hist, w_desc = self.weights
            total = total + w_int * intensity_error.mean() + w_hist * histogram + w_desc * descriptor
        return total / len(student_stats)


LOSSES: dict[str, type[nn.Module]] = {
    "cross_entropy": CrossEntropyLoss,
    "pixel_kd": PixelwiseDistillation,
    "pairwise": PairwiseDistillation,
    "channelwise": ChannelwiseDistillation,
    "channelwise_features": ChannelwiseFeatureDistillation,
    "adversarial": AdversarialDistillation,
    "structural": StructuralTextureLoss,
    "statistical": StatisticalTextureLoss,
    "attention": AttentionTransfer,
    "fitnet": FitNetHint,
    "dist": DISTRelation,
    "ifvd": IntraClassFeatureVariation,
    "cirkd": CrossImageRelationDistillation,
}


class DistillationCriterion(nn.Module):
    """A weighted sum of named loss terms. ``forward`` returns ``(total, {name: unweighted value})``."""

    def __init__(self, terms: dict[str, nn.Module], weights: dict[str, float]):
        super().__init__()
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)

    @property
    def needs_teacher(self) -> bool:
        return any(getattr(term, "needs_teacher", False) for term in self.terms.values())

    @property
    def adversarial(self) -> AdversarialDistillation | None:
        term = self.terms["adversarial"] if "adversarial" in self.terms else None  # noqa: SIM401 (ModuleDict has no .get)
        return term if isinstance(term, AdversarialDistillation) else None

    def student_side_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that learn with the student (the adapters), not the critic."""
        return [p for name, p in self.named_parameters() if ".discriminator." not in f".{name}"]

    def forward(self, student, teacher, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {name: term(student, teacher, batch) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values


def build_criterion(losses: dict[str, dict], num_classes: int, student_channels: int | None = None,
                    teacher_channels: int | None = None, where: str = "losses",
                    student_head_channels: int | None = None,
                    teacher_head_channels: int | None = None) -> DistillationCriterion:
    """Build a criterion from ``{term: {"weight": w, **options}}``; errors name the offending key.

    ``*_channels``: the stage-1 widths (texture terms), ``*_head_channels``: the head features' (FitNet, CIRKD).
    """
    terms, weights = {}, {}
    for name, options in losses.items():
        if name not in LOSSES:
            raise ValueError(f"{where}.{name}: unknown loss; choose from {sorted(LOSSES)}")
        options = dict(options or {})
        weight = options.pop("weight", 1.0)
        if not isinstance(weight, int | float):
            raise TypeError(f"{where}.{name}.weight must be a number, got {weight!r}")
        if weight == 0:
            continue
        cls = LOSSES[name]
        accepted = inspect.signature(cls.__init__).parameters
        automatic = {"num_classes": num_classes, "student_channels": student_channels,
                     "teacher_channels": teacher_channels, "student_head_channels": student_head_channels,
                     "teacher_head_channels": teacher_head_channels}
        for key in options:
            if key not in accepted or key in automatic:
                allowed = sorted(k for k in accepted if k not in ("self", *automatic))
                raise ValueError(f"{where}.{name}.{key}: unknown option; {name} accepts {allowed + ['weight']}")
        kwargs = {k: v for k, v in automatic.items() if k in accepted}
        if any(v is None for v in kwargs.values()):
            raise ValueError(f"{where}.{name} needs a teacher: set teacher channels")
        try:
            terms[name] = cls(**kwargs, **options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}.{name}: {error}") from error
        weights[name] = float(weight)
    if not terms:
        raise ValueError(f"{where}: no loss term with a non-zero weight")
    return DistillationCriterion(terms, weights)
