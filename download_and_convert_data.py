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
    'cifar100: cifar-100-python.tar.gz; mnist: a folder with the four .gz '
    'files; digits: an .npz like the shipped one). When set, the network is '
    'not used.')
# Flags of the image-folder converters (flowers, imagenet, custom); see
# docs/converters.md.
flags.DEFINE_integer(
    'num_workers', None,
    'flowers, imagenet, custom: worker processes converting images in '
    'parallel (default: the number of cores).', lower_bound=1)
flags.DEFINE_integer(
    'num_shards', None,
    'custom: files per split (default: one per ~1000 images).', lower_bound=1)
flags.DEFINE_integer(
    'train_shards', None,
    'imagenet, custom: files of the train split (imagenet default 1024).',
    lower_bound=1)
flags.DEFINE_integer(
    'validation_shards', None,
    'imagenet, custom: files of the validation split (imagenet default 128).',
    lower_bound=1)
flags.DEFINE_string(
    'images_dir', None,
    'custom: the folder of your photos, one subfolder per class '
    '(*.jpg, *.jpeg, *.png, *.bmp, *.gif).')
flags.DEFINE_float(
    'validation_fraction', 0.1,
    'custom: fraction of each class held out for the validation split.',
    lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer(
    'split_seed', 0,
    'custom: seed of the deterministic train/validation split.')
flags.DEFINE_string(
    'imagenet_dir', None,
    'imagenet: the folder holding train/<synset>/*.JPEG and validation/*.JPEG '
    '(and the metadata files below under their usual names).')
flags.DEFINE_string(
    'labels_file', None,
    'imagenet: the synset list, one a line (default: '
    'imagenet_dir/imagenet_lsvrc_2015_synsets.txt, else the train folders).')
flags.DEFINE_string(
    'imagenet_metadata_file', None,
    'imagenet: "synset<TAB>human-readable name" lines (default: '
    'imagenet_dir/imagenet_metadata.txt).')
flags.DEFINE_string(
    'validation_labels_file', None,
    'imagenet: validation ground truth in sorted file order, one synset or '
    'one devkit ILSVRC2012_ID a line (default: imagenet_dir/'
    'imagenet_2012_validation_synset_labels.txt or '
    'ILSVRC2012_validation_ground_truth.txt).')
flags.DEFINE_string(
    'synset_map_file', None,
    'imagenet: the devkit\'s id -> synset map for integer ground truth '
    '(meta.mat, or "<id> <synset>" lines; default: imagenet_dir/meta.mat).')
flags.DEFINE_string(
    'bounding_box_file', None,
    'imagenet: bounding boxes, a CSV of "filename,xmin,ymin,xmax,ymax" '
    '(normalised) or a folder of the devkit\'s XML files (default: '
    'imagenet_dir/imagenet_2012_bounding_boxes.csv or imagenet_dir/'
    'bounding_boxes/).')

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
