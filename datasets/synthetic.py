"""A dataset of generated images, to measure a model's speed apart from input.

Benchmark tools offer a synthetic input so that users can tell the model's
speed from the input pipeline's. Here it is a dataset like the others:

  python train_image_classifier.py --dataset_name=synthetic \
      --num_classes=1001 --model_name=resnet_v1_50 --train_image_size=112 ...

`get_split` describes the split (no files, no `--dataset_dir` needed); the
scripts' input functions call `make_dataset` instead of the TFRecord
pipeline. One batch of random images (uniform in [-1, 1], the range of the
inception preprocessing) and random labels is made once and repeated, so a
step never waits on input: the speed measured is the model's.
"""

import dataclasses

import tensorflow as tf

from slimkit.datasets import split as split_lib

# A nominal size: it only sets the steps per epoch of learning-rate decay.
NUM_SAMPLES = 10000
NUM_CLASSES = 1001
SPLITS_TO_SIZES = {'train': NUM_SAMPLES, 'validation': NUM_SAMPLES,
                   'test': NUM_SAMPLES}


@dataclasses.dataclass(frozen=True)
class SyntheticSplit(split_lib.DatasetSplit):
  """A split whose images are generated; it has no files."""

  def files(self):
    return []

  def make_dataset(self, *, batch_size, image_size, channels=None, seed=0,
                   input_context=None):
    """Returns an endless dataset of one fixed random batch.

    Args:
      batch_size: Images per batch of this input pipeline.
      image_size: An int or (height, width).
      channels: Image channels (default: the split's).
      seed: Seed of the images and labels (pipelines of a strategy add their
        id, so clones see different data).
      input_context: The `tf.distribute.InputContext`, or None.

    Returns:
      A `tf.data.Dataset` of `(images float32 [batch, height, width,
      channels], labels int64 [batch])`, as `input_pipeline.make_dataset`.
    """
    if isinstance(image_size, int):
      height = width = image_size
    else:
      height, width = (int(s) for s in image_size)
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
    channels = channels or self.channels
    if input_context is not None:
      seed += input_context.input_pipeline_id
    images = tf.random.stateless_uniform(
        [batch_size, height, width, channels], seed=[seed, 0], minval=-1.0,
        maxval=1.0)
    labels = tf.random.stateless_uniform(
        [batch_size], seed=[seed, 1], maxval=self.num_classes, dtype=tf.int64)
    # The batch is a constant of the dataset: `repeat` hands the same tensors
    # out again without copying, and a strategy prefetches them to the device.
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    if input_context is not None:
      options = tf.data.Options()
      options.experimental_distribute.auto_shard_policy = (
          tf.data.experimental.AutoShardPolicy.OFF)
      dataset = dataset.with_options(options)
    return dataset.prefetch(1)


def is_synthetic(split):
  """Whether `split` generates its input (has `make_dataset`)."""
  return isinstance(split, SyntheticSplit)


def get_split(split_name, dataset_dir=None, file_pattern=None,
              num_classes=NUM_CLASSES, channels=3):
  """Describes a synthetic split.

  Args:
    split_name: 'train', 'validation' or 'test' (all alike).
    dataset_dir: Ignored: nothing is read.
    file_pattern: Ignored.
    num_classes: Number of classes of the random labels.
    channels: Channels of the images.

  Returns:
    A `SyntheticSplit`.

  Raises:
    ValueError: for an unknown split name or a bad class count.
  """
  del dataset_dir, file_pattern  # Nothing is read.
  if split_name not in SPLITS_TO_SIZES:
    raise ValueError(f'The synthetic dataset has no split {split_name!r}; '
                     f'valid: {", ".join(sorted(SPLITS_TO_SIZES))}.')
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f'num_classes must be a positive int, got '
                     f'{num_classes!r}')
  return SyntheticSplit(
      dataset_name='synthetic', split_name=split_name, file_pattern='',
      num_samples=SPLITS_TO_SIZES[split_name], num_classes=num_classes,
      channels=channels,
      items_to_descriptions={'image': 'Uniform random pixels in [-1, 1].',
                             'label': 'A uniform random class id.'})
