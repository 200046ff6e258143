"""The pyfunc model's code, logged by path ("models from code"): MLflow runs this file to get the
model instead of unpickling an object, so a logged model holds no pickled code."""

from mlflow.models import set_model

from infra._mlflow_model import BundleModel

set_model(BundleModel())
