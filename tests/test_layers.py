"""The fused batch norm against the arithmetic TF-Slim's batch norm defines."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit.nets import layers

DECAY, EPSILON = 0.9, 1e-3


def _inputs():
  return tf.constant(np.random.RandomState(0).normal(
      1.0, 3.0, (4, 5, 6, 8)).astype(np.float32))


def _pair(scale):
  """Our layer and Keras's, built with the same (non-trivial) variables."""
  ours = layers.batch_norm(decay=DECAY, epsilon=EPSILON, scale=scale)
  reference = keras.layers.BatchNormalization(momentum=DECAY, epsilon=EPSILON,
                                              scale=scale)
  x = _inputs()
  ours(x)
  reference(x)
  rng = np.random.RandomState(1)
  for mine, theirs in zip(ours.weights, reference.weights):
    assert mine.path.split('/')[-1] == theirs.path.split('/')[-1]
    value = rng.uniform(0.5, 1.5, mine.shape).astype(np.float32)
    mine.assign(value)
    theirs.assign(value)
  return ours, reference


@pytest.mark.parametrize('scale', [False, True])
def test_training_matches_keras_and_updates_statistics_as_tf_slim(scale):
  ours, reference = _pair(scale)
  x = _inputs()
  old_mean = ours.moving_mean.numpy()
  old_variance = ours.moving_variance.numpy()
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    y_ours = ours(x, training=True)
    y_ref = reference(x, training=True)
    # A loss whose gradient differs per element.
    loss_ours = tf.reduce_sum(y_ours ** 3)
    loss_ref = tf.reduce_sum(y_ref ** 3)
  np.testing.assert_allclose(y_ours, y_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(tape.gradient(loss_ours, x),
                             tape.gradient(loss_ref, x), rtol=1e-4, atol=1e-4)
  grads_ours = tape.gradient(loss_ours, ours.trainable_weights)
  grads_ref = tape.gradient(loss_ref, reference.trainable_weights)
  for g_ours, g_ref in zip(grads_ours, grads_ref):
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-4)

  batch_mean = np.mean(x.numpy(), axis=(0, 1, 2))
  # TF-Slim's fused batch norm moves the variance toward the unbiased one.
  batch_variance = np.var(x.numpy(), axis=(0, 1, 2), ddof=1)
  np.testing.assert_allclose(
      ours.moving_mean, DECAY * old_mean + (1 - DECAY) * batch_mean,
      rtol=1e-5)
  np.testing.assert_allclose(
      ours.moving_variance,
      DECAY * old_variance + (1 - DECAY) * batch_variance, rtol=1e-5)


def test_inference_uses_the_moving_statistics():
  ours, reference = _pair(scale=True)
  x = _inputs()
  np.testing.assert_allclose(ours(x, training=False),
                             reference(x, training=False), rtol=1e-5,
                             atol=1e-5)
  v = {w.path.split('/')[-1]: w.numpy() for w in ours.weights}
  expected = ((x.numpy() - v['moving_mean'])
              / np.sqrt(v['moving_variance'] + EPSILON) * v['gamma']
              + v['beta'])
  np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-5)


def test_a_frozen_layer_normalizes_with_and_keeps_its_statistics():
  ours, _ = _pair(scale=False)
  ours.trainable = False
  x = _inputs()
  before = [w.numpy() for w in ours.weights]
  np.testing.assert_allclose(ours(x, training=True), ours(x, training=False))
  for old, w in zip(before, ours.weights):
    np.testing.assert_array_equal(old, w.numpy())


def test_bfloat16_activations_stay_bfloat16_with_float32_statistics():
  ours = layers.batch_norm(decay=DECAY, epsilon=EPSILON,
                           dtype='mixed_bfloat16')
  x = _inputs()
  y = ours(tf.cast(x, tf.bfloat16), training=True)
  assert y.dtype == tf.bfloat16
  assert ours.moving_mean.dtype == 'float32'
  reference = (x - tf.reduce_mean(x, [0, 1, 2])) / tf.sqrt(
      tf.math.reduce_variance(x, [0, 1, 2]) + EPSILON)
  # bfloat16 keeps 8 bits of mantissa: about 2 decimal digits.
  np.testing.assert_allclose(tf.cast(y, tf.float32), reference, atol=0.05)


def test_other_ranks_take_keras_path():
  ours = layers.batch_norm(decay=DECAY, epsilon=EPSILON)
  x = tf.constant(np.random.RandomState(2).normal(size=(16, 5)), tf.float32)
  y = ours(x, training=True)
  np.testing.assert_allclose(np.mean(y, 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.var(y, 0), 1.0, rtol=1e-2)


@pytest.mark.parametrize('name', ['mobilenet_v1_025', 'resnet_v1_50'])
def test_layers_of_the_same_shape_start_from_different_weights(name):
  # One initializer instance is bound to many layers; each weight must still
  # get its own draw (Keras 3 fixes an unseeded initializer's seed when it is
  # made, so shared, it repeated the same values for the same shape).
  from slimkit.nets import nets_factory
  net = nets_factory.get_network_fn(name, num_classes=10)
  net(tf.zeros([1, 64, 64, 3]))
  seen = {}
  for v in net.trainable_weights:
    value = v.numpy()
    if np.all(value == value.flat[0]):
      continue  # constant initializers (zeros, ones) are meant to repeat
    key = (value.shape, value.tobytes())
    assert key not in seen, f'{v.path} starts equal to {seen[key]}'
    seen[key] = v.path
