from kedro.pipeline import Pipeline, node

from .nodes import train_teacher


def create_pipeline(pretrained: bool = False, **kwargs) -> Pipeline:
    """``pretrained``: the env pretrains backbones, so the teacher takes (and waits for) their weights."""
    inputs = ["training_cache", "dataset_info", "dataset_statistics", "params:training", "params:teacher"]
    return Pipeline([
        node(train_teacher, inputs + (["pretrained_backbones"] if pretrained else []),
             ["teacher_model", "teacher_history"], name="train_teacher"),
    ])
