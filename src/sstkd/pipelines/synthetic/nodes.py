"""Describe the embedded default dataset; the catalog's raw_dataset writes it (once) from this description."""

from sstkd.config import SyntheticParams, validate
from sstkd.data.synthetic import MosaicSpec


def describe_texture_mosaics(synthetic: dict) -> MosaicSpec:
    return MosaicSpec(**validate(SyntheticParams, synthetic, "synthetic").model_dump())
