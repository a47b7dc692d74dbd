"""Performance modes: synthetic input, mixed precision, XLA flag."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import synthetic
from slimkit.deployment import model_deploy
from slimkit.training import optimization
from slimkit.training import precision
from slimkit.training import trainer
from slimkit.nets import nets_factory
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10


def test_synthetic_split_yields_one_fixed_batch_of_the_nets_size():
  assert 'synthetic' in dataset_factory.list_datasets()
  split = dataset_factory.get_split('synthetic', 'train', None)
  assert synthetic.is_synthetic(split) and split.files() == []
  assert split.num_classes == synthetic.NUM_CLASSES
  split = synthetic.get_split('train', num_classes=NUM_CLASSES)
  batches = list(split.make_dataset(batch_size=2, image_size=(32, 24))
                 .take(3))
  images, labels = batches[0]
  assert images.dtype == tf.float32 and images.shape == (2, 32, 24, 3)
  assert labels.dtype == tf.int64 and labels.shape == (2,)
  assert -1.0 <= float(tf.reduce_min(images)) < float(
      tf.reduce_max(images)) <= 1.0
  assert all(0 <= int(l) < NUM_CLASSES for l in labels)
  # Cached: every batch is the same tensor, no input work per step.
  for other_images, other_labels in batches[1:]:
    np.testing.assert_array_equal(other_images, images)
    np.testing.assert_array_equal(other_labels, labels)


def test_synthetic_split_refuses_bad_names():
  with pytest.raises(ValueError, match="'val'.*test, train, validation"):
    synthetic.get_split('val')
  with pytest.raises(ValueError, match='num_classes'):
    synthetic.get_split('train', num_classes=0)


def test_policy_scope_builds_a_mixed_net_with_float32_variables():
  with precision.policy_scope('mixed_bfloat16'):
    # A net with batch norm: its statistics must stay float32.
    net = nets_factory.get_network_fn('mobilenet_v1_025', NUM_CLASSES,
                                      is_training=True)
  assert keras.mixed_precision.global_policy().name == 'float32'
  logits, end_points = net(tf.random.uniform([2, 32, 32, 3]), training=True)
  assert end_points['Conv2d_0'].dtype == tf.bfloat16
  assert logits.dtype == tf.bfloat16
  assert {v.dtype for v in net.weights} == {'float32'}
  loss = trainer.classification_loss(logits, tf.constant([1, 2]))
  assert loss.dtype == tf.float32 and np.isfinite(float(loss))
  with pytest.raises(ValueError, match='float8.*mixed_bfloat16'):
    precision.check_precision('float8')


def _train(train_dir, precision_name, steps, **options):
  split = synthetic.get_split('train', num_classes=NUM_CLASSES)
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn(
          'lenet', NUM_CLASSES, weight_decay=0.00004, is_training=True),
      dataset_fn=lambda ctx: split.make_dataset(
          batch_size=4, image_size=28, channels=1, input_context=ctx),
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(
          train_dir=str(train_dir), batch_size=4, max_number_of_steps=steps,
          log_every_n_steps=1, save_summaries_secs=10 ** 6,
          precision=precision_name, **options))


def _checkpoint(path):
  reader = tf.train.load_checkpoint(path)
  return {key: reader.get_tensor(key)
          for key, _ in tf.train.list_variables(path)}


MIXED = ('mixed_bfloat16', 'mixed_float16')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Trains lenet on one synthetic batch in each mixed precision.

  (float32 training is covered by test_train_eval; here it resumes and
  initialises from the mixed runs.)
  """
  results = {}
  for name in MIXED:
    train_dir = tmp_path_factory.mktemp(name)
    first = _train(train_dir, name, 1)
    last = _train(train_dir, name, 12)
    results[name] = dict(dir=train_dir, first=first, last=last)
  return results


@pytest.mark.parametrize('name', MIXED)
def test_every_precision_trains_and_saves_float32(runs, name):
  run = runs[name]
  assert run['last'].global_step == 12
  # One fixed batch: the loss falls in every precision.
  assert run['last'].loss < run['first'].loss
  values = _checkpoint(run['last'].checkpoint)
  weights = {k: v for k, v in values.items()
             if k.startswith('model_variables/')}
  assert weights and all(v.dtype == np.float32 for v in weights.values())
  assert all(np.isfinite(v).all() for v in weights.values())
  # Every weight moved (float16 steps are not all skipped by the loss scale).
  before = _checkpoint(run['first'].checkpoint)
  for key, value in weights.items():
    assert not np.allclose(value, before[key]), key


def test_checkpoints_have_one_layout_in_every_precision(runs, tmp_path):
  # A mixed-precision checkpoint resumes in float32 and initialises a fresh
  # float32 run by name.
  resumed = _train(runs['mixed_bfloat16']['dir'], 'float32', 13)
  assert resumed.global_step == 13
  layouts = {name: sorted(_checkpoint(run['last'].checkpoint))
             for name, run in runs.items()}
  layouts['float32'] = sorted(_checkpoint(resumed.checkpoint))
  assert layouts['mixed_bfloat16'] == layouts['float32']
  assert layouts['mixed_float16'] == layouts['float32']
  fresh = _train(tmp_path, 'float32', 1,
                 checkpoint_path=runs['mixed_float16']['last'].checkpoint)
  assert fresh.global_step == 1


def _script(*flags):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run(
      [sys.executable, os.path.join(ROOT, 'train_image_classifier.py'),
       '--model_name=lenet', '--batch_size=2', *flags],
      capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_script_trains_on_synthetic_input_with_xla_and_bfloat16(tmp_path):
  done = _script(f'--train_dir={tmp_path}', '--dataset_name=synthetic',
                 f'--num_classes={NUM_CLASSES}', '--max_number_of_steps=2',
                 '--xla', '--precision=mixed_bfloat16', '--log_every_n_steps=1')
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'global step 2:' in done.stderr
  values = _checkpoint(str(tmp_path / 'model.ckpt-2'))
  assert values['model_variables/LeNet.Sfc4.Sbiases/.ATTRIBUTES/'
                'VARIABLE_VALUE'].shape == (NUM_CLASSES,)


def test_script_refuses_bad_performance_flags(tmp_path):
  done = _script(f'--train_dir={tmp_path}', '--dataset_name=cifar10',
                 f'--dataset_dir={tmp_path}', '--num_classes=3')
  assert done.returncode == 2 and 'synthetic' in done.stderr
  assert not os.path.exists(tmp_path / 'flags.txt')
