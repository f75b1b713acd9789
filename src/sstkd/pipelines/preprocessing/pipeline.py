from kedro.pipeline import Pipeline, node

from .nodes import build_training_cache, describe_training_split


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(build_training_cache, ["raw_dataset", "manifest", "dataset_info", "params:preprocessing"],
             "training_cache", name="build_training_cache"),
        node(describe_training_split, ["training_cache", "dataset_info"],
             ["dataset_statistics", "class_frequency_plot"], name="describe_training_split"),
    ])
