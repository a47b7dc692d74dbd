"""Family tests of alexnet_v2, vgg and resnet v1/v2: TF-Slim's options, padding.

Parameter counts and variable names of every registered net at its default
size are swept in test_nets_registry.py; this file checks what is specific to
these families on small inputs (ResNets thinned with `depth_multiplier`).
"""

import numpy as np
import pytest
import tensorflow as tf

from slimkit.nets import alexnet
from slimkit.nets import layers
from slimkit.nets import nets_factory
from slimkit.nets import resnet_utils
from slimkit.nets import resnet_v1
from slimkit.nets import resnet_v2
from slimkit.nets import vgg

RESNETS = {'v1': resnet_v1.resnet_v1_50, 'v2': resnet_v2.resnet_v2_50}
# Bottleneck depths 8, 16, 32, 64: the full layout at a fraction of the cost.
THIN = dict(depth_multiplier=0.125)


def _images(size, batch=1, seed=0):
  return tf.random.stateless_normal([batch, size, size, 3], seed=[seed, 1])


def _relative_error(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return np.abs(a - b).max() / max(np.abs(b).max(), 1e-6)


def _shapes(net):
  return [(v.path, tuple(v.shape)) for v in net.weights]


# --- conv2d_same: TF-Slim's explicit padding of strided convs ---

@pytest.mark.parametrize('size', [8, 9])
@pytest.mark.parametrize('kernel_size,rate', [(3, 1), (7, 1), (3, 2)])
def test_conv2d_same_pads_like_tf_slim(size, kernel_size, rate):
  conv = layers.bind(layers.Conv2D, activation=None)
  layer = resnet_utils.conv2d_same(conv, 4, kernel_size, 2, rate=rate,
                                   name='conv')
  x = _images(size)
  out = layer(x)
  kernel = tf.convert_to_tensor(layer.kernel)
  # TF-Slim: pad (k_eff - 1) split as evenly as possible, then VALID.
  k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
  begin, end = (k_eff - 1) // 2, (k_eff - 1) - (k_eff - 1) // 2
  padded = tf.pad(x, [[0, 0], [begin, end], [begin, end], [0, 0]])
  expected = tf.nn.conv2d(padded, kernel, 2, 'VALID', dilations=rate)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  # ... which is a stride-1 SAME conv subsampled, whatever the input size.
  dense = tf.nn.conv2d(x, kernel, 1, 'SAME', dilations=rate)
  np.testing.assert_allclose(out, dense[:, ::2, ::2], rtol=1e-5, atol=1e-5)
  if size % 2 == 0:
    # TF's strided SAME pads an even input only at the end: a different grid.
    strided_same = tf.nn.conv2d(x, kernel, 2, 'SAME', dilations=rate)
    assert strided_same.shape == out.shape
    assert not np.allclose(strided_same, out, atol=1e-3)


def test_conv2d_same_stride_1_is_same_conv():
  conv = layers.bind(layers.Conv2D, activation=None)
  layer = resnet_utils.conv2d_same(conv, 4, 3, 1, rate=2, name='conv')
  x = _images(8)
  out = layer(x)
  expected = tf.nn.conv2d(x, layer.kernel, 1, 'SAME', dilations=2)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# --- output_stride: atrous convs keep the resolution and the variables ---

def test_plan_blocks_follows_tf_slim_strides():
  blocks = resnet_utils.standard_blocks(resnet_v1.BottleneckV1, 50)
  nominal = resnet_utils.plan_blocks(blocks)
  assert [[u.stride for u, _ in p.units] for p in nominal] == [
      [1, 1, 2], [1, 1, 1, 2], [1] * 5 + [2], [1, 1, 1]]
  assert all(rate == 1 for p in nominal for _, rate in p.units)
  # Blocks' stride 8 reached after block2: block3 runs at rate 1 then 2.
  dense = resnet_utils.plan_blocks(blocks, output_stride=4)
  assert [(u.stride, r) for u, r in dense[2].units] == [(1, 1)] * 6
  assert [(u.stride, r) for u, r in dense[3].units] == [(1, 2)] * 3
  with pytest.raises(ValueError, match='output_stride 3'):
    resnet_utils.plan_blocks(blocks, output_stride=3)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_output_stride_keeps_resolution_with_same_variables(version):
  builder = RESNETS[version]
  # 2^k + 1 pixels: the atrous and strided grids then share their corners.
  images = _images(65)
  nominal = builder(None, global_pool=False, **THIN)
  expected, nominal_points = nominal(images)
  assert expected.shape == (1, 3, 3, 256)
  scope = nominal.name
  for output_stride in (16, 8):
    dense = builder(None, global_pool=False, output_stride=output_stride,
                    **THIN)
    dense(images)
    assert _shapes(dense) == _shapes(nominal)
    dense.set_weights(nominal.get_weights())
    features, points = dense(images)
    size = 64 // output_stride + 1
    assert features.shape == (1, size, size, 256)
    assert points[f'{scope}/block4'].shape[1] == size
    factor = 32 // output_stride
    assert _relative_error(features[:, ::factor, ::factor], expected) < 1e-4
  assert nominal_points[f'{scope}/block3'].shape[1] == 3


def test_output_stride_must_be_reachable():
  with pytest.raises(ValueError, match='multiple of 4'):
    resnet_v1.resnet_v1_50(10, output_stride=6, **THIN)
  with pytest.raises(ValueError, match='cannot be reached'):
    resnet_v2.resnet_v2_50(10, output_stride=64, **THIN)


# --- the other ResNet options ---

@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_resnet_end_points_are_tf_slim_names(version):
  net = RESNETS[version](10, **THIN)
  logits, points = net(_images(64, batch=2))
  assert logits.shape == (2, 10)
  scope, unit = net.name, f'bottleneck_{version}'
  assert scope == f'resnet_{version}_50'
  for key in [f'{scope}/conv1', f'{scope}/block1/unit_1/{unit}/shortcut',
              f'{scope}/block1/unit_1/{unit}/conv1',
              f'{scope}/block1/unit_3/{unit}/conv3',
              f'{scope}/block1/unit_3/{unit}', f'{scope}/block4',
              'global_pool', f'{scope}/logits', f'{scope}/spatial_squeeze',
              'predictions']:
    assert key in points, key
  # Only a depth change projects the shortcut.
  assert f'{scope}/block1/unit_2/{unit}/shortcut' not in points
  assert points[f'{scope}/block1'].shape == (2, 8, 8, 32)
  assert points[f'{scope}/block4'].shape == (2, 2, 2, 256)
  assert points['global_pool'].shape == (2, 1, 1, 256)
  assert points[f'{scope}/logits'].shape == (2, 1, 1, 10)
  np.testing.assert_allclose(tf.reduce_sum(points['predictions'], -1), 1.0,
                             rtol=1e-5)
  names = {v.path for v in net.weights}
  assert (f'{scope}/block3/unit_2/{unit}/conv2/BatchNorm/moving_variance'
          in names)
  assert f'{scope}/logits/biases' in names
  if version == 'v2':
    assert f'{scope}/block1/unit_1/{unit}/preact/gamma' in names
    assert f'{scope}/postnorm/moving_mean' in names
    # Pre-activation: a bare root conv and bare conv3/shortcut with biases.
    assert {f'{scope}/conv1/biases',
            f'{scope}/block1/unit_1/{unit}/conv3/biases',
            f'{scope}/block1/unit_1/{unit}/shortcut/biases'} <= names
  else:
    assert f'{scope}/conv1/BatchNorm/gamma' in names
    assert f'{scope}/block1/unit_1/{unit}/shortcut/BatchNorm/beta' in names
    assert not any(n.endswith('/biases') for n in names - {
        f'{scope}/logits/biases'})


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_store_non_strided_activations(version):
  images = _images(64)
  plain = RESNETS[version](10, **THIN)
  expected, plain_points = plain(images)
  net = RESNETS[version](10, store_non_strided_activations=True, **THIN)
  net(images)
  net.set_weights(plain.get_weights())
  logits, points = net(images)
  scope = net.name
  # Block ends are recorded before their last subsampling, at 2x resolution.
  assert plain_points[f'{scope}/block1'].shape[1] == 8
  assert points[f'{scope}/block1'].shape[1] == 16
  assert points[f'{scope}/block4'].shape[1] == 2
  assert _relative_error(logits, expected) < 1e-4


def test_without_root_block_or_global_pool_or_squeeze():
  net = resnet_v1.resnet_v1_50(10, include_root_block=False, global_pool=False,
                               spatial_squeeze=False, **THIN)
  logits, points = net(_images(32))
  # Without conv1 and pool1 the blocks alone stride by 8.
  assert logits.shape == (1, 4, 4, 10)
  assert 'resnet_v1_50/conv1' not in points and 'global_pool' not in points
  assert not any(v.path.startswith('resnet_v1_50/conv1/') for v in net.weights)


@pytest.mark.parametrize('num_classes', [0, None])
def test_resnet_features_without_logits(num_classes):
  net = resnet_v2.resnet_v2_50(num_classes, **THIN)
  features, points = net(_images(32, batch=2))
  assert features.shape == (2, 1, 1, 256)
  assert 'predictions' not in points
  assert not any('logits' in v.path for v in net.weights)


def test_resnet_weight_decay_is_slim_l2():
  net = resnet_v1.resnet_v1_50(10, weight_decay=0.01, **THIN)
  net(_images(32))
  kernels = [v for v in net.trainable_weights if v.path.endswith('/weights')]
  # 1 root conv, 16 units x 3 convs, 4 projection shortcuts, the logits.
  assert len(kernels) == len(net.losses) == 1 + 48 + 4 + 1
  expected = sum(0.01 * float(tf.reduce_sum(k ** 2)) / 2 for k in kernels)
  np.testing.assert_allclose(float(tf.add_n(net.losses)), expected, rtol=1e-4)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_config_round_trip(version):
  net = RESNETS[version](10, output_stride=16, **THIN)
  clone = type(net).from_config(net.get_config())
  net(_images(32))
  clone(_images(32))
  assert _shapes(clone) == _shapes(net)


TINY_RESNETS = {
    'v1': (resnet_v1.resnet_v1, resnet_v1.BottleneckV1),
    'v2': (resnet_v2.resnet_v2, resnet_v2.BottleneckV2),
}


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_tiny_resnet_learns_tiny_data(version):
  # The generic builder with two small blocks (as TF-Slim's own tests do): a
  # 32 px, 8-image problem the net can memorise, so the loss must fall.
  builder, unit = TINY_RESNETS[version]
  blocks = [resnet_utils.resnet_block('block1', unit, 8, 2, 2),
            resnet_utils.resnet_block('block2', unit, 16, 2, 1)]
  net = builder(10, blocks=blocks, scope=f'resnet_{version}_tiny',
                is_training=True)
  images = _images(32, batch=8, seed=3)
  labels = tf.range(8) % 10
  optimizer = tf.keras.optimizers.Adam(1e-2)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      logits, _ = net(images, training=True)
      loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
          labels, logits, from_logits=True))
    grads = tape.gradient(loss, net.trainable_weights)
    optimizer.apply_gradients(zip(grads, net.trainable_weights))
    return loss, grads

  first, grads = step()
  assert all(g is not None for g in grads)
  moving = [v for v in net.non_trainable_weights if 'moving_mean' in v.path]
  before = [v.numpy().copy() for v in moving]
  for _ in range(30):
    last, _ = step()
  assert float(last) < 0.5 * float(first)
  # Training mode updates the batch-norm statistics.
  assert any(not np.allclose(b, v.numpy()) for b, v in zip(before, moving))


# --- VGG and AlexNet ---

def test_alexnet_v2_layout_at_224():
  net = nets_factory.get_network_fn('alexnet_v2', 10)
  assert net.default_image_size == 224
  logits, points = net(_images(224))
  assert logits.shape == (1, 10)
  shapes = {k: tuple(v.shape[1:]) for k, v in points.items()}
  assert shapes == {
      'alexnet_v2/conv1': (54, 54, 64), 'alexnet_v2/pool1': (26, 26, 64),
      'alexnet_v2/conv2': (26, 26, 192), 'alexnet_v2/pool2': (12, 12, 192),
      'alexnet_v2/conv3': (12, 12, 384), 'alexnet_v2/conv4': (12, 12, 384),
      'alexnet_v2/conv5': (12, 12, 256), 'alexnet_v2/pool5': (5, 5, 256),
      'alexnet_v2/fc6': (1, 1, 4096), 'alexnet_v2/fc7': (1, 1, 4096),
      'alexnet_v2/fc8': (10,)}
  # Biases start at 0.1 except fc8's; fc layers use truncated normal(0.005).
  variables = {v.path: v.numpy() for v in net.weights}
  np.testing.assert_allclose(variables['alexnet_v2/conv3/biases'], 0.1)
  np.testing.assert_allclose(variables['alexnet_v2/fc8/biases'], 0.0)
  assert np.abs(variables['alexnet_v2/fc7/weights']).max() <= 0.01 + 1e-6


def test_alexnet_v2_global_pool_and_features():
  net = alexnet.alexnet_v2(0, global_pool=True)
  features, points = net(_images(256))
  assert points['alexnet_v2/fc7'].shape == (1, 2, 2, 4096)
  assert features.shape == (1, 1, 1, 4096)
  assert not any('fc8' in v.path for v in net.weights)


def test_vgg_a_names_and_fully_convolutional_options():
  # 32 px only works with fc6 as a SAME conv; global_pool then gives 1x1.
  net = vgg.vgg_a(10, fc_conv_padding='SAME', global_pool=True,
                  weight_decay=0.0005)
  logits, points = net(_images(32, batch=2))
  assert logits.shape == (2, 10)
  assert list(points) == [
      'vgg_a/conv1/conv1_1', 'vgg_a/pool1', 'vgg_a/conv2/conv2_1',
      'vgg_a/pool2', 'vgg_a/conv3/conv3_1', 'vgg_a/conv3/conv3_2',
      'vgg_a/pool3', 'vgg_a/conv4/conv4_1', 'vgg_a/conv4/conv4_2',
      'vgg_a/pool4', 'vgg_a/conv5/conv5_1', 'vgg_a/conv5/conv5_2',
      'vgg_a/pool5', 'vgg_a/fc6', 'vgg_a/fc7', 'global_pool', 'vgg_a/fc8']
  assert points['vgg_a/pool5'].shape == (2, 1, 1, 512)
  names = [v.path for v in net.weights]
  assert names[:2] == ['vgg_a/conv1/conv1_1/weights',
                       'vgg_a/conv1/conv1_1/biases']
  assert names[-1] == 'vgg_a/fc8/biases'
  assert len(names) == 22 and len(net.losses) == 11


def test_vgg_configurations():
  assert [sum(vgg.CONVS_PER_BLOCK[n]) + 3 for n in ('vgg_a', 'vgg_16',
                                                    'vgg_19')] == [11, 16, 19]
  for name in ('vgg_a', 'vgg_16', 'vgg_19'):
    entry = nets_factory.get_entry(name)
    net = entry.builder(num_classes=10)
    assert net.name == name and net.default_image_size == 224


@pytest.mark.slow
@pytest.mark.parametrize('name,size,options', [
    ('vgg_a', 32, dict(fc_conv_padding='SAME', global_pool=True)),
    ('alexnet_v2', 224, {}),
])
def test_vgg_and_alexnet_learn_tiny_data(name, size, options):
  net = nets_factory.get_network_fn(name, 4, is_training=True,
                                    dropout_keep_prob=1.0, **options)
  images = _images(size, batch=4, seed=5)
  labels = tf.range(4)
  optimizer = tf.keras.optimizers.Adam(1e-4)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      logits, _ = net(images, training=True)
      loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
          labels, logits, from_logits=True))
    grads = tape.gradient(loss, net.trainable_weights)
    optimizer.apply_gradients(zip(grads, net.trainable_weights))
    return loss

  first = float(step())
  for _ in range(15):
    last = float(step())
  assert last < 0.5 * first
