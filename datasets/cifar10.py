"""CIFAR-10: its split description and its converter to TFRecords.

60,000 32x32 colour images in 10 classes (Krizhevsky, "Learning Multiple
Layers of Features from Tiny Images", 2009; https://www.cs.toronto.edu/~kriz/
cifar.html). The converter reads the python archive `cifar-10-python.tar.gz`
(members `cifar-10-batches-py/data_batch_1..5`, `test_batch`, `batches.meta`:
pickled dicts whose `b'data'` is uint8 [N, 3072], channel-major, and
`b'labels'` a list of ints) and writes TF-Slim's files:

  cifar10_train.tfrecord   50000 records, 32x32x3 PNG
  cifar10_test.tfrecord    10000 records
  labels.txt               0:airplane ... 9:truck

Typical use:

  cifar10.run('/tmp/cifar10')                       # downloads 170 MB
  cifar10.run('/tmp/cifar10', archive_path='cifar-10-python.tar.gz')  # offline
  split = cifar10.get_split('train', '/tmp/cifar10')
"""

import os
import pickle
import shutil
import tempfile

from absl import logging
import numpy as np

from slimkit.datasets import dataset_utils
from slimkit.datasets import download

FILE_PATTERN = 'cifar10_%s.tfrecord'
SPLITS_TO_SIZES = {'train': 50000, 'test': 10000}
NUM_CLASSES = 10
IMAGE_SIZE = 32
CHANNELS = 3
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
               'horse', 'ship', 'truck')
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A [32 x 32 x 3] color image.',
    'label': 'A single integer between 0 and 9',
}

DATA_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
ARCHIVE_FILENAME = 'cifar-10-python.tar.gz'
_BATCHES_DIR = 'cifar-10-batches-py'
_SPLIT_MEMBERS = {
    'train': tuple(f'data_batch_{i}' for i in range(1, 6)),
    'test': ('test_batch',),
}


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes a CIFAR-10 split ('train' or 'test') in `dataset_dir`.

  Args:
    split_name: 'train' or 'test'.
    dataset_dir: The folder of the TFRecord files (and `labels.txt`).
    file_pattern: A glob overriding `FILE_PATTERN` ('%s' is the split name).

  Returns:
    A `slimkit.datasets.split.DatasetSplit`.

  Raises:
    ValueError: for an unknown split, naming the valid ones.
    FileNotFoundError: when `dataset_dir` does not exist.
  """
  return dataset_utils.make_split(
      'cifar10', split_name, dataset_dir, file_pattern, FILE_PATTERN,
      SPLITS_TO_SIZES, NUM_CLASSES, channels=CHANNELS,
      items_to_descriptions=ITEMS_TO_DESCRIPTIONS)


def output_path(dataset_dir, split_name):
  """Returns a split's file: `dataset_dir/cifar10_<split>.tfrecord`."""
  return os.path.join(dataset_dir, FILE_PATTERN % split_name)


def _load_batch(path, name):
  """Loads one batch file; returns (images [N,32,32,3] uint8, labels [N])."""
  if not os.path.isfile(path):
    raise download.CorruptArchiveError(
        f'The archive has no member {_BATCHES_DIR}/{name}; it is not '
        'CIFAR-10\'s python archive.')
  with open(path, 'rb') as f:
    try:
      batch = download.safe_load_pickle(f)
    except download.UnsafePickleError as e:
      raise download.UnsafePickleError(f'{_BATCHES_DIR}/{name}: {e}') from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            IndexError) as e:
      raise download.CorruptArchiveError(
          f'{_BATCHES_DIR}/{name} is not a readable pickle ({e}).') from e
  if not isinstance(batch, dict) or b'data' not in batch or (
      b'labels' not in batch):
    raise download.CorruptArchiveError(
        f'{_BATCHES_DIR}/{name} is not a dict with b\'data\' and b\'labels\'.')
  data = batch[b'data']
  labels = np.asarray(batch[b'labels'])
  if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or
      data.ndim != 2 or data.shape[1] != CHANNELS * IMAGE_SIZE * IMAGE_SIZE):
    raise download.CorruptArchiveError(
        f'{_BATCHES_DIR}/{name}: b\'data\' must be uint8 [N, 3072], got '
        f'{getattr(data, "dtype", type(data))} {getattr(data, "shape", "")}.')
  if labels.shape != (len(data),) or labels.dtype.kind not in 'iu' or (
      len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES)):
    raise download.CorruptArchiveError(
        f'{_BATCHES_DIR}/{name}: b\'labels\' must be {len(data)} ints in '
        f'[0, {NUM_CLASSES}).')
  # Rows are channel-major: 1024 red, then green, then blue values.
  images = data.reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).transpose(
      0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int64)


def _check_meta(batches_dir):
  path = os.path.join(batches_dir, 'batches.meta')
  if not os.path.isfile(path):
    logging.warning('The archive has no batches.meta; using the standard '
                    'class names.')
    return
  with open(path, 'rb') as f:
    try:
      meta = download.safe_load_pickle(f)
    except download.UnsafePickleError as e:
      raise download.UnsafePickleError(
          f'{_BATCHES_DIR}/batches.meta: {e}') from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            IndexError) as e:
      raise download.CorruptArchiveError(
          f'{_BATCHES_DIR}/batches.meta is not a readable pickle ({e}).'
      ) from e
  names = tuple(
      n.decode('utf-8') if isinstance(n, bytes) else str(n)
      for n in (meta.get(b'label_names', ()) if isinstance(meta, dict) else ()))
  if names != CLASS_NAMES:
    logging.warning('batches.meta names the classes %s; writing the standard '
                    'names %s to labels.txt.', names, CLASS_NAMES)


def load_archive(archive_path, dataset_dir, split_names=('train', 'test'),
                 verified=False):
  """Extracts and reads CIFAR-10's python archive, checking its structure.

  The archive is extracted safely into a temporary folder inside `dataset_dir`
  that is removed afterwards; every batch is read before anything is written.

  Args:
    archive_path: `cifar-10-python.tar.gz` or a copy of it.
    dataset_dir: Where to put the temporary extraction.
    split_names: Which splits to read.
    verified: Whether the archive has the official checksum; then the split
      sizes must be the official ones.

  Returns:
    `{split_name: (images uint8 [N, 32, 32, 3], labels int64 [N])}`.

  Raises:
    CorruptArchiveError: when the archive is truncated or not CIFAR-10's.
    UnsafeArchiveError, UnsafePickleError: for a malicious archive.
  """
  tmp_dir = tempfile.mkdtemp(prefix='.cifar10-extract-', dir=dataset_dir)
  try:
    download.safe_extract(archive_path, tmp_dir)
    batches_dir = os.path.join(tmp_dir, _BATCHES_DIR)
    if not os.path.isdir(batches_dir):
      raise download.CorruptArchiveError(
          f'{archive_path} has no folder {_BATCHES_DIR}/; it is not '
          'CIFAR-10\'s python archive.')
    _check_meta(batches_dir)
    splits = {}
    for split_name in split_names:
      parts = [_load_batch(os.path.join(batches_dir, m), m)
               for m in _SPLIT_MEMBERS[split_name]]
      images = np.concatenate([p[0] for p in parts])
      labels = np.concatenate([p[1] for p in parts])
      if len(images) != SPLITS_TO_SIZES[split_name]:
        message = (f'{archive_path}: the {split_name} split has {len(images)} '
                   f'images; the official archive has '
                   f'{SPLITS_TO_SIZES[split_name]}.')
        if verified:
          raise download.CorruptArchiveError(message)
        logging.warning(message)
      splits[split_name] = (images, labels)
    return splits
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)


def run(dataset_dir, archive_path=None, url=DATA_URL, sha256=None,
        progress=True):
  """Downloads (unless offline) and converts CIFAR-10 to TFRecords.

  Idempotent: outputs that exist are finished (they are written under a
  temporary name and renamed when complete) and are skipped.

  Args:
    dataset_dir: Where the TFRecord files and `labels.txt` go; created if
      needed.
    archive_path: A local `cifar-10-python.tar.gz`; then the network is not
      used. Without it, `dataset_dir/cifar-10-python.tar.gz` is used when
      present, else the archive is downloaded from `url`.
    url: Where to download the archive from.
    sha256: The expected checksum of a download; defaults to the official one.
    progress: Whether to draw a download progress bar.

  Returns:
    The list of output paths that this call wrote (empty when all existed).

  Raises:
    ChecksumError, DownloadError: when a download fails; nothing is kept.
    CorruptArchiveError, UnsafeArchiveError, UnsafePickleError: for a bad
      archive; no output is written.
  """
  os.makedirs(dataset_dir, exist_ok=True)
  missing = [s for s in SPLITS_TO_SIZES
             if not os.path.exists(output_path(dataset_dir, s))]
  has_labels = dataset_utils.has_labels(dataset_dir)
  if not missing and has_labels:
    logging.info('CIFAR-10 files already exist in %s; not re-creating them.',
                 dataset_dir)
    return []
  written = []
  if missing:
    source = download.obtain(ARCHIVE_FILENAME, dataset_dir, url,
                             archive_path=archive_path, sha256=sha256,
                             progress=progress)
    splits = load_archive(source.path, dataset_dir, split_names=missing,
                          verified=source.verified)
    for split_name in missing:
      images, labels = splits[split_name]
      path = output_path(dataset_dir, split_name)
      dataset_utils.write_tfrecord(path, dataset_utils.png_records(
          images, labels, name=f'cifar10 {split_name} images'))
      written.append(path)
      logging.info('Wrote %d records to %s.', len(images), path)
    if source.downloaded:
      os.remove(source.path)
  if not has_labels:
    written.append(dataset_utils.write_label_file(
        dict(enumerate(CLASS_NAMES)), dataset_dir))
  return written
