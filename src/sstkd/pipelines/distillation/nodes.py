"""Train one student with one method (baseline, pixel KD, SKD, CWD, SSTKD, ablations): one namespace each."""

from sstkd.config import MethodParams, StudentParams, TrainingConfig, merged, validate
from sstkd.data.cache import check_cache_matches_info
from sstkd.pipelines.common import train_and_track


def train_student(training_cache: dict, dataset_info: dict, dataset_statistics: dict, teacher_model: dict,
                  training: dict, student: dict, method: dict, method_name: str) -> tuple[dict, list[dict]]:
    where = f"distillation.methods.{method_name}"
    student_params = validate(StudentParams, student, "distillation.student")
    method_params = validate(MethodParams, method, where)
    config = validate(TrainingConfig, merged(merged(training, student_params.training), method_params.training),
                      f"{where}.training")
    check_cache_matches_info(training_cache, dataset_info)
    losses = {name: dict(options or {}) for name, options in method_params.losses.items()}
    needs_teacher = any(name != "cross_entropy" for name in losses)
    return train_and_track(method_name, "student", training_cache, dataset_info, dataset_statistics,
                           student_params.network, losses, config, teacher_model if needs_teacher else None)
