"""The README's first command: the digits job, offline, end to end."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_reaches_95_percent_on_the_digits_test_split(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(
      ['bash', os.path.join(ROOT, 'quickstart.sh'), str(tmp_path)], env=env,
      cwd=str(tmp_path), capture_output=True, text=True, timeout=900,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  found = re.search(r'eval/Accuracy\[([\d.]+)\].*\((\d+) examples\)',
                    result.stdout)
  assert found, result.stdout[-2000:]
  accuracy, examples = float(found.group(1)), int(found.group(2))
  assert examples == 360  # the whole digits test split
  assert accuracy >= 0.95
  assert f'tensorboard --logdir {tmp_path}' in result.stdout
  assert os.path.exists(tmp_path / 'train' / 'model.ckpt-800.index')
  assert any(name.startswith('events.out.tfevents')
             for name in os.listdir(tmp_path / 'eval'))
