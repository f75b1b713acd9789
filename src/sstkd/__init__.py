"""sstkd: Structural and Statistical Texture Knowledge Distillation for semantic segmentation."""

__version__ = "0.1.0"
