"""What a dataset split is: files, sizes, classes, and how to decode a record.

`dataset_factory.get_split(...)` returns a `DatasetSplit`; the input pipeline
(`datasets/input_pipeline.py`) reads it. The record schema is TF-Slim's
(tf.train.Example):

  image/encoded        bytes   PNG or JPEG
  image/format         bytes   b'png', b'jpeg' or b'JPEG'
  image/class/label    int64
  image/height, image/width   int64
  ImageNet adds image/colorspace, image/channels, image/filename,
  image/class/synset, image/class/text, image/object/bbox/{xmin,ymin,xmax,ymax}
  (normalised floats, one per box) and image/object/bbox/label.
"""

import dataclasses
import glob
import os
import types
from typing import Mapping, Optional

import tensorflow as tf

# The features every TF-Slim classification record carries.
BASE_FEATURES = types.MappingProxyType({
    'image/encoded': tf.io.FixedLenFeature((), tf.string, default_value=''),
    'image/format': tf.io.FixedLenFeature((), tf.string, default_value='png'),
    'image/class/label': tf.io.FixedLenFeature((), tf.int64, default_value=-1),
})

# What TF-Slim's ImageNet reader parses in addition; boxes are variable-length.
BBOX_FEATURES = types.MappingProxyType({
    'image/object/bbox/xmin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/ymin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/xmax': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/ymax': tf.io.VarLenFeature(tf.float32),
})


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
  """One split of a dataset in TFRecord files.

  Attributes:
    dataset_name: Registry name of the dataset ('cifar10').
    split_name: 'train', 'test', 'validation', ...
    file_pattern: Glob of the split's files (absolute or relative to the cwd).
    num_samples: Number of records in the split.
    num_classes: Number of classes of the labels (1001 for ImageNet).
    channels: Channels of the decoded images (1 for MNIST and digits).
    labels_to_names: `{label: name}` from `labels.txt`, or None without one.
    has_bboxes: Whether records carry `image/object/bbox/*` (ImageNet).
    items_to_descriptions: Human-readable description of each decoded item.
  """
  dataset_name: str
  split_name: str
  file_pattern: str
  num_samples: int
  num_classes: int
  channels: int = 3
  labels_to_names: Optional[Mapping[int, str]] = None
  has_bboxes: bool = False
  items_to_descriptions: Mapping[str, str] = dataclasses.field(
      default_factory=lambda: types.MappingProxyType({
          'image': 'A color image of varying size.',
          'label': 'A single integer class id.',
      }))

  def files(self):
    """Returns the split's files, sorted.

    Raises:
      FileNotFoundError: naming the pattern, when no file matches it.
    """
    files = sorted(glob.glob(self.file_pattern))
    if not files:
      directory = os.path.dirname(self.file_pattern) or '.'
      hint = ('' if os.path.isdir(directory)
              else f' (the directory {directory!r} does not exist)')
      raise FileNotFoundError(
          f'No files of the {self.dataset_name} {self.split_name!r} split '
          f'match {self.file_pattern!r}{hint}. Convert the dataset first with '
          f'download_and_convert_data.py --dataset_name={self.dataset_name}.')
    return files

  def feature_spec(self):
    """Returns the `tf.io.parse_single_example` spec of this split's records."""
    spec = dict(BASE_FEATURES)
    if self.has_bboxes:
      spec.update(BBOX_FEATURES)
    return spec

  def parse(self, serialized):
    """Parses one serialized record without decoding the image.

    Returns:
      A dict with `encoded` (string), `format` (string), `label` (int64) and,
      when the split has boxes, `bbox`: float32 `[num_boxes, 4]` as
      `[ymin, xmin, ymax, xmax]` (the order of `tf.image` box ops).
    """
    features = tf.io.parse_single_example(serialized, self.feature_spec())
    parsed = {
        'encoded': features['image/encoded'],
        'format': features['image/format'],
        'label': features['image/class/label'],
    }
    if self.has_bboxes:
      coords = [tf.sparse.to_dense(features[f'image/object/bbox/{k}'])
                for k in ('ymin', 'xmin', 'ymax', 'xmax')]
      parsed['bbox'] = tf.stack(coords, axis=1)
    return parsed

  def decode(self, serialized):
    """Parses one record and decodes its image.

    Returns:
      The dict of `parse` plus `image`: uint8 `[height, width, channels]`.
    """
    parsed = self.parse(serialized)
    # decode_image reads PNG, JPEG, GIF and BMP from their magic bytes, so a
    # record whose image/format is wrong still decodes.
    parsed['image'] = tf.io.decode_image(
        parsed['encoded'], channels=self.channels, expand_animations=False)
    return parsed
