"""The closed choices of the flags, without TensorFlow.

Flags are parsed and checked before TensorFlow is imported, so the values of
their enums come from here: from the registries that are TensorFlow-free
(nets, datasets, optimizers and schedules), and otherwise from copies of the
library's tuples that tests/test_flags.py compares with the originals.
"""

from slimkit.datasets import dataset_factory
from slimkit.nets import nets_factory

# preprocessing_factory.STYLES (which imports TensorFlow).
PREPROCESSING_STYLES = ('alexnet', 'cifarnet', 'inception', 'lenet', 'vgg')
# training.precision.PRECISIONS.
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')
# export.tflite.QUANTIZE_MODES and IO_TYPES.
TFLITE_QUANTIZE_MODES = ('none', 'float16', 'dynamic', 'int8')
TFLITE_IO_TYPES = ('float32', 'uint8')
# seeds.MAX_SEED.
MAX_SEED = 2**31 - 1


def model_names():
  """`--model_name` values: every registered net."""
  return nets_factory.list_networks()


def preprocessing_names():
  """`--preprocessing_name` values: styles, and model names (meaning their
  style)."""
  return sorted(set(PREPROCESSING_STYLES) | set(model_names()))


def dataset_names():
  """`--dataset_name` values of the readers: every registered dataset."""
  return dataset_factory.list_datasets()
