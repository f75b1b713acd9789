"""Train one student with one method and one seed (baseline, pixel KD, SKD, CWD, SSTKD, ablations)."""

from sstkd.config import MethodParams, ParameterError, StudentParams, TrainingConfig, merged, validate
from sstkd.data.cache import check_cache_matches_info
from sstkd.pipelines.common import train_and_track
from sstkd.study import model_name


def train_student(training_cache: dict, dataset_info: dict, dataset_statistics: dict, teacher_model: dict,
                  training: dict, student: dict, method: dict, method_name: str, seed: int
                  ) -> tuple[dict, list[dict]]:
    """The study's seed is the student's (``training.seed`` is the teacher's): it pairs the methods seed by seed."""
    where = f"distillation.methods.{method_name}"
    student_params = validate(StudentParams, student, "distillation.student")
    method_params = validate(MethodParams, method, where)
    for own, place in ((student_params.training, "distillation.student.training"),
                       (method_params.training, f"{where}.training")):
        if "seed" in own:
            raise ParameterError(f"{place}.seed: a student's seed is the study's (study.seeds: one training per "
                                 "seed, paired across methods); remove it here")
    config = validate(TrainingConfig, merged(merged(training, student_params.training), method_params.training)
                      | {"seed": seed}, f"{where}.training")
    check_cache_matches_info(training_cache, dataset_info)
    losses = {name: dict(options or {}) for name, options in method_params.losses.items()}
    needs_teacher = any(name != "cross_entropy" for name in losses)
    return train_and_track(model_name(method_name, seed), "student", training_cache, dataset_info,
                           dataset_statistics, student_params.network, losses, config,
                           teacher_model if needs_teacher else None,
                           tags={"sstkd.method": method_name, "sstkd.seed": str(seed)})
