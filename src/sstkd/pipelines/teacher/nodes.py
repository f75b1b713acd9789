"""Train the teacher, or load and validate a given teacher checkpoint."""

from sstkd.config import teacher_settings
from sstkd.data.cache import check_cache_matches_info
from sstkd.models.converters import convert_teacher
from sstkd.pipelines.common import train_and_track, with_pretrained_weights
from sstkd.training.checkpoint import load_checkpoint
from sstkd.training.distributed import local_device
from sstkd.training.loop import validate as validate_network
from sstkd.training.recipe import (
    check_model_matches_data,
    network_from_payload,
    split_dataset,
    transform_config,
)


def train_teacher(training_cache: dict, dataset_info: dict, dataset_statistics: dict, training: dict,
                  teacher: dict, pretrained_backbones: dict | None = None) -> tuple[dict, list[dict]]:
    """``pretrained_backbones``: the pretraining stage's weights, an input only where the env pretrains."""
    params, config = teacher_settings(training, teacher)
    check_cache_matches_info(training_cache, dataset_info)
    if params.checkpoint is None:
        network, pretrained = with_pretrained_weights(params.network, pretrained_backbones, "teacher.network")
        return train_and_track("teacher", "teacher", training_cache, dataset_info, dataset_statistics,
                               network, params.losses, config, pretrained=pretrained)
    source = f"teacher.checkpoint ({params.checkpoint})"
    if params.checkpoint_format == "sstkd":
        payload = load_checkpoint(params.checkpoint)
    else:  # checked against teacher.network while converting; it gains an input adapter and the source's dilation
        payload = convert_teacher(params.checkpoint, params.checkpoint_format, params.network.model_dump(),
                                  dataset_info, dataset_statistics)
    check_model_matches_data(payload | {"data_fingerprint": None}, dataset_info, source)
    network = network_from_payload(payload, params.network if params.checkpoint_format == "sstkd" else None,
                                   int(dataset_info["num_classes"]), source=source)
    val_set = split_dataset(training_cache, "val", transform_config(config, dataset_statistics), False, config.seed)
    metrics = validate_network(network, val_set, int(dataset_info["num_classes"]), config,
                               local_device(config.device))
    # Validated on this data: from now on it is this data's teacher (the file it came from stays recorded).
    payload = payload | {"role": "teacher", "best_val_miou": metrics["miou"], "source": params.checkpoint,
                         "trained_on_fingerprint": payload.get("data_fingerprint"),
                         "data_fingerprint": dataset_info["fingerprint"], "data_layout": dataset_info["layout"]}
    payload.setdefault("normalization", {"mean": dataset_statistics["mean"], "std": dataset_statistics["std"]})
    return payload, [{"epoch": 0, "val_miou": metrics["miou"], "loaded_from": params.checkpoint}]
