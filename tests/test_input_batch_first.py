"""Small images batched before decoding give the per-image pipeline's batches.

For images up to 64x64 the input pipeline checks, decodes and preprocesses a
whole batch in one tf.data map (`input_pipeline._batch_first`), which saves
tf.data's per-element work. The reference is the same pipeline with one map
per image: every small style, training (seeded, resumed) and evaluation
(the last partial batch), RandAugment, MixUp and CutMix, grayscale and a
caller's own function must give bit-identical batches, and a bad record the
same error.
"""

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import input_pipeline
from slimkit.datasets.split import DatasetSplit
from slimkit.preprocessing import preprocessing_factory
from tests import tiny_records

NUM_RECORDS = 23  # batches of 5: a partial last one in evaluation
NUM_CLASSES = 5


def _write_split(directory, name, size, channels, labels=None):
  """PNG records of `tiny_records` images (noise and a bright square: a
  crop or a flip shows) in one file."""
  images, _ = tiny_records.make_images(NUM_RECORDS, size, channels,
                                       seed=size + channels)
  labels = labels or [i % NUM_CLASSES for i in range(NUM_RECORDS)]
  path = directory / f'{name}.tfrecord'
  tiny_records.write_records(path, images, labels)
  return DatasetSplit(dataset_name='tiny', split_name='train',
                      file_pattern=str(path), num_samples=len(labels),
                      num_classes=NUM_CLASSES, channels=channels)


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  directory = tmp_path_factory.mktemp('batch_first')
  return {'png1': _write_split(directory, 'png1', 28, 1),
          'png3': _write_split(directory, 'png3', 32, 3)}


def _batches(split, preprocess, *, batch_first, is_training, monkeypatch,
             image_size, **options):
  """Two epochs of batches, batched first or mapped per image."""
  seen = []

  def choose(*args):
    seen.append(batch_first)
    return batch_first

  with monkeypatch.context() as patch:
    patch.setattr(input_pipeline, '_batch_first', choose)
    dataset = input_pipeline.make_dataset(
        split, preprocess, batch_size=5, is_training=is_training,
        image_size=image_size, num_epochs=2,
        seed=7 if is_training else None, **options)
  assert seen == [batch_first]
  return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def _assert_same(split, preprocess, monkeypatch, **options):
  first = _batches(split, preprocess, batch_first=True,
                   monkeypatch=monkeypatch, **options)
  per_image = _batches(split, preprocess, batch_first=False,
                       monkeypatch=monkeypatch, **options)
  assert [len(l) for _, l in first] == [len(l) for _, l in per_image]
  assert len(first) >= 4
  for (images, labels), (images_ref, labels_ref) in zip(first, per_image):
    np.testing.assert_array_equal(labels, labels_ref)
    np.testing.assert_array_equal(images, images_ref)
  return first


@pytest.mark.parametrize('is_training', [True, False])
@pytest.mark.parametrize('style, split_name, image_size', [
    ('lenet', 'png1', 28),
    ('cifarnet', 'png3', 32),
    ('inception', 'png3', 24),
])
def test_every_small_style_gives_the_per_image_pixels(
    splits, monkeypatch, style, split_name, image_size, is_training):
  batches = _assert_same(
      splits[split_name],
      preprocessing_factory.get_preprocessing(style, is_training=is_training),
      monkeypatch, is_training=is_training, image_size=image_size)
  # Not trivially equal: the images differ, and evaluation keeps the
  # partial last batch (two passes of 23 records: 46).
  assert np.std(batches[0][0]) > 0.01
  if not is_training:
    assert [len(labels) for _, labels in batches] == [5] * 9 + [1]


def test_augmentations_mixing_grayscale_and_resuming_give_the_same_batches(
    splits, monkeypatch):
  augmenting = preprocessing_factory.get_preprocessing(
      'cifarnet', is_training=True, randaugment=(2, 9))
  _assert_same(splits['png3'], augmenting, monkeypatch, is_training=True,
               image_size=32, mixup_alpha=0.4, cutmix_alpha=1.0,
               use_grayscale=True)
  # A resumed stream replays the records it had consumed: the images after
  # them are those of the uninterrupted stream, their seeds included.
  _assert_same(splits['png3'], augmenting, monkeypatch, is_training=True,
               image_size=32, records_consumed=7)


def test_a_callers_own_function_is_converted_and_batched(splits,
                                                         monkeypatch):
  def darken_bright(image, height, width):
    image = tf.cast(image[:height, :width], tf.float32)
    if tf.reduce_mean(image) > 127:  # AutoGraph makes this a cond
      image = image / 2
    return image

  _assert_same(splits['png1'], darken_bright, monkeypatch, is_training=False,
               image_size=28)


def test_a_bad_label_fails_with_the_per_image_message(tmp_path, monkeypatch):
  labels = [i % NUM_CLASSES for i in range(NUM_RECORDS)]
  labels[8] = NUM_CLASSES + 2
  split = _write_split(tmp_path, 'bad', 28, 1, labels=labels)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  messages = []
  for batch_first in (True, False):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      _batches(split, preprocess, batch_first=batch_first,
               monkeypatch=monkeypatch, is_training=False, image_size=28)
    messages.append(str(input_pipeline.explain_input_error(split,
                                                       error.value)))
  assert messages[0] == messages[1]
  assert 'Record 8 of' in messages[0] and str(NUM_CLASSES + 2) in messages[0]
