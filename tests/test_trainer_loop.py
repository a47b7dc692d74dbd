"""The one training loop with parameter servers, as processes on 127.0.0.1.

The features of the synchronous loop (precision, moving averages, summaries,
validation, the loss watch, resuming from an older readable checkpoint, the
SIGTERM checkpoint) work with a ParameterServerStrategy coordinator too;
`--xla` is refused before anything is written. Every process is started and
ended here and waited for with a timeout (see test_distributed.py).
"""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests import local_cluster as dist
from tests import tiny_records

# The coordinator, in this file's own wiring: trains to argv[3] steps with
# the features on, then prints the result.
_COORDINATOR = textwrap.dedent(r'''
  import json, sys
  from absl import logging
  import tensorflow as tf
  from slimkit.datasets import dataset_factory, input_pipeline
  from slimkit.deployment import cluster as cluster_lib
  from slimkit.deployment import model_deploy
  from slimkit.training import optimization, trainer
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory

  dataset_dir, train_dir, steps, precision, workers, ps = sys.argv[1:7]
  logging.set_verbosity(logging.INFO)
  cluster = cluster_lib.resolve(worker_hosts=workers, ps_hosts=ps,
                                job_name='chief', environ={})
  strategy = model_deploy.make_strategy(model_deploy.DeploymentConfig(
      num_replicas=cluster.num_workers, num_ps_tasks=cluster.num_ps,
      cluster=cluster))
  split = dataset_factory.get_split('cifar10', 'train', dataset_dir)
  preprocess = preprocessing_factory.get_preprocessing('cifarnet', False)
  make = lambda ctx=None, **_: input_pipeline.make_dataset(
      split, preprocess, batch_size=8, is_training=ctx is not None,
      image_size=32, input_context=ctx)
  result = trainer.train(
      strategy=strategy,
      network_fn=lambda: nets_factory.get_network_fn('cifarnet', 10,
                                                     is_training=True),
      dataset_fn=make,
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.02,
      validation_dataset_fn=make,
      options=trainer.TrainOptions(
          train_dir=train_dir, batch_size=8,
          max_number_of_steps=int(steps) or None, log_every_n_steps=2,
          save_interval_secs=0, save_summaries_secs=0,
          moving_average_decay=0.9, eval_every_n_steps=3,
          precision=precision, random_seed=5))
  print('RESULT', json.dumps(dict(step=result.global_step, loss=result.loss,
        checkpoint=result.checkpoint,
        validated=[s for s, _ in result.validation])))
''')


def _result(log):
  lines = [l for l in log.splitlines() if l.startswith('RESULT ')]
  assert lines, log[-3000:]
  return json.loads(lines[-1][len('RESULT '):])


def _cluster(procs, ports):
  """Starts a parameter server and two workers; returns hosts and cluster."""
  workers = [f'127.0.0.1:{p}' for p in ports[:2]]
  hosts = [f'--worker_hosts={",".join(workers)}',
           f'--ps_hosts=127.0.0.1:{ports[2]}']
  procs.start('ps0', [sys.executable, dist.SCRIPT, '--job_name=ps',
                      '--task=0', *hosts], dist.env())
  for task in (0, 1):
    procs.start(f'worker{task}', [sys.executable, dist.SCRIPT,
                                  '--job_name=worker', f'--task={task}',
                                  *hosts], dist.env())
  return hosts, (','.join(workers), f'127.0.0.1:{ports[2]}')


def _coordinate(procs, name, cluster, cifar_dir, train_dir, steps,
                precision='float32'):
  return procs.start(name, [sys.executable, '-c', _COORDINATOR, cifar_dir,
                            str(train_dir), str(steps), precision, *cluster],
                     dist.env())


@pytest.fixture(scope='module')
def cifar_dir(tmp_path_factory):
  return tiny_records.write_dataset(
      tmp_path_factory.mktemp('cifar10'), 'cifar10', {'train': 64})


@pytest.mark.slow  # ~100 s: a parameter-server cluster, 3 runs
def test_parameter_servers_get_every_feature_of_the_loop(tmp_path, cifar_dir):
  train_dir = tmp_path / 'train'
  with dist.Processes(tmp_path) as procs:
    hosts, cluster = _cluster(procs, dist.free_ports(3))
    # 1. Mixed precision, EMA, summaries, validation, seeded: 4 steps.
    _coordinate(procs, 'first', cluster, cifar_dir, train_dir, 4,
                'mixed_bfloat16')
    assert procs.wait('first') == 0, procs.log('first')[-3000:]
    first = _result(procs.log('first'))
    assert first['step'] == 4 and first['validated'] == [4], first
    assert 'ema/' in ' '.join(_keys(train_dir / 'model.ckpt-4'))
    tags = _tags(train_dir)
    for tag in ('total_loss', 'losses/regularization_loss', 'learning_rate',
                'images_per_sec'):
      assert tag in tags, tags
    # 2. The newest checkpoint cut short: the run resumes from the one
    # before it (step 2) and trains on to 6, in float16 with loss scaling.
    data = glob.glob(str(train_dir / 'model.ckpt-4.data-*'))[0]
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 2)
    _coordinate(procs, 'second', cluster, cifar_dir, train_dir, 6,
                'mixed_float16')
    assert procs.wait('second') == 0, procs.log('second')[-3000:]
    log = procs.log('second')
    assert 'model.ckpt-4 is unreadable' in log, log[-3000:]
    assert 'Resuming from' in log and 'model.ckpt-2 (global step 2)' in log
    assert _result(log)['step'] == 6
    # 3. SIGTERM: the coordinator stops between groups and saves.
    proc = _coordinate(procs, 'third', cluster, cifar_dir, train_dir, 0)
    _wait_for(procs, 'third', 'global step 10:')
    proc.send_signal(signal.SIGTERM)
    assert procs.wait('third') == 0, procs.log('third')[-3000:]
    third = _result(procs.log('third'))
    assert 'Stopped by SIGTERM' in procs.log('third')
    assert third['step'] >= 10 and third['step'] % 2 == 0, third
    assert os.path.exists(f'{third["checkpoint"]}.index'), third
    assert third['checkpoint'].endswith(f'model.ckpt-{third["step"]}')
    # 4. --xla is refused before anything is written.
    refused = subprocess.run(
        dist.script_args(tmp_path / 'xla', cifar_dir, '--job_name=chief',
                          *hosts, '--num_ps_tasks=1', '--worker_replicas=2',
                          '--xla'),
        env=dist.env(), cwd=dist.ROOT, capture_output=True, text=True,
        timeout=dist.TIMEOUT, check=False)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert '--xla with parameter servers' in refused.stderr
    assert not (tmp_path / 'xla').exists()
    for name in ('ps0', 'worker0', 'worker1'):
      assert procs.procs[name][0].poll() is None, procs.log(name)[-2000:]


def _wait_for(procs, name, text):
  """Waits (bounded) until `text` is in the log of process `name`."""
  proc = procs.procs[name][0]
  waited = 0.0
  while text not in procs.log(name):
    if waited > dist.TIMEOUT or proc.poll() is not None:
      pytest.fail(f'{name} did not log {text!r}:\n' + procs.log(name)[-3000:])
    try:
      proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
      waited += 0.5


def _keys(prefix):
  import tensorflow as tf
  return [k for k, _ in tf.train.list_variables(str(prefix))]


def _tags(train_dir):
  import tensorflow as tf
  tags = set()
  for path in glob.glob(str(train_dir / 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


# --- In this process, on one device. ---


def _train_synthetic(train_dir, num_classes, steps):
  import keras
  from slimkit.datasets import dataset_factory
  from slimkit.deployment import model_deploy
  from slimkit.nets import nets_factory
  from slimkit.training import optimization
  from slimkit.training import trainer
  import dataclasses
  keras.utils.set_random_seed(1)
  split = dataclasses.replace(
      dataset_factory.get_split('synthetic', 'train', None),
      num_classes=num_classes)
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', num_classes,
                                                     is_training=True),
      dataset_fn=lambda ctx: split.make_dataset(
          batch_size=2, image_size=28, channels=1, seed=1, input_context=ctx),
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(train_dir=str(train_dir), batch_size=2,
                                   max_number_of_steps=steps,
                                   save_summaries_secs=10 ** 6))


def test_resuming_another_class_count_raises_the_one_mismatch_error(
    tmp_path):
  from slimkit import checkpoints
  assert _train_synthetic(tmp_path, 10, 1).global_step == 1
  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    _train_synthetic(tmp_path, 5, 2)
  assert 'another model or class count' in str(error.value)
  assert 'LeNet/fc4/weights: shape (1024, 5) here, (1024, 10) in the ' \
      'checkpoint' in str(error.value)
  # Nothing was written: the run of 10 classes still ends at step 1.
  assert sorted(os.listdir(tmp_path)).count('model.ckpt-1.index') == 1
  assert not glob.glob(str(tmp_path / 'model.ckpt-2.*'))


def test_no_readable_checkpoint_is_refused(tmp_path):
  assert _train_synthetic(tmp_path, 10, 1).global_step == 1
  for data in glob.glob(str(tmp_path / 'model.ckpt-1.data-*')):
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 2)
  with pytest.raises(ValueError, match='No checkpoint of .* is readable'):
    _train_synthetic(tmp_path, 10, 2)
