"""Digits: a small real dataset that ships with the toolkit, for offline use.

The 1,797 8x8 handwritten digits of the UCI "Optical Recognition of Handwritten
Digits" data set (E. Alpaydin and C. Kaynak, 1998; the test part, as
distributed with scikit-learn; CC BY 4.0), stored in `datasets/data/digits.npz`
(see `datasets/data/README.md`). No network is used.

Each 8x8 image holds counts 0..16 of ink pixels per 4x4 block. The converter
scales them by 255/16 to 0..255 (rounded after interpolation), upsamples
them bilinearly to 20x20 (half-pixel centres, as `tf.image.resize(...,
'bilinear')`) and pads 4 black pixels on each side to 28x28. That is MNIST's
layout (a digit in a 20x20 box centred in 28x28, white ink on black), so
`lenet` and MNIST's preprocessing run on it unchanged. The split is fixed: a
permutation drawn once with `numpy.random.RandomState(0)` is stored in the
`.npz`; its first 1437 images are train, the last 360 test.

  digits_train.tfrecord   1437 records, 28x28x1 PNG
  digits_test.tfrecord     360 records
  labels.txt              0:zero ... 9:nine

Typical use:

  digits.run('/tmp/digits')
  split = digits.get_split('train', '/tmp/digits')
"""

import os

from absl import logging
import numpy as np

from slimkit.datasets import dataset_utils
from slimkit.datasets import download

FILE_PATTERN = 'digits_%s.tfrecord'
SPLITS_TO_SIZES = {'train': 1437, 'test': 360}
NUM_CLASSES = 10
IMAGE_SIZE = 28
CHANNELS = 1
SOURCE_SIZE = 8
# The digit fills a 20x20 box centred in the 28x28 image, as in MNIST.
BOX_SIZE = 20
SOURCE_MAX = 16
CLASS_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
               'eight', 'nine')
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A [28 x 28 x 1] grayscale image (an 8x8 UCI digit upsampled).',
    'label': 'A single integer between 0 and 9',
}
DATA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                         'digits.npz')


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes a digits split ('train' or 'test') in `dataset_dir`.

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
      'digits', split_name, dataset_dir, file_pattern, FILE_PATTERN,
      SPLITS_TO_SIZES, NUM_CLASSES, channels=CHANNELS,
      items_to_descriptions=ITEMS_TO_DESCRIPTIONS)


def output_path(dataset_dir, split_name):
  """Returns a split's file: `dataset_dir/digits_<split>.tfrecord`."""
  return os.path.join(dataset_dir, FILE_PATTERN % split_name)


def _bilinear_matrix(in_size, out_size):
  """Weights `[out_size, in_size]` of 1-D linear interpolation (half-pixel)."""
  centres = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  centres = np.clip(centres, 0, in_size - 1)
  low = np.floor(centres).astype(int)
  high = np.minimum(low + 1, in_size - 1)
  frac = centres - low
  weights = np.zeros((out_size, in_size))
  weights[np.arange(out_size), low] += 1 - frac
  weights[np.arange(out_size), high] += frac
  return weights


def to_mnist_layout(images):
  """Turns 8x8 digits (0..16) into MNIST-like 28x28x1 uint8 images.

  Args:
    images: Integer array `[N, 8, 8]` with values 0..16.

  Returns:
    uint8 `[N, 28, 28, 1]`: values scaled to 0..255, bilinearly upsampled to
    20x20 and zero-padded by 4 pixels on every side.
  """
  images = np.asarray(images, dtype=np.float64) * (255.0 / SOURCE_MAX)
  weights = _bilinear_matrix(SOURCE_SIZE, BOX_SIZE)
  boxes = np.einsum('ij,njk,lk->nil', weights, images, weights)
  boxes = np.clip(np.round(boxes), 0, 255).astype(np.uint8)
  pad = (IMAGE_SIZE - BOX_SIZE) // 2
  out = np.zeros((len(images), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
  out[:, pad:pad + BOX_SIZE, pad:pad + BOX_SIZE, 0] = boxes
  return out


def load(npz_path=DATA_PATH):
  """Reads the shipped digits and their fixed split.

  Args:
    npz_path: The `.npz` with `images` uint8 [1797, 8, 8] (0..16), `labels`
      uint8 [1797] and `order`, the split permutation.

  Returns:
    `{split_name: (images uint8 [N, 8, 8], labels int64 [N])}` in record order.

  Raises:
    CorruptArchiveError: when the file lacks an array or has the wrong shapes.
  """
  # allow_pickle=False: an .npz can hold pickled objects; ours never does.
  try:
    with np.load(npz_path, allow_pickle=False) as data:
      images, labels, order = data['images'], data['labels'], data['order']
  except (KeyError, ValueError, OSError) as e:
    raise download.CorruptArchiveError(
        f'{npz_path} is not the digits .npz (images, labels, order): {e}'
    ) from e
  total = sum(SPLITS_TO_SIZES.values())
  if (images.shape != (total, SOURCE_SIZE, SOURCE_SIZE) or
      labels.shape != (total,) or
      sorted(order.tolist()) != list(range(total)) or
      images.max() > SOURCE_MAX or labels.max() >= NUM_CLASSES):
    raise download.CorruptArchiveError(
        f'{npz_path}: expected {total} 8x8 images with values 0..16, '
        f'{total} labels 0..9 and a permutation; got {images.shape}, '
        f'{labels.shape}, {order.shape}.')
  train_size = SPLITS_TO_SIZES['train']
  splits = {}
  for split_name, indices in (('train', order[:train_size]),
                              ('test', order[train_size:])):
    splits[split_name] = (images[indices], labels[indices].astype(np.int64))
  return splits


def run(dataset_dir, archive_path=None):
  """Converts the shipped digits to TFRecords; never uses the network.

  Idempotent: outputs that exist are finished and are skipped.

  Args:
    dataset_dir: Where the TFRecord files and `labels.txt` go; created if
      needed.
    archive_path: Another `.npz` in the same format instead of the shipped
      one.

  Returns:
    The list of output paths that this call wrote (empty when all existed).
  """
  os.makedirs(dataset_dir, exist_ok=True)
  missing = [s for s in SPLITS_TO_SIZES
             if not os.path.exists(output_path(dataset_dir, s))]
  has_labels = dataset_utils.has_labels(dataset_dir)
  written = []
  if missing:
    splits = load(archive_path or DATA_PATH)
    for split_name in missing:
      images, labels = splits[split_name]
      path = output_path(dataset_dir, split_name)
      dataset_utils.write_tfrecord(path, dataset_utils.png_records(
          to_mnist_layout(images), labels, name=f'digits {split_name} images'))
      written.append(path)
      logging.info('Wrote %d records to %s.', len(images), path)
  if not has_labels:
    written.append(dataset_utils.write_label_file(
        dict(enumerate(CLASS_NAMES)), dataset_dir))
  if not written:
    logging.info('Digits files already exist in %s; not re-creating them.',
                 dataset_dir)
  return written
