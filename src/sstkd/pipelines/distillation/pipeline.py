"""One modular pipeline per (distillation method, seed), each in its own namespace ``<method>.seed_<n>``.

``kedro run --namespaces sstkd`` trains one method over every seed, ``--namespaces sstkd.seed_3`` one training.
Which methods and seeds run is ``distillation.run`` and ``study.seeds`` in the parameters (read by
``pipeline_registry``); each method's settings are ``distillation.methods.<name>``.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from sstkd.study import model_name

from .nodes import train_student

DEFAULT_METHODS = ["baseline", "pixel_kd", "sstkd"]
DEFAULT_SEEDS = [0]
SHARED_INPUTS = {"training_cache", "dataset_info", "dataset_statistics", "teacher_model"}


def method_pipeline(method_name: str, seed: int) -> Pipeline:
    train = update_wrapper(partial(train_student, method_name=method_name, seed=seed), train_student)
    template = Pipeline([
        node(train, ["training_cache", "dataset_info", "dataset_statistics", "teacher_model", "params:training",
                     "params:student", "params:method"],
             ["student_model", "training_history"], name="train_student"),
    ])
    return Pipeline(
        template,
        namespace=model_name(method_name, seed),
        inputs=SHARED_INPUTS,
        parameters={"params:training": "params:training", "params:student": "params:distillation.student",
                    "params:method": f"params:distillation.methods.{method_name}"},
    )


def create_pipeline(methods: list[str] | None = None, seeds: list[int] | None = None, **kwargs) -> Pipeline:
    return sum((method_pipeline(name, seed) for name in (methods or DEFAULT_METHODS)
                for seed in (seeds or DEFAULT_SEEDS)), Pipeline([]))
