"""ImageNet (ILSVRC-2012) as TF-Slim's sharded TFRecords.

1,281,167 training and 50,000 validation JPEGs in 1000 classes, stored with
TF-Slim's (and the Inception build script's) layout:

  train-00000-of-01024 ... train-01023-of-01024
  validation-00000-of-00128 ... validation-00127-of-00128
  labels.txt   0:background, 1:tench, Tinca tinca, ...

Labels are 1..1000 with 0 reserved for a background class (1001 classes), the
convention of TF-Slim's ImageNet checkpoints; nets trained without it use
`--labels_offset=1`. Records carry bounding boxes (`image/object/bbox/*`).

Typical use:

  split = imagenet.get_split('validation', '/data/imagenet-tfrecords')
"""

from slimkit.datasets import dataset_utils

# ------------------------------------------------------------------ reader
FILE_PATTERN = '%s-*'
SPLITS_TO_SIZES = {'train': 1281167, 'validation': 50000}
NUM_CLASSES = 1001
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A color image of varying height and width.',
    'label': 'The label id of the image, integer between 0 and 1000',
    'label_text': 'The text of the label.',
    'object/bbox': 'A list of bounding boxes.',
    'object/label': 'A list of labels, one per each object.',
}


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes an ImageNet split ('train' or 'validation') in `dataset_dir`.

  Class names come from `dataset_dir/labels.txt` when present (never from the
  network).

  Args:
    split_name: 'train' or 'validation'.
    dataset_dir: The folder of the TFRecord shards (and `labels.txt`).
    file_pattern: A glob overriding `FILE_PATTERN` ('%s' is the split name).

  Returns:
    A `slimkit.datasets.split.DatasetSplit` with `has_bboxes=True`.

  Raises:
    ValueError: for an unknown split, naming the valid ones.
    FileNotFoundError: when `dataset_dir` does not exist.
  """
  return dataset_utils.make_split(
      'imagenet', split_name, dataset_dir, file_pattern, FILE_PATTERN,
      SPLITS_TO_SIZES, NUM_CLASSES, channels=3, has_bboxes=True,
      items_to_descriptions=ITEMS_TO_DESCRIPTIONS)


# ------------------------------------------------------------------ converter
# (The ImageNet converter goes below.)
