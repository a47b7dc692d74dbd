"""Downloads TF-Slim's flower photos and converts them to sharded TFRecords.

The archive `flower_photos.tgz` (228 MB, checksum checked) holds
`flower_photos/<class>/*.jpg` for daisy, dandelion, roses, sunflowers and
tulips. As TF-Slim's download_and_convert_flowers did: class ids follow the
sorted class names, 350 photos chosen by a shuffle seeded with 0 form the
validation split and the rest the training split, and each split is written
to 5 shards, `flowers_train_00000-of-00005.tfrecord` ... (read by
`datasets/flowers.py`). The photos go through the same writer as ImageNet and
custom folders: RGB JPEG records, parallel workers, resumable, undecodable
files skipped and reported.

TF-Slim listed the photos in directory order, which differs between
filesystems; here they are sorted before the seeded shuffle, so the split is
the same on every machine (but not TF-Slim's exact split).

Typical use:

  convert_flowers.run('/tmp/flowers')                        # downloads
  convert_flowers.run('/tmp/flowers', archive_path='flower_photos.tgz')
"""

import functools
import os
import random
import shutil
import sys

from absl import logging

from slimkit.datasets import custom
from slimkit.datasets import dataset_utils
from slimkit.datasets import download
from slimkit.datasets import flowers
from slimkit.datasets import sharded_writer

DATA_URL = 'http://download.tensorflow.org/example_images/flower_photos.tgz'
ARCHIVE_FILENAME = 'flower_photos.tgz'
NUM_VALIDATION = 350
RANDOM_SEED = 0
NUM_SHARDS = 5
SHARD_NAME = 'flowers_%s_%%05d-of-%%05d.tfrecord'  # '%s' is the split name.
_PHOTOS_DIR = 'flower_photos'


def split_photos(photo_dir, num_validation=NUM_VALIDATION, seed=RANDOM_SEED):
  """Lists the photos and splits them as TF-Slim did.

  Args:
    photo_dir: The extracted `flower_photos` folder (one folder per class).
    num_validation: Photos held out for validation.
    seed: Seed of the shuffle.

  Returns:
    `(class_names, {'train': [ImageItem], 'validation': [ImageItem]})`.
  """
  class_names, images = custom.find_class_images(photo_dir)
  items = [custom.ImageItem(path, label)
           for label, name in enumerate(class_names) for path in images[name]]
  random.Random(seed).shuffle(items)
  return class_names, {'train': items[num_validation:],
                       'validation': items[:num_validation]}


def output_paths(dataset_dir, num_shards=NUM_SHARDS):
  """Returns every shard path of both splits."""
  return [os.path.join(dataset_dir, SHARD_NAME % split) % (i, num_shards)
          for split in flowers.SPLITS_TO_SIZES for i in range(num_shards)]


def convert_photos(dataset_dir, photo_dir, num_shards=NUM_SHARDS,
                   num_validation=NUM_VALIDATION, num_workers=None,
                   log=sys.stderr):
  """Converts an extracted `flower_photos` folder; finished shards are kept.

  Args:
    dataset_dir: Output directory.
    photo_dir: The `flower_photos` folder.
    num_shards: Files per split.
    num_validation: Photos held out for validation.
    num_workers: Worker processes; None means the number of cores.
    log: Stream for progress and the summary.

  Returns:
    A dict from split name to its `sharded_writer.Report`.
  """
  class_names, splits = split_photos(photo_dir, num_validation)
  os.makedirs(dataset_dir, exist_ok=True)
  dataset_utils.write_label_file(dict(enumerate(class_names)), dataset_dir)
  encode_fn = functools.partial(custom.encode_item, image_format=b'jpeg')
  reports = {}
  with sharded_writer.WorkerPool(num_workers) as pool:
    for name, items in splits.items():
      path_format = os.path.join(dataset_dir, SHARD_NAME % name)
      shards = sharded_writer.plan_shards(items, num_shards, path_format)
      reports[name] = sharded_writer.write_shards(
          shards, encode_fn, description=f'flowers {name}', log=log,
          pool=pool)
      sharded_writer.remove_stale_shards(shards, path_format, log=log)
  sharded_writer.write_report(dataset_dir, reports)
  return reports


def run(dataset_dir, archive_path=None, num_workers=None, url=DATA_URL,
        sha256=None, progress=True, num_validation=NUM_VALIDATION):
  """Downloads (unless offline) and converts the flower photos.

  Idempotent: when every shard and `labels.txt` exist nothing is done; an
  interrupted run resumes at the first unfinished shard.

  Args:
    dataset_dir: Where the shards and `labels.txt` go; created if needed.
    archive_path: A local `flower_photos.tgz`; then the network is not used.
      Without it, `dataset_dir/flower_photos.tgz` is used when present, else
      the archive is downloaded from `url`.
    num_workers: Worker processes; None means the number of cores.
    url: Where to download the archive from.
    sha256: The expected checksum of a download; defaults to the official one.
    progress: Whether to draw a download progress bar.
    num_validation: Photos held out for validation.

  Returns:
    The list of shard paths written by this call (empty when all existed).
  """
  os.makedirs(dataset_dir, exist_ok=True)
  paths = output_paths(dataset_dir)
  if all(os.path.exists(p) for p in paths) and dataset_utils.has_labels(
      dataset_dir):
    logging.info('Flowers files already exist in %s; not re-creating them.',
                 dataset_dir)
    return []
  source = download.obtain(ARCHIVE_FILENAME, dataset_dir, url,
                           archive_path=archive_path, sha256=sha256,
                           progress=progress)
  # A fixed extraction folder keeps the photo paths, and so the shard
  # fingerprints, the same when an interrupted run is resumed.
  extract_dir = os.path.join(dataset_dir, '.flowers-extract')
  download.safe_extract(source.path, extract_dir)
  photo_dir = os.path.join(extract_dir, _PHOTOS_DIR)
  if not os.path.isdir(photo_dir):
    raise download.CorruptArchiveError(
        f'{source.path} has no folder {_PHOTOS_DIR}/; it is not the flowers '
        'archive.')
  reports = convert_photos(dataset_dir, photo_dir,
                           num_validation=num_validation,
                           num_workers=num_workers)
  shutil.rmtree(extract_dir, ignore_errors=True)
  if source.downloaded:
    os.remove(source.path)
  for name, report in reports.items():
    expected = flowers.SPLITS_TO_SIZES[name]
    if report.num_records != expected:
      logging.warning('The flowers %s split has %d records; the official '
                      'archive gives %d.', name, report.num_records, expected)
  return [s.path for r in reports.values() for s in r.shards if not s.resumed]
