"""Tests of the CIFAR-100 converter, reader and scripts.

The official input is built here, small: a `cifar-100-python.tar.gz` with the
real member layout (`cifar-100-python/train`, `test`, `meta`) and pickles
shaped like the real ones (Python 2, protocol 2; the dict keys of the real
files). Converted records must decode back to the exact source pixels and
carry both labels. The class names are checked against the CIFAR page's table
of superclasses and classes, typed in here independently of the module.
"""

import hashlib
import inspect
import io
import os
import pickle
import re
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import cifar100
from slimkit.datasets import dataset_factory
from slimkit.datasets import download
from slimkit import checkpoints
from tests import script_runner
from tests.source_files import py2_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNREACHABLE = 'http://127.0.0.1:9/'  # Nothing listens: network use would fail.
COARSE_KEY = 'image/class/coarse_label'
SCHEMA_KEYS = {'image/encoded', 'image/format', 'image/class/label',
               'image/height', 'image/width', COARSE_KEY}

# The table on https://www.cs.toronto.edu/~kriz/cifar.html (names as `meta`
# spells them: singular, underscores). Ids are alphabetical in `meta`.
HIERARCHY = {
    'aquatic_mammals': ('beaver', 'dolphin', 'otter', 'seal', 'whale'),
    'fish': ('aquarium_fish', 'flatfish', 'ray', 'shark', 'trout'),
    'flowers': ('orchid', 'poppy', 'rose', 'sunflower', 'tulip'),
    'food_containers': ('bottle', 'bowl', 'can', 'cup', 'plate'),
    'fruit_and_vegetables': ('apple', 'mushroom', 'orange', 'pear',
                             'sweet_pepper'),
    'household_electrical_devices': ('clock', 'keyboard', 'lamp', 'telephone',
                                     'television'),
    'household_furniture': ('bed', 'chair', 'couch', 'table', 'wardrobe'),
    'insects': ('bee', 'beetle', 'butterfly', 'caterpillar', 'cockroach'),
    'large_carnivores': ('bear', 'leopard', 'lion', 'tiger', 'wolf'),
    'large_man-made_outdoor_things': ('bridge', 'castle', 'house', 'road',
                                      'skyscraper'),
    'large_natural_outdoor_scenes': ('cloud', 'forest', 'mountain', 'plain',
                                     'sea'),
    'large_omnivores_and_herbivores': ('camel', 'cattle', 'chimpanzee',
                                       'elephant', 'kangaroo'),
    'medium_mammals': ('fox', 'porcupine', 'possum', 'raccoon', 'skunk'),
    'non-insect_invertebrates': ('crab', 'lobster', 'snail', 'spider', 'worm'),
    'people': ('baby', 'boy', 'girl', 'man', 'woman'),
    'reptiles': ('crocodile', 'dinosaur', 'lizard', 'snake', 'turtle'),
    'small_mammals': ('hamster', 'mouse', 'rabbit', 'shrew', 'squirrel'),
    'trees': ('maple_tree', 'oak_tree', 'palm_tree', 'pine_tree',
              'willow_tree'),
    'vehicles_1': ('bicycle', 'bus', 'motorcycle', 'pickup_truck', 'train'),
    'vehicles_2': ('lawn_mower', 'rocket', 'streetcar', 'tank', 'tractor'),
}
FINE_NAMES = sorted(n for names in HIERARCHY.values() for n in names)
COARSE_NAMES = sorted(HIERARCHY)
FINE_TO_COARSE = {FINE_NAMES.index(n): COARSE_NAMES.index(c)
                  for c, names in HIERARCHY.items() for n in names}


# ---------------------------------------------------------------- builders


def _split_pickle(name, data, fine, coarse):
  return py2_pickle({
      b'filenames': [f'{name}_{i}.png'.encode() for i in range(len(data))],
      b'batch_label': f'{name} batch 1 of 1'.encode(),
      b'fine_labels': [int(x) for x in fine],
      b'coarse_labels': [int(x) for x in coarse],
      b'data': data,
  })


def _write_tar(path, members, folder='cifar-100-python'):
  with tarfile.open(path, 'w:gz') as tar:
    info = tarfile.TarInfo(folder)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)
    for name, blob in members.items():
      info = tarfile.TarInfo(name if name.startswith(('/', '..')) else
                             f'{folder}/{name}')
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))


def make_cifar100_archive(path, sizes=(('train', 30), ('test', 12)), seed=0,
                          replace=None, drop=()):
  """Writes a CIFAR-100 python archive; returns {split: (data, fine, coarse)}.

  `data` is the raw uint8 [N, 3072] of the pickle. `replace` maps member
  names (or hostile paths) to raw bytes; `drop` names members to leave out.
  """
  rng = np.random.RandomState(seed)
  members, source = {}, {}
  for split_name, count in sizes:
    data = rng.randint(0, 256, size=(count, 3072)).astype(np.uint8)
    fine = rng.randint(0, 100, size=count)
    coarse = np.array([FINE_TO_COARSE[f] for f in fine])
    members[split_name] = _split_pickle(split_name, data, fine, coarse)
    source[split_name] = (data, fine, coarse)
  members['meta'] = py2_pickle({
      b'fine_label_names': [n.encode() for n in FINE_NAMES],
      b'coarse_label_names': [n.encode() for n in COARSE_NAMES]})
  members.update(replace or {})
  for name in drop:
    del members[name]
  _write_tar(path, members)
  return source


def pixel(data, i, row, col, channel):
  """The source value of one pixel: CIFAR rows are channel-major."""
  return data[i, channel * 1024 + row * 32 + col]


def read_records(path):
  """Returns (images, fine, coarse, keys), parsed with TF, not our reader."""
  images, fine, coarse, keys = [], [], [], set()
  for record in tf.data.TFRecordDataset(path):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    keys |= set(feature)
    assert feature['image/format'].bytes_list.value == [b'png']
    image = tf.io.decode_png(feature['image/encoded'].bytes_list.value[0])
    assert feature['image/height'].int64_list.value == [32]
    assert feature['image/width'].int64_list.value == [32]
    images.append(image.numpy())
    fine.append(feature['image/class/label'].int64_list.value[0])
    coarse.append(feature[COARSE_KEY].int64_list.value[0])
  return np.stack(images), np.array(fine), np.array(coarse), keys


def hidden_leftovers(directory):
  return [n for n in os.listdir(directory) if n.startswith('.')]


# ---------------------------------------------------------------- names


def test_class_names_are_the_official_ones():
  assert list(cifar100.FINE_CLASS_NAMES) == FINE_NAMES
  assert list(cifar100.COARSE_CLASS_NAMES) == COARSE_NAMES
  assert cifar100.NUM_CLASSES == 100 and cifar100.NUM_COARSE_CLASSES == 20


def test_known_checksums_are_kerass_and_the_cifar_pages():
  # Keras downloads the same URL and checks its SHA-256 (Keras's own source).
  from keras.src.datasets import cifar100 as keras_cifar100
  sha256 = download.KNOWN_SHA256['cifar-100-python.tar.gz']
  assert re.fullmatch('[0-9a-f]{64}', sha256)
  source = inspect.getsource(keras_cifar100)
  assert sha256 in source and cifar100.DATA_URL in source
  assert download.KNOWN_MD5['cifar-100-python.tar.gz'] == (
      'eb9058c3a382ffc7106e4002c42a8d85')


# ---------------------------------------------------------------- converting


def test_converts_to_exact_pixels_and_both_labels(tmp_path, caplog):
  archive = tmp_path / 'cifar-100-python.tar.gz'
  source = make_cifar100_archive(archive)
  archive_bytes = archive.read_bytes()
  out = tmp_path / 'out'
  written = cifar100.run(str(out), archive_path=str(archive), url=UNREACHABLE)
  assert sorted(os.listdir(out)) == [
      'cifar100_test.tfrecord', 'cifar100_train.tfrecord',
      'coarse_labels.txt', 'labels.txt']
  assert len(written) == 4
  assert 'known checksum' in caplog.text  # A user archive: warned, converted.
  for split_name in ('train', 'test'):
    data, fine, coarse = source[split_name]
    images, got_fine, got_coarse, keys = read_records(
        str(out / f'cifar100_{split_name}.tfrecord'))
    assert keys == SCHEMA_KEYS
    assert images.shape == (len(data), 32, 32, 3)
    expected = np.zeros_like(images)
    for i, row, col, channel in np.ndindex(images.shape):
      expected[i, row, col, channel] = pixel(data, i, row, col, channel)
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(got_fine, fine)
    np.testing.assert_array_equal(got_coarse, coarse)

    # The reader: the fine label is the label; the coarse one on request.
    split = dataset_factory.get_split('cifar100', split_name, str(out))
    for n, record in enumerate(tf.data.TFRecordDataset(split.files())):
      decoded = cifar100.decode_with_coarse_label(split, record)
      np.testing.assert_array_equal(decoded['image'].numpy(), expected[n])
      assert int(decoded['label']) == fine[n]
      assert int(decoded['coarse_label']) == coarse[n]
  assert (out / 'labels.txt').read_text().splitlines() == [
      f'{i}:{n}' for i, n in enumerate(FINE_NAMES)]
  assert (out / 'coarse_labels.txt').read_text().splitlines() == [
      f'{i}:{n}' for i, n in enumerate(COARSE_NAMES)]
  assert split.labels_to_names == dict(enumerate(FINE_NAMES))
  assert cifar100.read_coarse_label_file(str(out)) == dict(
      enumerate(COARSE_NAMES))
  assert archive.read_bytes() == archive_bytes  # The user's file is kept.
  assert hidden_leftovers(out) == []  # No extraction folder, no temporaries.


def test_load_archive_returns_images_and_both_labels(tmp_path):
  archive = tmp_path / 'a.tar.gz'
  source = make_cifar100_archive(archive, sizes=(('train', 3), ('test', 2)))
  splits = cifar100.load_archive(str(archive), str(tmp_path),
                                 split_names=('test',))
  assert list(splits) == ['test']
  images, fine, coarse = splits['test']
  data = source['test'][0]
  assert images[1, 5, 7, 2] == pixel(data, 1, 5, 7, 2)
  np.testing.assert_array_equal(fine, source['test'][1])
  np.testing.assert_array_equal(coarse, source['test'][2])


def test_second_run_skips_and_a_crashed_run_resumes(tmp_path):
  archive = tmp_path / 'cifar-100-python.tar.gz'
  source = make_cifar100_archive(archive, sizes=(('train', 4), ('test', 3)))
  out = str(tmp_path / 'out')
  cifar100.run(out, archive_path=str(archive))
  train = cifar100.output_path(out, 'train')
  test = cifar100.output_path(out, 'test')
  before = os.stat(train).st_mtime_ns
  assert cifar100.run(out, archive_path=str(archive)) == []

  # A run killed while writing the test split left only its temporary file
  # (writer pid 999999999 does not exist), and coarse_labels.txt was lost.
  os.remove(test)
  os.remove(os.path.join(out, 'coarse_labels.txt'))
  stale = os.path.join(out, '.cifar100_test.tfrecord.tmp-999999999-deadbeef')
  with open(stale, 'wb') as f:
    f.write(b'half a tfrecord')
  split = dataset_factory.get_split('cifar100', 'test', out)
  with pytest.raises(FileNotFoundError, match='cifar100_test.tfrecord'):
    split.files()  # The temporary is not mistaken for the output.
  assert cifar100.run(out, archive_path=str(archive)) == [
      test, os.path.join(out, 'coarse_labels.txt')]
  assert os.stat(train).st_mtime_ns == before
  assert not os.path.exists(stale)
  _, fine, coarse, _ = read_records(test)
  np.testing.assert_array_equal(fine, source['test'][1])
  np.testing.assert_array_equal(coarse, source['test'][2])


def test_archive_in_dataset_dir_is_used_offline(tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  make_cifar100_archive(out / 'cifar-100-python.tar.gz',
                        sizes=(('train', 2), ('test', 2)))
  cifar100.run(str(out), url=UNREACHABLE)
  assert (out / 'cifar100_train.tfrecord').exists()
  assert (out / 'cifar-100-python.tar.gz').exists()  # Not ours to delete.


def test_meta_with_other_names_warns_and_writes_the_official_ones(tmp_path,
                                                                  caplog):
  archive = tmp_path / 'renamed.tar.gz'
  make_cifar100_archive(archive, sizes=(('train', 2), ('test', 2)), replace={
      'meta': py2_pickle({
          b'fine_label_names': [f'c{i}'.encode() for i in range(100)],
          b'coarse_label_names': [n.encode() for n in COARSE_NAMES]})})
  out = tmp_path / 'out'
  cifar100.run(str(out), archive_path=str(archive))
  assert 'meta names the classes' in caplog.text
  assert (out / 'labels.txt').read_text().splitlines()[1] == '1:aquarium_fish'


# ---------------------------------------------------------------- checksums


def test_download_is_checked_against_the_official_checksum(
    http_server, tmp_path):
  files, base = http_server
  archive = tmp_path / 'served.tar.gz'
  source = make_cifar100_archive(archive, sizes=(('train', 3), ('test', 2)))
  payload = archive.read_bytes()
  files['/cifar-100-python.tar.gz'] = payload
  url = f'{base}/cifar-100-python.tar.gz'

  # Our little archive is not the official one: refused, deleted.
  official = tmp_path / 'official'
  with pytest.raises(download.ChecksumError) as e:
    cifar100.run(str(official), url=url, progress=False)
  assert download.KNOWN_SHA256['cifar-100-python.tar.gz'] in str(e.value)
  assert os.listdir(official) == []

  wrong = tmp_path / 'wrong'
  with pytest.raises(download.ChecksumError):
    cifar100.run(str(wrong), url=url, sha256='0' * 64, progress=False)
  assert os.listdir(wrong) == []

  good = tmp_path / 'good'
  cifar100.run(str(good), url=url, sha256=hashlib.sha256(payload).hexdigest(),
               progress=False)
  # The downloaded archive is a temporary file: removed after conversion.
  assert sorted(os.listdir(good)) == [
      'cifar100_test.tfrecord', 'cifar100_train.tfrecord',
      'coarse_labels.txt', 'labels.txt']
  _, fine, coarse, _ = read_records(str(good / 'cifar100_test.tfrecord'))
  np.testing.assert_array_equal(fine, source['test'][1])
  np.testing.assert_array_equal(coarse, source['test'][2])


def test_official_checksum_demands_official_sizes(tmp_path, monkeypatch):
  archive = tmp_path / 'cifar-100-python.tar.gz'
  make_cifar100_archive(archive, sizes=(('train', 2), ('test', 2)))
  monkeypatch.setitem(download.KNOWN_SHA256, 'cifar-100-python.tar.gz',
                      hashlib.sha256(archive.read_bytes()).hexdigest())
  with pytest.raises(download.CorruptArchiveError, match='50000'):
    cifar100.run(str(tmp_path / 'out'), archive_path=str(archive))
  assert os.listdir(tmp_path / 'out') == []


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize('member', ['../escaped', '/tmp/absolute-cifar100'])
def test_hostile_member_paths_are_refused(tmp_path, member):
  archive = tmp_path / 'evil.tar.gz'
  make_cifar100_archive(archive, sizes=(('train', 2), ('test', 2)),
                        replace={member: b'payload'})
  out = tmp_path / 'out'
  with pytest.raises(download.UnsafeArchiveError, match=re.escape(member)):
    cifar100.run(str(out), archive_path=str(archive))
  assert os.listdir(out) == []
  assert not (tmp_path / 'escaped').exists()


def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
  marker = tmp_path / 'pwned'

  class RunsShell:

    def __reduce__(self):
      return (os.system, (f'touch {marker}',))

  evil = pickle.dumps({b'data': RunsShell(), b'fine_labels': [],
                       b'coarse_labels': []}, protocol=2)
  archive = tmp_path / 'evil.tar.gz'
  make_cifar100_archive(archive, sizes=(('train', 2), ('test', 2)),
                        replace={'test': evil})
  out = tmp_path / 'out'
  with pytest.raises(download.UnsafePickleError,
                     match='cifar-100-python/test'):
    cifar100.run(str(out), archive_path=str(archive))
  assert not marker.exists()
  assert os.listdir(out) == []


@pytest.mark.parametrize('replace, drop, message', [
    ({}, ('test',), 'no member cifar-100-python/test'),
    ({'train': py2_pickle({b'data': np.zeros((2, 3072), np.uint8),
                           b'fine_labels': [0, 1]})}, (),
     "b'fine_labels' and b'coarse_labels'"),
    ({'train': _split_pickle('train', np.zeros((2, 3072), np.uint8), [0, 1],
                             [0, 20])}, (), r"b'coarse_labels' must be 2 ints "
                                            r'in \[0, 20\)'),
    ({'train': _split_pickle('train', np.zeros((2, 3072), np.uint8), [0, 100],
                             [0, 1])}, (), r'in \[0, 100\)'),
    ({'train': _split_pickle('train', np.zeros((2, 1024), np.uint8), [0, 1],
                             [0, 1])}, (), r'uint8 \[N, 3072\]'),
])
def test_wrong_structure_is_refused(tmp_path, replace, drop, message):
  archive = tmp_path / 'bad.tar.gz'
  make_cifar100_archive(archive, sizes=(('train', 2), ('test', 2)),
                        replace=replace, drop=drop)
  with pytest.raises(download.CorruptArchiveError, match=message):
    cifar100.run(str(tmp_path / 'out'), archive_path=str(archive))
  assert os.listdir(tmp_path / 'out') == []


def test_cifar10_archive_is_not_taken_for_cifar100(tmp_path):
  archive = tmp_path / 'cifar-10.tar.gz'
  _write_tar(archive, {'test_batch': b''}, folder='cifar-10-batches-py')
  with pytest.raises(download.CorruptArchiveError,
                     match="no folder cifar-100-python/; it is not "
                           "CIFAR-100's python archive"):
    cifar100.run(str(tmp_path / 'out'), archive_path=str(archive))


# ---------------------------------------------------------------- factory


def test_factory_describes_cifar100(tmp_path):
  assert 'cifar100' in dataset_factory.list_datasets()
  for split_name, size in (('train', 50000), ('test', 10000)):
    split = dataset_factory.get_split('cifar100', split_name, str(tmp_path))
    assert split.num_samples == size
    assert split.num_classes == 100 and split.channels == 3
    assert split.file_pattern == str(tmp_path / f'cifar100_{split_name}'
                                     '.tfrecord')
  with pytest.raises(ValueError, match='test, train'):
    dataset_factory.get_split('cifar100', 'validation', str(tmp_path))


# ---------------------------------------------------------------- scripts


def _run_script(script, *args):
  # Any network use would go to a dead proxy and fail.
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2',
             http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')
  return script_runner.run([sys.executable, os.path.join(REPO, script), *args],
                           env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=600, check=False)


def test_convert_train_and_evaluate_through_the_scripts(tmp_path):
  archive = tmp_path / 'cifar-100-python.tar.gz'
  source = make_cifar100_archive(archive, sizes=(('train', 16), ('test', 6)))
  data = tmp_path / 'cifar100'
  convert = _run_script('download_and_convert_data.py',
                        '--dataset_name=cifar100', f'--dataset_dir={data}',
                        f'--archive_path={archive}')
  assert convert.returncode == 0, convert.stderr[-3000:]
  assert 'Finished converting the cifar100 dataset' in convert.stdout
  _, fine, _, _ = read_records(str(data / 'cifar100_train.tfrecord'))
  np.testing.assert_array_equal(fine, source['train'][1])

  train_dir = tmp_path / 'train'
  train = _run_script(
      'train_image_classifier.py', f'--train_dir={train_dir}',
      '--dataset_name=cifar100', '--dataset_split_name=train',
      f'--dataset_dir={data}', '--model_name=cifarnet', '--batch_size=2',
      '--max_number_of_steps=2', '--log_every_n_steps=1', '--optimizer=sgd',
      '--save_summaries_secs=0', '--num_readers=1',
      '--num_preprocessing_threads=1')
  assert train.returncode == 0, train.stderr[-3000:]
  checkpoint = str(train_dir / 'model.ckpt-2')
  assert os.path.exists(checkpoint + '.index')
  # The net was built for the 100 fine classes.
  shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
  key = checkpoints.named_values(checkpoint)['CifarNet/logits/biases']
  assert shapes[key] == [100]

  evaluate = _run_script(
      'eval_image_classifier.py', f'--checkpoint_path={train_dir}',
      f'--eval_dir={tmp_path / "eval"}', '--dataset_name=cifar100',
      '--dataset_split_name=test', f'--dataset_dir={data}',
      '--model_name=cifarnet', '--batch_size=2')
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert 'global step 2' in evaluate.stdout
  # The whole tiny test file is read, whatever the official split size says.
  assert '(6 examples)' in evaluate.stdout
  accuracy = float(re.search(r'eval/Accuracy\[([\d.]+)\]',
                             evaluate.stdout).group(1))
  assert 0.0 <= accuracy <= 1.0
  assert abs(accuracy * 6 - round(accuracy * 6)) < 1e-3  # k of 6 right.


def test_script_refuses_a_hostile_archive_with_a_message(tmp_path):
  archive = tmp_path / 'evil.tar.gz'
  make_cifar100_archive(archive, sizes=(('train', 2), ('test', 2)),
                        replace={'../escaped': b'x'})
  result = _run_script('download_and_convert_data.py',
                       '--dataset_name=cifar100',
                       f'--dataset_dir={tmp_path / "out"}',
                       f'--archive_path={archive}')
  assert result.returncode == 1
  assert '../escaped' in result.stderr and 'Traceback' not in result.stderr
  assert os.listdir(tmp_path / 'out') == []
