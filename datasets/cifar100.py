"""CIFAR-100: its split description and its converter to TFRecords.

60,000 32x32 colour images in 100 fine classes grouped into 20 coarse
superclasses (Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", 2009; https://www.cs.toronto.edu/~kriz/cifar.html). Not in TF-Slim;
written in CIFAR-10's schema so every script reads it unchanged. The
converter reads the python archive `cifar-100-python.tar.gz` (members
`cifar-100-python/train`, `test`, `meta`: pickled dicts whose `b'data'` is
uint8 [N, 3072], channel-major as in CIFAR-10, with `b'fine_labels'` and
`b'coarse_labels'`; `meta` has `b'fine_label_names'` and
`b'coarse_label_names'`) and writes:

  cifar100_train.tfrecord   50000 records, 32x32x3 PNG
  cifar100_test.tfrecord    10000 records
  labels.txt                the 100 fine names, 0:apple ... 99:worm
  coarse_labels.txt         the 20 coarse names, 0:aquatic_mammals ...

Each record is CIFAR-10's (`image/encoded`, `image/format` b'png',
`image/class/label`, `image/height`, `image/width`) with the fine label as
`image/class/label`, the one training and evaluation use, plus the coarse
label as the int64 `image/class/coarse_label`.

Typical use:

  cifar100.run('/tmp/cifar100')                      # downloads 169 MB
  cifar100.run('/tmp/cifar100', archive_path='cifar-100-python.tar.gz')
  split = cifar100.get_split('train', '/tmp/cifar100')
  dataset = tf.data.TFRecordDataset(split.files()).map(
      lambda r: cifar100.decode_with_coarse_label(split, r))
"""

import tensorflow as tf

from slimkit.datasets import cifar_python
from slimkit.datasets import dataset_utils

FILE_PATTERN = 'cifar100_%s.tfrecord'
SPLITS_TO_SIZES = {'train': 50000, 'test': 10000}
IMAGE_SIZE = cifar_python.IMAGE_SIZE
CHANNELS = cifar_python.CHANNELS
# The names in the order of the official `meta` (ids 0..99 and 0..19).
FINE_CLASS_NAMES = (
    'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle',
    'bicycle', 'bottle', 'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel',
    'can', 'castle', 'caterpillar', 'cattle', 'chair', 'chimpanzee', 'clock',
    'cloud', 'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur',
    'dolphin', 'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster',
    'house', 'kangaroo', 'keyboard', 'lamp', 'lawn_mower', 'leopard', 'lion',
    'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain',
    'mouse', 'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree',
    'pear', 'pickup_truck', 'pine_tree', 'plain', 'plate', 'poppy',
    'porcupine', 'possum', 'rabbit', 'raccoon', 'ray', 'road', 'rocket',
    'rose', 'sea', 'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail',
    'snake', 'spider', 'squirrel', 'streetcar', 'sunflower', 'sweet_pepper',
    'table', 'tank', 'telephone', 'television', 'tiger', 'tractor', 'train',
    'trout', 'tulip', 'turtle', 'wardrobe', 'whale', 'willow_tree', 'wolf',
    'woman', 'worm')
COARSE_CLASS_NAMES = (
    'aquatic_mammals', 'fish', 'flowers', 'food_containers',
    'fruit_and_vegetables', 'household_electrical_devices',
    'household_furniture', 'insects', 'large_carnivores',
    'large_man-made_outdoor_things', 'large_natural_outdoor_scenes',
    'large_omnivores_and_herbivores', 'medium_mammals',
    'non-insect_invertebrates', 'people', 'reptiles', 'small_mammals', 'trees',
    'vehicles_1', 'vehicles_2')
CLASS_NAMES = FINE_CLASS_NAMES
NUM_CLASSES = len(FINE_CLASS_NAMES)
NUM_COARSE_CLASSES = len(COARSE_CLASS_NAMES)
COARSE_LABEL_KEY = 'image/class/coarse_label'
COARSE_LABELS_FILENAME = 'coarse_labels.txt'
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A [32 x 32 x 3] color image.',
    'label': 'A single integer between 0 and 99 (the fine class)',
}

DATA_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'
ARCHIVE_FILENAME = 'cifar-100-python.tar.gz'
LAYOUT = cifar_python.ArchiveLayout(
    dataset_name='cifar100',
    title='CIFAR-100',
    archive_filename=ARCHIVE_FILENAME,
    folder='cifar-100-python',
    split_members={'train': ('train',), 'test': ('test',)},
    meta_member='meta',
    splits_to_sizes=SPLITS_TO_SIZES,
    file_pattern=FILE_PATTERN,
    label_kinds=(
        cifar_python.LabelKind(b'fine_labels', b'fine_label_names',
                               FINE_CLASS_NAMES),
        cifar_python.LabelKind(b'coarse_labels', b'coarse_label_names',
                               COARSE_CLASS_NAMES,
                               label_file=COARSE_LABELS_FILENAME,
                               feature=COARSE_LABEL_KEY),
    ),
)


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes a CIFAR-100 split ('train' or 'test') in `dataset_dir`.

  The split's label is the fine one (100 classes); see
  `decode_with_coarse_label` for the coarse one.

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
      'cifar100', split_name, dataset_dir, file_pattern, FILE_PATTERN,
      SPLITS_TO_SIZES, NUM_CLASSES, channels=CHANNELS,
      items_to_descriptions=ITEMS_TO_DESCRIPTIONS)


def decode_with_coarse_label(split, serialized):
  """`split.decode(serialized)` plus the record's coarse label.

  Args:
    split: A CIFAR-100 `DatasetSplit` (from `get_split`).
    serialized: One serialized record.

  Returns:
    The dict of `DatasetSplit.decode` plus `coarse_label` (int64; -1 when
    the record has none, as in files converted without it).
  """
  decoded = split.decode(serialized)
  decoded['coarse_label'] = tf.io.parse_single_example(serialized, {
      COARSE_LABEL_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=-1),
  })[COARSE_LABEL_KEY]
  return decoded


def read_coarse_label_file(dataset_dir):
  """Reads `coarse_labels.txt` into `{coarse id: name}`."""
  return dataset_utils.read_label_file(dataset_dir, COARSE_LABELS_FILENAME)


def output_path(dataset_dir, split_name):
  """Returns a split's file: `dataset_dir/cifar100_<split>.tfrecord`."""
  return cifar_python.output_path(LAYOUT, dataset_dir, split_name)


def load_archive(archive_path, dataset_dir, split_names=('train', 'test'),
                 verified=False):
  """Extracts and reads CIFAR-100's python archive, checking its structure.

  Args:
    archive_path: `cifar-100-python.tar.gz` or a copy of it.
    dataset_dir: Where to put the temporary extraction (removed afterwards).
    split_names: Which splits to read.
    verified: Whether the archive has the official checksum; then the split
      sizes must be the official ones.

  Returns:
    `{split_name: (images uint8 [N, 32, 32, 3], fine labels int64 [N],
    coarse labels int64 [N])}`.

  Raises:
    CorruptArchiveError: when the archive is truncated or not CIFAR-100's.
    UnsafeArchiveError, UnsafePickleError: for a malicious archive.
  """
  splits = cifar_python.load_archive(LAYOUT, archive_path, dataset_dir,
                                     split_names=split_names,
                                     verified=verified)
  return {name: (images, *labels)
          for name, (images, labels) in splits.items()}


def run(dataset_dir, archive_path=None, url=DATA_URL, sha256=None,
        progress=True):
  """Downloads (unless offline) and converts CIFAR-100 to TFRecords.

  Idempotent: outputs that exist are finished (they are written under a
  temporary name and renamed when complete) and are skipped.

  Args:
    dataset_dir: Where the TFRecord files, `labels.txt` and
      `coarse_labels.txt` go; created if needed.
    archive_path: A local `cifar-100-python.tar.gz`; then the network is not
      used. Without it, `dataset_dir/cifar-100-python.tar.gz` is used when
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
