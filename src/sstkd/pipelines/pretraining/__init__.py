"""The pretraining stage: backbones trained once on the texture corpus, the studies' ImageNet stand-in."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
