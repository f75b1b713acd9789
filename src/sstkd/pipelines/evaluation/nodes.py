"""Evaluate every trained network on the evaluation split (``evaluation.split``) and write the study's report."""

import json
import logging
import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sstkd import tracking
from sstkd.config import EvaluationParams, StudyParams, validate
from sstkd.data.cache import check_cache_matches_info
from sstkd.data.ragged import center_cropped, most_common_size
from sstkd.errors import UserError
from sstkd.evaluation.evaluate import evaluate_network, network_cost, predict_labels
from sstkd.evaluation.plots import (
    plot_per_class_iou,
    plot_predictions,
    plot_study,
    plot_texture_modules,
    plot_texture_transfer,
)
from sstkd.evaluation.published import beside_published, published_markdown
from sstkd.evaluation.report import (
    per_class_by_method,
    report_markdown,
    report_table,
    transfer_by_method,
    transfer_markdown,
    transfer_table,
)
from sstkd.evaluation.sanity import sanity_checks, sanity_markdown
from sstkd.evaluation.study_summary import study_markdown, summarize_study, summary_metrics
from sstkd.evaluation.texture_transfer import stage1_features, texture_transfer
from sstkd.study import split_model_name
from sstkd.training.distributed import local_device
from sstkd.training.recipe import check_model_matches_data, network_from_payload

log = logging.getLogger(__name__)


def _architecture(payload: dict) -> str:
    network = payload["network"]
    return f"{network['head']}-{network['backbone']}/os{network['output_stride']}"


def evaluate_models(training_cache: dict, dataset_info: dict, evaluation: dict, **models: dict) -> dict:
    params = validate(EvaluationParams, evaluation, "evaluation")
    if params.split not in training_cache:
        raise KeyError(f"evaluation.split: the cache has no '{params.split}' split (it has {sorted(training_cache)})")
    check_cache_matches_info(training_cache, dataset_info, required_splits=(params.split,))
    for name, payload in models.items():
        check_model_matches_data(payload, dataset_info, f"{name} model")
    images, masks = training_cache[params.split]["images"], training_cache[params.split]["masks"]
    device = local_device(params.device)
    num_classes = int(dataset_info["num_classes"])
    resized_to = getattr(training_cache, "resized_to", None)
    results, costs = {}, {}
    for name, payload in models.items():
        network = network_from_payload(payload, source=name)
        metrics = evaluate_network(network, images, masks, num_classes, payload["normalization"],
                                   params.batch_size, params.sliding_window, params.window_overlap, params.flip,
                                   params.scales, params.boundary_radius, device, name)
        # Every seed of a method has the same network: its cost is measured once (and the same for all).
        same_network = json.dumps(payload["network"], sort_keys=True)
        if same_network not in costs:
            costs[same_network] = network_cost(network, *most_common_size(images), params.latency_runs)
        cost = costs[same_network]
        results[name] = {"role": payload.get("role", "student"), "architecture": _architecture(payload),
                         "images_resized_to": list(resized_to) if resized_to else None,
                         "metrics": metrics, "cost": cost, "best_val_miou": payload.get("best_val_miou"),
                         "val_miou_curve": payload.get("val_miou_curve"), "split": params.split,
                         "mlflow_run_id": payload.get("mlflow_run_id", ""),
                         "fingerprint": payload.get("fingerprint", "")}
        # in the report's unit: metrics in percent (the cost keeps its own units)
        _log_model_metrics(name, payload, {k: 100 * v for k, v in metrics.items() if isinstance(v, float)} | cost,
                           _mlflow_prefix(params.split))
    return results


def _mlflow_prefix(split: str) -> str:
    """The stem of a model's evaluation metrics in MLflow (``<stem>.<model>.miou`` on the pipeline's run,
    ``<stem>_miou`` on the model's): ``test`` for the test split, else ``eval_<split>``, since ``val_miou`` on a
    model's run is already its per-epoch training curve."""
    return "test" if split == "test" else f"eval_{split}"


def _log_model_metrics(name: str, payload: dict, summary: dict, kind: str) -> None:
    """On the pipeline run as ``<kind>.<model>.*``, and on the model's own run as ``<kind>_*`` when this store has
    it; a model trained in another store (pulled with DVC) keeps its run id as provenance instead."""
    tracking.log_metrics(summary, prefix=f"{kind}.{name}.")
    if tracking.active() and tracking.run_exists(payload.get("mlflow_run_id")):
        tracking.log_metrics(summary, prefix=f"{kind}_", run_id=payload["mlflow_run_id"])
    elif payload.get("mlflow_run_id"):
        tracking.set_tags({f"sstkd.{name}.trained_in_run": payload["mlflow_run_id"]})


def measure_texture_transfer(training_cache: dict, dataset_info: dict, evaluation: dict, **models: dict) -> dict:
    """Stage-1 texture-transfer diagnostics of every model against the teacher (empty when disabled)."""
    params = validate(EvaluationParams, evaluation, "evaluation")
    config = params.texture_transfer
    if not config.enabled:
        return {}
    if "teacher" not in models:
        raise KeyError("evaluation.texture_transfer needs the teacher model as reference")
    check_cache_matches_info(training_cache, dataset_info, required_splits=("train", params.split))
    device = local_device(params.device)
    train, test = training_cache["train"], training_cache[params.split]
    train_images, train_masks = _evenly_spaced(train, config.train_images)
    test_images, test_masks = _evenly_spaced(test, config.test_images or len(test["images"]))
    features = {}
    for name, payload in models.items():
        network = network_from_payload(payload, source=name)
        features[name] = {split: stage1_features(network, images, payload["normalization"], config.batch_size, device)
                          for split, images in (("train", train_images), ("test", test_images))}
    results = texture_transfer(features, train_masks, test_masks, int(dataset_info["num_classes"]), config)
    for name, payload in models.items():
        _log_model_metrics(name, payload, {k: 100 * v if k.startswith("probe") else v
                                           for k, v in results[name].items() if isinstance(v, float)}, "texture")
    return results


def _evenly_spaced(split: dict, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images and masks of a cached split, evenly spaced over it (all of them if it has fewer), stacked;
    a ragged split's centre-cropped to the smallest of them."""
    picked = np.unique(np.linspace(0, len(split["images"]) - 1, min(count, len(split["images"]))).round().astype(int))
    return center_cropped(split["images"], split["masks"], picked)


def _split_of_results(evaluation_results: dict) -> str:
    """The split every model was evaluated on (``evaluation.split``, recorded in each result by
    :func:`evaluate_models`), so that the report names the split its numbers are from."""
    unrecorded = sorted(name for name, result in evaluation_results.items() if "split" not in result)
    splits = sorted({result["split"] for result in evaluation_results.values() if "split" in result})
    rerun = "rerun the evaluation (`kedro run --pipelines evaluation`, with the run's --env)"
    results_file = "<data_root>/07_model_output/evaluation_results.json"
    if unrecorded:
        raise UserError(f"evaluation results of {', '.join(unrecorded)} do not say which split they were "
                        "measured on (made by an older version)", results_file, rerun)
    if len(splits) != 1:
        raise UserError(f"evaluation results were measured on different splits ({', '.join(splits)})",
                        results_file, rerun)
    return splits[0]


def build_report(evaluation_results: dict, dataset_info: dict, texture_transfer_results: dict, study: dict
                 ) -> tuple[pd.DataFrame, str, dict, pd.DataFrame, pd.DataFrame, Figure, Figure, pd.DataFrame, Figure]:
    """Per model and per method over seeds: tables, the Markdown report, ``metrics.json`` and the figures."""
    params = validate(StudyParams, study, "study")
    table = report_table(evaluation_results)
    summary = summarize_study(table, params.references, params.confidence,
                              split=_split_of_results(evaluation_results))
    transfer = transfer_table(texture_transfer_results)
    transfer_summary = transfer_by_method(transfer)
    checks = sanity_checks(table, evaluation_results, transfer, summary, params.sanity)
    section = sanity_markdown(checks, params.sanity.note) + "\n" + study_markdown(summary)
    markdown = report_markdown(table, evaluation_results, dataset_info["classes"],
                               f"SSTKD study on {dataset_info['layout']} ({dataset_info['root']})", section)
    markdown += transfer_markdown(transfer)
    metrics = summary_metrics(summary, transfer_summary)
    if params.published:
        published = beside_published(summary.methods, params.published)
        resized = next((r["images_resized_to"] for r in evaluation_results.values() if r.get("images_resized_to")), None)
        markdown += published_markdown(published, params.published, resized)
        for _, row in published.iterrows():
            if row["method"] in metrics:
                metrics[row["method"]] |= {"published_miou": row["published_miou"],
                                           "ours_minus_published": round(row["ours_minus_published"], 4)}
    for method, values in metrics.items():
        tracking.log_metrics({k: v for k, v in values.items() if v is not None}, prefix=f"study.{method}.")
    tracking.set_tags({f"study.{row['method']}.vs_{row['reference']}.{row['metric']}": row["verdict"]
                       for _, row in summary.comparisons.iterrows()})
    tracking.set_tags({f"sanity.{check.key}": check.status for check in checks})
    log.info("Sanity checks: %s", "; ".join(f"{c.check}: {c.status}" + ("" if math.isnan(c.value) else f" ({c.value:+.2f})")
                                            for c in checks))
    return (table, markdown, metrics, summary.methods, summary.comparisons,
            plot_study(table, summary.methods, params.confidence),
            plot_per_class_iou(per_class_by_method(evaluation_results), dataset_info["classes"]), transfer,
            plot_texture_transfer(texture_transfer_results))


def plot_examples(training_cache: dict, dataset_info: dict, evaluation: dict, **models: dict) -> tuple[Figure, Figure]:
    """Predictions and texture modules of the teacher and of each method's model of the study's first seed."""
    params = validate(EvaluationParams, evaluation, "evaluation")
    seeds = {name: split_model_name(name) for name in models}
    first_seed = min((seed for _, seed in seeds.values() if seed is not None), default=None)
    models = {seeds[name][0]: payload for name, payload in models.items() if seeds[name][1] in (None, first_seed)}
    split = training_cache[params.split]
    count = min(params.qualitative_samples, len(split["images"]))
    images, masks = center_cropped(split["images"], split["masks"], range(count))
    networks = {name: network_from_payload(payload, source=name) for name, payload in models.items()}
    normalization = next(iter(models.values()))["normalization"]
    predictions = {name: predict_labels(net, images, models[name]["normalization"], params.sliding_window)
                   for name, net in networks.items()}
    texture_networks = {name: networks[name] for name in ("teacher", "baseline", "sstkd") if name in networks}
    return (plot_predictions(images, masks, predictions, int(dataset_info["num_classes"]), dataset_info["classes"]),
            plot_texture_modules(images[0], texture_networks or networks, normalization))
