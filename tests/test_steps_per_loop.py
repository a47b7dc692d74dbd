"""Several steps per call of the compiled loop change nothing training computes.

`--steps_per_loop` groups steps into one call; the reference is the same run
one step per call (`steps_per_loop=1`, the loop as it was): the same seed
must give bit-identical checkpoints, the same validations at the same steps,
the same first bad step, and a resumed, signalled or starved run must end
on a checkpoint whose step is the steps that ran. LeNet on 28x28 in-memory
batches, in this process.
"""

import glob
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit.deployment import model_deploy
from slimkit.nets import nets_factory
from slimkit.training import optimization
from slimkit.training import steps as steps_lib
from slimkit.training import trainer

BATCH = 4
_RNG = np.random.RandomState(0)
IMAGES = _RNG.rand(64, 28, 28, 1).astype(np.float32)
LABELS = _RNG.randint(0, 10, 64)


def _dataset(records_consumed=0, images=IMAGES, repeat=True, on_record=None):
  data = tf.data.Dataset.from_tensor_slices((images, LABELS))
  if repeat:
    data = data.repeat()
  if on_record is not None:
    data = data.map(lambda x, y: (on_record(x), y))
  # A resumed run continues the stream where the steps before it stopped.
  return data.skip(records_consumed).batch(BATCH, drop_remainder=True)


def _train(train_dir, *, steps, steps_per_loop, seed=5, log_every=3,
           eval_every=None, dataset=_dataset, save_interval_secs=10 ** 6,
           learning_rate=0.01):
  keras.utils.set_random_seed(seed)  # the initial weights

  def dataset_fn(input_context, seed=None, records_consumed=0):
    del input_context, seed
    return dataset(records_consumed)

  return trainer.train(
      strategy=model_deploy.make_strategy(model_deploy.DeploymentConfig()),
      network_fn=lambda: nets_factory.get_network_fn(
          'lenet', 10, weight_decay=0.0004, is_training=True),
      dataset_fn=dataset_fn,
      optimizer_fn=lambda lr: optimization.build_optimizer('momentum', lr),
      learning_rate=learning_rate,
      validation_dataset_fn=lambda: tf.data.Dataset.from_tensor_slices(
          (IMAGES[:24], LABELS[:24])).batch(8),
      options=trainer.TrainOptions(
          train_dir=str(train_dir), batch_size=BATCH,
          max_number_of_steps=steps, log_every_n_steps=log_every,
          # Summaries at every group's first step: 0 would ask for every
          # step, which runs one step per group.
          save_interval_secs=save_interval_secs, save_summaries_secs=1e-9,
          eval_every_n_steps=eval_every, random_seed=seed,
          steps_per_loop=steps_per_loop))


def _checkpoint(train_dir, step):
  reader = tf.train.load_checkpoint(os.path.join(train_dir,
                                                 f'model.ckpt-{step}'))
  return {key: reader.get_tensor(key)
          for key in reader.get_variable_to_shape_map()
          # How many saves a run made is no part of its training.
          if not key.startswith(('_CHECKPOINTABLE', 'save_counter'))}


def _assert_identical(a, b):
  assert sorted(a) == sorted(b) and a
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _saved_steps(train_dir):
  return sorted(int(p.rsplit('-', 1)[1][:-len('.index')])
                for p in glob.glob(os.path.join(train_dir, '*.index')))


# Groups cut by log lines and validations; the long variant (groups longer
# than a log interval, cut by it) runs with the slow tests.
@pytest.mark.parametrize('log_every, steps_per_loop', [
    (3, 4), pytest.param(5, 20, marks=pytest.mark.slow)])
def test_grouped_steps_train_bit_for_bit_as_single_steps(
    tmp_path, log_every, steps_per_loop):
  # Dropout keyed on the step, momentum, weight decay, validation every 4
  # steps and summaries at every group: the checkpoint of step 11 and the
  # validations must not see how the steps were grouped.
  single = _train(tmp_path / 'single', steps=11, steps_per_loop=1,
                  log_every=log_every, eval_every=4)
  grouped = _train(tmp_path / 'grouped', steps=11,
                   steps_per_loop=steps_per_loop, log_every=log_every,
                   eval_every=4)
  assert single.global_step == grouped.global_step == 11
  _assert_identical(_checkpoint(tmp_path / 'single', 11),
                    _checkpoint(tmp_path / 'grouped', 11))
  assert [s for s, _ in grouped.validation] == [4, 8, 11]
  assert grouped.validation == single.validation
  assert grouped.loss == single.loss
  assert _saved_steps(tmp_path / 'grouped') == [11]  # no time-based save


def test_a_checkpoint_after_every_step_runs_one_step_per_group(tmp_path):
  # save_interval_secs=0 asks for a checkpoint after every step (the newest
  # 5 are kept), whatever --steps_per_loop says.
  _train(tmp_path / 'run', steps=11, steps_per_loop=4, save_interval_secs=0)
  assert _saved_steps(tmp_path / 'run') == [7, 8, 9, 10, 11]


def test_a_run_resumed_between_groups_ends_as_the_uninterrupted_one(tmp_path):
  _train(tmp_path / 'whole', steps=9, steps_per_loop=1)
  _train(tmp_path / 'resumed', steps=5, steps_per_loop=4)
  resumed = _train(tmp_path / 'resumed', steps=9, steps_per_loop=4)
  assert resumed.global_step == 9
  _assert_identical(_checkpoint(tmp_path / 'whole', 9),
                    _checkpoint(tmp_path / 'resumed', 9))


def test_the_first_bad_step_in_a_group_is_the_one_reported(tmp_path):
  # Records 16-19 are NaN: the batch of global step 5, inside the group of
  # steps 2-7 (log_every=9, steps_per_loop=6), which it ends: the run stops
  # there, naming it, before step 6 moves the weights.
  images = IMAGES.copy()
  images[16:20] = np.nan
  bad = lambda consumed: _dataset(consumed, images=images)
  for steps_per_loop in (1, 6):
    train_dir = tmp_path / f'spl{steps_per_loop}'
    with pytest.raises(trainer.NonFiniteLossError) as error:
      _train(train_dir, steps=12, steps_per_loop=steps_per_loop,
             log_every=9, dataset=bad, save_interval_secs=10 ** 6)
    assert error.value.step == 5, steps_per_loop
    # Nothing after the bad step was saved.
    assert _saved_steps(train_dir) == []


def test_input_that_runs_out_in_a_group_ends_at_the_steps_that_ran(tmp_path):
  # 64 records without repeat: 16 batches, so step 16 is the last; the group
  # of steps 11-20 runs out after 6 of them.
  once = lambda consumed: _dataset(consumed, repeat=False)
  result = _train(tmp_path / 'run', steps=40, steps_per_loop=10,
                  log_every=10, dataset=once, save_interval_secs=10 ** 6)
  assert result.global_step == 16
  assert result.checkpoint.endswith('model.ckpt-16')
  assert int(_checkpoint(tmp_path / 'run', 16)['global_step/.ATTRIBUTES/'
                                               'VARIABLE_VALUE']) == 16


def test_a_signal_stops_between_groups_with_a_checkpoint_of_that_step(
    tmp_path):
  fired = []

  def send_sigterm_once(x):
    def send(value):
      # Record 30 is read for step 8, inside the group of steps 2-10.
      if len(fired) == 30:
        os.kill(os.getpid(), signal.SIGTERM)
      fired.append(1)
      return value
    return tf.ensure_shape(
        tf.numpy_function(send, [x], tf.float32, stateful=True), x.shape)

  result = _train(tmp_path / 'run', steps=200, steps_per_loop=10,
                  log_every=10, save_interval_secs=10 ** 6,
                  dataset=lambda consumed: _dataset(
                      consumed, on_record=send_sigterm_once))
  assert result.stopped_by == 'SIGTERM'
  step = result.global_step
  assert step in (10, 20), step  # the end of a group
  assert result.checkpoint.endswith(f'model.ckpt-{step}')
  saved = _checkpoint(tmp_path / 'run', step)
  assert int(saved['global_step/.ATTRIBUTES/VARIABLE_VALUE']) == step


@pytest.mark.parametrize('step, max_steps, limit, every, expected', [
    (0, None, 10, (10, None), 10),
    (1, None, 10, (10, None), 9),
    (10, None, 10, (10, 4), 2),
    (12, 13, 10, (10, 4), 1),
    (5, None, 3, (100, 1000), 3),
    (7, None, 1, (10, None), 1),
])
def test_a_group_ends_at_the_first_step_due(step, max_steps, limit, every,
                                            expected):
  assert steps_lib.group_length(step, max_steps, limit, every) == expected
