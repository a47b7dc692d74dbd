"""What the trainer says at its first step and when a signal stops it."""

import logging
import os
import signal

import numpy as np
import tensorflow as tf

from slimkit.deployment import model_deploy
from slimkit.nets import nets_factory
from slimkit.training import optimization
from slimkit.training import trainer


def _train(train_dir, *, steps, learning_rate, on_step=None, scale=1.0,
           num_images=64, dropout_keep_prob=0.5):
  rng = np.random.RandomState(0)
  images = rng.rand(num_images, 28, 28, 1).astype(np.float32) * scale
  labels = rng.randint(0, 10, num_images)

  def dataset_fn(input_context, seed=None, records_consumed=0):
    del input_context, seed, records_consumed  # one fixed order
    data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
    if on_step:
      data = data.map(lambda x, y: (on_step(x), y))
    return data.batch(4, drop_remainder=True)

  return trainer.train(
      strategy=model_deploy.make_strategy(model_deploy.DeploymentConfig()),
      network_fn=lambda: nets_factory.get_network_fn(
          'lenet', 10, weight_decay=0.0, dropout_keep_prob=dropout_keep_prob),
      dataset_fn=dataset_fn,
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=learning_rate,
      options=trainer.TrainOptions(train_dir=str(train_dir), batch_size=4,
                                   max_number_of_steps=steps,
                                   log_every_n_steps=2, random_seed=0))


def test_a_high_initial_loss_is_noted_and_not_blamed_on_the_rate(
    tmp_path, caplog):
  # Inputs scaled up make LeNet's initial logits large: the same loss at
  # step 1 for any learning rate, and no "blew up" for a rate of 1e-9.
  # One batch at every step and no dropout, so that only the updates can
  # move the loss: at such logits other batches or dropout masks move it by
  # thousands at the same weights (3194 and 5287 for seed 1), which the watch
  # cannot tell from updates that blew up.
  caplog.set_level(logging.INFO, logger='absl')
  _train(tmp_path / 'run', steps=4, learning_rate=1e-9, scale=300.0,
         num_images=4, dropout_keep_prob=1.0)
  said = [r.getMessage() for r in caplog.records]
  assert any('computed from the initial weights before any update' in m
             for m in said), said
  assert not any('blew up' in m for m in said)


def test_a_signal_stop_is_reported_as_such(tmp_path):
  fired = []

  def send_sigterm_once(x):
    def send(value):
      if not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
      return value
    return tf.ensure_shape(
        tf.numpy_function(send, [x], tf.float32, stateful=True), x.shape)

  result = _train(tmp_path / 'run', steps=200, learning_rate=0.01,
                  on_step=send_sigterm_once)
  assert result.stopped_by == 'SIGTERM'
  assert result.global_step < 200 and result.checkpoint
  finished = _train(tmp_path / 'other', steps=2, learning_rate=0.01)
  assert finished.stopped_by is None and finished.global_step == 2
