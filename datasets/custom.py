"""Your own photos: a folder per class in, TFRecords and a description out.

Input: any folder tree `images_dir/<class_name>/...*.{jpg,jpeg,png,bmp,gif}`
(extensions in any case; images in subfolders of a class folder belong to
that class). Class ids are the sorted class names' positions, from 0.

Output in `dataset_dir`:

  train-00000-of-0000N.tfrecord ...        TF-Slim's schema, RGB JPEG images
  validation-00000-of-0000M.tfrecord ...
  labels.txt                               0:<first class> ...
  dataset.json                             classes, split sizes, file pattern
  conversion_report.json, skipped_files.txt

`get_split` reads `dataset.json`, so `--dataset_name=custom
--dataset_dir=<dataset_dir>` trains and evaluates on the converted photos with
no code change.

The validation split takes `validation_fraction` of every class (at least one
image of a class with two or more), chosen by a shuffle seeded with `seed` and
the class name: the same folder always gives the same split, and adding
photos to one class does not move the others'.

Typical use:

  custom.convert('/data/my_photos_tfrecord', '/data/my_photos',
                 validation_fraction=0.1)
  split = custom.get_split('train', '/data/my_photos_tfrecord')
"""

import dataclasses
import functools
import json
import math
import os
import random
import sys

from slimkit.datasets import dataset_utils
from slimkit.datasets import image_coding
from slimkit.datasets import sharded_writer

DESCRIPTION_FILENAME = 'dataset.json'
FILE_PATTERN = '%s-*.tfrecord'
SHARD_NAME = '%s-%%05d-of-%%05d.tfrecord'  # '%s' is the split name.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
IMAGES_PER_SHARD = 1000  # For the default shard count.
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A color image of varying size.',
    'label': 'A single integer class id, from 0.',
}


@dataclasses.dataclass(frozen=True)
class ImageItem:
  """One image of a class folder.

  Attributes:
    path: The image file.
    label: The class id.
  """
  path: str
  label: int


def encode_item(item, image_format=b'jpeg', quality=100):
  """Returns the `sharded_writer.Encoded` record of one `ImageItem`.

  The record has TF-Slim's base schema (`dataset_utils.image_to_tfexample`)
  with the image as an RGB JPEG.

  Args:
    item: An `ImageItem`.
    image_format: The value of `image/format`.
    quality: JPEG quality of re-encoded (non-RGB-JPEG) images.

  Raises:
    sharded_writer.SkipItem: when the file cannot be read or decoded.
  """
  try:
    image = image_coding.read_rgb_jpeg(item.path, quality=quality)
  except image_coding.UndecodableImageError as e:
    raise sharded_writer.SkipItem(item.path, str(e)) from None
  example = dataset_utils.image_to_tfexample(
      image.data, image_format, image.height, image.width, item.label)
  # Deterministic: the same inputs give byte-identical shards in any process
  # (the feature map's order otherwise follows the process's hash seed).
  record = example.SerializeToString(deterministic=True)
  return sharded_writer.Encoded(record, item.path, image.converted_from)


def find_class_images(images_dir, extensions=IMAGE_EXTENSIONS):
  """Lists the class folders of `images_dir` and their images.

  Args:
    images_dir: The root; every visible subfolder is a class.
    extensions: Lower-case file extensions of images.

  Returns:
    `(class_names, images)`: the sorted class names, and a dict from class
    name to the sorted paths of its images (searched recursively).

  Raises:
    FileNotFoundError: when `images_dir` is not a directory.
    ValueError: when it has no class folder with an image.
  """
  if not os.path.isdir(images_dir):
    raise FileNotFoundError(f'images_dir {images_dir!r} is not a directory.')
  class_names = sorted(
      name for name in os.listdir(images_dir)
      if not name.startswith('.') and
      os.path.isdir(os.path.join(images_dir, name)))
  images = {}
  for name in class_names:
    paths = []
    for directory, subdirs, files in os.walk(os.path.join(images_dir, name)):
      subdirs[:] = [d for d in subdirs if not d.startswith('.')]
      paths.extend(os.path.join(directory, f) for f in files
                   if not f.startswith('.') and
                   os.path.splitext(f)[1].lower() in extensions)
    images[name] = sorted(paths)
  empty = [name for name in class_names if not images[name]]
  class_names = [name for name in class_names if images[name]]
  if not class_names:
    raise ValueError(
        f'{images_dir} has no class folder with images ({", ".join(extensions)}'
        f'); expected {images_dir}/<class_name>/<image>.')
  if empty:
    print(f'Ignoring class folders without images: {empty}', file=sys.stderr)
  return class_names, images


def split_items(class_names, images, validation_fraction=0.1, seed=0):
  """Splits each class's images into train and validation items.

  Args:
    class_names: The sorted class names; a class's id is its position.
    images: A dict from class name to its image paths.
    validation_fraction: Fraction of each class held out, in [0, 1).
    seed: Seed of the per-class shuffles.

  Returns:
    `(train_items, validation_items)`, lists of `ImageItem`s, each shuffled
    with `seed` so that every shard mixes classes.

  Raises:
    ValueError: for a fraction outside [0, 1).
  """
  if not 0 <= validation_fraction < 1:
    raise ValueError(f'validation_fraction must be in [0, 1), got '
                     f'{validation_fraction}.')
  train, validation = [], []
  for label, name in enumerate(class_names):
    paths = sorted(images[name])
    # A string seed is hashed with SHA-512, so it is stable across runs and
    # Python versions, unlike hash(str).
    random.Random(f'{seed}:{name}').shuffle(paths)
    num_validation = round(validation_fraction * len(paths))
    if validation_fraction > 0 and len(paths) >= 2:
      num_validation = min(max(num_validation, 1), len(paths) - 1)
    validation += [ImageItem(p, label) for p in paths[:num_validation]]
    train += [ImageItem(p, label) for p in paths[num_validation:]]
  random.Random(seed).shuffle(train)
  random.Random(seed).shuffle(validation)
  return train, validation


def default_num_shards(num_items, images_per_shard=IMAGES_PER_SHARD):
  """Returns the shard count for `num_items`: about 1000 images a shard."""
  return max(1, math.ceil(num_items / images_per_shard))


def convert(dataset_dir, images_dir, validation_fraction=0.1, seed=0,
            num_shards=None, train_shards=None, validation_shards=None,
            num_workers=None, quality=100, log=sys.stderr):
  """Converts a folder of class folders to TFRecords in `dataset_dir`.

  Reruns resume: finished shards are kept (see `sharded_writer`).

  Args:
    dataset_dir: Output directory (created if missing).
    images_dir: `images_dir/<class_name>/*.{jpg,jpeg,png,bmp,gif}`.
    validation_fraction: Fraction of each class for the validation split; 0
      writes no validation split.
    seed: Seed of the split and of the order of the records.
    num_shards: Files per split; None means about one per 1000 images.
    train_shards: Files of the train split, overriding `num_shards`.
    validation_shards: Files of the validation split, overriding `num_shards`.
    num_workers: Worker processes; None means the number of cores.
    quality: JPEG quality of re-encoded images.
    log: Stream for progress and the summary.

  Returns:
    A dict from split name to its `sharded_writer.Report`; the description
    written to `dataset.json` is returned by `read_description`.
  """
  class_names, images = find_class_images(images_dir)
  train, validation = split_items(class_names, images, validation_fraction,
                                  seed)
  os.makedirs(dataset_dir, exist_ok=True)
  dataset_utils.write_label_file(dict(enumerate(class_names)), dataset_dir)
  encode_fn = functools.partial(encode_item, quality=quality)
  reports = {}
  with sharded_writer.WorkerPool(num_workers) as pool:
    for name, items, shards_flag in (('train', train, train_shards),
                                     ('validation', validation,
                                      validation_shards)):
      if not items:
        continue
      count = shards_flag or num_shards or default_num_shards(len(items))
      path_format = os.path.join(dataset_dir, SHARD_NAME % name)
      shards = sharded_writer.plan_shards(items, count, path_format)
      reports[name] = sharded_writer.write_shards(
          shards, encode_fn, description=name, log=log, pool=pool)
      sharded_writer.remove_stale_shards(shards, path_format, log=log)
  sharded_writer.write_report(dataset_dir, reports)
  description = {
      'name': os.path.basename(os.path.normpath(images_dir)),
      'num_classes': len(class_names),
      'class_names': class_names,
      'splits_to_sizes': {name: r.num_records for name, r in reports.items()},
      'file_pattern': FILE_PATTERN,
      'image_format': 'jpeg',
      'images_dir': os.path.abspath(images_dir),
      'validation_fraction': validation_fraction,
      'seed': seed,
  }
  # Written last: a dataset_dir with dataset.json is complete.
  path = os.path.join(dataset_dir, DESCRIPTION_FILENAME)
  with dataset_utils.atomic_output(path) as tmp_path:
    with open(tmp_path, 'w', encoding='utf-8') as f:
      json.dump(description, f, indent=1)
  return reports


def run(dataset_dir, images_dir=None, validation_fraction=0.1, split_seed=0,
        num_shards=None, train_shards=None, validation_shards=None,
        num_workers=None):
  """`convert` for download_and_convert_data.py.

  Returns:
    The list of shard paths written by this call (empty when all existed).

  Raises:
    ValueError: without `images_dir`.
  """
  if not images_dir:
    raise ValueError('--dataset_name=custom needs --images_dir, the folder '
                     'holding one subfolder of images per class.')
  reports = convert(dataset_dir, images_dir,
          validation_fraction=0.1 if validation_fraction is None
          else validation_fraction,
          seed=split_seed or 0, num_shards=num_shards,
          train_shards=train_shards, validation_shards=validation_shards,
          num_workers=num_workers)
  return [s.path for r in reports.values() for s in r.shards if not s.resumed]


def read_description(dataset_dir):
  """Reads `dataset_dir/dataset.json`.

  Raises:
    FileNotFoundError: with the command that creates it, when missing.
  """
  path = os.path.join(dataset_dir or '', DESCRIPTION_FILENAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path} not found: convert your photos first with python '
        f'download_and_convert_data.py --dataset_name=custom '
        f'--dataset_dir={dataset_dir} --images_dir=<folder of class folders>')
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes a split of a converted custom dataset, from its dataset.json.

  Args:
    split_name: 'train' or 'validation' (the splits the conversion wrote).
    dataset_dir: The output directory of `convert`.
    file_pattern: A glob overriding the one in dataset.json ('%s' is the
      split name).

  Returns:
    A `slimkit.datasets.split.DatasetSplit`.

  Raises:
    FileNotFoundError: when dataset.json is missing.
    ValueError: for a split the conversion did not write, naming the valid
      ones.
  """
  description = read_description(dataset_dir)
  return dataset_utils.make_split(
      'custom', split_name, dataset_dir, file_pattern,
      description['file_pattern'], description['splits_to_sizes'],
      description['num_classes'], items_to_descriptions=ITEMS_TO_DESCRIPTIONS)
