from kedro.pipeline import Pipeline, node

from .nodes import build_validated_manifest


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(build_validated_manifest, ["raw_dataset", "params:data"], ["manifest", "dataset_info"],
             name="build_validated_manifest"),
    ])
