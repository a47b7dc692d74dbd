"""Corrupt input: an error naming file and record, or skipped and counted.

Real broken files: a TFRecord with a flipped byte (its CRC fails) or cut
mid-record, a record whose image does not decode, a label outside
`[0, num_classes)`, and a decompression-bomb PNG inside a record.
"""

import glob
import os
import re

import pytest
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import input_pipeline
from slimkit.preprocessing import preprocessing_factory
from tests import tiny_records
from tests.reliability import rel_common

NUM = 12
BAD_LABEL, BAD_IMAGE, BOMB = 3, 5, 8


def _write_test_split(dataset_dir):
  """The test split with one bad label, one non-image and one bomb."""
  images, labels = tiny_records.make_images(NUM, 28, 1)
  examples = []
  for i, (image, label) in enumerate(zip(images, labels)):
    example = tiny_records._example(image, 12 if i == BAD_LABEL else label)
    encoded = example.features.feature['image/encoded'].bytes_list.value
    if i == BAD_IMAGE:
      encoded[0] = b'<html>not an image</html>'
    if i == BOMB:
      encoded[0] = rel_common.png_bomb()
    examples.append(example)
  rel_common.write_records(os.path.join(dataset_dir, 'mnist_test.tfrecord'),
                           examples)


@pytest.fixture()
def dataset_dir(tmp_path):
  path = tiny_records.write_dataset(tmp_path / 'mnist', 'mnist',
                                    {'train': 32, 'test': NUM})
  _write_test_split(path)
  return path


def _eval_dataset(dataset_dir, **kwargs):
  split = dataset_factory.get_split('mnist', 'test', dataset_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  return split, input_pipeline.make_dataset(
      split, preprocess, batch_size=4, is_training=False, image_size=28,
      num_preprocessing_threads=1, **kwargs)


def _first_error(split, dataset):
  with pytest.raises((tf.errors.InvalidArgumentError,
                      tf.errors.DataLossError)) as info:
    for _ in dataset:
      pass
  return input_pipeline.explain_input_error(split, info.value)


def _remove_record(dataset_dir, index):
  path = os.path.join(dataset_dir, 'mnist_test.tfrecord')
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  rel_common.write_records(path, records[:index] + records[index + 1:])
  return path


def test_each_bad_record_is_named_by_file_and_index(dataset_dir):
  path = os.path.join(dataset_dir, 'mnist_test.tfrecord')
  # Evaluation reads in order: the first bad record stops it; remove it and
  # the next one is named, and so on.
  split, dataset = _eval_dataset(dataset_dir)
  error = _first_error(split, dataset)
  assert isinstance(error, input_pipeline.CorruptRecordError)
  assert f'Record {BAD_LABEL} of {path}' in str(error)
  assert 'label 12' in str(error) and '[0, 10)' in str(error)

  _remove_record(dataset_dir, BAD_LABEL)  # Now the bad image is record 4.
  error = _first_error(*_eval_dataset(dataset_dir))
  assert f'Record {BAD_IMAGE - 1} of {path}' in str(error)
  assert 'PNG, JPEG' in str(error)

  _remove_record(dataset_dir, BAD_IMAGE - 1)  # The bomb is now record 6.
  error = _first_error(*_eval_dataset(dataset_dir))
  assert f'Record {BOMB - 2} of {path}' in str(error)
  assert 'decompression bomb' in str(error)


def test_skip_corrupt_drops_and_counts_exactly_the_bad_records(dataset_dir):
  counter = tf.Variable(0, dtype=tf.int64)
  _, dataset = _eval_dataset(dataset_dir, skip_corrupt=True,
                             skip_counter=counter)
  labels = [int(l) for _, batch in dataset for l in batch]
  assert len(labels) == NUM - 3
  assert int(counter.numpy()) == 3
  assert all(0 <= l < 10 for l in labels)


@pytest.mark.parametrize('damage', ['flip', 'truncate'])
def test_a_damaged_tfrecord_is_named_or_its_rest_skipped(tmp_path, damage):
  dataset_dir = tiny_records.write_dataset(tmp_path / 'mnist', 'mnist',
                                           {'train': 8, 'test': NUM})
  path = os.path.join(dataset_dir, 'mnist_test.tfrecord')
  (rel_common.flip_byte_in_record if damage == 'flip'
   else rel_common.truncate_in_record)(path, record_index=4)
  error = _first_error(*_eval_dataset(dataset_dir))
  assert isinstance(error, input_pipeline.CorruptRecordError)
  assert f'{path} record 4' in str(error)

  counter = tf.Variable(0, dtype=tf.int64)
  _, dataset = _eval_dataset(dataset_dir, skip_corrupt=True,
                             skip_counter=counter)
  count = sum(int(images.shape[0]) for images, _ in dataset)
  # TFRecord framing cannot resync after a bad record: the four before it
  # are read, the cut is counted once.
  assert count == 4
  assert int(counter.numpy()) == 1


def test_train_script_names_the_file_then_skips_with_the_flag(tmp_path):
  dataset_dir = tiny_records.write_dataset(tmp_path / 'mnist', 'mnist',
                                           {'train': 24, 'test': 8})
  path = os.path.join(dataset_dir, 'mnist_train.tfrecord')
  rel_common.flip_byte_in_record(path, record_index=10)

  bad = rel_common.run(rel_common.train_args(dataset_dir,
                                             str(tmp_path / 'a'), 3))
  assert bad.returncode == 1, bad.stderr[-3000:]
  assert f'{path} record 10' in bad.stderr, bad.stderr[-3000:]
  assert 'Traceback' not in bad.stderr

  train_dir = tmp_path / 'b'
  skipping = rel_common.run(rel_common.train_args(
      dataset_dir, str(train_dir), 6, skip_corrupt_records='true'))
  assert skipping.returncode == 0, skipping.stderr[-3000:]
  counts = [int(n) for n in re.findall(r'(\d+) corrupt records skipped',
                                       skipping.stderr)]
  assert counts and counts[-1] >= 1, skipping.stderr[-3000:]
  assert tf.train.latest_checkpoint(str(train_dir)).endswith('-6')
  # The count is also a TensorBoard summary.
  events = glob.glob(str(train_dir / 'events.out.tfevents.*'))
  tags = {v.tag for f in events for e in tf.compat.v1.train.summary_iterator(f)
          for v in e.summary.value}
  assert 'input/skipped_records' in tags


def _train_one_step(dataset_dir, train_dir):
  # In-process: the scripts are what is under test here, not training.
  rel_common.train_in_process(dataset_dir, train_dir, 1)


def test_eval_script_names_a_bad_label_then_skips_with_the_flag(dataset_dir,
                                                                 tmp_path):
  train_dir = str(tmp_path / 'train')
  _train_one_step(dataset_dir, train_dir)
  path = os.path.join(dataset_dir, 'mnist_test.tfrecord')
  bad = rel_common.run(rel_common.eval_args(
      dataset_dir, train_dir, eval_dir=str(tmp_path / 'eval')))
  assert bad.returncode == 1, bad.stderr[-3000:]
  assert f'Record {BAD_LABEL} of {path}' in bad.stderr
  assert 'Traceback' not in bad.stderr

  skipping = rel_common.run(rel_common.eval_args(
      dataset_dir, train_dir, eval_dir=str(tmp_path / 'eval'),
      skip_corrupt_records='true'))
  assert skipping.returncode == 0, skipping.stderr[-3000:]
  assert f'({NUM - 3} examples, 3 corrupt records skipped)' in (
      skipping.stdout), skipping.stdout
