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


def method_pipeline(method_name: str, seed: int, pretrained: bool = False) -> Pipeline:
    train = update_wrapper(partial(train_student, method_name=method_name, seed=seed), train_student)
    inputs = ["training_cache", "dataset_info", "dataset_statistics", "teacher_model", "params:training",
              "params:student", "params:method"] + (["pretrained_backbones"] if pretrained else [])
    template = Pipeline([node(train, inputs, ["student_model", "training_history"], name="train_student")])
    return Pipeline(
        template,
        namespace=model_name(method_name, seed),
        inputs=SHARED_INPUTS | ({"pretrained_backbones"} if pretrained else set()),
        parameters={"params:training": "params:training", "params:student": "params:distillation.student",
                    "params:method": f"params:distillation.methods.{method_name}"},
    )


def create_pipeline(methods: list[str] | None = None, seeds: list[int] | None = None, pretrained: bool = False,
                    **kwargs) -> Pipeline:
    """``pretrained``: the env pretrains backbones, so every student takes (and waits for) their weights."""
    return sum((method_pipeline(name, seed, pretrained) for name in (methods or DEFAULT_METHODS)
                for seed in (seeds or DEFAULT_SEEDS)), Pipeline([]))
