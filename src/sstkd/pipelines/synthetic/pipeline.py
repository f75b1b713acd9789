from kedro.pipeline import Pipeline, node

from .nodes import describe_texture_mosaics


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([node(describe_texture_mosaics, "params:synthetic", "raw_dataset", name="generate_texture_mosaics")])
