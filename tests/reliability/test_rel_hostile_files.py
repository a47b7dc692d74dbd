"""Hostile files are refused end to end, and nothing lands outside dataset_dir.

`download_and_convert_data.py` runs in a subprocess on archives built here:
tar members with `../` and absolute paths, a symlink member pointing outside,
a pickle that would run a command; and the custom converter meets a
decompression-bomb PNG among real photos.
"""

import io
import os
import pickle
import sys
import tarfile

import numpy as np
import pytest

from tests.reliability import rel_common


class _Exploit:
  """Unpickling this would run `touch <marker>` (os.system)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def _add(tar, name, data=b'x', **fields):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  for key, value in fields.items():
    setattr(info, key, value)
  tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def _cifar_like(tar, first_batch=None):
  """CIFAR-10's member layout with tiny batches (and one replaced)."""
  rng = np.random.RandomState(0)
  names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
  for name in names:
    batch = {b'data': rng.randint(0, 255, (2, 3072)).astype(np.uint8),
             b'labels': [0, 1]}
    data = pickle.dumps(batch)
    if name == 'data_batch_1' and first_batch is not None:
      data = first_batch
    _add(tar, f'cifar-10-batches-py/{name}', data)


def _archive(path, build):
  with tarfile.open(path, 'w:gz') as tar:
    build(tar)
  return str(path)


@pytest.fixture()
def sandbox(tmp_path):
  """(root, dataset_dir): everything but dataset_dir must stay unchanged."""
  root = tmp_path / 'root'
  (root / 'inputs').mkdir(parents=True)
  return root, root / 'out' / 'dataset'


def _convert(root, dataset_dir, *flags):
  before = rel_common.tree(root)
  proc = rel_common.run([sys.executable, rel_common.CONVERT,
                         f'--dataset_dir={dataset_dir}', *flags])
  after = rel_common.tree(root)
  inside = os.path.relpath(dataset_dir, root)
  outside = {p for p in after - before
             if not (p == inside or p.startswith(inside + os.sep) or
                     inside.startswith(p + os.sep))}
  assert not outside, f'written outside dataset_dir: {sorted(outside)}'
  return proc


@pytest.mark.parametrize('case', ['dotdot', 'absolute', 'symlink'])
def test_tar_members_escaping_dataset_dir_are_refused(sandbox, tmp_path,
                                                      case):
  root, dataset_dir = sandbox
  escape = root / 'escaped.txt'

  def build(tar):
    if case == 'dotdot':
      _add(tar, '../../../escaped.txt', b'pwned')
    elif case == 'absolute':
      _add(tar, str(escape), b'pwned')
    else:
      _add(tar, 'cifar-10-batches-py/data_batch_1', type=tarfile.SYMTYPE,
           linkname=str(root / 'inputs'))
    _cifar_like(tar)

  archive = _archive(root / 'inputs' / f'{case}.tar.gz', build)
  proc = _convert(root, dataset_dir, '--dataset_name=cifar10',
                  f'--archive_path={archive}')
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert 'error:' in proc.stderr and 'refusing' in proc.stderr.lower() or (
      'outside' in proc.stderr), proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not escape.exists()
  assert not list(dataset_dir.glob('*.tfrecord'))


def test_a_pickle_that_would_run_code_is_refused(sandbox):
  root, dataset_dir = sandbox
  marker = root / 'code_ran'
  evil = pickle.dumps(_Exploit(str(marker)))
  archive = _archive(root / 'inputs' / 'evil.tar.gz',
                     lambda tar: _cifar_like(tar, first_batch=evil))
  proc = _convert(root, dataset_dir, '--dataset_name=cifar10',
                  f'--archive_path={archive}')
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert 'data_batch_1' in proc.stderr and 'system' in proc.stderr, (
      proc.stderr[-2000:])
  assert 'Traceback' not in proc.stderr
  assert not marker.exists()
  assert not list(dataset_dir.glob('*.tfrecord'))


def test_a_decompression_bomb_image_is_refused_by_name(sandbox):
  root, dataset_dir = sandbox
  from PIL import Image
  photos = root / 'inputs' / 'photos'
  for k, name in enumerate(['cats', 'dogs']):
    (photos / name).mkdir(parents=True)
    for j in range(3):
      pixels = np.full((24, 32, 3), 40 * (k * 3 + j), np.uint8)
      Image.fromarray(pixels).save(photos / name / f'{j}.png')
  bomb = photos / 'cats' / 'bomb.png'
  bomb.write_bytes(rel_common.png_bomb())
  _convert(root, dataset_dir, '--dataset_name=custom',
           f'--images_dir={photos}', '--num_workers=1',
           '--validation_fraction=0')
  skipped = (dataset_dir / 'skipped_files.txt').read_text()
  assert str(bomb) in skipped and 'decompression bomb' in skipped, skipped
  # The six real photos were converted; the bomb was not.
  import tensorflow as tf
  records = [r for f in dataset_dir.glob('train-*.tfrecord')
             for r in tf.data.TFRecordDataset(str(f))]
  assert len(records) == 6
