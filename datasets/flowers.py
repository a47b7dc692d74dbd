"""Flowers: TF-Slim's 5-class flower photos (daisy, dandelion, roses,
sunflowers, tulips; `flower_photos.tgz`, CC-BY photos collected by the
TensorFlow team), 3,670 JPEGs split 3320/350 into sharded TFRecords:

  flowers_train_00000-of-00005.tfrecord ... flowers_train_00004-of-00005...
  flowers_validation_00000-of-00005.tfrecord ...
  labels.txt   0:daisy 1:dandelion 2:roses 3:sunflowers 4:tulips

Typical use:

  split = flowers.get_split('train', '/tmp/flowers')
"""

from slimkit.datasets import dataset_utils

# ------------------------------------------------------------------ reader
FILE_PATTERN = 'flowers_%s_*.tfrecord'
SPLITS_TO_SIZES = {'train': 3320, 'validation': 350}
NUM_CLASSES = 5
ITEMS_TO_DESCRIPTIONS = {
    'image': 'A color image of varying size.',
    'label': 'A single integer between 0 and 4',
}


def get_split(split_name, dataset_dir, file_pattern=None):
  """Describes a flowers split ('train' or 'validation') in `dataset_dir`.

  Args:
    split_name: 'train' or 'validation'.
    dataset_dir: The folder of the TFRecord shards (and `labels.txt`).
    file_pattern: A glob overriding `FILE_PATTERN` ('%s' is the split name).

  Returns:
    A `slimkit.datasets.split.DatasetSplit`.

  Raises:
    ValueError: for an unknown split, naming the valid ones.
    FileNotFoundError: when `dataset_dir` does not exist.
  """
  return dataset_utils.make_split(
      'flowers', split_name, dataset_dir, file_pattern, FILE_PATTERN,
      SPLITS_TO_SIZES, NUM_CLASSES, channels=3,
      items_to_descriptions=ITEMS_TO_DESCRIPTIONS)


# ------------------------------------------------------------------ converter
# (The flowers converter, `run(dataset_dir, ...)`, goes below.)
