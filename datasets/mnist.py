"""MNIST: its split description and its converter to TFRecords.

70,000 28x28 grayscale handwritten digits (LeCun, Cortes and Burges,
http://yann.lecun.com/exdb/mnist/). The converter reads the four gzipped IDX
files (images: magic 2051, count, rows, cols, then pixels; labels: magic 2049,
count, then labels; all integers big-endian) from Google's CVDF mirror, since
yann.lecun.com no longer serves them, and writes TF-Slim's files:

  mnist_train.tfrecord   60000 records, 28x28x1 PNG
  mnist_test.tfrecord    10000 records
  labels.txt             0:zero ... 9:nine

Typical use:

  mnist.run('/tmp/mnist')                               # downloads 11 MB
  mnist.run('/tmp/mnist', archive_path='/data/mnist')   # folder with the files
  split = mnist.get_split('train', '/tmp/mnist')
"""

import gzip
import os
import zlib

from absl import logging
import numpy as np

from slimkit.datasets import dataset_utils
from slimkit.datasets import download

FILE_PATTERN = 'mnist_%s.tfrecord'
SPLITS_TO_SIZES = {'train': 60000, 'test': 10000}
NUM_CLASSES = 10
IMAGE_SIZE = 28
CHANNELS = 1
# TF-Slim's list spells six 'size'; we write the digit's name.
CLASS_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
               'eight', 'nine')
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A [28 x 28 x 1] grayscale image.',
    'label': 'A single integer between 0 and 9',
}

DATA_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
# split -> (images file, labels file)
SPLIT_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes an MNIST split ('train' or 'test') in `dataset_dir`.

  Args:
    split_name: 'train' or 'test'.
    dataset_dir: The folder of the TFRecord files (and `labels.txt`).
    file_pattern: A glob overriding `FILE_PATTERN` ('%s' is the split name).

  Returns:
    A `slimkit.datasets.split.DatasetSplit` with `channels=1`.

  Raises:
    ValueError: for an unknown split, naming the valid ones.
    FileNotFoundError: when `dataset_dir` does not exist.
  """
  return dataset_utils.make_split(
      'mnist', split_name, dataset_dir, file_pattern, FILE_PATTERN,
      SPLITS_TO_SIZES, NUM_CLASSES, channels=CHANNELS,
      items_to_descriptions=ITEMS_TO_DESCRIPTIONS)


def output_path(dataset_dir, split_name):
  """Returns a split's file: `dataset_dir/mnist_<split>.tfrecord`."""
  return os.path.join(dataset_dir, FILE_PATTERN % split_name)


def _read_gzip(path):
  try:
    with gzip.open(path, 'rb') as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise download.CorruptArchiveError(
        f'{path} is truncated or not gzip ({type(e).__name__}: {e}).') from e


def read_idx_images(path):
  """Reads a gzipped IDX image file.

  Returns:
    uint8 `[count, rows, cols, 1]`.

  Raises:
    CorruptArchiveError: naming the file, for a wrong magic number or length.
  """
  data = _read_gzip(path)
  if len(data) < 16:
    raise download.CorruptArchiveError(f'{path}: too short for an IDX header.')
  magic, count, rows, cols = np.frombuffer(data[:16], dtype='>u4')
  if magic != _IMAGES_MAGIC:
    raise download.CorruptArchiveError(
        f'{path}: magic number {magic}, expected {_IMAGES_MAGIC} (IDX images).')
  if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
    raise download.CorruptArchiveError(
        f'{path}: images are {rows}x{cols}, expected {IMAGE_SIZE}x'
        f'{IMAGE_SIZE}.')
  expected = 16 + int(count) * rows * cols
  if len(data) != expected:
    raise download.CorruptArchiveError(
        f'{path}: {len(data)} bytes, expected {expected} for {count} images.')
  pixels = np.frombuffer(data, dtype=np.uint8, offset=16)
  return pixels.reshape(int(count), int(rows), int(cols), 1)


def read_idx_labels(path):
  """Reads a gzipped IDX label file.

  Returns:
    int64 `[count]`.

  Raises:
    CorruptArchiveError: naming the file, for a wrong magic number, length or
      label value.
  """
  data = _read_gzip(path)
  if len(data) < 8:
    raise download.CorruptArchiveError(f'{path}: too short for an IDX header.')
  magic, count = np.frombuffer(data[:8], dtype='>u4')
  if magic != _LABELS_MAGIC:
    raise download.CorruptArchiveError(
        f'{path}: magic number {magic}, expected {_LABELS_MAGIC} (IDX labels).')
  if len(data) != 8 + int(count):
    raise download.CorruptArchiveError(
        f'{path}: {len(data)} bytes, expected {8 + int(count)} for {count} '
        'labels.')
  labels = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
  if len(labels) and labels.max() >= NUM_CLASSES:
    raise download.CorruptArchiveError(
        f'{path}: label {labels.max()} is not a digit.')
  return labels


def run(dataset_dir, archive_path=None, url=DATA_URL, sha256=None,
        progress=True):
  """Downloads (unless offline) and converts MNIST to TFRecords.

  Idempotent: outputs that exist are finished and are skipped. All inputs are
  read and checked before any output is written.

  Args:
    dataset_dir: Where the TFRecord files and `labels.txt` go; created if
      needed.
    archive_path: A folder holding the four `.gz` files; then the network is
      not used. Without it, files already in `dataset_dir` are used and the
      missing ones downloaded from `url`.
    url: The folder URL to download the files from (ending in '/').
    sha256: `{file name: checksum}` of downloads; defaults to the official
      ones.
    progress: Whether to draw a download progress bar.

  Returns:
    The list of output paths that this call wrote (empty when all existed).

  Raises:
    ChecksumError, DownloadError: when a download fails; nothing is kept.
    CorruptArchiveError: for truncated or malformed files; no output is
      written.
    FileNotFoundError: when `archive_path` lacks one of the files.
  """
  os.makedirs(dataset_dir, exist_ok=True)
  if archive_path is not None and not os.path.isdir(archive_path):
    raise FileNotFoundError(
        f'--archive_path={archive_path!r} must be a folder holding '
        f'{", ".join(f for pair in SPLIT_FILES.values() for f in pair)} for '
        'mnist.')
  missing = [s for s in SPLITS_TO_SIZES
             if not os.path.exists(output_path(dataset_dir, s))]
  has_labels = dataset_utils.has_labels(dataset_dir)
  if not missing and has_labels:
    logging.info('MNIST files already exist in %s; not re-creating them.',
                 dataset_dir)
    return []
  sha256 = sha256 or {}
  sources = []
  splits = {}
  for split_name in missing:
    arrays = []
    for filename in SPLIT_FILES[split_name]:
      source = download.obtain(
          filename, dataset_dir, url + filename,
          archive_path=(os.path.join(archive_path, filename)
                        if archive_path else None),
          sha256=sha256.get(filename), progress=progress)
      sources.append(source)
      arrays.append(source.path)
    images = read_idx_images(arrays[0])
    labels = read_idx_labels(arrays[1])
    if len(images) != len(labels):
      raise download.CorruptArchiveError(
          f'{arrays[0]} has {len(images)} images but {arrays[1]} has '
          f'{len(labels)} labels.')
    if len(images) != SPLITS_TO_SIZES[split_name]:
      logging.warning('The MNIST %s split has %d images; the official one '
                      'has %d.', split_name, len(images),
                      SPLITS_TO_SIZES[split_name])
    splits[split_name] = (images, labels)
  written = []
  for split_name in missing:
    images, labels = splits[split_name]
    path = output_path(dataset_dir, split_name)
    dataset_utils.write_tfrecord(path, dataset_utils.png_records(
        images, labels, name=f'mnist {split_name} images'))
    written.append(path)
    logging.info('Wrote %d records to %s.', len(images), path)
  for source in sources:
    if source.downloaded:
      os.remove(source.path)
  if not has_labels:
    written.append(dataset_utils.write_label_file(
        dict(enumerate(CLASS_NAMES)), dataset_dir))
  return written
