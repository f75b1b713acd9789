from kedro.pipeline import Pipeline, node

from sstkd.pipelines.distillation.pipeline import DEFAULT_METHODS

from .nodes import build_report, evaluate_models, measure_texture_transfer, plot_examples


def create_pipeline(methods: list[str] | None = None, **kwargs) -> Pipeline:
    models = {"teacher": "teacher_model"} | {m: f"{m}.student_model" for m in (methods or DEFAULT_METHODS)}
    shared = {"training_cache": "training_cache", "dataset_info": "dataset_info", "evaluation": "params:evaluation"}
    return Pipeline([
        node(evaluate_models, shared | models, "evaluation_results", name="evaluate_models"),
        node(measure_texture_transfer, shared | models, "texture_transfer_results", name="measure_texture_transfer"),
        node(build_report, ["evaluation_results", "dataset_info", "texture_transfer_results"],
             ["report_table", "report_markdown", "metrics", "miou_plot", "per_class_iou_plot",
              "texture_transfer_table", "texture_transfer_plot"], name="build_report"),
        node(plot_examples, shared | models, ["qualitative_plot", "texture_modules_plot"], name="plot_examples"),
    ])
