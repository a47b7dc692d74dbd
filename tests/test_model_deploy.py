"""DeploymentConfig validation and the multi-clone train step's arithmetic."""

import dataclasses
import json
import os
import sys
import textwrap

import pytest

from slimkit.deployment import model_deploy
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_tf_slims():
  config = model_deploy.DeploymentConfig()
  assert (config.num_clones, config.clone_on_cpu, config.replica_id,
          config.num_replicas, config.num_ps_tasks) == (1, False, 0, 1, 0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.num_clones = 2


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_clones=0), 'num_clones must be an integer >= 1, got 0'),
    (dict(num_replicas=0), 'num_replicas must be'),
    (dict(replica_id=1), r'replica_id \(--task\) must be in'),
    (dict(num_ps_tasks=-1), 'num_ps_tasks must be >= 0'),
    (dict(num_replicas=2), 'need a cluster'),
    (dict(num_ps_tasks=1), 'need a cluster'),
])
def test_invalid_or_not_yet_supported_configs_are_refused(kwargs, message):
  with pytest.raises(model_deploy.DeploymentError, match=message):
    model_deploy.DeploymentConfig(**kwargs)


def test_devices_of_the_clones():
  assert model_deploy.DeploymentConfig(
      num_clones=3, clone_on_cpu=True).clone_devices == [
          '/cpu:0', '/cpu:1', '/cpu:2']


def test_more_clones_than_gpus_is_refused():
  if model_deploy._gpus():
    pytest.skip('this machine has GPUs')
  config = model_deploy.DeploymentConfig(num_clones=64)
  with pytest.raises(model_deploy.DeploymentError,
                     match='--num_clones=64 needs 64 GPUs, found 0.*'
                     'clone_on_cpu'):
    config.strategy()


def test_one_clone_is_one_device():
  import tensorflow as tf
  strategy = model_deploy.DeploymentConfig().strategy()
  assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
  assert strategy.num_replicas_in_sync == 1


# Runs in a fresh process: the CPU must be split into two logical devices
# before TensorFlow starts, which this pytest process may have done already.
_EQUIVALENCE = textwrap.dedent(r'''
  import json, sys
  import numpy as np
  import tensorflow as tf
  from slimkit.deployment import model_deploy
  from slimkit import checkpoints
  from slimkit.training import optimization, trainer
  from slimkit.nets import nets_factory

  b = 4
  two = model_deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
  model_deploy.configure_logical_devices(two)
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, size=(3, 2 * b, 28, 28, 1)).astype(np.float32)
  labels = rng.randint(0, 10, size=(3, 2 * b)).astype(np.int64)

  def dataset_fn(clones):
    def fn(ctx):
      del ctx  # One worker: one pipeline, its batches to the clones in turn.
      # With two clones, each global batch of 2b is cut into halves that
      # follow each other: clone 0 gets the first half, clone 1 the second.
      return tf.data.Dataset.from_tensor_slices((
          images.reshape((-1, 2 * b // clones) + images.shape[2:]),
          labels.reshape((-1, 2 * b // clones))))
    return fn

  def run(strategy, clones, train_dir):
    tf.keras.utils.set_random_seed(1)
    trainer.train(
        strategy=strategy,
        # No batch norm; no dropout, so both runs compute the same function.
        network_fn=lambda: nets_factory.get_network_fn(
            'lenet', 10, weight_decay=0.01, is_training=True,
            dropout_keep_prob=1.0),
        dataset_fn=dataset_fn(clones),
        optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
        learning_rate=0.01,
        options=trainer.TrainOptions(train_dir=train_dir, batch_size=
                                     2 * b // clones, max_number_of_steps=3,
                                     save_summaries_secs=10 ** 6))
    reader = tf.train.load_checkpoint(train_dir)
    names = checkpoints.named_values(tf.train.latest_checkpoint(train_dir))
    return {n: reader.get_tensor(k) for n, k in names.items()}

  one = run(model_deploy.DeploymentConfig().strategy(), 1, sys.argv[1] + '/one')
  strategy = two.strategy()
  assert strategy.num_replicas_in_sync == 2, strategy
  mirrored = run(strategy, 2, sys.argv[1] + '/two')
  init = {}
  tf.keras.utils.set_random_seed(1)
  net = nets_factory.get_network_fn('lenet', 10, dropout_keep_prob=1.0)
  net(tf.zeros([1, 28, 28, 1]))
  moved = max(float(np.abs(one[v.path] - v.numpy()).max()) for v in net.weights)
  diff = max(float(np.abs(one[n] - mirrored[n]).max()) for n in one)
  scale = max(float(np.abs(one[n]).max()) for n in one)
  print(json.dumps(dict(diff=diff, moved=moved, scale=scale,
                        names=sorted(one))))
''')


def test_two_clones_of_b_update_as_one_clone_of_2b(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(
      [sys.executable, '-c', _EQUIVALENCE, str(tmp_path)], env=env, cwd=ROOT,
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert len(report['names']) == 8
  # Training moved the weights, and both deployments moved them the same way
  # up to float summation order.
  assert report['moved'] > 1e-3
  assert report["diff"] <= 1e-4 * report["moved"]
