"""MobileNet v1 and v2: TF-Slim's options, names, padding, blocks and defaults.

Counts, end points at the default size and gradients of every variant are in
the registry sweep (test_nets_registry.py); this file covers what is specific to
the two MobileNet builders. Shape checks only trace the net.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets import mobilenet_v1
from slimkit.nets import mobilenet_v2


def _trace(net, size, batch=1):
  """Builds `net` by tracing; returns the static logits and end-point shapes."""
  concrete = tf.function(net).get_concrete_function(
      tf.TensorSpec([batch, size, size, 3], tf.float32))
  logits, end_points = concrete.structured_outputs
  return logits.shape.as_list(), {
      k: v.shape.as_list() for k, v in end_points.items()}


def _images(size, batch=2, seed=0):
  return tf.random.stateless_uniform([batch, size, size, 3], [seed, 7],
                                     minval=-1.0, maxval=1.0)


def _variables(net):
  return {v.path: v for v in net.weights}


# MobileNet v1.


def test_v1_names_follow_tf_slim():
  net = mobilenet_v1.mobilenet_v1_025(num_classes=10)
  _trace(net, 32)
  variables = _variables(net)
  assert variables['MobilenetV1/Conv2d_0/weights'].shape == (3, 3, 3, 8)
  assert variables['MobilenetV1/Conv2d_5_depthwise/depthwise_weights'].shape \
      == (3, 3, 64, 1)
  assert variables['MobilenetV1/Conv2d_13_pointwise/weights'].shape == (
      1, 1, 256, 256)
  assert 'MobilenetV1/Conv2d_13_pointwise/BatchNorm/gamma' in variables
  assert 'MobilenetV1/Conv2d_1_depthwise/BatchNorm/moving_variance' in variables
  assert variables['MobilenetV1/Logits/Conv2d_1c_1x1/weights'].shape == (
      1, 1, 256, 10)
  # Only the logits layer has biases; every other conv has batch norm.
  assert [p for p in variables if p.endswith('biases')] == [
      'MobilenetV1/Logits/Conv2d_1c_1x1/biases']


def test_v1_depth_multiplier_respects_min_depth():
  net = mobilenet_v1.mobilenet_v1(num_classes=10, depth_multiplier=0.1,
                                  min_depth=16)
  _, shapes = _trace(net, 32)
  assert shapes['Conv2d_0'][-1] == 16  # 32 * 0.1 -> min_depth
  assert shapes['Conv2d_13_pointwise'][-1] == 102  # int(1024 * 0.1)


@pytest.mark.parametrize('bad', [0, -0.5])
def test_v1_rejects_nonpositive_depth_multiplier(bad):
  with pytest.raises(ValueError, match=str(bad)):
    mobilenet_v1.mobilenet_v1(10, depth_multiplier=bad)


def test_v1_output_stride_uses_atrous_convolutions():
  net = mobilenet_v1.mobilenet_v1_025(num_classes=10, output_stride=8)
  _, shapes = _trace(net, 64)
  assert shapes['Conv2d_13_pointwise'][1:3] == [8, 8]
  assert shapes['Conv2d_5_pointwise'][1:3] == [8, 8]
  rates = {layer.name: layer.rate for _, layer, _, _ in net.body
           if isinstance(layer, layers.SeparableConv2D)}
  assert rates['Conv2d_5_depthwise'] == (1, 1)  # stride 8 reached here
  assert rates['Conv2d_7_depthwise'] == (2, 2)
  assert rates['Conv2d_13_depthwise'] == (4, 4)
  with pytest.raises(ValueError, match='12'):
    mobilenet_v1.mobilenet_v1(10, output_stride=12)


def test_v1_pooling_and_squeeze_options():
  # A 320 input leaves a 10x10 map: the 7x7 window (stride 2) gives 2x2.
  logits, shapes = _trace(
      mobilenet_v1.mobilenet_v1_025(10, spatial_squeeze=False), 320)
  assert shapes['AvgPool_1a'] == [1, 2, 2, 256]
  assert logits == [1, 2, 2, 10]
  logits, shapes = _trace(
      mobilenet_v1.mobilenet_v1_025(10, global_pool=True), 320)
  assert shapes['global_pool'] == [1, 1, 1, 256]
  assert 'AvgPool_1a' not in shapes
  assert logits == [1, 10]
  # Small inputs shrink the window instead of failing.
  _, shapes = _trace(mobilenet_v1.mobilenet_v1_025(10), 64)
  assert shapes['AvgPool_1a'] == [1, 1, 1, 256]


def test_v1_explicit_padding_pads_symmetrically():
  images = _images(64)
  same = mobilenet_v1.mobilenet_v1_025(10)
  explicit = mobilenet_v1.mobilenet_v1_025(10, use_explicit_padding=True)
  _, same_points = same(images)
  _, explicit_points = explicit(images)
  for v in explicit.weights:
    v.assign(_variables(same)[v.path])
  _, explicit_points = explicit(images)
  assert ({k: v.shape for k, v in explicit_points.items()} ==
          {k: v.shape for k, v in same_points.items()})
  # SAME pads a stride-2 conv of an even input only at the bottom/right;
  # explicit padding pads one pixel on every side, as TF-Slim's option does.
  kernel = _variables(same)['MobilenetV1/Conv2d_0/weights']
  padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
  expected = tf.nn.relu6(
      tf.nn.conv2d(padded, kernel, 2, 'VALID') / math.sqrt(1.0 + 0.001))
  np.testing.assert_allclose(explicit_points['Conv2d_0'], expected, atol=1e-5)
  assert not np.allclose(same_points['Conv2d_0'], expected, atol=1e-3)


def test_v1_defaults_match_tf_slim_arg_scope():
  net = mobilenet_v1.mobilenet_v1(10, weight_decay=0.1)
  _trace(net, 32)
  norm = net.body[0][1].norm
  assert (norm.momentum, norm.epsilon, norm.scale) == (0.9997, 0.001, True)
  # Weight decay on Conv2d_0, the 13 pointwise convs and the logits; not on
  # depthwise weights unless asked.
  regularized = [v for v in net.trainable_weights
                 if v.path.endswith('/weights')]
  assert len(regularized) == 15
  expected = sum(0.1 * float(tf.reduce_sum(v ** 2)) / 2 for v in regularized)
  assert float(tf.add_n(net.losses)) == pytest.approx(expected, rel=1e-5)
  net = mobilenet_v1.mobilenet_v1(10, weight_decay=0.1,
                                  regularize_depthwise=True)
  _trace(net, 32)
  assert len(net.losses) == 28
  # TF-Slim's truncated normal with stddev 0.09: cut at 2 stddev.
  kernel = _variables(net)['MobilenetV1/Conv2d_13_pointwise/weights'].numpy()
  assert np.abs(kernel).max() <= 0.18 + 1e-6
  assert kernel.std() == pytest.approx(0.09 * 0.88, rel=0.05)


def test_v1_batch_norm_statistics_move_only_in_training():
  net = mobilenet_v1.mobilenet_v1_025(10)
  images = _images(32)
  net(images, training=False)
  mean = _variables(net)['MobilenetV1/Conv2d_0/BatchNorm/moving_mean']
  before = mean.numpy().copy()
  net(images, training=False)
  np.testing.assert_array_equal(mean.numpy(), before)
  net(images, training=True)
  assert not np.array_equal(mean.numpy(), before)


def test_v1_custom_conv_defs_and_bad_layer_type():
  defs = [mobilenet_v1.Conv(kernel=3, stride=2, depth=16),
          mobilenet_v1.DepthSepConv(kernel=3, stride=2, depth=32)]
  logits, shapes = _trace(mobilenet_v1.mobilenet_v1(5, conv_defs=defs), 32)
  assert shapes['Conv2d_1_pointwise'] == [1, 8, 8, 32]
  assert logits == [1, 5]
  with pytest.raises(ValueError, match='tuple.*Conv, DepthSepConv'):
    mobilenet_v1.mobilenet_v1(5, conv_defs=[(3, 2, 16)])


# MobileNet v2.


def test_make_divisible_rounds_as_tf_slim():
  assert mobilenet_v2.make_divisible(32 * 0.35, 8) == 16  # never 10% below
  assert mobilenet_v2.make_divisible(16 * 1.4, 8) == 24
  assert mobilenet_v2.make_divisible(1280 * 1.4, 8) == 1792
  assert mobilenet_v2.make_divisible(3, 8) == 8
  assert mobilenet_v2.make_divisible(3, 8, min_value=4) == 4


def test_v2_names_follow_tf_slim():
  net = mobilenet_v2.mobilenet_v2(num_classes=10)
  _trace(net, 32)
  variables = _variables(net)
  assert variables['MobilenetV2/Conv/weights'].shape == (3, 3, 3, 32)
  # The first block does not expand (expansion 1).
  assert 'MobilenetV2/expanded_conv/expand/weights' not in variables
  assert variables['MobilenetV2/expanded_conv/depthwise/depthwise_weights'] \
      .shape == (3, 3, 32, 1)
  assert variables['MobilenetV2/expanded_conv/project/weights'].shape == (
      1, 1, 32, 16)
  assert variables['MobilenetV2/expanded_conv_1/expand/weights'].shape == (
      1, 1, 16, 96)
  assert 'MobilenetV2/expanded_conv_16/project/BatchNorm/gamma' in variables
  assert 'MobilenetV2/expanded_conv_17/project/weights' not in variables
  assert variables['MobilenetV2/Conv_1/weights'].shape == (1, 1, 320, 1280)
  assert variables['MobilenetV2/Logits/Conv2d_1c_1x1/weights'].shape == (
      1, 1, 1280, 10)
  assert [p for p in variables if p.endswith('biases')] == [
      'MobilenetV2/Logits/Conv2d_1c_1x1/biases']


def test_v2_finegrain_mode_keeps_last_layer():
  _, plain = _trace(mobilenet_v2.mobilenet_v2(10, depth_multiplier=0.35), 32)
  _, fine = _trace(mobilenet_v2.mobilenet_v2_035(10), 32)
  assert plain['layer_19'][-1] == 448  # 1280 * 0.35
  assert fine['layer_19'][-1] == 1280
  assert fine['layer_18'][-1] == plain['layer_18'][-1] == 112
  # Above 1 the last layer grows with the others.
  _, wide = _trace(mobilenet_v2.mobilenet_v2_140(
      10, finegrain_classification_mode=True), 32)
  assert wide['layer_19'][-1] == 1792


def test_v2_residual_only_for_stride_1_and_equal_depth():
  net = mobilenet_v2.mobilenet_v2_035(10)
  images = _images(32)
  net(images, training=False)
  variables = _variables(net)

  def zero_projection(block):
    # Leaves exactly the block's residual connection, if it has one.
    for var in ('gamma', 'beta'):
      variables[f'MobilenetV2/{block}/project/BatchNorm/{var}'].assign(
          tf.zeros([8]))
    return net(images, training=False)[1]

  # expanded_conv_2 (layer_4) keeps stride and depth: output = input.
  end_points = zero_projection('expanded_conv_2')
  assert np.abs(end_points['layer_3']).max() > 0
  np.testing.assert_array_equal(end_points['layer_4'], end_points['layer_3'])
  # expanded_conv_1 (layer_3) strides: no residual connection.
  end_points = zero_projection('expanded_conv_1')
  np.testing.assert_array_equal(end_points['layer_3'], 0.0)


def test_v2_output_stride_and_explicit_padding():
  _, shapes = _trace(mobilenet_v2.mobilenet_v2_035(10, output_stride=16), 64)
  assert shapes['layer_19'][1:3] == [4, 4]
  assert shapes['layer_14'][1:3] == [4, 4]
  for bad in (0, 3):
    with pytest.raises(ValueError, match=str(bad)):
      mobilenet_v2.mobilenet_v2(10, output_stride=bad)
  _, same = _trace(mobilenet_v2.mobilenet_v2_035(10), 64)
  _, explicit = _trace(
      mobilenet_v2.mobilenet_v2_035(10, use_explicit_padding=True), 64)
  assert explicit == same


def test_v2_explicit_padding_of_depthwise_is_symmetric():
  images = _images(32)
  net = mobilenet_v2.mobilenet_v2_035(10, use_explicit_padding=True)
  _, end_points = net(images, training=False)
  block = net.body[2][0]  # expanded_conv_1, stride 2
  expanded = end_points['layer_3/expansion_output']
  kernel = block.depthwise.depthwise_kernel
  padded = tf.pad(expanded, [[0, 0], [1, 1], [1, 1], [0, 0]])
  expected = tf.nn.relu6(tf.nn.depthwise_conv2d(
      padded, kernel, [1, 2, 2, 1], 'VALID') / math.sqrt(1.0 + 0.001))
  np.testing.assert_allclose(end_points['layer_3/depthwise_output'], expected,
                             atol=1e-5)


def test_v2_defaults_match_tf_slim_training_scope():
  net = mobilenet_v2.mobilenet_v2_035(10, weight_decay=0.1)
  _trace(net, 32)
  norm = net.body[0][0].norm
  assert (norm.momentum, norm.epsilon, norm.scale) == (0.997, 0.001, True)
  assert net.dropout_keep_prob == 0.8
  # Weight decay on every full conv (Conv, expand, project, Conv_1, logits),
  # none on depthwise weights.
  assert len(net.losses) == 2 + 16 + 17 + 1
  assert all(v.path.endswith('/weights') for v in net.trainable_weights
             if v.regularizer is not None)


def test_v2_features_and_bad_layer_type():
  net = mobilenet_v2.mobilenet_v2_035(0)
  features, end_points = net(_images(32), training=False)
  assert features.shape == (2, 1, 1, 1280)
  assert 'Logits' not in end_points
  assert not [v for v in net.weights if 'Logits' in v.path]
  with pytest.raises(ValueError, match='list.*Conv, ExpandedConv'):
    mobilenet_v2.mobilenet_v2(5, conv_defs=[[3, 2, 16]])
