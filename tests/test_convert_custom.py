"""The photo-folder converter, its reader, training on its output, flowers."""

import glob
import io
import json
import os
import re
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import convert_flowers
from slimkit.datasets import custom
from slimkit.datasets import dataset_factory
from slimkit.datasets import dataset_utils
from slimkit.datasets import sharded_writer
from tests import script_runner

Image = pytest.importorskip('PIL.Image')  # Only to fabricate the inputs.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('cat', 'dog', 'eel')


def _pixels(seed, width=64, height=48):
  rng = np.random.default_rng(seed)
  image = np.empty((height, width, 3), np.uint8)
  image[:, :width // 2] = rng.integers(30, 225, 3)
  image[:, width // 2:] = rng.integers(30, 225, 3)
  return image


def make_photo_tree(root, per_class=6):
  """A folder per class, mixing JPEG, PNG, BMP and GIF, and one broken file."""
  formats = (('jpg', 'JPEG'), ('JPEG', 'JPEG'), ('png', 'PNG'),
             ('bmp', 'BMP'), ('gif', 'GIF'), ('jpeg', 'JPEG'))
  seed = 0
  for name in CLASSES:
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
      extension, fmt = formats[i % len(formats)]
      seed += 1
      Image.fromarray(_pixels(seed)).save(
          os.path.join(root, name, f'{name}_{i}.{extension}'), fmt)
  with open(os.path.join(root, 'dog', 'broken.jpg'), 'wb') as f:
    f.write(b'not an image')
  with open(os.path.join(root, 'dog', 'notes.txt'), 'w') as f:
    f.write('not an image extension: ignored')
  return root


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  return make_photo_tree(str(tmp_path_factory.mktemp('photos')))


def _labels_by_file(pattern):
  labels = {}
  for path in sorted(glob.glob(pattern)):
    for raw in tf.data.TFRecordDataset(path):
      feature = tf.train.Example.FromString(raw.numpy()).features.feature
      image = tf.io.decode_jpeg(feature['image/encoded'].bytes_list.value[0])
      assert image.shape[-1] == 3
      assert feature['image/format'].bytes_list.value == [b'jpeg']
      labels[len(labels)] = feature['image/class/label'].int64_list.value[0]
  return labels


def test_split_is_deterministic_stratified_and_stable(photos):
  names, images = custom.find_class_images(photos)
  assert names == list(CLASSES)
  assert len(images['dog']) == 7  # The broken .jpg is listed, the .txt not.
  train, validation = custom.split_items(names, images, 0.34, seed=3)
  again = custom.split_items(names, images, 0.34, seed=3)
  assert (train, validation) == again
  # Every class gives round(0.34 * n) images to validation.
  per_class = [sum(i.label == c for i in validation) for c in range(3)]
  assert per_class == [2, 2, 2]
  assert not {i.path for i in train} & {i.path for i in validation}
  assert len(train) + len(validation) == 19
  other = custom.split_items(names, images, 0.34, seed=4)[1]
  assert {i.path for i in other} != {i.path for i in validation}
  # More photos in one class leave the other classes' splits alone.
  grown = dict(images, cat=images['cat'] + ['/elsewhere/cat_new.jpg'])
  grown_validation = custom.split_items(names, grown, 0.34, seed=3)[1]
  assert ({i.path for i in grown_validation if i.label != 0} ==
          {i.path for i in validation if i.label != 0})


def test_bad_fractions_are_refused(photos):
  names, images = custom.find_class_images(photos)
  with pytest.raises(ValueError, match='got 1.5'):
    custom.split_items(names, images, 1.5)


def test_empty_tree_is_refused_with_the_expected_layout(tmp_path):
  (tmp_path / 'empty_class').mkdir()
  with pytest.raises(ValueError, match='<class_name>/<image>'):
    custom.find_class_images(str(tmp_path))


def test_convert_writes_shards_labels_description_and_report(photos,
                                                              tmp_path):
  out = str(tmp_path / 'out')
  reports = custom.convert(out, photos, validation_fraction=0.2, seed=0,
                           train_shards=2, validation_shards=1, num_workers=1,
                           log=io.StringIO())
  description = custom.read_description(out)
  assert description['num_classes'] == 3
  assert description['class_names'] == list(CLASSES)
  broken = os.path.join(photos, 'dog', 'broken.jpg')
  names, images = custom.find_class_images(photos)
  planned = dict(zip(('train', 'validation'),
                     custom.split_items(names, images, 0.2, seed=0)))
  sizes = {k: sum(i.path != broken for i in v) for k, v in planned.items()}
  assert sum(sizes.values()) == 18
  assert description['splits_to_sizes'] == sizes
  assert {k: r.num_records for k, r in reports.items()} == sizes
  assert [s for r in reports.values() for s, _ in r.skipped] == [broken]
  assert sorted(os.path.basename(p) for p in glob.glob(
      os.path.join(out, '*.tfrecord'))) == [
          'train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord',
          'validation-00000-of-00001.tfrecord']
  for split_name, size in description['splits_to_sizes'].items():
    split = dataset_factory.get_split('custom', split_name, out)
    assert split.num_samples == size and split.num_classes == 3
    assert split.labels_to_names == dict(enumerate(CLASSES))
    labels = _labels_by_file(split.file_pattern)
    assert len(labels) == size
    assert set(labels.values()) <= {0, 1, 2}
  with pytest.raises(ValueError, match='Valid splits: train, validation'):
    custom.get_split('test', out)


def test_reader_without_conversion_says_how_to_convert(tmp_path):
  with pytest.raises(FileNotFoundError, match='--dataset_name=custom'):
    dataset_factory.get_split('custom', 'train', str(tmp_path))


def _run_script(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run([sys.executable, os.path.join(ROOT, script), *args],
                           env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=600, check=False)


def test_script_converts_in_parallel_like_one_process(photos, tmp_path):
  out = tmp_path / 'out'
  convert = _run_script(
      'download_and_convert_data.py', '--dataset_name=custom',
      f'--dataset_dir={out}', f'--images_dir={photos}',
      '--validation_fraction=0.2', '--train_shards=2',
      '--validation_shards=1', '--num_workers=2')
  assert convert.returncode == 0, convert.stderr[-3000:]
  assert 'SKIPPED' in convert.stderr and 'broken.jpg' in convert.stderr
  assert re.search(r'\[train\] \d+/\d+ images, [\d.]+ images/s, ',
                   convert.stderr)
  # Two worker processes write the same bytes as one in-process run.
  single = str(tmp_path / 'single')
  custom.convert(single, photos, validation_fraction=0.2, train_shards=2,
                 validation_shards=1, num_workers=1, log=io.StringIO())
  for path in glob.glob(os.path.join(single, '*.tfrecord')):
    with open(path, 'rb') as a, open(out / os.path.basename(path), 'rb') as b:
      assert a.read() == b.read(), path
  report = json.loads((out / sharded_writer.REPORT_JSON).read_text())
  assert report['train']['num_shards'] == 2
  assert [os.path.basename(s['source']) for split in report.values()
          for s in split['skipped']] == ['broken.jpg']


def test_training_and_evaluation_scripts_run_on_a_custom_dataset(photos,
                                                                 tmp_path):
  out = tmp_path / 'out'
  custom.convert(str(out), photos, validation_fraction=0.2, num_workers=1,
                 log=io.StringIO())
  train_dir = tmp_path / 'train'
  train = _run_script(
      'train_image_classifier.py', f'--train_dir={train_dir}',
      '--dataset_name=custom', '--dataset_split_name=train',
      f'--dataset_dir={out}', '--model_name=cifarnet', '--batch_size=2',
      '--max_number_of_steps=3', '--save_summaries_secs=0',
      '--num_readers=1', '--num_preprocessing_threads=1')
  assert train.returncode == 0, train.stderr[-3000:]
  assert os.path.exists(train_dir / 'model.ckpt-3.index')

  evaluate = _run_script(
      'eval_image_classifier.py', f'--checkpoint_path={train_dir}',
      f'--eval_dir={tmp_path / "eval"}', '--dataset_name=custom',
      '--dataset_split_name=validation', f'--dataset_dir={out}',
      '--model_name=cifarnet', '--batch_size=2')
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  accuracy = float(re.search(r'eval/Accuracy\[([\d.]+)\]',
                             evaluate.stdout).group(1))
  assert 0.0 <= accuracy <= 1.0


def test_flowers_archive_goes_through_the_same_writer(tmp_path):
  photo_dir = tmp_path / 'src' / 'flower_photos'
  for i, name in enumerate(('tulips', 'daisy', 'roses', 'dandelion',
                            'sunflowers')):
    (photo_dir / name).mkdir(parents=True)
    for j in range(3):
      Image.fromarray(_pixels(10 * i + j)).save(photo_dir / name / f'{j}.jpg')
  (photo_dir / 'LICENSE.txt').write_text('CC-BY')
  archive = tmp_path / 'flower_photos.tgz'
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(photo_dir, arcname='flower_photos')
  out = tmp_path / 'flowers'
  written = convert_flowers.run(str(out), archive_path=str(archive),
                                num_workers=1, num_validation=5)
  assert len(written) == 10
  assert dataset_utils.read_label_file(str(out)) == {
      0: 'daisy', 1: 'dandelion', 2: 'roses', 3: 'sunflowers', 4: 'tulips'}
  assert os.path.exists(out / 'flowers_train_00000-of-00005.tfrecord')
  assert len(_labels_by_file(str(out / 'flowers_train_*.tfrecord'))) == 10
  assert len(_labels_by_file(str(out / 'flowers_validation_*.tfrecord'))) == 5
  assert archive.exists()  # The user's archive is kept,
  assert not [p for p in os.listdir(out) if 'extract' in p]  # the copy not.
  assert convert_flowers.run(str(out), archive_path=str(archive)) == []


def test_an_unexpected_error_stops_the_writer_and_leaves_no_shard(photos,
                                                                  tmp_path):
  _, images = custom.find_class_images(photos)
  items = [custom.ImageItem(p, 0) for p in images['cat']]
  shards = sharded_writer.plan_shards(items, 2,
                                      str(tmp_path / 'x-%05d-of-%05d'))

  def encode(item):
    if item == items[4]:
      raise RuntimeError('disk on fire')
    return custom.encode_item(item)

  with pytest.raises(RuntimeError, match='disk on fire'):
    sharded_writer.write_shards(shards, encode, num_workers=1,
                                log=io.StringIO())
  # Shard 0 finished; shard 1 failed and left neither file nor temporary.
  assert sorted(os.listdir(tmp_path)) == ['.x-00000-of-00002.manifest.json',
                                          'x-00000-of-00002']
