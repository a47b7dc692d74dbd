r"""Downloads a dataset and converts it to TF-Slim's TFRecord files.

Usage:

  python download_and_convert_data.py --dataset_name=cifar10 \
      --dataset_dir=/tmp/cifar10
  python download_and_convert_data.py --dataset_name=mnist \
      --dataset_dir=/tmp/mnist
  python download_and_convert_data.py --dataset_name=digits \
      --dataset_dir=/tmp/digits        # ships with the toolkit: no network

Offline: put the official file in --dataset_dir beforehand, or name it with
--archive_path (for mnist, a folder holding the four .gz files). Downloads are
checked against the official checksums. Conversion is idempotent: finished
files are skipped, and a killed run never leaves a file that looks finished.
See docs/datasets.md.
"""

import dataclasses
import importlib
import pickle
import sys

from absl import app
from absl import flags
from absl import logging

from slimkit.registry import Registry


# ---------------------------------------------------------------- converters
@dataclasses.dataclass(frozen=True)
class Converter:
  """How to run one dataset's converter.

  Attributes:
    module: Module in `datasets/` holding the converter.
    function: Its name; it is called as `function(dataset_dir, **kwargs)`.
    flag_names: The flags passed to it as keyword arguments of the same
      names.
  """
  module: str
  function: str = 'run'
  flag_names: tuple = ('archive_path',)

  def run(self, dataset_dir, flag_values):
    module = importlib.import_module(f'slimkit.datasets.{self.module}')
    kwargs = {name: flag_values[name].value for name in self.flag_names}
    return getattr(module, self.function)(dataset_dir, **kwargs)


CONVERTERS = Registry('dataset (--dataset_name)')
CONVERTERS.register('cifar10', Converter('cifar10'))
CONVERTERS.register('mnist', Converter('mnist'))
CONVERTERS.register('digits', Converter('digits'))
# The flowers, imagenet and custom rows go here.

# ---------------------------------------------------------------- flags
flags.DEFINE_string(
    'dataset_name', None,
    f'The dataset to convert: {", ".join(CONVERTERS.names())}.')
flags.DEFINE_string(
    'dataset_dir', None,
    'The folder to write the TFRecord files and labels.txt to (created if '
    'needed); the official archive is looked for here first.')
flags.DEFINE_string(
    'archive_path', None,
    'A local copy of the official archive (cifar10: cifar-10-python.tar.gz; '
    'mnist: a folder with the four .gz files; digits: an .npz like the '
    'shipped one). When set, the network is not used.')
# Flags of the image-folder converters (flowers, imagenet, custom) go here.

FLAGS = flags.FLAGS


def _usage_error(message):
  print(f'{sys.argv[0]}: error: {message}', file=sys.stderr)
  return 2


def _parse_flags(argv):
  # absl exits with 1 on a flag error; 2 is the convention for bad usage.
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(_usage_error(str(e)))


def main(argv):
  if len(argv) > 1:
    return _usage_error(f'unexpected arguments {argv[1:]}; all options are '
                        'flags (--dataset_name=..., --dataset_dir=...).')
  if not FLAGS.dataset_name:
    return _usage_error(
        'the flag --dataset_name is required. Valid names: '
        f'{", ".join(CONVERTERS.names())}.')
  if FLAGS.dataset_name not in CONVERTERS:
    return _usage_error(
        f'--dataset_name: {CONVERTERS.unknown_message(FLAGS.dataset_name)}')
  if not FLAGS.dataset_dir:
    return _usage_error('the flag --dataset_dir is required (the folder to '
                        'write the TFRecord files to).')
  converter = CONVERTERS.get(FLAGS.dataset_name)
  try:
    written = converter.run(FLAGS.dataset_dir, FLAGS)
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
  app.run(main, flags_parser=_parse_flags)
