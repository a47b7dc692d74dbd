"""The scripts on a TF-Slim (TF 1, name-based) checkpoint, end to end.

Fine-tuning: `train_image_classifier.py --checkpoint_path=<TF-Slim ckpt>`
restores by name, leaves the excluded scope at its initial values and trains
only `--trainable_scopes`. Evaluation: `eval_image_classifier.py` reads the
same checkpoint directly, and its `ExponentialMovingAverage` shadows with
`--moving_average_decay`.
"""

import os
import sys

import numpy as np
import tensorflow as tf

from tests import script_runner
from tests import tiny_records
from tests.tf1_checkpoints import build, random_values, write_tf1_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
  result = script_runner.run(
      [sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout + result.stderr


def test_fine_tune_and_evaluate_a_tf_slim_checkpoint(tmp_path):
  data = tiny_records.write_dataset(tmp_path / 'mnist', 'mnist',
                                    {'train': 32, 'test': 16})
  values = random_values(build('lenet', channels=1), seed=3)
  shadows = {f'{n}/ExponentialMovingAverage': v * 0.5
             for n, v in values.items()}
  tf_slim_ckpt = write_tf1_checkpoint(tmp_path / 'lenet.ckpt',
                                      {**values, **shadows})
  common = ['--dataset_name=mnist', f'--dataset_dir={data}',
            '--model_name=lenet', '--batch_size=8']

  train_dir = tmp_path / 'train'
  log = _run('train_image_classifier.py', *common,
             f'--train_dir={train_dir}', f'--checkpoint_path={tf_slim_ckpt}',
             '--checkpoint_exclude_scopes=LeNet/fc4',
             '--trainable_scopes=LeNet/fc4', '--optimizer=sgd',
             '--learning_rate=0.1', '--max_number_of_steps=3',
             '--weight_decay=0')

  assert 'Restored 6 variables' in log and 'excluded 2' in log, log[-2000:]
  ours = build('lenet', channels=1)
  from slimkit import checkpoints
  checkpoints.restore(ours, str(train_dir))
  trained = ours.slim_variables()
  # Restored and frozen: exactly TF-Slim's values after 3 steps.
  for name in ('LeNet/conv1/weights', 'LeNet/conv2/biases',
               'LeNet/fc3/weights'):
    np.testing.assert_array_equal(trained[name].numpy(), values[name], name)
  # Excluded: not TF-Slim's values (fresh initialisation, then trained).
  assert not np.allclose(trained['LeNet/fc4/weights'].numpy(),
                         values['LeNet/fc4/weights'])

  log = _run('eval_image_classifier.py', *common, '--dataset_split_name=test',
             f'--checkpoint_path={tf_slim_ckpt}', f'--eval_dir={tmp_path}/ev',
             '--moving_average_decay=0.9999')
  assert '8 of them from their moving averages' in log, log[-2000:]
  assert 'Accuracy' in log
  assert tf.io.gfile.glob(str(tmp_path / 'ev' / 'events.out.tfevents.*'))
