from kedro.pipeline import Pipeline, node

from .nodes import pretrain_backbones


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(pretrain_backbones, "params:pretraining", "pretrained_backbones", name="pretrain_backbones"),
    ])
