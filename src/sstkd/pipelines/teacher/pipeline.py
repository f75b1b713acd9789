from kedro.pipeline import Pipeline, node

from .nodes import train_teacher


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(train_teacher,
             ["training_cache", "dataset_info", "dataset_statistics", "params:training", "params:teacher"],
             ["teacher_model", "teacher_history"], name="train_teacher"),
    ])
