"""Wrong checkpoints are explained; watch mode survives vanishing checkpoints.

- A checkpoint of another model or another class count, given to
  evaluation, to fine-tuning (`--checkpoint_path`) or found in `--train_dir`:
  exit 1 with the mismatched variables listed, no traceback.
- `evaluator.watch` meets a half-written checkpoint and one that disappears
  while it is read: it retries, moves on, evaluates the next good one and
  stops after its timeout.
"""

import glob
import os
import shutil

import pytest
import tensorflow as tf

from slimkit.datasets import dataset_factory
from slimkit.datasets import input_pipeline
from slimkit import evaluator
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from tests import tiny_records
from tests.reliability import rel_common


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('mnist'), 'mnist',
                                    {'train': 16, 'test': 8})


@pytest.fixture(scope='module')
def lenet_checkpoint(mnist_dir, tmp_path_factory):
  """A LeNet (10 classes) checkpoint after one step, trained in-process."""
  train_dir = str(tmp_path_factory.mktemp('lenet'))
  return rel_common.train_in_process(mnist_dir, train_dir, 1).checkpoint


def _explained(proc, *expected):
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  for text in expected:
    assert text in proc.stderr, proc.stderr[-3000:]


def test_evaluating_another_models_checkpoint_names_its_net(
    mnist_dir, lenet_checkpoint, tmp_path):
  proc = rel_common.run(rel_common.eval_args(
      mnist_dir, lenet_checkpoint, model_name='cifarnet', eval_image_size=28,
      eval_dir=str(tmp_path / 'eval')))
  _explained(proc, 'holds another net', 'under LeNet/ (lenet)',
             'Pass --model_name=lenet.')
  # Not the fine-tuning remedies: they would score an untrained net.
  assert '--ignore_missing_vars' not in proc.stderr


def test_fine_tuning_with_another_class_count_lists_the_variables(
    mnist_dir, lenet_checkpoint, tmp_path):
  # --labels_offset=1 leaves 9 classes: the logits layer differs.
  proc = rel_common.run(rel_common.train_args(
      mnist_dir, str(tmp_path / 'train'), 1, labels_offset=1,
      checkpoint_path=lenet_checkpoint))
  _explained(proc, 'LeNet/fc4/weights', '[1024, 10]', '[1024, 9]',
             '--checkpoint_exclude_scopes')


def test_resuming_a_train_dir_of_another_class_count_lists_the_variables(
    mnist_dir, lenet_checkpoint, tmp_path):
  train_dir = tmp_path / 'train'
  shutil.copytree(os.path.dirname(lenet_checkpoint), train_dir)
  proc = rel_common.run(rel_common.train_args(mnist_dir, str(train_dir), 2,
                                              labels_offset=1))
  _explained(proc, 'another model or class count', 'LeNet/fc4/weights',
             'new --train_dir')


def _copy_checkpoint(source, directory, step, half=False):
  prefix = os.path.join(directory, f'model.ckpt-{step}')
  for path in glob.glob(source + '.*'):
    target = prefix + path[len(source):]
    shutil.copy(path, target)
    if half and '.data-' in target:
      size = os.path.getsize(target)
      with open(target, 'r+b') as f:
        f.truncate(size // 2)
  tf.compat.v1.train.update_checkpoint_state(directory, prefix)
  return prefix


def test_watch_survives_half_written_and_vanishing_checkpoints(
    mnist_dir, lenet_checkpoint, tmp_path):
  watch_dir = str(tmp_path / 'watch')
  os.makedirs(watch_dir)
  _copy_checkpoint(lenet_checkpoint, watch_dir, 1)
  split = dataset_factory.get_split('mnist', 'test', mnist_dir)
  preprocess = preprocessing_factory.get_preprocessing('lenet', False)
  calls = []

  def dataset_fn():
    # Each evaluation attempt reads the data once, after finding its
    # checkpoint and before restoring it: the moment to change the files.
    calls.append(len(calls))
    if len(calls) == 2:    # While checkpoint 1 is read, a torn 2 appears.
      _copy_checkpoint(lenet_checkpoint, watch_dir, 2, half=True)
    elif len(calls) == 4:  # After 2 failed twice, 3 appears...
      _copy_checkpoint(lenet_checkpoint, watch_dir, 3)
    elif len(calls) == 5:  # ...and vanishes while read; 4 appears.
      for path in glob.glob(os.path.join(watch_dir, 'model.ckpt-3.*')):
        os.remove(path)
      _copy_checkpoint(lenet_checkpoint, watch_dir, 4)
    return input_pipeline.make_dataset(split, preprocess, batch_size=4,
                                       is_training=False, image_size=28)

  results = evaluator.watch(
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10),
      dataset_fn=dataset_fn, checkpoint_dir=watch_dir,
      eval_interval_secs=0, eval_timeout_secs=2)
  assert [os.path.basename(r['checkpoint']) for r in results] == [
      'model.ckpt-1', 'model.ckpt-4']
  assert all(r['num_examples'] == 8 for r in results)
