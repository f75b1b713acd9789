from kedro.pipeline import Pipeline, node

from sstkd.pipelines.distillation.pipeline import DEFAULT_METHODS, DEFAULT_SEEDS
from sstkd.study import model_name

from .nodes import build_report, evaluate_models, measure_texture_transfer, plot_examples


def create_pipeline(methods: list[str] | None = None, seeds: list[int] | None = None, **kwargs) -> Pipeline:
    students = {model_name(m, s): f"{model_name(m, s)}.student_model"
                for m in (methods or DEFAULT_METHODS) for s in (seeds or DEFAULT_SEEDS)}
    models = {"teacher": "teacher_model"} | students
    shared = {"training_cache": "training_cache", "dataset_info": "dataset_info", "evaluation": "params:evaluation"}
    return Pipeline([
        node(evaluate_models, shared | models, "evaluation_results", name="evaluate_models"),
        node(measure_texture_transfer, shared | models, "texture_transfer_results", name="measure_texture_transfer"),
        node(build_report, ["evaluation_results", "dataset_info", "texture_transfer_results", "params:study"],
             ["report_table", "report_markdown", "metrics", "study_table", "study_comparisons", "miou_plot",
              "per_class_iou_plot", "texture_transfer_table", "texture_transfer_plot"], name="build_report"),
        node(plot_examples, shared | models, ["qualitative_plot", "texture_modules_plot"], name="plot_examples"),
    ])
