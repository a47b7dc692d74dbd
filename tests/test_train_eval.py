"""Training and evaluation end to end on tiny records: library and scripts."""

import glob
import json
import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import input_pipeline
from slimkit import checkpoints
from slimkit import evaluator
from slimkit.deployment import model_deploy
from slimkit.training import optimization
from slimkit.training import trainer
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from tests import script_runner
from tests import seeding
from tests import tiny_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 16


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('mnist'), 'mnist',
                                    {'train': 64, 'test': 40})


def _lenet():
  return nets_factory.get_network_fn('lenet', 10, weight_decay=0.00004,
                                     is_training=True)


def _train(dataset_dir, train_dir, *, optimizer='sgd', learning_rate=0.01,
           **options):
  split = dataset_factory.get_split('mnist', 'train', dataset_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', True)
  return trainer.train(
      strategy=model_deploy.DeploymentConfig().strategy(),
      network_fn=_lenet,
      dataset_fn=lambda ctx: input_pipeline.make_dataset(
          split, preprocess, batch_size=BATCH, is_training=True,
          image_size=28, input_context=ctx, seed=seeding.SEED),
      optimizer_fn=lambda lr: optimization.build_optimizer(optimizer, lr),
      learning_rate=learning_rate,
      options=trainer.TrainOptions(train_dir=str(train_dir), batch_size=BATCH,
                                   save_summaries_secs=10 ** 6, **options))


def _evaluate(dataset_dir, checkpoint, split_name='train', **options):
  split = dataset_factory.get_split('mnist', split_name, dataset_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  return evaluator.evaluate_checkpoint(
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10),
      dataset_fn=lambda: input_pipeline.make_dataset(
          split, preprocess, batch_size=BATCH, is_training=False,
          image_size=28),
      checkpoint_path=str(checkpoint),
      options=evaluator.EvalOptions(**options))


def _checkpoint_values(checkpoint, group='model_variables'):
  reader = tf.train.load_checkpoint(str(checkpoint))
  return {name: reader.get_tensor(key)
          for name, key in checkpoints.named_values(str(checkpoint),
                                                group).items()}


@pytest.fixture(scope='module')
def lenet_run(mnist_dir, tmp_path_factory):
  """Trains lenet 1 step, evaluates, then resumes to step 30."""
  train_dir = tmp_path_factory.mktemp('lenet_train')
  first = _train(mnist_dir, train_dir, max_number_of_steps=1)
  before = _evaluate(mnist_dir, train_dir)
  resumed = _train(mnist_dir, train_dir, max_number_of_steps=30)
  after = _evaluate(mnist_dir, train_dir, eval_dir=str(train_dir / 'eval'))
  return dict(dir=train_dir, first=first, resumed=resumed, before=before,
              after=after)


def test_training_resumes_the_global_step_and_the_loss_falls(lenet_run):
  assert lenet_run['first'].global_step == 1
  assert lenet_run['resumed'].global_step == 30
  names = sorted(os.path.basename(p) for p in
                 glob.glob(str(lenet_run['dir'] / 'model.ckpt-*.index')))
  assert names == ['model.ckpt-1.index', 'model.ckpt-30.index']
  assert lenet_run['before']['global_step'] == 1
  assert lenet_run['after']['global_step'] == 30
  assert lenet_run['after']['loss'] < 0.5 * lenet_run['before']['loss']
  assert lenet_run['after']['Accuracy'] > lenet_run['before']['Accuracy']
  assert lenet_run['after']['Recall_5'] >= lenet_run['after']['Accuracy']


def test_evaluation_counts_every_example_and_writes_summaries(
    lenet_run, mnist_dir):
  metrics = _evaluate(mnist_dir, lenet_run['dir'], 'test')
  assert metrics['num_examples'] == 40
  assert 0.0 <= metrics['Accuracy'] <= metrics['Recall_5'] <= 1.0
  assert _evaluate(mnist_dir, lenet_run['dir'], 'test',
                   max_num_batches=1)['num_examples'] == BATCH
  tags = _event_tags(lenet_run['dir'] / 'eval')
  assert {'eval/Accuracy', 'eval/Recall_5', 'eval/loss'} <= set(tags)
  assert tags['eval/Accuracy'] == [30]


def test_watch_mode_evaluates_the_checkpoints_that_appear(
    lenet_run, mnist_dir):
  split = dataset_factory.get_split('mnist', 'test', mnist_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  results = evaluator.watch(
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10),
      dataset_fn=lambda: input_pipeline.make_dataset(
          split, preprocess, batch_size=BATCH, is_training=False,
          image_size=28),
      checkpoint_dir=str(lenet_run['dir']), eval_interval_secs=0,
      eval_timeout_secs=1)
  assert [r['global_step'] for r in results] == [30]


def test_init_from_checkpoint_trainable_scopes_and_moving_average(
    lenet_run, mnist_dir, tmp_path):
  # The first checkpoint: its gradients are still large.
  source = str(lenet_run['dir'] / 'model.ckpt-1')
  start = _checkpoint_values(source)
  result = _train(mnist_dir, tmp_path, optimizer='sgd', learning_rate=0.1,
                  max_number_of_steps=1, checkpoint_path=source,
                  trainable_scopes=('LeNet/fc4',), moving_average_decay=0.9)
  assert result.global_step == 1  # a fresh run: the step starts at 0
  weights = _checkpoint_values(result.checkpoint)
  averages = _checkpoint_values(result.checkpoint, 'ema')
  assert sorted(averages) == sorted(weights)
  for name in weights:
    if name.startswith('LeNet/fc4/'):
      assert not np.allclose(weights[name], start[name])
    else:
      np.testing.assert_array_equal(weights[name], start[name])
    # One update of TF-Slim's ExponentialMovingAverage(0.9, num_updates=1).
    decay = min(0.9, 2.0 / 11.0)
    np.testing.assert_allclose(
        averages[name], decay * start[name] + (1 - decay) * weights[name],
        rtol=1e-5, atol=1e-7)
  # Evaluation with --moving_average_decay loads the averages.
  net = nets_factory.get_network_fn('lenet', 10)
  net(tf.zeros([1, 28, 28, 1]))
  evaluator.restore_for_eval(net, result.checkpoint, moving_average_decay=0.9)
  for v in net.weights:
    np.testing.assert_array_equal(v.numpy(), averages[v.path])
  plain = _evaluate(mnist_dir, result.checkpoint)
  averaged = _evaluate(mnist_dir, result.checkpoint, moving_average_decay=0.9)
  assert plain['loss'] != averaged['loss']
  with pytest.raises(ValueError, match='no moving averages'):
    _evaluate(mnist_dir, source, moving_average_decay=0.9)


def test_non_finite_loss_stops_training_without_a_bad_checkpoint(tmp_path):
  images = np.random.RandomState(0).uniform(
      -1, 1, (6, 4, 28, 28, 1)).astype(np.float32)
  images[3, 0, 0, 0, 0] = np.nan  # the 4th step's batch
  labels = np.zeros((6, 4), np.int64)
  with pytest.raises(trainer.NonFiniteLossError, match='global step 4'):
    trainer.train(
        strategy=model_deploy.DeploymentConfig().strategy(), network_fn=_lenet,
        dataset_fn=lambda ctx: tf.data.Dataset.from_tensor_slices(
            (images, labels)),
        optimizer_fn=lambda lr: optimization.build_optimizer('momentum', lr),
        learning_rate=0.01,
        options=trainer.TrainOptions(
            train_dir=str(tmp_path), batch_size=4, max_number_of_steps=6,
            save_interval_secs=0, log_every_n_steps=100,
            save_summaries_secs=10 ** 6))
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith('model.ckpt-3')
  for path in glob.glob(str(tmp_path / 'model.ckpt-*.index')):
    values = _checkpoint_values(path[:-len('.index')])
    assert all(np.isfinite(v).all() for v in values.values())


# --- The scripts, in subprocesses (as users run them). ---


def _run_script(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run([sys.executable, os.path.join(ROOT, script), *args],
                           env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=600, check=False)


def _event_tags(logdir):
  """Returns `{tag: [steps]}` of the event files in `logdir`."""
  tags = {}
  for path in glob.glob(os.path.join(str(logdir), 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(event.step)
  return tags


def test_scripts_train_and_evaluate_cifarnet(tmp_path):
  data = tiny_records.write_dataset(tmp_path / 'data', 'cifar10',
                                    {'train': 64, 'test': 40})
  train_dir = tmp_path / 'train'
  train = _run_script(
      'train_image_classifier.py', f'--train_dir={train_dir}',
      '--dataset_name=cifar10', '--dataset_split_name=train',
      f'--dataset_dir={data}', '--model_name=cifarnet', '--batch_size=16',
      '--max_number_of_steps=40', '--log_every_n_steps=5',
      '--optimizer=sgd', '--learning_rate=0.05', '--label_smoothing=0.1',
      '--save_summaries_secs=0', '--num_readers=2', '--master=grpc://x',
      f'--random_seed={seeding.SEED}')
  assert train.returncode == 0, train.stderr[-3000:]
  losses = [float(x) for x in re.findall(r'loss = ([\d.]+)', train.stderr)]
  assert len(losses) == 8 and losses[-1] < losses[0]
  assert 'images/sec' in train.stderr and 'left)' in train.stderr
  assert '--master=grpc://x: TF 1 session targets are gone' in train.stderr
  assert os.path.exists(train_dir / 'model.ckpt-40.index')
  flagfile = (train_dir / 'flags.txt').read_text()
  assert '--model_name=cifarnet' in flagfile and '--batch_size=16' in flagfile

  tags = _event_tags(train_dir)
  for tag in ('total_loss', 'losses/clone_0_loss',
              'losses/regularization_loss', 'learning_rate', 'images_per_sec',
              'activations/conv1', 'sparsity/conv1', 'activations/Logits',
              'variables/CifarNet/conv1/weights', 'images'):
    assert tag in tags, sorted(tags)
  # sgd keeps TF-Slim's L2 regulariser of the weights (--weight_decay=4e-5).
  regularization = [
      float(tf.make_ndarray(value.tensor))
      for path in glob.glob(str(train_dir / 'events.out.tfevents.*'))
      for event in tf.compat.v1.train.summary_iterator(path)
      for value in event.summary.value
      if value.tag == 'losses/regularization_loss']
  assert regularization and min(regularization) > 0

  evaluate = _run_script(
      'eval_image_classifier.py', f'--checkpoint_path={train_dir}',
      f'--eval_dir={tmp_path / "eval"}', '--dataset_name=cifar10',
      f'--dataset_dir={data}', '--model_name=cifarnet', '--batch_size=16')
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  accuracy = float(re.search(r'eval/Accuracy\[([\d.]+)\]',
                             evaluate.stdout).group(1))
  assert 0.0 <= accuracy <= 1.0
  assert 'global step 40' in evaluate.stdout
  assert 'tensorboard --logdir' in evaluate.stdout


# Our users' README command, with D and T filled in.
USER_COMMAND = (
    '--num_readers=6 --num_preprocessing_threads=6 --optimizer=momentum '
    '--learning_rate=0.01 --num_clones=4 --batch_size=12 '
    '--dataset_name=imagenet --dataset_split_name=train --dataset_dir={D} '
    '--model_name=alexnet_v2 --max_number_of_steps=1000000 --train_dir={T} '
    '--preprocessing_name=alexnet').split()


def test_users_alexnet_command_parses_and_refuses_a_missing_dataset(tmp_path):
  args = [a.format(D=tmp_path / 'no_data', T=tmp_path / 'train')
          for a in USER_COMMAND]
  result = _run_script('train_image_classifier.py', *args)
  assert result.returncode == 2
  assert 'flag' not in result.stderr.split('error:')[-1]
  assert 'no_data' in result.stderr
  assert not os.path.exists(tmp_path / 'train')


def test_users_command_shape_runs_four_clones_on_cpu(tmp_path):
  data = tiny_records.write_dataset(tmp_path / 'data', 'mnist',
                                    {'train': 64})
  args = [a.format(D=data, T=tmp_path / 'train') for a in USER_COMMAND]
  args = [a for a in args if not a.startswith(('--model_name', '--dataset_name',
                                               '--max_number_of_steps',
                                               '--preprocessing_name'))]
  result = _run_script('train_image_classifier.py', *args, '--clone_on_cpu',
                       '--model_name=lenet', '--dataset_name=mnist',
                       '--preprocessing_name=lenet',
                       '--max_number_of_steps=3')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'on 4 clone(s), 48 images per step' in result.stderr
  assert os.path.exists(tmp_path / 'train' / 'model.ckpt-3.index')


@pytest.mark.parametrize('flag, message', [
    ('--optimizer=adamx',
     r'--optimizer=adamx: value should be one of <.*adamw'),
    ('--batch_size=0', '--batch_size=0'),
    ('--model_name=lenet5',
     r'--model_name=lenet5: value should be one of <.*lenet'),
    ('--learning_rate_decay_type=cosine', '--learning_rate_decay_type=cosine '
     'decays to --end_learning_rate at the last step: it needs '
     '--max_number_of_steps'),
    ('--num_clones=64', '--num_clones=64 needs 64'),
    ('--randaugment=2,x', r"--randaugment=2,x: M in N,M must be a number in "
     r"\[0, 10\], got 'x'"),
    ('--mixup_alpha=-0.5', '--mixup_alpha=-0.5: -0.5 is not a non-negative'),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, flag,
                                                         message):
  data = tiny_records.write_dataset(tmp_path / 'data', 'mnist', {'train': 8})
  result = _run_script('train_image_classifier.py',
                       f'--train_dir={tmp_path / "train"}',
                       '--dataset_name=mnist', f'--dataset_dir={data}',
                       '--model_name=lenet', flag)
  assert result.returncode == 2
  assert re.search(message, result.stderr), result.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'train')


# TF-Slim's flags and defaults, which existing commands rely on
# (docs/tf_slim_reference.md).
TRAIN_DEFAULTS = dict(
    train_dir='/tmp/tfmodel/', num_clones=1, clone_on_cpu=False,
    worker_replicas=1, num_ps_tasks=0, task=0, num_readers=4,
    num_preprocessing_threads=4, log_every_n_steps=10,
    save_summaries_secs=600, save_interval_secs=600, weight_decay=0.00004,
    optimizer='rmsprop', adadelta_rho=0.95,
    adagrad_initial_accumulator_value=0.1, adam_beta1=0.9, adam_beta2=0.999,
    # TF-Slim's 1.0 for its optimizers, each newer one's own (None: not
    # given; test_optimization.py checks what it resolves to).
    opt_epsilon=None, ftrl_learning_rate_power=-0.5,
    ftrl_initial_accumulator_value=0.1, ftrl_l1=0.0, ftrl_l2=0.0,
    momentum=0.9, rmsprop_momentum=0.9, rmsprop_decay=0.9,
    learning_rate_decay_type='exponential', learning_rate=0.01,
    end_learning_rate=0.0001, label_smoothing=0.0,
    learning_rate_decay_factor=0.94, num_epochs_per_decay=2.0,
    sync_replicas=False, replicas_to_aggregate=1, moving_average_decay=None,
    dataset_name='imagenet', dataset_split_name='train', dataset_dir=None,
    labels_offset=0, model_name='inception_v3', preprocessing_name=None,
    batch_size=32, train_image_size=None, max_number_of_steps=None,
    checkpoint_path=None, checkpoint_exclude_scopes=None,
    trainable_scopes=None, ignore_missing_vars=False, quantize_delay=-1,
    master='')
EVAL_DEFAULTS = dict(
    batch_size=100, max_num_batches=None, checkpoint_path='/tmp/tfmodel/',
    eval_dir='/tmp/tfmodel/', num_preprocessing_threads=4,
    dataset_name='imagenet', dataset_split_name='test', dataset_dir=None,
    labels_offset=0, model_name='inception_v3', preprocessing_name=None,
    moving_average_decay=None, eval_image_size=None, quantize=False)


@pytest.mark.parametrize('script, expected', [
    ('train_image_classifier', TRAIN_DEFAULTS),
    ('eval_image_classifier', EVAL_DEFAULTS),
])
def test_every_tf_slim_flag_exists_with_its_default(script, expected):
  code = (f'import json, {script}\n'
          'from absl import flags\n'
          'print(json.dumps({f.name: f.default for f in '
          'flags.FLAGS.get_flags_for_module("slimkit.flags")}))')
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300,
                             check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  defaults = json.loads(result.stdout.strip().splitlines()[-1])
  for name, value in expected.items():
    assert name in defaults, name
    assert defaults[name] == value, name


def _tiny_batch_norm_net():
  """A conv with batch norm and a logits layer: BN statistics to protect."""
  from slimkit.nets import layers
  from slimkit.nets import network

  class TinyBN(network.Network):

    def __init__(self):
      super().__init__(scope='TinyBN', num_classes=10, is_training=True)
      self.conv = layers.Conv2D(4, 3, normalizer=layers.batch_norm,
                                name='conv1')
      self.logits = layers.FullyConnected(10, activation=None, name='logits')

    def forward(self, images, training):
      net = self.conv(images, training=training)
      logits = self.logits(layers.global_avg_pool(net, keepdims=False))
      return logits, {'conv1': net, 'Logits': logits}

  return TinyBN()


def test_a_bad_step_leaves_batch_norm_statistics_and_weights_finite(tmp_path):
  images = np.random.RandomState(0).uniform(
      -1, 1, (3, 4, 8, 8, 1)).astype(np.float32)
  images[1, 0, 0, 0, 0] = np.inf
  labels = np.zeros((3, 4), np.int64)
  built = []
  with pytest.raises(trainer.NonFiniteLossError, match='global step 2'):
    trainer.train(
        strategy=model_deploy.DeploymentConfig().strategy(),
        network_fn=lambda: built.append(_tiny_batch_norm_net()) or built[-1],
        dataset_fn=lambda ctx: tf.data.Dataset.from_tensor_slices(
            (images, labels)),
        optimizer_fn=lambda lr: optimization.build_optimizer('rmsprop', lr),
        learning_rate=0.01,
        options=trainer.TrainOptions(
            train_dir=str(tmp_path), batch_size=4, max_number_of_steps=3,
            save_interval_secs=0, save_summaries_secs=10 ** 6))
  # The inf reached the forward pass (and so the moving statistics) but the
  # step put them back: every variable in memory is finite.
  statistics = [v for v in built[0].weights if not v.trainable]
  assert [v.path for v in statistics] == [
      'TinyBN/conv1/BatchNorm/moving_mean',
      'TinyBN/conv1/BatchNorm/moving_variance']
  assert all(np.isfinite(v.numpy()).all() for v in built[0].weights)
  values = _checkpoint_values(tf.train.latest_checkpoint(str(tmp_path)))
  assert all(np.isfinite(v).all() for v in values.values())
  # With one replica the bad step is skipped outright: every variable still
  # holds step 1's value, although RMSProp's momentum (0.9) would have moved
  # the weights further on zero gradients.
  step_1 = _checkpoint_values(tmp_path / 'model.ckpt-1')
  assert set(step_1) == {v.path for v in built[0].weights}
  for v in built[0].weights:
    np.testing.assert_array_equal(v.numpy(), step_1[v.path])
