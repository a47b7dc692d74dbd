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

The reading, checking and writing are shared with CIFAR-100 in
`cifar_python.py`; `LAYOUT` says what this archive holds.

Typical use:

  cifar10.run('/tmp/cifar10')                       # downloads 170 MB
  cifar10.run('/tmp/cifar10', archive_path='cifar-10-python.tar.gz')  # offline
  split = cifar10.get_split('train', '/tmp/cifar10')
"""

from slimkit.datasets import cifar_python
from slimkit.datasets import dataset_utils

FILE_PATTERN = 'cifar10_%s.tfrecord'
SPLITS_TO_SIZES = {'train': 50000, 'test': 10000}
NUM_CLASSES = 10
IMAGE_SIZE = cifar_python.IMAGE_SIZE
CHANNELS = cifar_python.CHANNELS
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
               'horse', 'ship', 'truck')
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A [32 x 32 x 3] color image.',
    'label': 'A single integer between 0 and 9',
}

DATA_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
ARCHIVE_FILENAME = 'cifar-10-python.tar.gz'
LAYOUT = cifar_python.ArchiveLayout(
    dataset_name='cifar10',
    title='CIFAR-10',
    archive_filename=ARCHIVE_FILENAME,
    folder='cifar-10-batches-py',
    split_members={
        'train': tuple(f'data_batch_{i}' for i in range(1, 6)),
        'test': ('test_batch',),
    },
    meta_member='batches.meta',
    splits_to_sizes=SPLITS_TO_SIZES,
    file_pattern=FILE_PATTERN,
    label_kinds=(cifar_python.LabelKind(b'labels', b'label_names',
                                        CLASS_NAMES),),
)


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
  return cifar_python.output_path(LAYOUT, dataset_dir, split_name)


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
  splits = cifar_python.load_archive(LAYOUT, archive_path, dataset_dir,
                                     split_names=split_names,
                                     verified=verified)
  return {name: (images, labels[0])
          for name, (images, labels) in splits.items()}


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
  return cifar_python.run(LAYOUT, dataset_dir, archive_path=archive_path,
                          url=url, sha256=sha256, progress=progress)
