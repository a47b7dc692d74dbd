"""The datasets registry: every dataset by name, in one table.

Typical use:

  split = dataset_factory.get_split('cifar10', 'train', '/tmp/cifar10')
  split.num_samples, split.num_classes, split.files()
  dataset = tf.data.TFRecordDataset(split.files()).map(split.decode)
"""

import dataclasses
import importlib

from slimkit.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
  """One registered dataset.

  Attributes:
    name: The registry name (`--dataset_name`).
    module: Module in `datasets/` with `get_split(split_name, dataset_dir,
      file_pattern=None)` and `SPLITS_TO_SIZES`.
  """
  name: str
  module: str

  def load(self):
    # Imported on first use so that a script pays only for the dataset it reads.
    return importlib.import_module(f'slimkit.datasets.{self.module}')


DATASETS = Registry('dataset (--dataset_name)')

for _name, _module in (
    ('cifar10', 'cifar10'),
    ('cifar100', 'cifar100'),  # not in TF-Slim; CIFAR-10's schema
    ('custom', 'custom'),
    ('digits', 'digits'),
    ('flowers', 'flowers'),
    ('imagenet', 'imagenet'),
    ('mnist', 'mnist'),
    ('synthetic', 'synthetic'),  # generated input, for benchmarks
):
  DATASETS.register(_name, DatasetEntry(_name, _module))


def list_datasets():
  """Returns the sorted names of all registered datasets."""
  return DATASETS.names()


def get_split(name, split_name, dataset_dir, file_pattern=None):
  """Describes one split of a registered dataset.

  Args:
    name: The dataset ('cifar10', 'cifar100', 'mnist', 'flowers', 'imagenet',
      'digits', 'custom', 'synthetic').
    split_name: The split ('train', 'test', 'validation', per dataset).
    dataset_dir: The folder of the dataset's TFRecord files and `labels.txt`.
    file_pattern: A glob overriding the dataset's own file pattern ('%s' is
      replaced by the split name; relative to `dataset_dir`).

  Returns:
    A `slimkit.datasets.split.DatasetSplit`: file pattern, number of samples,
    number of classes, labels-to-names (from `labels.txt` when present) and how
    to decode a record.

  Raises:
    ValueError: for an unknown dataset or split (listing the valid names), or
      a missing dataset_dir.
    FileNotFoundError: when dataset_dir does not exist.
  """
  module = DATASETS.get(name).load()
  return module.get_split(split_name, dataset_dir, file_pattern=file_pattern)


def default_validation_split(name, dataset_dir):
  """The split to validate on during training: 'validation', else 'test'.

  Args:
    name: A registered dataset.
    dataset_dir: Its folder.

  Returns:
    'validation' when the dataset has such a split (flowers, imagenet),
    otherwise 'test' (cifar10, mnist, digits).
  """
  try:
    get_split(name, 'validation', dataset_dir)
    return 'validation'
  except ValueError:
    return 'test'
