"""A diverging run and a full disk stop with a message; checkpoints survive.

Non-finite loss: the script exits 1 naming the step and the last good
checkpoint, and every checkpoint left is finite. Disk full: the training
process gets a file-size limit (RLIMIT_FSIZE, set on the running process with
prlimit: what a full filesystem looks like to `write`) once it has saved, and
must fail the next save with a clear error, leaving the previous checkpoint
intact and the state file pointing at it.
"""

import os
import resource
import signal
import subprocess
import threading

import numpy as np
import pytest
import tensorflow as tf

from tests import tiny_records
from tests.reliability import rel_common


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('mnist'), 'mnist',
                                    {'train': 32, 'test': 8})


def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(
    mnist_dir, tmp_path):
  train_dir = str(tmp_path / 'train')
  rel_common.train_in_process(mnist_dir, train_dir, 2)
  # A learning rate that makes the weights, then the loss, overflow.
  bad = rel_common.run(rel_common.train_args(mnist_dir, train_dir, 50,
                                             learning_rate=1e30))
  assert bad.returncode == 1, bad.stderr[-3000:]
  assert 'NaN or infinite at global step' in bad.stderr, bad.stderr[-3000:]
  latest = tf.train.latest_checkpoint(train_dir)
  assert f'The last good checkpoint is {latest}' in bad.stderr
  assert 'Traceback' not in bad.stderr
  for prefix in tf.train.get_checkpoint_state(
      train_dir).all_model_checkpoint_paths:
    for key, value in rel_common.read_whole_checkpoint(prefix).items():
      if np.asarray(value).dtype.kind == 'f':
        assert np.isfinite(value).all(), (prefix, key)


def _no_file_size_signal():
  # Past the limit, write() then fails with EFBIG instead of killing us.
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(mnist_dir,
                                                             tmp_path):
  train_dir = tmp_path / 'train'
  args = rel_common.train_args(mnist_dir, str(train_dir), 100000)
  proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True,
                          env=rel_common.env(), cwd=rel_common.ROOT,
                          preexec_fn=_no_file_size_signal)
  lines = []
  saved = threading.Event()

  def read():
    for line in proc.stderr:
      lines.append(line)
      if sum('Saved checkpoint' in l for l in lines) >= 2:
        saved.set()

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  assert saved.wait(timeout=240), ''.join(lines)[-3000:]
  # Smaller than a checkpoint (~13 MB of LeNet weights), larger than the
  # event file and flags.txt.
  limit = 2 * 1024 * 1024
  resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
  before = tf.train.latest_checkpoint(str(train_dir))
  proc.wait(timeout=240)
  reader.join(timeout=10)
  log = ''.join(lines)
  assert proc.returncode == 1, log[-3000:]
  assert 'Could not write the checkpoint of global step' in log, log[-3000:]
  assert 'Traceback' not in log
  latest = tf.train.latest_checkpoint(str(train_dir))
  assert latest is not None and 'is intact' in log
  assert f'The previous checkpoint {latest} is intact' in log
  assert rel_common.checkpoint_step(latest) >= rel_common.checkpoint_step(
      before)
  rel_common.read_whole_checkpoint(latest)
  # No partial checkpoint is left behind to fill the disk.
  names = os.listdir(train_dir)
  assert not [n for n in names if '_temp' in n], names
  steps = {n.split('.')[1] for n in names if n.startswith('model.ckpt-')}
  for step in steps:
    assert os.path.exists(train_dir / f'model.{step}.index'), names


def test_an_unwritable_train_dir_is_a_clear_error(mnist_dir, tmp_path):
  blocker = tmp_path / 'not_a_dir'
  blocker.write_text('a file where train_dir would go')
  proc = rel_common.run(rel_common.train_args(
      mnist_dir, str(blocker / 'train'), 1))
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert f'--train_dir={blocker / "train"} is not writable' in proc.stderr
  assert 'Traceback' not in proc.stderr


@pytest.mark.slow  # ~70 s
def test_fp16_gradient_overflow_is_skipped_not_applied(mnist_dir, tmp_path,
                                                        monkeypatch):
  """Mixed float16: overflowing steps are skipped, the weights stay finite.

  An initial loss scale of 2**30 makes float16 gradients overflow for the
  first steps for sure; the loss-scale optimizer must skip those steps and
  halve the scale, and training must go on (this is not a diverging run).
  """
  import keras
  from slimkit.training import precision as precision_lib

  wrapped = []

  def wrap(optimizer, precision):
    assert precision == 'mixed_float16'
    wrapped.append(keras.optimizers.LossScaleOptimizer(
        optimizer, initial_scale=2.0 ** 30))
    return wrapped[-1]

  monkeypatch.setattr(precision_lib, 'wrap_optimizer', wrap)
  try:
    result = rel_common.train_in_process(mnist_dir, tmp_path / 'train', 24,
                                         precision='mixed_float16')
  finally:
    keras.mixed_precision.set_global_policy('float32')
  assert np.isfinite(result.loss)
  scale = float(wrapped[0].dynamic_scale.numpy())
  assert scale < 2.0 ** 30  # Overflowing steps were seen and skipped...
  values = rel_common.read_whole_checkpoint(result.checkpoint)
  for key, value in values.items():
    if np.asarray(value).dtype.kind == 'f':
      assert np.isfinite(value).all(), key  # ...and never applied.
