"""The input pipeline traced without AutoGraph gives the same pixels.

tf.data converts its functions with AutoGraph unless told not to; the
pipeline's functions go unconverted (`input_pipeline._as_written`), which
saves seconds of every start. The reference here is the same pipeline with
AutoGraph converting them, as tf.data does by default: every preprocessing
style, training (seeded) and evaluation, RandAugment, MixUp and CutMix and
the `skip_corrupt` path must give bit-identical batches and labels.
"""

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import input_pipeline
from slimkit.datasets.split import DatasetSplit
from slimkit.preprocessing import preprocessing_factory

NUM_RECORDS = 12
NUM_CLASSES = 5


def _example(encoded, fmt, label, height, width, boxes):
  def floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))

  feature = {
      'image/encoded': tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[encoded])),
      'image/format': tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[fmt])),
      'image/class/label': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[label])),
      'image/height': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[height])),
      'image/width': tf.train.Feature(
          int64_list=tf.train.Int64List(value=[width])),
  }
  if boxes:
    for i, key in enumerate(('ymin', 'xmin', 'ymax', 'xmax')):
      feature[f'image/object/bbox/{key}'] = floats(
          [0.1 + 0.05 * i, 0.2][:1 + label % 2] if i < 2 else
          [0.9 - 0.05 * i, 0.8][:1 + label % 2])
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _write_split(directory, fmt, size, channels):
  """Smooth random images (distinct pixels, so that a crop, a flip or a
  resize shows) in one file; JPEG records carry one or two boxes."""
  rng = np.random.RandomState(size + channels)
  path = str(directory / f'{fmt.decode()}_{size}_{channels}.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for index in range(NUM_RECORDS):
      coarse = rng.uniform(0, 255, (1, size // 4, size // 4 + 1, channels))
      image = tf.image.resize(coarse, [size, size + 3], 'bicubic')[0]
      image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
      encoded = (tf.io.encode_png(image) if fmt == b'png' else
                 tf.io.encode_jpeg(image, quality=90)).numpy()
      writer.write(_example(encoded, fmt, index % NUM_CLASSES, size,
                            size + 3, boxes=fmt == b'jpeg').SerializeToString())
  return DatasetSplit(dataset_name='tiny', split_name='train',
                      file_pattern=path, num_samples=NUM_RECORDS,
                      num_classes=NUM_CLASSES, channels=channels,
                      has_bboxes=fmt == b'jpeg')


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  directory = tmp_path_factory.mktemp('autograph')
  return {'png1': _write_split(directory, b'png', 28, 1),
          'png3': _write_split(directory, b'png', 32, 3),
          'jpeg': _write_split(directory, b'jpeg', 40, 3)}


def _batches(split, style, is_training, converted, monkeypatch, *,
             image_size, randaugment=None, **options):
  """Two epochs of batches: `converted` by AutoGraph or traced as written."""
  with monkeypatch.context() as patch:
    if converted:  # tf.data's default
      patch.setattr(input_pipeline, '_as_written', lambda fn: fn)
    preprocess = preprocessing_factory.get_preprocessing(
        style, is_training=is_training, randaugment=randaugment)
    dataset = input_pipeline.make_dataset(
        split, preprocess, batch_size=4, is_training=is_training,
        image_size=image_size, num_epochs=2,
        seed=7 if is_training else None, **options)
  return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def _assert_same(split, style, is_training, monkeypatch, **options):
  written = _batches(split, style, is_training, False, monkeypatch, **options)
  converted = _batches(split, style, is_training, True, monkeypatch,
                       **options)
  assert len(written) == len(converted) >= 3
  for (images, labels), (images_ag, labels_ag) in zip(written, converted):
    np.testing.assert_array_equal(labels, labels_ag)
    np.testing.assert_array_equal(images, images_ag)
  return written


@pytest.mark.parametrize('is_training', [True, False])
@pytest.mark.parametrize('style, split_name, image_size', [
    ('lenet', 'png1', 28),
    ('cifarnet', 'png3', 32),
    ('alexnet', 'png3', 24),
    ('inception', 'jpeg', 24),
    ('vgg', 'jpeg', 24),
])
def test_every_style_gives_the_same_pixels_without_autograph(
    splits, monkeypatch, style, split_name, image_size, is_training):
  batches = _assert_same(splits[split_name], style, is_training, monkeypatch,
                         image_size=image_size)
  # Not trivially equal: the images differ from one another.
  assert np.std(batches[0][0]) > 0.01


def test_randaugment_mixing_and_grayscale_give_the_same_pixels(
    splits, monkeypatch):
  _assert_same(splits['png3'], 'cifarnet', True, monkeypatch, image_size=32,
               randaugment=(2, 9), mixup_alpha=0.4, cutmix_alpha=1.0)
  _assert_same(splits['jpeg'], 'inception', True, monkeypatch, image_size=24,
               use_grayscale=True, randaugment=(1, 5))


@pytest.mark.parametrize('is_training', [True, False])
def test_the_skip_corrupt_path_gives_the_same_pixels(splits, monkeypatch,
                                                      is_training):
  _assert_same(splits['png3'], 'cifarnet', is_training, monkeypatch,
               image_size=32, skip_corrupt=True,
               skip_counter=tf.Variable(0, dtype=tf.int64))


def test_functions_are_traced_as_written():
  # A Python `if` on a tensor: AutoGraph turns it into a cond; traced as
  # written it fails at once, so nothing can silently mean something else.
  def halve_positive(x):
    if x > 0:
      return x // 2
    return x

  data = tf.data.Dataset.range(-2, 3)
  assert list(data.map(halve_positive).as_numpy_iterator()) == [-2, -1, 0, 0,
                                                                1]
  with pytest.raises(TypeError, match='not allowed'):
    data.map(input_pipeline._as_written(halve_positive))


@pytest.mark.parametrize('skip_corrupt', [False, True])
def test_a_callers_own_function_is_still_converted(splits, skip_corrupt):
  # Only the styles are traced as written: a function of the caller's that
  # branches on a tensor in Python works as it did (AutoGraph makes it a
  # cond), and gives what the branch says.
  def darken_bright(image, height, width):
    image = tf.cast(image[:height, :width], tf.float32)
    if tf.reduce_mean(image) > 127:
      image = image / 2
    return image

  dataset = input_pipeline.make_dataset(
      splits['png1'], darken_bright, batch_size=NUM_RECORDS,
      is_training=False, image_size=28, skip_corrupt=skip_corrupt)
  images, _ = next(iter(dataset))
  spec = {'image/encoded': tf.io.FixedLenFeature([], tf.string)}
  written = [
      tf.cast(tf.io.decode_png(tf.io.parse_single_example(record, spec)[
          'image/encoded'])[:28, :28], tf.float32).numpy()
      for record in tf.data.TFRecordDataset(splits['png1'].files())]
  expected = [x / 2 if np.mean(x) > 127 else x for x in written]
  np.testing.assert_array_equal(images.numpy(), np.stack(expected))
