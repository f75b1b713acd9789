"""Train one student with one method and one seed (baseline, pixel KD, SKD, CWD, SSTKD, ablations)."""

from sstkd.config import student_settings
from sstkd.data.cache import check_cache_matches_info
from sstkd.pipelines.common import train_and_track, with_pretrained_weights
from sstkd.study import model_name


def train_student(training_cache: dict, dataset_info: dict, dataset_statistics: dict, teacher_model: dict,
                  training: dict, student: dict, method: dict, pretrained_backbones: dict | None = None, *,
                  method_name: str, seed: int) -> tuple[dict, list[dict]]:
    """The study's seed is the student's (``training.seed`` is the teacher's): it pairs the methods seed by seed.
    ``pretrained_backbones``: the pretraining stage's weights, an input only where the env pretrains."""
    student_params, method_params, config = student_settings(training, student, method, method_name, seed)
    check_cache_matches_info(training_cache, dataset_info)
    losses = {name: dict(options or {}) for name, options in method_params.losses.items()}
    needs_teacher = any(name != "cross_entropy" for name in losses)
    network, pretrained = with_pretrained_weights(student_params.network, pretrained_backbones,
                                                  "distillation.student.network")
    return train_and_track(model_name(method_name, seed), "student", training_cache, dataset_info,
                           dataset_statistics, network, losses, config, teacher_model if needs_teacher else None,
                           tags={"sstkd.method": method_name, "sstkd.seed": str(seed)}, pretrained=pretrained)
