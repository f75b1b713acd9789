"""One modular pipeline per distillation method, each in its own namespace (``kedro run --namespaces sstkd``).

Which methods run is ``distillation.run`` in the parameters (read by ``pipeline_registry``); each method's
settings are ``distillation.methods.<name>``.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from .nodes import train_student

DEFAULT_METHODS = ["baseline", "pixel_kd", "sstkd"]
SHARED_INPUTS = {"training_cache", "dataset_info", "dataset_statistics", "teacher_model"}


def method_pipeline(method_name: str) -> Pipeline:
    train = update_wrapper(partial(train_student, method_name=method_name), train_student)
    template = Pipeline([
        node(train, ["training_cache", "dataset_info", "dataset_statistics", "teacher_model", "params:training",
                     "params:student", "params:method"],
             ["student_model", "training_history"], name="train_student"),
    ])
    return Pipeline(
        template,
        namespace=method_name,
        inputs=SHARED_INPUTS,
        parameters={"params:training": "params:training", "params:student": "params:distillation.student",
                    "params:method": f"params:distillation.methods.{method_name}"},
    )


def create_pipeline(methods: list[str] | None = None, **kwargs) -> Pipeline:
    return sum((method_pipeline(name) for name in (methods or DEFAULT_METHODS)), Pipeline([]))
