"""Tests of the cifar10, mnist and digits converters, readers and factory.

The official input formats are built here, small: a `cifar-10-python.tar.gz`
with the real member layout and pickled dicts, and gzipped big-endian IDX
files. Converted records must decode back to the exact source pixels.
"""

import gzip
import hashlib
import io
import os
import pickle
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import cifar10
from slimkit.datasets import dataset_factory
from slimkit.datasets import dataset_utils
from slimkit.datasets import digits
from slimkit.datasets import download
from slimkit.datasets import mnist
from tests import script_runner
from tests.source_files import py2_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_KEYS = {'image/encoded', 'image/format', 'image/class/label',
               'image/height', 'image/width'}
UNREACHABLE = 'http://127.0.0.1:9/'  # Nothing listens: network use would fail.


# ---------------------------------------------------------------- builders

def make_cifar_archive(path, per_batch=20, seed=0, test_batch=True,
                       malicious_batch=None):
  """Writes a CIFAR-10 python archive; returns {split: (images, labels)}."""
  rng = np.random.RandomState(seed)
  members = {}
  splits = {'train': ([], []), 'test': ([], [])}
  names = [f'data_batch_{i}' for i in range(1, 6)]
  if test_batch:
    names.append('test_batch')
  for name in names:
    data = rng.randint(0, 256, size=(per_batch, 3072)).astype(np.uint8)
    labels = [int(x) for x in rng.randint(0, 10, size=per_batch)]
    batch = {
        b'batch_label': f'{name} of the test archive'.encode(),
        b'labels': labels,
        b'data': data,
        b'filenames': [f'img_{name}_{i}.png'.encode()
                       for i in range(per_batch)],
    }
    members[name] = py2_pickle(batch)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    split = 'test' if name == 'test_batch' else 'train'
    splits[split][0].append(images)
    splits[split][1].extend(labels)
  if malicious_batch:
    members[malicious_batch[0]] = malicious_batch[1]
  members['batches.meta'] = py2_pickle({
      b'num_cases_per_batch': per_batch,
      b'label_names': [n.encode() for n in cifar10.CLASS_NAMES],
      b'num_vis': 3072})
  with tarfile.open(path, 'w:gz') as tar:
    info = tarfile.TarInfo('cifar-10-batches-py')
    info.type = tarfile.DIRTYPE
    tar.addfile(info)
    for name, blob in members.items():
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  return {s: (np.concatenate(v[0]) if v[0] else None, np.array(v[1]))
          for s, v in splits.items()}


def make_mnist_files(directory, sizes=(('train', 30), ('test', 12)), seed=0,
                     images_magic=2051):
  """Writes the four gzipped IDX files; returns {split: (images, labels)}."""
  rng = np.random.RandomState(seed)
  os.makedirs(directory, exist_ok=True)
  out = {}
  for split, count in sizes:
    images = rng.randint(0, 256, size=(count, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=count).astype(np.uint8)
    images_name, labels_name = mnist.SPLIT_FILES[split]
    with gzip.open(os.path.join(directory, images_name), 'wb') as f:
      f.write(np.array([images_magic, count, 28, 28], '>u4').tobytes())
      f.write(images.tobytes())
    with gzip.open(os.path.join(directory, labels_name), 'wb') as f:
      f.write(np.array([2049, count], '>u4').tobytes())
      f.write(labels.tobytes())
    out[split] = (images[..., None], labels)
  return out


def decode_split(dataset_name, split_name, dataset_dir):
  """Reads a split through the factory; returns (images, labels, keys)."""
  split = dataset_factory.get_split(dataset_name, split_name, dataset_dir)
  images, labels, keys = [], [], set()
  for record in tf.data.TFRecordDataset(split.files()):
    decoded = split.decode(record)
    images.append(decoded['image'].numpy())
    labels.append(int(decoded['label']))
    example = tf.train.Example.FromString(record.numpy())
    keys |= set(example.features.feature)
    assert decoded['format'].numpy() == b'png'
    feature = example.features.feature
    assert feature['image/height'].int64_list.value[0] == images[-1].shape[0]
    assert feature['image/width'].int64_list.value[0] == images[-1].shape[1]
  return np.stack(images), np.array(labels), keys


def hidden_leftovers(directory):
  return [n for n in os.listdir(directory) if n.startswith('.')]


# ---------------------------------------------------------------- cifar10


def test_cifar10_converts_to_exact_pixels(tmp_path, caplog):
  archive = tmp_path / 'cifar-10-python.tar.gz'
  source = make_cifar_archive(archive)
  archive_bytes = archive.read_bytes()
  out = tmp_path / 'out'
  written = cifar10.run(str(out), archive_path=str(archive), url=UNREACHABLE)
  assert sorted(os.listdir(out)) == [
      'cifar10_test.tfrecord', 'cifar10_train.tfrecord', 'labels.txt']
  assert len(written) == 3
  assert 'known checksum' in caplog.text  # A user archive: warned, converted.
  for split_name in ('train', 'test'):
    images, labels, keys = decode_split('cifar10', split_name, str(out))
    assert keys == SCHEMA_KEYS
    assert images.shape == source[split_name][0].shape
    assert images.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(images, source[split_name][0])
    np.testing.assert_array_equal(labels, source[split_name][1])
  assert len(decode_split('cifar10', 'train', str(out))[1]) == 5 * 20
  assert (out / 'labels.txt').read_text().splitlines() == [
      f'{i}:{n}' for i, n in enumerate(cifar10.CLASS_NAMES)]
  assert archive.read_bytes() == archive_bytes  # The user's file is kept.
  assert hidden_leftovers(out) == []  # No extraction folder, no temporaries.


def test_cifar10_second_run_skips_and_stale_temp_is_not_output(tmp_path):
  archive = tmp_path / 'cifar-10-python.tar.gz'
  make_cifar_archive(archive, per_batch=4)
  out = str(tmp_path / 'out')
  cifar10.run(out, archive_path=str(archive))
  train = cifar10.output_path(out, 'train')
  test = cifar10.output_path(out, 'test')
  before = os.stat(train).st_mtime_ns, os.stat(test).st_mtime_ns
  assert cifar10.run(out, archive_path=str(archive)) == []
  assert (os.stat(train).st_mtime_ns, os.stat(test).st_mtime_ns) == before

  # A run killed while writing the test split left only its temporary file
  # (writer pid 999999999 does not exist).
  os.remove(test)
  stale = os.path.join(out, '.cifar10_test.tfrecord.tmp-999999999-deadbeef')
  with open(stale, 'wb') as f:
    f.write(b'half a tfrecord')
  split = dataset_factory.get_split('cifar10', 'test', out)
  with pytest.raises(FileNotFoundError, match='cifar10_test.tfrecord'):
    split.files()  # The temporary is not mistaken for the output...
  # ...nor taken for a finished output.
  assert cifar10.run(out, archive_path=str(archive)) == [test]
  assert os.stat(train).st_mtime_ns == before[0]
  assert not os.path.exists(stale)
  assert len(decode_split('cifar10', 'test', out)[1]) == 4


def test_cifar10_download_over_loopback(http_server, tmp_path):
  files, base = http_server
  archive = tmp_path / 'served.tar.gz'
  source = make_cifar_archive(archive, per_batch=3)
  payload = archive.read_bytes()
  files['/cifar-10-python.tar.gz'] = payload
  url = f'{base}/cifar-10-python.tar.gz'

  bad = tmp_path / 'bad'
  with pytest.raises(download.ChecksumError):
    cifar10.run(str(bad), url=url, sha256='0' * 64, progress=False)
  assert os.listdir(bad) == []  # Bad download deleted, nothing converted.

  good = tmp_path / 'good'
  cifar10.run(str(good), url=url, sha256=hashlib.sha256(payload).hexdigest(),
              progress=False)
  # The downloaded archive is a temporary file: removed after conversion.
  assert sorted(os.listdir(good)) == [
      'cifar10_test.tfrecord', 'cifar10_train.tfrecord', 'labels.txt']
  images, labels, _ = decode_split('cifar10', 'test', str(good))
  np.testing.assert_array_equal(images, source['test'][0])
  np.testing.assert_array_equal(labels, source['test'][1])


def test_cifar10_archive_in_dataset_dir_is_used_offline(tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  make_cifar_archive(out / 'cifar-10-python.tar.gz', per_batch=2)
  cifar10.run(str(out), url=UNREACHABLE)
  assert (out / 'cifar10_train.tfrecord').exists()
  assert (out / 'cifar-10-python.tar.gz').exists()  # Not ours to delete.


def test_cifar10_truncated_archive_leaves_no_output(tmp_path):
  archive = tmp_path / 'cifar-10-python.tar.gz'
  make_cifar_archive(archive, per_batch=50)
  data = archive.read_bytes()
  truncated = tmp_path / 'truncated.tar.gz'
  truncated.write_bytes(data[:len(data) * 3 // 4])
  out = tmp_path / 'out'
  with pytest.raises(download.CorruptArchiveError, match='truncated'):
    cifar10.run(str(out), archive_path=str(truncated))
  assert os.listdir(out) == []


def test_cifar10_refuses_malicious_pickle_without_running_it(tmp_path):
  marker = tmp_path / 'pwned'

  class RunsShell:

    def __reduce__(self):
      return (os.system, (f'touch {marker}',))

  evil = pickle.dumps({b'data': RunsShell(), b'labels': []}, protocol=2)
  archive = tmp_path / 'evil.tar.gz'
  make_cifar_archive(archive, per_batch=2,
                     malicious_batch=('data_batch_3', evil))
  out = tmp_path / 'out'
  with pytest.raises(download.UnsafePickleError, match='data_batch_3'):
    cifar10.run(str(out), archive_path=str(archive))
  assert not marker.exists()
  assert os.listdir(out) == []


def test_cifar10_wrong_structure_is_refused(tmp_path):
  archive = tmp_path / 'no-test.tar.gz'
  make_cifar_archive(archive, per_batch=2, test_batch=False)
  with pytest.raises(download.CorruptArchiveError, match='test_batch'):
    cifar10.run(str(tmp_path / 'out'), archive_path=str(archive))
  assert os.listdir(tmp_path / 'out') == []


def test_cifar10_official_checksum_demands_official_sizes(tmp_path,
                                                          monkeypatch):
  # An archive with the official checksum but other split sizes means the
  # converter misread it: that is an error, not a warning.
  archive = tmp_path / 'cifar-10-python.tar.gz'
  make_cifar_archive(archive, per_batch=2)
  monkeypatch.setitem(download.KNOWN_SHA256, 'cifar-10-python.tar.gz',
                      hashlib.sha256(archive.read_bytes()).hexdigest())
  with pytest.raises(download.CorruptArchiveError, match='50000'):
    cifar10.run(str(tmp_path / 'out'), archive_path=str(archive))
  assert os.listdir(tmp_path / 'out') == []


# ---------------------------------------------------------------- mnist


def test_mnist_converts_to_exact_pixels(tmp_path):
  src = tmp_path / 'src'
  source = make_mnist_files(str(src))
  listing = sorted(os.listdir(src))
  out = tmp_path / 'out'
  mnist.run(str(out), archive_path=str(src), url=UNREACHABLE)
  assert sorted(os.listdir(out)) == [
      'labels.txt', 'mnist_test.tfrecord', 'mnist_train.tfrecord']
  for split_name, count in (('train', 30), ('test', 12)):
    images, labels, keys = decode_split('mnist', split_name, str(out))
    assert keys == SCHEMA_KEYS
    assert images.shape == (count, 28, 28, 1)
    np.testing.assert_array_equal(images, source[split_name][0])
    np.testing.assert_array_equal(labels, source[split_name][1])
  assert (out / 'labels.txt').read_text().splitlines()[6] == '6:six'
  assert sorted(os.listdir(src)) == listing  # The user's files are kept.
  assert mnist.run(str(out), archive_path=str(src)) == []


def test_mnist_files_in_dataset_dir_are_used_offline(tmp_path):
  out = tmp_path / 'out'
  source = make_mnist_files(str(out), sizes=(('train', 3), ('test', 2)))
  mnist.run(str(out), url=UNREACHABLE)
  images, _, _ = decode_split('mnist', 'test', str(out))
  np.testing.assert_array_equal(images, source['test'][0])


def test_mnist_download_over_loopback(http_server, tmp_path):
  files, base = http_server
  src = tmp_path / 'src'
  source = make_mnist_files(str(src), sizes=(('train', 3), ('test', 2)))
  checksums = {}
  for name in os.listdir(src):
    files[f'/mnist/{name}'] = (src / name).read_bytes()
    checksums[name] = hashlib.sha256(files[f'/mnist/{name}']).hexdigest()
  out = tmp_path / 'out'
  mnist.run(str(out), url=f'{base}/mnist/', sha256=checksums, progress=False)
  assert sorted(os.listdir(out)) == [
      'labels.txt', 'mnist_test.tfrecord', 'mnist_train.tfrecord']
  images, labels, _ = decode_split('mnist', 'train', str(out))
  np.testing.assert_array_equal(images, source['train'][0])
  np.testing.assert_array_equal(labels, source['train'][1])


def test_mnist_bad_magic_and_truncation_leave_no_output(tmp_path):
  src = tmp_path / 'src'
  make_mnist_files(str(src), images_magic=2049)
  out = tmp_path / 'out'
  with pytest.raises(download.CorruptArchiveError, match='2051'):
    mnist.run(str(out), archive_path=str(src))
  assert os.listdir(out) == []

  make_mnist_files(str(src))
  path = src / mnist.SPLIT_FILES['test'][0]
  path.write_bytes(path.read_bytes()[:-40])
  with pytest.raises(download.CorruptArchiveError, match='t10k-images'):
    mnist.run(str(out), archive_path=str(src))
  assert os.listdir(out) == []


# ---------------------------------------------------------------- digits


def test_digits_data_is_small_and_complete():
  assert os.path.getsize(digits.DATA_PATH) < 1_000_000
  splits = digits.load()
  assert {s: len(v[1]) for s, v in splits.items()} == digits.SPLITS_TO_SIZES
  assert sum(digits.SPLITS_TO_SIZES.values()) == 1797
  for images, labels in splits.values():
    assert images.dtype == np.uint8 and images.max() == 16
    assert set(labels.tolist()) == set(range(10))


def test_digits_layout_matches_tf_bilinear_resize():
  images = digits.load()['test'][0][:16]
  ours = digits.to_mnist_layout(images)
  scaled = images[..., None].astype(np.float32) * (255.0 / 16)
  theirs = tf.image.resize(scaled, (20, 20), method='bilinear').numpy()
  assert ours.shape == (16, 28, 28, 1)
  np.testing.assert_allclose(ours[:, 4:24, 4:24].astype(np.float32),
                             np.round(theirs), atol=1)
  border = np.ones((28, 28), bool)
  border[4:24, 4:24] = False
  assert not ours[:, border].any()


def test_digits_through_the_script_without_network(tmp_path):
  out = tmp_path / 'digits'
  # Any network use would go to a dead proxy and fail.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')
  result = script_runner.run(
      [sys.executable, os.path.join(REPO, 'download_and_convert_data.py'),
       '--dataset_name=digits', f'--dataset_dir={out}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(out)) == [
      'digits_test.tfrecord', 'digits_train.tfrecord', 'labels.txt']
  source = digits.load()
  for split_name, size in digits.SPLITS_TO_SIZES.items():
    images, labels, keys = decode_split('digits', split_name, str(out))
    assert keys == SCHEMA_KEYS
    assert images.shape == (size, 28, 28, 1)
    np.testing.assert_array_equal(
        images, digits.to_mnist_layout(source[split_name][0]))
    np.testing.assert_array_equal(labels, source[split_name][1])
  split = dataset_factory.get_split('digits', 'train', str(out))
  assert split.labels_to_names == dict(enumerate(digits.CLASS_NAMES))
  assert split.channels == 1


# ---------------------------------------------------------------- the script


def _script(*args):
  return script_runner.run(
      [sys.executable, os.path.join(REPO, 'download_and_convert_data.py'),
       *args], cwd=REPO, capture_output=True, text=True, timeout=300,
      check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))


def test_script_bad_flags_exit_2_naming_the_flag(tmp_path):
  result = _script('--dataset_name=cifar', f'--dataset_dir={tmp_path}')
  assert result.returncode == 2
  assert '--dataset_name' in result.stderr and 'cifar10' in result.stderr
  assert 'mnist' in result.stderr and 'digits' in result.stderr
  result = _script('--dataset_name=mnist')
  assert result.returncode == 2 and '--dataset_dir' in result.stderr
  result = _script(f'--dataset_dir={tmp_path}')
  assert result.returncode == 2 and '--dataset_name' in result.stderr
  result = _script('--dataset_name=mnist', f'--dataset_dir={tmp_path}',
                   '--num_shardz=3')
  assert result.returncode == 2 and 'num_shardz' in result.stderr
  assert os.listdir(tmp_path) == []


def test_script_corrupt_archive_exits_1_with_message(tmp_path):
  junk = tmp_path / 'cifar-10-python.tar.gz'
  junk.write_bytes(b'\x1f\x8b' + b'junk' * 100)
  result = _script('--dataset_name=cifar10', f'--dataset_dir={tmp_path}/out',
                   f'--archive_path={junk}')
  assert result.returncode == 1
  assert 'cifar-10-python.tar.gz' in result.stderr
  assert 'Traceback' not in result.stderr
  assert os.listdir(tmp_path / 'out') == []


# ---------------------------------------------------------------- factory


@pytest.mark.parametrize('name, sizes, num_classes, channels', [
    ('cifar10', {'train': 50000, 'test': 10000}, 10, 3),
    ('mnist', {'train': 60000, 'test': 10000}, 10, 1),
    ('flowers', {'train': 3320, 'validation': 350}, 5, 3),
    ('imagenet', {'train': 1281167, 'validation': 50000}, 1001, 3),
    ('digits', {'train': 1437, 'test': 360}, 10, 1),
])
def test_factory_describes_every_dataset(tmp_path, name, sizes, num_classes,
                                         channels):
  for split_name, size in sizes.items():
    split = dataset_factory.get_split(name, split_name, str(tmp_path))
    assert split.dataset_name == name and split.split_name == split_name
    assert split.num_samples == size
    assert split.num_classes == num_classes
    assert split.channels == channels
    assert split.has_bboxes == (name == 'imagenet')
    assert split.file_pattern.startswith(str(tmp_path))
    assert split.labels_to_names is None
  with pytest.raises(ValueError) as e:
    dataset_factory.get_split(name, 'bogus', str(tmp_path))
  assert 'bogus' in str(e.value)
  assert all(s in str(e.value) for s in sizes)


def test_factory_file_names_are_tf_slims(tmp_path):
  d = str(tmp_path)

  def pattern(*args):
    return os.path.relpath(dataset_factory.get_split(*args, d).file_pattern, d)

  assert pattern('cifar10', 'train') == 'cifar10_train.tfrecord'
  assert pattern('mnist', 'test') == 'mnist_test.tfrecord'
  assert pattern('digits', 'train') == 'digits_train.tfrecord'
  assert pattern('flowers', 'validation') == 'flowers_validation_*.tfrecord'
  assert pattern('imagenet', 'train') == 'train-*'
  custom = dataset_factory.get_split('cifar10', 'train', d,
                                     file_pattern='mine_%s-*.rec')
  assert custom.file_pattern == os.path.join(d, 'mine_train-*.rec')


def test_factory_errors_name_what_is_valid(tmp_path):
  assert set(dataset_factory.list_datasets()) >= {
      'cifar10', 'mnist', 'flowers', 'imagenet', 'digits'}
  with pytest.raises(ValueError) as e:
    dataset_factory.get_split('cifar', 'train', str(tmp_path))
  assert 'cifar10' in str(e.value) and 'imagenet' in str(e.value)
  with pytest.raises(ValueError, match='dataset_dir'):
    dataset_factory.get_split('mnist', 'train', None)
  with pytest.raises(FileNotFoundError, match='download_and_convert_data'):
    dataset_factory.get_split('mnist', 'train', str(tmp_path / 'missing'))
  split = dataset_factory.get_split('mnist', 'train', str(tmp_path))
  with pytest.raises(FileNotFoundError, match='mnist_train.tfrecord'):
    split.files()


def test_factory_reads_labels_file(tmp_path):
  dataset_utils.write_label_file({0: 'daisy', 1: 'dandelion', 2: 'a:b, c'},
                                 str(tmp_path))
  split = dataset_factory.get_split('flowers', 'train', str(tmp_path))
  assert split.labels_to_names == {0: 'daisy', 1: 'dandelion', 2: 'a:b, c'}
  (tmp_path / 'labels.txt').write_text('0:x\nnot a label line\n')
  with pytest.raises(ValueError, match='labels.txt:2'):
    dataset_factory.get_split('flowers', 'train', str(tmp_path))


# ---------------------------------------------------------------- utils


def test_atomic_output_removes_temporary_on_failure(tmp_path):
  path = tmp_path / 'out.tfrecord'
  path.write_bytes(b'previous')
  with pytest.raises(RuntimeError):
    with dataset_utils.atomic_output(str(path)) as tmp:
      with open(tmp, 'wb') as f:
        f.write(b'partial')
      raise RuntimeError('killed')
  assert os.listdir(tmp_path) == ['out.tfrecord']
  assert path.read_bytes() == b'previous'
  with dataset_utils.atomic_output(str(path)) as tmp:
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith('.out.tfrecord.tmp-')
    with open(tmp, 'wb') as f:
      f.write(b'new')
  assert path.read_bytes() == b'new'
  assert os.listdir(tmp_path) == ['out.tfrecord']


def test_atomic_output_keeps_temporaries_of_live_writers(tmp_path):
  path = tmp_path / 'x.tfrecord'
  live = tmp_path / f'.x.tfrecord.tmp-{os.getpid()}-00000000'
  dead = tmp_path / '.x.tfrecord.tmp-999999999-00000000'
  live.write_bytes(b'')
  dead.write_bytes(b'')
  assert dataset_utils.remove_stale_temporaries(str(path)) == [str(dead)]
  assert live.exists()


def test_image_to_tfexample_schema():
  example = dataset_utils.image_to_tfexample(b'\x89PNG', b'png', 3, 4, 7)
  feature = example.features.feature
  assert set(feature) == SCHEMA_KEYS
  assert feature['image/encoded'].bytes_list.value == [b'\x89PNG']
  assert feature['image/format'].bytes_list.value == [b'png']
  assert feature['image/class/label'].int64_list.value == [7]
  assert feature['image/height'].int64_list.value == [3]
  assert feature['image/width'].int64_list.value == [4]
  boxes = dataset_utils.float_feature(np.array([0.25, 0.5]))
  assert list(boxes.float_list.value) == [0.25, 0.5]
