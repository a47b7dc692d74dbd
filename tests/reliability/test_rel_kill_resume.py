"""Killed training runs resume from their newest complete checkpoint.

Real subprocesses, real signals: `kill -9` at random moments (between steps
and while a checkpoint is being written, since `--save_interval_secs=0` saves
after every step), then the same command again; and SIGTERM / Ctrl-C, which
must save a final checkpoint and exit 0 with a message.
"""

import os
import random
import re
import signal
import subprocess
import threading
import time

from absl import logging as absl_logging
import pytest
import tensorflow as tf

from tests import tiny_records
from tests.reliability import rel_common

MAX_STEPS = 40


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('mnist'), 'mnist',
                                    {'train': 64, 'test': 16})


class _Run:
  """A training subprocess whose stderr is read line by line."""

  def __init__(self, args):
    self.proc = subprocess.Popen(args, stderr=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True,
                                 env=rel_common.env(), cwd=rel_common.ROOT)
    self.lines = []
    self.saved = 0
    self._cond = threading.Condition()
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stderr:
      with self._cond:
        self.lines.append(line)
        if 'Saved checkpoint' in line:
          self.saved += 1
        self._cond.notify_all()
    with self._cond:
      self._cond.notify_all()

  def wait_for_saves(self, count, timeout=180):
    """Waits until `count` checkpoints were saved; False if the run ended."""
    deadline = time.monotonic() + timeout
    with self._cond:
      while self.saved < count:
        if self.proc.poll() is not None and not self._reader.is_alive():
          return False
        self._cond.wait(timeout=max(0.0, min(1.0,
                                             deadline - time.monotonic())))
        if time.monotonic() > deadline:
          raise AssertionError('no checkpoint in time:\n' +
                               ''.join(self.lines[-30:]))
    return True

  def finish(self, timeout=180):
    self.proc.wait(timeout=timeout)
    self._reader.join(timeout=10)
    return self.proc.returncode, ''.join(self.lines)


def _checkpoints_are_readable(train_dir):
  """Asserts every checkpoint on disk that the state file lists reads.

  An old entry can name a checkpoint being pruned: the manager deletes the
  oldest checkpoint (index first, then data) before it rewrites the state
  file, so a kill in between leaves it listed without its index (it is swept
  again by the next save). It is never the newest.
  """
  state = tf.train.get_checkpoint_state(train_dir)
  if state is None:
    return None
  for prefix in state.all_model_checkpoint_paths:
    if os.path.exists(prefix + '.index'):
      rel_common.read_whole_checkpoint(prefix)
    else:
      assert prefix != state.model_checkpoint_path
  latest = tf.train.latest_checkpoint(train_dir)
  rel_common.read_whole_checkpoint(latest)
  return rel_common.checkpoint_step(latest)


def _kill_and_resume(mnist_dir, train_dir, kills, seed):
  rng = random.Random(seed)
  args = rel_common.train_args(mnist_dir, str(train_dir), MAX_STEPS)
  last_step = 0
  for attempt in range(kills):
    run = _Run(args)
    # Let it save a few checkpoints, then kill it a random moment later:
    # between steps, or while the next checkpoint is being written.
    if not run.wait_for_saves(rng.randint(1, 3)):
      break  # Already finished: nothing left to kill.
    time.sleep(rng.uniform(0.0, 0.3))
    run.proc.send_signal(signal.SIGKILL)
    code, log = run.finish()
    assert code == -signal.SIGKILL, log[-3000:]
    step = _checkpoints_are_readable(train_dir)
    assert step is not None, log[-3000:]
    assert step >= last_step
    resumed = re.findall(r'Resuming from \S+ \(global step (\d+)\)', log)
    if attempt:
      # This run started where the previous one left its newest checkpoint.
      assert resumed and int(resumed[0]) == last_step, log[-3000:]
    last_step = step

  final = rel_common.run(args)
  assert final.returncode == 0, final.stderr[-3000:]
  resumed = re.findall(r'Resuming from \S+ \(global step (\d+)\)',
                       final.stderr)
  assert resumed and int(resumed[0]) == last_step, final.stderr[-3000:]
  assert _checkpoints_are_readable(train_dir) == MAX_STEPS
  return last_step


@pytest.mark.slow  # ~55 s; SIGTERM and torn checkpoints stay
def test_kill_9_at_random_moments_then_resume_reaches_max_steps(
    mnist_dir, tmp_path):
  _kill_and_resume(mnist_dir, tmp_path / 'train', kills=2, seed=1)


@pytest.mark.slow
def test_kill_9_many_times_then_resume_reaches_max_steps(mnist_dir, tmp_path):
  for seed in range(3):
    _kill_and_resume(mnist_dir, tmp_path / f'train{seed}', kills=5,
                     seed=seed)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT],
                         ids=['SIGTERM', 'SIGINT'])
def test_sigterm_and_ctrl_c_save_a_final_checkpoint_and_exit_0(
    mnist_dir, tmp_path, sig):
  # Checkpoints only at the end: the final one must come from the signal.
  args = rel_common.train_args(mnist_dir, str(tmp_path / 'train'), 100000,
                               save_interval_secs=100000)
  run = _Run(args)
  deadline = time.monotonic() + 180
  while not any('global step 3:' in l for l in list(run.lines)):
    assert run.proc.poll() is None, ''.join(run.lines)[-3000:]
    assert time.monotonic() < deadline, ''.join(run.lines)[-3000:]
    time.sleep(0.1)
  run.proc.send_signal(sig)
  code, log = run.finish()
  assert code == 0, log[-3000:]
  assert re.search(r'(SIGTERM|SIGINT|[Ii]nterrupt)', log), log[-3000:]
  latest = tf.train.latest_checkpoint(str(tmp_path / 'train'))
  assert latest is not None, log[-3000:]
  step = rel_common.checkpoint_step(latest)
  assert step >= 3
  assert f'model.ckpt-{step}' in latest
  rel_common.read_whole_checkpoint(latest)


def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(
    mnist_dir, tmp_path, caplog):
  train_dir = tmp_path / 'train'
  rel_common.train_in_process(mnist_dir, train_dir, 2)
  rel_common.train_in_process(mnist_dir, train_dir, 3)
  newest = tf.train.latest_checkpoint(str(train_dir))
  assert newest.endswith('model.ckpt-3')
  # A disk that lied about a write: the data file is cut short.
  data = newest + '.data-00000-of-00001'
  with open(data, 'r+b') as f:
    f.truncate(os.path.getsize(data) // 2)
  caplog.set_level('INFO')
  # absl's own level too: parsing flags in-process (another test) sets it to
  # its --verbosity default, WARNING.
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  try:
    result = rel_common.train_in_process(mnist_dir, train_dir, 4)
  finally:
    absl_logging.set_verbosity(verbosity)
  assert 'model.ckpt-3 is unreadable' in caplog.text
  assert re.search(r'Resuming from \S+model\.ckpt-2 \(global step 2\)',
                   caplog.text), caplog.text
  assert result.global_step == 4
  rel_common.read_whole_checkpoint(result.checkpoint)
