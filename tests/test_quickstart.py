"""The README's first command: the digits job, offline, end to end."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quickstart(work_dir, seed=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  if seed is not None:
    env['QUICKSTART_SEED'] = str(seed)
  result = subprocess.run(
      ['bash', os.path.join(ROOT, 'quickstart.sh'), str(work_dir)], env=env,
      cwd=str(work_dir), capture_output=True, text=True, timeout=900,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  found = re.search(r'eval/Accuracy\[([\d.]+)\].*\((\d+) examples\)',
                    result.stdout)
  assert found, result.stdout[-2000:]
  assert int(found.group(2)) == 360  # the whole digits test split
  return result, float(found.group(1))


def test_quickstart_reaches_95_percent_on_the_digits_test_split(tmp_path):
  result, accuracy = _quickstart(tmp_path)
  assert accuracy >= 0.95
  assert 'seed 0' in result.stdout
  with open(tmp_path / 'train' / 'flags.txt') as f:
    assert '--random_seed=0\n' in f.read()
  assert f'tensorboard --logdir {tmp_path}' in result.stdout
  assert os.path.exists(tmp_path / 'train' / 'model.ckpt-800.index')
  assert any(name.startswith('events.out.tfevents')
             for name in os.listdir(tmp_path / 'eval'))


@pytest.mark.slow
@pytest.mark.parametrize('seed', range(1, 11))
def test_quickstart_reaches_95_percent_for_every_seed(tmp_path, seed):
  _, accuracy = _quickstart(tmp_path, seed)
  assert accuracy >= 0.95, seed
