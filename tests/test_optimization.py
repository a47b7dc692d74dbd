"""Optimizers and learning-rate schedules: TF-Slim's semantics, by name."""

import numpy as np
import pytest
import tensorflow as tf

from slimkit.deployment import optimization


def _run(optimizer, grads, initial=(1.0, -2.0)):
  """Applies each gradient in turn to one variable; returns its values."""
  var = tf.Variable(np.array(initial, np.float32))
  values = []
  for g in grads:
    optimizer.apply_gradients([(tf.constant(g, tf.float32), var)])
    values.append(var.numpy().copy())
  return values


def test_rmsprop_is_tf1s_with_ones_initialised_mean_square():
  lr, decay, momentum, eps = 0.1, 0.9, 0.9, 1.0
  grads = [np.array([0.5, -1.5]), np.array([2.0, 0.25]),
           np.array([-1.0, 1.0])]
  got = _run(optimization.build_optimizer(
      'rmsprop', lr, optimization.OptimizerHParams(
          rmsprop_decay=decay, rmsprop_momentum=momentum, opt_epsilon=eps)),
      grads)
  # TF 1's ApplyRMSProp by hand.
  var = np.array([1.0, -2.0])
  ms, mom = np.ones(2), np.zeros(2)
  for g, value in zip(grads, got):
    ms = decay * ms + (1 - decay) * g ** 2
    mom = momentum * mom + lr * g / np.sqrt(ms + eps)
    var = var - mom
    np.testing.assert_allclose(value, var, rtol=1e-5)
  # Keras' RMSprop (zeros, sqrt(ms) + eps) takes other steps.
  keras_values = _run(tf.keras.optimizers.RMSprop(
      lr, rho=decay, momentum=momentum, epsilon=eps), grads)
  assert not np.allclose(keras_values[-1], got[-1], rtol=1e-3)


def test_momentum_accumulates_raw_gradients_as_tf1():
  schedule = lambda step: 0.1 if int(step) < 2 else 0.01  # noqa: E731
  opt = optimization.build_optimizer(
      'momentum', tf.keras.optimizers.schedules.PiecewiseConstantDecay(
          [1], [0.1, 0.01]),
      optimization.OptimizerHParams(momentum=0.9))
  grads = [np.array([1.0, -1.0]), np.array([0.5, 2.0]), np.array([1.0, 1.0])]
  got = _run(opt, grads)
  var, accum = np.array([1.0, -2.0]), np.zeros(2)
  for step, (g, value) in enumerate(zip(grads, got)):
    accum = 0.9 * accum + g
    var = var - schedule(step) * accum
    np.testing.assert_allclose(value, var, rtol=1e-5)


@pytest.mark.parametrize('name', optimization.list_optimizers())
def test_every_optimizer_takes_a_finite_step_downhill(name):
  opt = optimization.build_optimizer(name, 0.1)
  var = tf.Variable([1.0, -2.0])
  before = float(tf.reduce_sum(var ** 2))
  for _ in range(3):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(var ** 2)
    opt.apply_gradients([(tape.gradient(loss, var), var)])
  after = float(tf.reduce_sum(var ** 2))
  assert np.isfinite(after) and after < before


def test_optimizer_flags_reach_the_optimizer():
  h = optimization.OptimizerHParams(adam_beta1=0.5, adam_beta2=0.75,
                                    opt_epsilon=0.25, ftrl_l1=0.3,
                                    adadelta_rho=0.8)
  adam = optimization.build_optimizer('adam', 0.1, h)
  assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.5, 0.75, 0.25)
  assert optimization.build_optimizer('ftrl', 0.1,
                                      h).l1_regularization_strength == 0.3
  assert optimization.build_optimizer('adadelta', 0.1, h).rho == 0.8


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(ValueError, match='rmsprop.*Valid names:.*sgd'):
    optimization.build_optimizer('rmsprp', 0.1)
  with pytest.raises(ValueError, match='exponential'):
    optimization.build_learning_rate('expo', 0.1)


def test_decay_steps_follow_tf_slim():
  # An epoch of 50000 images at 32 per clone on 4 clones is 390.6 steps.
  assert optimization.decay_steps(50000, 2.0, 32, 4) == int(50000 * 2 / 128)
  assert optimization.decay_steps(50000, 2.0, 32, 4, 2) == int(
      int(50000 * 2 / 128) / 2)
  assert optimization.decay_steps(10, 0.1, 32) == 1


@pytest.mark.parametrize('decay_type', optimization.list_schedules())
def test_schedules(decay_type):
  lr = optimization.build_learning_rate(
      decay_type, 0.1, decay_steps=10, decay_factor=0.5,
      end_learning_rate=0.01)
  rate = lambda step: float(optimization.current_learning_rate(  # noqa: E731
      lr, tf.constant(step, tf.int64)))
  assert rate(0) == pytest.approx(0.1)
  if decay_type == 'fixed':
    assert rate(1000) == pytest.approx(0.1)
  elif decay_type == 'exponential':
    # Stairs: constant within a period, times 0.5 per period.
    assert rate(9) == pytest.approx(0.1)
    assert rate(10) == pytest.approx(0.05)
    assert rate(25) == pytest.approx(0.025)
  else:
    assert rate(5) == pytest.approx(0.055)
    assert rate(10) == pytest.approx(0.01)
    assert rate(100) == pytest.approx(0.01)  # no cycle


@pytest.mark.parametrize('decay_type', optimization.list_schedules())
def test_each_schedule_drives_an_optimizer_step(decay_type):
  lr = optimization.build_learning_rate(decay_type, 0.1, decay_steps=1,
                                        decay_factor=0.5)
  values = _run(optimization.build_optimizer('sgd', lr),
                [np.array([1.0, 1.0])] * 2)
  first_step = 1.0 - values[0][0]
  second_step = values[0][0] - values[1][0]
  assert first_step == pytest.approx(0.1)
  assert second_step == pytest.approx(float(
      optimization.current_learning_rate(lr, tf.constant(1, tf.int64))),
                                        rel=1e-3)
