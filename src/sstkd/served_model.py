"""The MLflow "model from code" entry point: ``mlflow.pyfunc.log_model(python_model=<this file>)`` stores this
file instead of a pickled object (sstkd.tracking.log_segmentation_model)."""

from mlflow.models import set_model

from sstkd.serving import SegmentationModel

set_model(SegmentationModel())
