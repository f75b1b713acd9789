"""Decode every sample once into the array cache, and describe the training split."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sstkd.config import PreprocessingParams, validate
from sstkd.data.cache import build_cache, check_cache_matches_info, check_manifest_matches_info
from sstkd.data.sources import SourceLayout
from sstkd.data.statistics import dataset_statistics
from sstkd.evaluation.plots import plot_class_frequencies


def build_training_cache(raw_dataset: SourceLayout, manifest: pd.DataFrame, dataset_info: dict,
                         preprocessing: dict) -> dict:
    params = validate(PreprocessingParams, preprocessing, "preprocessing")
    check_manifest_matches_info(manifest, dataset_info)
    with tqdm(total=len(manifest), desc="decoding into cache", unit="img", disable=None) as bar:
        return build_cache(raw_dataset.root, manifest, np.asarray(dataset_info["label_lut"], dtype=np.uint8),
                           params.cache_size, params.workers, progress=bar.update,
                           source_fingerprint=dataset_info["fingerprint"])


def describe_training_split(training_cache: dict, dataset_info: dict) -> tuple[dict, plt.Figure]:
    check_cache_matches_info(training_cache, dataset_info, required_splits=("train",))
    train = training_cache["train"]
    statistics = dataset_statistics(train["images"], train["masks"], dataset_info["classes"])
    return statistics, plot_class_frequencies(statistics)
