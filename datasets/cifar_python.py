"""The python archives of CIFAR-10 and CIFAR-100: one reader and converter.

Both archives (Krizhevsky, 2009; https://www.cs.toronto.edu/~kriz/cifar.html)
hold pickled dicts, written by Python 2, whose `b'data'` is uint8 [N, 3072],
channel-major (1024 red, then 1024 green, then 1024 blue values of a 32x32
image), beside one list of int labels per label kind (`b'labels'`, or
`b'fine_labels'` and `b'coarse_labels'`); a meta pickle names the classes.
`cifar10.py` and `cifar100.py` describe their archive with an `ArchiveLayout`;
this module does the rest, the same way for both:

- extracts the archive with `download.safe_extract` into a temporary folder
  inside the dataset directory (removed afterwards);
- unpickles with `download.safe_load_pickle`, so a pickle that would run code
  is refused;
- checks every array (dtype, shape, label range) and the split sizes before
  the first output is written;
- writes PNG records through `dataset_utils.write_tfrecord` (atomic: a killed
  run leaves no file under a final name) and skips finished outputs, so a
  second run resumes where a crashed one stopped.

Typical use (from a dataset module):

  LAYOUT = cifar_python.ArchiveLayout(...)
  cifar_python.run(LAYOUT, '/tmp/cifar100', archive_path='cifar-100.tar.gz')
"""

import dataclasses
import os
import pickle
import shutil
import tempfile
from typing import Mapping, Tuple

from absl import logging
import numpy as np

from slimkit.datasets import dataset_utils
from slimkit.datasets import download

IMAGE_SIZE = 32
CHANNELS = 3
_PIXELS = CHANNELS * IMAGE_SIZE * IMAGE_SIZE


@dataclasses.dataclass(frozen=True)
class LabelKind:
  """One kind of label in the batches, and where it goes.

  Attributes:
    batch_key: The key of the label list in each batch (`b'labels'`).
    meta_key: The key of the class names in the meta pickle
      (`b'label_names'`).
    names: The official class names in id order; written to `label_file`.
    label_file: Its `id:name` file in the dataset directory ('labels.txt').
    feature: The record's int64 feature that holds it. The first kind of a
      layout is always `image/class/label`, the label training reads.
  """
  batch_key: bytes
  meta_key: bytes
  names: Tuple[str, ...]
  label_file: str = dataset_utils.LABELS_FILENAME
  feature: str = 'image/class/label'

  @property
  def num_classes(self):
    return len(self.names)


@dataclasses.dataclass(frozen=True)
class ArchiveLayout:
  """What one CIFAR python archive holds and what it is converted to.

  Attributes:
    dataset_name: The registry name ('cifar10'); names the outputs.
    title: The dataset's name in messages ('CIFAR-10').
    archive_filename: The official file name ('cifar-10-python.tar.gz').
    folder: The archive's top folder ('cifar-10-batches-py').
    split_members: `{split_name: (member, ...)}`, concatenated in order.
    meta_member: The member naming the classes ('batches.meta').
    splits_to_sizes: `{split_name: num_images}` of the official archive.
    file_pattern: The output file of a split ('cifar10_%s.tfrecord').
    label_kinds: The `LabelKind`s, the training label first.
  """
  dataset_name: str
  title: str
  archive_filename: str
  folder: str
  split_members: Mapping[str, Tuple[str, ...]]
  meta_member: str
  splits_to_sizes: Mapping[str, int]
  file_pattern: str
  label_kinds: Tuple[LabelKind, ...]


def output_path(layout, dataset_dir, split_name):
  """Returns a split's TFRecord file in `dataset_dir`."""
  return os.path.join(dataset_dir, layout.file_pattern % split_name)


def _load_pickle(layout, path, name):
  """Unpickles one member with the restricted unpickler."""
  with open(path, 'rb') as f:
    try:
      return download.safe_load_pickle(f)
    except download.UnsafePickleError as e:
      raise download.UnsafePickleError(f'{layout.folder}/{name}: {e}') from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            IndexError) as e:
      raise download.CorruptArchiveError(
          f'{layout.folder}/{name} is not a readable pickle ({e}).') from e


def _spelled_keys(keys):
  # "b'data' and b'labels'", "b'data', b'fine_labels' and b'coarse_labels'".
  spelled = [repr(k) for k in keys]
  return ', '.join(spelled[:-1]) + ' and ' + spelled[-1]


def _load_batch(layout, path, name):
  """Loads one batch; returns (images [N,32,32,3] uint8, (labels [N], ...))."""
  if not os.path.isfile(path):
    raise download.CorruptArchiveError(
        f'The archive has no member {layout.folder}/{name}; it is not '
        f'{layout.title}\'s python archive.')
  batch = _load_pickle(layout, path, name)
  keys = (b'data',) + tuple(k.batch_key for k in layout.label_kinds)
  if not isinstance(batch, dict) or any(k not in batch for k in keys):
    raise download.CorruptArchiveError(
        f'{layout.folder}/{name} is not a dict with {_spelled_keys(keys)}.')
  data = batch[b'data']
  if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or
      data.ndim != 2 or data.shape[1] != _PIXELS):
    raise download.CorruptArchiveError(
        f'{layout.folder}/{name}: b\'data\' must be uint8 [N, {_PIXELS}], got '
        f'{getattr(data, "dtype", type(data))} {getattr(data, "shape", "")}.')
  labels = []
  for kind in layout.label_kinds:
    values = np.asarray(batch[kind.batch_key])
    if values.shape != (len(data),) or values.dtype.kind not in 'iu' or (
        len(values) and (values.min() < 0 or
                         values.max() >= kind.num_classes)):
      raise download.CorruptArchiveError(
          f'{layout.folder}/{name}: {kind.batch_key!r} must be {len(data)} '
          f'ints in [0, {kind.num_classes}).')
    labels.append(values.astype(np.int64))
  images = data.reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).transpose(
      0, 2, 3, 1)
  return np.ascontiguousarray(images), tuple(labels)


def _check_meta(layout, folder_path):
  """Warns when the meta pickle names other classes than the official ones."""
  path = os.path.join(folder_path, layout.meta_member)
  if not os.path.isfile(path):
    logging.warning('The archive has no %s; using the standard class names.',
                    layout.meta_member)
    return
  meta = _load_pickle(layout, path, layout.meta_member)
  for kind in layout.label_kinds:
    names = tuple(
        n.decode('utf-8') if isinstance(n, bytes) else str(n)
        for n in (meta.get(kind.meta_key, ()) if isinstance(meta, dict)
                  else ()))
    if names != kind.names:
      # The official names are written either way: a renamed class in a
      # repacked archive should not change what a label id means.
      logging.warning('%s names the classes %s; writing the standard names '
                      '%s to %s.', layout.meta_member, names, kind.names,
                      kind.label_file)


def load_archive(layout, archive_path, dataset_dir,
                 split_names=('train', 'test'), verified=False):
  """Extracts and reads a CIFAR python archive, checking its structure.

  The archive is extracted safely into a temporary folder inside `dataset_dir`
  that is removed afterwards; every batch is read before anything is written.

  Args:
    layout: The archive's `ArchiveLayout`.
    archive_path: The archive (the official file or a copy of it).
    dataset_dir: Where to put the temporary extraction.
    split_names: Which splits to read.
    verified: Whether the archive has the official checksum; then the split
      sizes must be the official ones.

  Returns:
    `{split_name: (images uint8 [N, 32, 32, 3], (labels int64 [N], ...))}`,
    one label array per `layout.label_kinds`.

  Raises:
    CorruptArchiveError: when the archive is truncated or not the dataset's.
    UnsafeArchiveError, UnsafePickleError: for a malicious archive.
  """
  tmp_dir = tempfile.mkdtemp(prefix=f'.{layout.dataset_name}-extract-',
                             dir=dataset_dir)
  try:
    download.safe_extract(archive_path, tmp_dir)
    folder_path = os.path.join(tmp_dir, layout.folder)
    if not os.path.isdir(folder_path):
      raise download.CorruptArchiveError(
          f'{archive_path} has no folder {layout.folder}/; it is not '
          f'{layout.title}\'s python archive.')
    _check_meta(layout, folder_path)
    splits = {}
    for split_name in split_names:
      parts = [_load_batch(layout, os.path.join(folder_path, m), m)
               for m in layout.split_members[split_name]]
      images = np.concatenate([p[0] for p in parts])
      labels = tuple(np.concatenate([p[1][i] for p in parts])
                     for i in range(len(layout.label_kinds)))
      expected = layout.splits_to_sizes[split_name]
      if len(images) != expected:
        message = (f'{archive_path}: the {split_name} split has {len(images)} '
                   f'images; the official archive has {expected}.')
        if verified:
          raise download.CorruptArchiveError(message)
        logging.warning(message)
      splits[split_name] = (images, labels)
    return splits
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)


def run(layout, dataset_dir, archive_path=None, url=None, sha256=None,
        progress=True):
  """Downloads (unless offline) and converts a CIFAR python archive.

  Idempotent: outputs that exist are finished (they are written under a
  temporary name and renamed when complete) and are skipped.

  Args:
    layout: The archive's `ArchiveLayout`.
    dataset_dir: Where the TFRecord files and label files go; created if
      needed.
    archive_path: A local copy of the archive; then the network is not used.
      Without it, `dataset_dir/<archive_filename>` is used when present, else
      the archive is downloaded from `url`.
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
  missing = [s for s in layout.splits_to_sizes
             if not os.path.exists(output_path(layout, dataset_dir, s))]
  missing_labels = [k for k in layout.label_kinds
                    if not dataset_utils.has_labels(dataset_dir, k.label_file)]
  if not missing and not missing_labels:
    logging.info('%s files already exist in %s; not re-creating them.',
                 layout.title, dataset_dir)
    return []
  written = []
  if missing:
    source = download.obtain(layout.archive_filename, dataset_dir, url,
                             archive_path=archive_path, sha256=sha256,
                             progress=progress)
    splits = load_archive(layout, source.path, dataset_dir,
                          split_names=missing, verified=source.verified)
    for split_name in missing:
      images, labels = splits[split_name]
      path = output_path(layout, dataset_dir, split_name)
      extra = {kind.feature: values
               for kind, values in zip(layout.label_kinds[1:], labels[1:])}
      dataset_utils.write_tfrecord(path, dataset_utils.png_records(
          images, labels[0], name=f'{layout.dataset_name} {split_name} images',
          extra_int64_features=extra))
      written.append(path)
      logging.info('Wrote %d records to %s.', len(images), path)
    if source.downloaded:
      os.remove(source.path)
  for kind in missing_labels:
    written.append(dataset_utils.write_label_file(
        dict(enumerate(kind.names)), dataset_dir, filename=kind.label_file))
  return written
