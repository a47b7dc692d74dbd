r"""Downloads a dataset and converts it to TF-Slim's TFRecord files.

Usage:

  python download_and_convert_data.py --dataset_name=cifar10 \
      --dataset_dir=/tmp/cifar10
  python download_and_convert_data.py --dataset_name=cifar100 \
      --dataset_dir=/tmp/cifar100
  python download_and_convert_data.py --dataset_name=mnist \
      --dataset_dir=/tmp/mnist
  python download_and_convert_data.py --dataset_name=digits \
      --dataset_dir=/tmp/digits        # ships with the toolkit: no network
  python download_and_convert_data.py --dataset_name=flowers \
      --dataset_dir=/tmp/flowers
  python download_and_convert_data.py --dataset_name=imagenet \
      --dataset_dir=/data/imagenet-tfrecord --imagenet_dir=/data/ILSVRC2012
  python download_and_convert_data.py --dataset_name=custom \
      --dataset_dir=/tmp/my_photos_tfrecord --images_dir=/data/my_photos

Offline: put the official file in --dataset_dir beforehand, or name it with
--archive_path (for mnist, a folder holding the four .gz files). Downloads are
checked against the official checksums. Conversion is idempotent: finished
files are skipped, and a killed run never leaves a file that looks finished.
See docs/datasets.md and, for flowers, imagenet and custom, docs/converters.md.
"""

import dataclasses
import importlib
import pickle
import sys

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags
from slimkit.registry import Registry


# ---------------------------------------------------------------- converters
@dataclasses.dataclass(frozen=True)
class Converter:
  """How to run one dataset's converter.

  Attributes:
    module: Module in `datasets/` holding the converter.
    function: Its name; it is called as `function(dataset_dir, **kwargs)`.
    flag_names: The flags main() passes to it as keyword arguments of the
      same names.
  """
  module: str
  function: str = 'run'
  flag_names: tuple = ('archive_path',)

  def run(self, dataset_dir, **kwargs):
    module = importlib.import_module(f'slimkit.datasets.{self.module}')
    return getattr(module, self.function)(dataset_dir, **kwargs)


CONVERTERS = Registry('dataset (--dataset_name)')
CONVERTERS.register('cifar10', Converter('cifar10'))
CONVERTERS.register('cifar100', Converter('cifar100'))
CONVERTERS.register('mnist', Converter('mnist'))
CONVERTERS.register('digits', Converter('digits'))
CONVERTERS.register('flowers', Converter(
    'convert_flowers', flag_names=('archive_path', 'num_workers')))
CONVERTERS.register('imagenet', Converter(
    'convert_imagenet', flag_names=(
        'imagenet_dir', 'labels_file', 'imagenet_metadata_file',
        'validation_labels_file', 'synset_map_file', 'bounding_box_file',
        'train_shards', 'validation_shards', 'num_workers')))
CONVERTERS.register('custom', Converter('custom', flag_names=(
    'images_dir', 'validation_fraction', 'split_seed', 'num_shards',
    'train_shards', 'validation_shards', 'num_workers')))

# ---------------------------------------------------------------- flags
FLAGS = slim_flags.FLAGS
slim_flags.define_download_flags(CONVERTERS.names())
flags.adopt_module_key_flags(slim_flags)


def _usage_error(message):
  print(f'{sys.argv[0]}: error: {message}', file=sys.stderr)
  return 2


def main(argv):
  if len(argv) > 1:
    return _usage_error(f'unexpected arguments {argv[1:]}; all options are '
                        'flags (--dataset_name=..., --dataset_dir=...).')
  if not FLAGS.dataset_name:
    return _usage_error(
        'the flag --dataset_name is required. Valid names: '
        f'{", ".join(CONVERTERS.names())}.')
  if not FLAGS.dataset_dir:
    return _usage_error('the flag --dataset_dir is required (the folder to '
                        'write the TFRecord files to).')
  converter = CONVERTERS.get(FLAGS.dataset_name)
  try:
    written = converter.run(FLAGS.dataset_dir, **{
        name: FLAGS[name].value for name in converter.flag_names})
  # Checksum, archive, pickle and file errors: a message, not a traceback.
  except (ValueError, OSError, pickle.UnpicklingError) as e:
    print(f'{sys.argv[0]}: error: {e}', file=sys.stderr)
    return 1
  if written:
    logging.info('Wrote %s.', written)
  print(f'Finished converting the {FLAGS.dataset_name} dataset in '
        f'{FLAGS.dataset_dir}' + ('' if written else
                                  ' (all files already existed).'))
  return 0


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
