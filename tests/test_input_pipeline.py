"""The tf.data input pipeline on tiny TFRecord files written here."""

import os

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import input_pipeline
from slimkit.datasets.split import DatasetSplit
from slimkit.preprocessing import preprocessing_factory

SIZE = 16


def _bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _floats(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _example(encoded, fmt, label, height, width, bbox=None):
  """A tf.train.Example with TF-Slim's keys (ImageNet's boxes optional)."""
  feature = {
      'image/encoded': _bytes(encoded),
      'image/format': _bytes(fmt),
      'image/class/label': _int(label),
      'image/height': _int(height),
      'image/width': _int(width),
  }
  if bbox is not None:
    boxes = np.asarray(bbox, np.float32).reshape(-1, 4)
    for i, key in enumerate(('ymin', 'xmin', 'ymax', 'xmax')):
      feature[f'image/object/bbox/{key}'] = _floats(boxes[:, i].tolist())
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _image(label, channels=3, height=SIZE, width=SIZE):
  """A constant image whose value encodes its label (survives PNG exactly)."""
  return np.full((height, width, channels), label * 20, np.uint8)


def _encode(image, fmt):
  if fmt == b'png':
    return tf.io.encode_png(image).numpy()
  return tf.io.encode_jpeg(image, quality=95).numpy()


def _write(path, labels, fmt=b'png', channels=3, bbox=None, encoded=None):
  """Writes one record per label; `encoded` maps label -> raw bytes."""
  encoded = encoded or {}
  with tf.io.TFRecordWriter(path) as writer:
    for label in labels:
      image = _image(label, channels)
      data = encoded.get(label)
      if data is None:
        data = _encode(image, fmt)
      writer.write(_example(data, fmt, label, SIZE, SIZE,
                            bbox).SerializeToString())


def _split(pattern, channels=3, has_bboxes=False, num_samples=12):
  return DatasetSplit(dataset_name='tiny', split_name='train',
                      file_pattern=pattern, num_samples=num_samples,
                      num_classes=12, channels=channels,
                      has_bboxes=has_bboxes)


def _keep(image, height, width):
  """Preprocessing that keeps pixel values, to see which record came out."""
  return tf.image.resize_with_crop_or_pad(tf.cast(image, tf.float32), height,
                                          width)


@pytest.fixture(scope='module')
def png_split(tmp_path_factory):
  """12 PNG records in 3 files of 5, 4 and 3 records; label = record id."""
  root = tmp_path_factory.mktemp('png')
  for i, labels in enumerate(([0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11])):
    _write(str(root / f'tiny_train_{i:05d}-of-00003.tfrecord'), labels)
  return _split(str(root / 'tiny_train_*.tfrecord'))


def _collect(dataset):
  images, labels = [], []
  for batch_images, batch_labels in dataset:
    images.append(batch_images.numpy())
    labels.append(batch_labels.numpy())
  return images, labels


def test_eval_reads_every_record_once_in_order(png_split):
  dataset = input_pipeline.make_dataset(png_split, _keep, batch_size=5,
                                        is_training=False, image_size=SIZE)
  images, labels = _collect(dataset)
  assert [len(b) for b in labels] == [5, 5, 2]  # the partial batch is kept
  labels = np.concatenate(labels)
  np.testing.assert_array_equal(labels, np.arange(12))
  images = np.concatenate(images)
  assert images.shape == (12, SIZE, SIZE, 3) and images.dtype == np.float32
  # Each image is the one written with its label.
  np.testing.assert_array_equal(images[:, 0, 0, 0], labels * 20.0)
  # Deterministic: a second pass gives the same.
  _, again = _collect(dataset)
  np.testing.assert_array_equal(np.concatenate(again), labels)


def test_labels_offset(png_split):
  # Labels are 0..11: with an offset of 1, label 0 falls outside the classes
  # (as background would for a 1000-class net). By default that is an error
  # naming the record; skipped, the other labels come out shifted.
  with pytest.raises(tf.errors.InvalidArgumentError, match='is not in'):
    _collect(input_pipeline.make_dataset(
        png_split, _keep, batch_size=4, is_training=False, image_size=SIZE,
        labels_offset=1))
  dataset = input_pipeline.make_dataset(png_split, _keep, batch_size=4,
                                        is_training=False, image_size=SIZE,
                                        labels_offset=1, skip_corrupt=True)
  labels = np.concatenate(_collect(dataset)[1])
  assert labels.dtype == np.int64
  np.testing.assert_array_equal(labels, np.arange(1, 12) - 1)


def test_training_batches_are_full_and_cover_each_epoch(png_split):
  dataset = input_pipeline.make_dataset(png_split, _keep, batch_size=5,
                                        is_training=True, image_size=SIZE,
                                        num_epochs=2, seed=1)
  images, labels = _collect(dataset)
  assert all(len(b) == 5 for b in labels)
  assert len(labels) == 24 // 5  # 4 left over dropped
  labels = np.concatenate(labels)
  counts = np.bincount(labels, minlength=12)
  assert counts.max() <= 2 and counts.sum() == 20
  np.testing.assert_array_equal(np.concatenate(images)[:, 0, 0, 0],
                                labels * 20.0)
  assert not np.array_equal(labels[:12], np.arange(12))  # shuffled


def test_training_repeats_forever_by_default(png_split):
  dataset = input_pipeline.make_dataset(png_split, _keep, batch_size=4,
                                        is_training=True, image_size=SIZE)
  labels = np.concatenate([l.numpy() for _, l in dataset.take(9)])
  assert len(labels) == 36  # three epochs' worth from 12 records
  assert set(labels) <= set(range(12))


def _contexts(n=2):
  return [tf.distribute.InputContext(num_input_pipelines=n,
                                     input_pipeline_id=i,
                                     num_replicas_in_sync=n) for i in range(n)]


def test_file_sharding_covers_every_file_once(png_split):
  per_pipeline = []
  for ctx in _contexts():
    dataset = input_pipeline.make_dataset(
        png_split, _keep, batch_size=ctx.get_per_replica_batch_size(4),
        is_training=False, image_size=SIZE, input_context=ctx)
    per_pipeline.append(np.concatenate(_collect(dataset)[1]))
  files = [{0, 1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11}]
  # Every file belongs wholly to exactly one pipeline.
  for labels in files:
    owners = [i for i, seen in enumerate(per_pipeline) if labels & set(seen)]
    assert len(owners) == 1 and labels <= set(per_pipeline[owners[0]])
  everything = np.concatenate(per_pipeline)
  assert sorted(everything) == list(range(12))


def test_record_sharding_of_a_single_file(tmp_path):
  _write(str(tmp_path / 'one.tfrecord'), range(7))
  split = _split(str(tmp_path / 'one.tfrecord'), num_samples=7)
  seen = []
  for ctx in _contexts():
    dataset = input_pipeline.make_dataset(split, _keep, batch_size=2,
                                          is_training=False, image_size=SIZE,
                                          input_context=ctx)
    seen.append(np.concatenate(_collect(dataset)[1]))
  assert not set(seen[0]) & set(seen[1])
  assert sorted(np.concatenate(seen)) == list(range(7))
  # Training with contexts keeps the shards apart too.
  ctx = _contexts()[1]
  dataset = input_pipeline.make_dataset(split, _keep, batch_size=2,
                                        is_training=True, image_size=SIZE,
                                        input_context=ctx, num_epochs=1)
  assert set(np.concatenate(_collect(dataset)[1])) <= set(seen[1])


@pytest.mark.parametrize('with_boxes', [True, False])
def test_jpeg_records_with_inception_preprocessing(tmp_path, with_boxes):
  bbox = [[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 0.5]] if with_boxes else None
  _write(str(tmp_path / 'a.tfrecord'), range(6), fmt=b'jpeg', bbox=bbox)
  split = _split(str(tmp_path / 'a.tfrecord'), has_bboxes=True,
                 num_samples=6)
  for is_training in (True, False):
    preprocess = preprocessing_factory.get_preprocessing('inception_v3',
                                                         is_training)
    dataset = input_pipeline.make_dataset(split, preprocess, batch_size=4,
                                          is_training=is_training,
                                          image_size=(12, 10), num_epochs=1)
    images, labels = _collect(dataset)
    assert [b.shape for b in images] == (
        [(4, 12, 10, 3)] if is_training else [(4, 12, 10, 3), (2, 12, 10, 3)])
    stacked = np.concatenate(images)
    assert stacked.min() >= -1.0 and stacked.max() <= 1.0
  # Evaluation of a constant image: 2 * value / 255 - 1, JPEG up to rounding.
  expected = 2 * np.concatenate(labels) * 20 / 255 - 1
  np.testing.assert_allclose(stacked[:, 5, 5, 0], expected, atol=0.03)


def test_plain_function_gets_bbox_when_it_takes_it(tmp_path):
  _write(str(tmp_path / 'b.tfrecord'), range(3), bbox=[[0.0, 0.0, 0.5, 0.5]])
  split = _split(str(tmp_path / 'b.tfrecord'), has_bboxes=True, num_samples=3)

  def with_box(image, height, width, bbox):
    # Writes the number of boxes into the pixels to see that they arrived.
    del image
    return tf.fill([height, width, 3], tf.cast(tf.shape(bbox)[0], tf.float32))

  dataset = input_pipeline.make_dataset(split, with_box, batch_size=3,
                                        is_training=False, image_size=4)
  images, _ = _collect(dataset)
  assert np.all(images[0] == 1.0)


def test_each_record_gets_its_own_boxes(tmp_path):
  # Records hold 0, 1, 2 or 3 boxes, in groups checked together and across
  # a group boundary (records 60-69); each must get exactly its own.
  rng = np.random.RandomState(0)
  boxes = [rng.uniform(0, 1, (i % 4, 4)).astype(np.float32)
           for i in range(70)]
  path = str(tmp_path / 'boxes.tfrecord')
  data = _encode(_image(1), b'png')
  with tf.io.TFRecordWriter(path) as writer:
    for i, record_boxes in enumerate(boxes):
      writer.write(_example(data, b'png', i % 12, SIZE, SIZE,
                            record_boxes).SerializeToString())
  split = _split(path, has_bboxes=True, num_samples=70)

  def boxes_as_pixels(image, height, width, bbox):
    del image, height, width
    padded = tf.concat([bbox, tf.fill([4 - tf.shape(bbox)[0], 4], -1.0)], 0)
    return tf.tile(padded[:, :, tf.newaxis], [1, 1, 3])

  dataset = input_pipeline.make_dataset(split, boxes_as_pixels, batch_size=7,
                                        is_training=False, image_size=4)
  images, _ = _collect(dataset)
  images = np.concatenate(images)
  for i, record_boxes in enumerate(boxes):
    count = len(record_boxes)
    np.testing.assert_array_equal(images[i, :count, :, 0], record_boxes)
    assert np.all(images[i, count:] == -1.0)


def test_grayscale(png_split, tmp_path):
  preprocess = preprocessing_factory.get_preprocessing('lenet')
  for fn, flag in ((preprocess, True), (_keep, True),
                   (preprocessing_factory.get_preprocessing(
                       'lenet', use_grayscale=True), False)):
    dataset = input_pipeline.make_dataset(png_split, fn, batch_size=12,
                                          is_training=False, image_size=SIZE,
                                          use_grayscale=flag)
    images, labels = _collect(dataset)
    assert images[0].shape == (12, SIZE, SIZE, 1)
  # A grey RGB pixel keeps its value in grayscale (the weights sum to ~1).
  np.testing.assert_allclose(images[0][:, 3, 3, 0],
                             (labels[0] * 20.0 - 128) / 128, atol=0.01)
  assert input_pipeline.output_channels(png_split, use_grayscale=True) == 1


@pytest.mark.parametrize('style', ['inception', 'cifarnet', 'lenet'])
def test_one_channel_records_stay_one_channel(tmp_path, style):
  # MNIST and digits records are 1-channel PNGs; as in TF-Slim the net gets
  # 1-channel images whatever the style, in both modes.
  _write(str(tmp_path / 'mnist.tfrecord'), range(4), channels=1)
  split = _split(str(tmp_path / 'mnist.tfrecord'), channels=1, num_samples=4)
  assert input_pipeline.output_channels(split) == 1
  for is_training in (True, False):
    preprocess = preprocessing_factory.get_preprocessing(style, is_training,
                                                         use_grayscale=True)
    dataset = input_pipeline.make_dataset(split, preprocess, batch_size=2,
                                          is_training=is_training,
                                          image_size=SIZE, num_epochs=1)
    images, _ = _collect(dataset)
    assert all(b.shape == (2, SIZE, SIZE, 1) for b in images)


def test_no_files_names_the_pattern(tmp_path):
  pattern = str(tmp_path / 'missing_train_*.tfrecord')
  with pytest.raises(FileNotFoundError, match='missing_train_'):
    input_pipeline.make_dataset(_split(pattern), _keep, batch_size=2,
                                is_training=False, image_size=SIZE)


@pytest.fixture
def corrupt_split(tmp_path):
  """Two files; record 2 of the first is garbage, record 1 of the second a
  truncated JPEG (valid header, missing body)."""
  jpeg = _encode(_image(5), b'jpeg')
  _write(str(tmp_path / 'bad_00000.tfrecord'), range(4),
         encoded={2: b'this is not an image'})
  _write(str(tmp_path / 'bad_00001.tfrecord'), range(4, 7), fmt=b'jpeg',
         encoded={5: jpeg[:len(jpeg) // 3]})
  return _split(str(tmp_path / 'bad_*.tfrecord'), num_samples=7)


def test_undecodable_image_names_file_and_record(corrupt_split):
  dataset = input_pipeline.make_dataset(corrupt_split, _keep, batch_size=2,
                                        is_training=False, image_size=SIZE)
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    _collect(dataset)
  error = input_pipeline.explain_input_error(corrupt_split, raised.value)
  assert isinstance(error, input_pipeline.CorruptRecordError)
  assert 'Record 2 of ' in str(error) and 'bad_00000.tfrecord' in str(error)


def test_find_corrupt_records_and_truncated_images(corrupt_split):
  found = input_pipeline.find_corrupt_records(corrupt_split)
  assert [(os.path.basename(f), i) for f, i, _ in found] == [
      ('bad_00000.tfrecord', 2), ('bad_00001.tfrecord', 1)]
  assert 'not PNG, JPEG' in found[0][2]
  # A truncated JPEG fails inside the decoder, without a location: the
  # explanation scans the split.
  second = _split(corrupt_split.file_pattern.replace('*', '00001'),
                  num_samples=3)
  dataset = input_pipeline.make_dataset(second, _keep, batch_size=3,
                                        is_training=False, image_size=SIZE)
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    _collect(dataset)
  error = input_pipeline.explain_input_error(second, raised.value)
  assert isinstance(error, input_pipeline.CorruptRecordError)
  assert 'bad_00001.tfrecord record 1' in str(error)
  assert error.records[0][1] == 1


def test_skip_corrupt_drops_only_bad_records(corrupt_split):
  dataset = input_pipeline.make_dataset(corrupt_split, _keep, batch_size=2,
                                        is_training=False, image_size=SIZE,
                                        skip_corrupt=True)
  labels = np.concatenate(_collect(dataset)[1])
  np.testing.assert_array_equal(labels, [0, 1, 3, 4, 6])


def test_bad_arguments(png_split):
  with pytest.raises(ValueError, match='batch_size'):
    input_pipeline.make_dataset(png_split, _keep, batch_size=0,
                                is_training=False, image_size=SIZE)
  with pytest.raises(ValueError, match='image_size'):
    input_pipeline.make_dataset(png_split, _keep, batch_size=2,
                                is_training=False, image_size='big')


def test_png_header_pixels_of_a_group_equal_the_per_record_count():
  pngs = [_encode(_image(1, 3, 7, 13), b'png'),
          _encode(_image(2, 1, 40, 3), b'png')]
  others = [_encode(_image(3, 3, 9, 5), b'jpeg'), b'GIF89a', b'\x89P']
  encoded = tf.constant(pngs + others)
  head = tf.strings.substr(encoded, 0, 2)
  pixels = input_pipeline._png_pixels(encoded, head).numpy()
  assert list(pixels) == [7 * 13, 40 * 3, 0, 0, 0]
  for png, count in zip(pngs, pixels):
    assert int(input_pipeline._header_pixels(tf.constant(png))) == count


def _explained_failure(split, preprocess):
  """The `CorruptRecordError` explaining why an evaluation pass fails."""
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    _collect(input_pipeline.make_dataset(split, preprocess, batch_size=16,
                                         is_training=False, image_size=SIZE))
  error = input_pipeline.explain_input_error(split, raised.value)
  assert isinstance(error, input_pipeline.CorruptRecordError)
  return error


def _jpeg_declaring(height, width):
  """A small JPEG whose frame header (SOF0) declares height x width."""
  data = bytearray(_encode(_image(1), b'jpeg'))
  sof = data.index(b'\xff\xc0')
  # Marker, length (2), precision (1), then height and width, big-endian.
  data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
  return bytes(data)


@pytest.mark.parametrize('bad_index', [0, 70])
def test_a_jpeg_over_the_pixel_limit_is_named_before_decoding(tmp_path,
                                                             bad_index):
  # JPEG headers are read one record at a time, after the group checks.
  bomb = _jpeg_declaring(60000, 60000)
  assert tuple(tf.io.extract_jpeg_shape(bomb).numpy()[:2]) == (60000, 60000)
  path = str(tmp_path / 'tiny_train_00000-of-00001.tfrecord')
  labels = [i % 11 for i in range(100)]
  labels[bad_index] = 11  # the only record with label 11 holds the bomb
  _write(path, labels, fmt=b'jpeg', bbox=[0.1, 0.1, 0.9, 0.9],
         encoded={11: bomb})
  split = _split(path, num_samples=100, has_bboxes=True)
  error = _explained_failure(
      split, preprocessing_factory.get_preprocessing('inception'))
  assert f'Record {bad_index} of ' in str(error)
  assert 'decompression bomb' in str(error)


@pytest.mark.parametrize('bad_index', [0, 63, 64, 130])
def test_a_bad_record_in_any_group_is_named(tmp_path, bad_index):
  # Records are checked in groups of 64; the error names the record, not
  # its group, wherever it falls.
  path = str(tmp_path / 'tiny_train_00000-of-00001.tfrecord')
  labels = [i % 12 for i in range(140)]
  labels[bad_index] = 12  # one past the last class
  _write(path, labels)
  error = _explained_failure(_split(path, num_samples=140), _keep)
  assert f'Record {bad_index} of ' in str(error)
  assert 'label 12' in str(error)
