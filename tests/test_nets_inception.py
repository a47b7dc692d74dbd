"""Inception v1-v4 and Inception-ResNet v2: family-specific behaviour.

Builds stay small (32-107 px, batch 1-2); the registry sweep pins counts,
names and gradients at the default sizes. The `slow` test here pins TF-Slim's
counts of the five nets by tracing at the default size.
"""

import numpy as np
import pytest
import tensorflow as tf

from slimkit.nets import inception_resnet_v2
from slimkit.nets import inception_utils
from slimkit.nets import inception_v1
from slimkit.nets import inception_v2
from slimkit.nets import inception_v3
from slimkit.nets import inception_v4
from slimkit.nets import nets_factory


def _paths(net):
  return {v.path: tuple(v.shape) for v in net.weights}


def _images(size, batch=1, seed=0):
  return tf.random.stateless_uniform([batch, size, size, 3], [seed, 1],
                                     minval=-1.0, maxval=1.0)


def _valid(size, kernel, stride=1):
  return (size - kernel) // stride + 1


def _same(size, stride):
  return -(-size // stride)


def test_v1_global_pool_unsqueezed_logits_and_slim_names():
  net = inception_v1.inception_v1(num_classes=10, global_pool=True,
                                  spatial_squeeze=False)
  logits, end_points = net(_images(32, batch=2))
  assert logits.shape == (2, 1, 1, 10)
  assert end_points['global_pool'].shape == (2, 1, 1, 1024)
  assert 'AvgPool_0a_7x7' not in end_points
  # SAME padding everywhere: each stride-2 op halves, rounding up.
  assert end_points['Conv2d_1a_7x7'].shape[1] == _same(32, 2)
  assert end_points['MaxPool_5a_2x2'].shape[1:] == (1, 1, 832)
  assert list(end_points)[:6] == ['Conv2d_1a_7x7', 'MaxPool_2a_3x3',
                                  'Conv2d_2b_1x1', 'Conv2d_2c_3x3',
                                  'MaxPool_3a_3x3', 'Mixed_3b']
  np.testing.assert_allclose(tf.reduce_sum(end_points['Predictions'], -1),
                             1.0, rtol=1e-5)
  paths = _paths(net)
  # TF-Slim's odd scope in Mixed_5b survives, as checkpoints need it.
  assert paths['InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights'] == (
      3, 3, 32, 128)
  assert paths['InceptionV1/Logits/Conv2d_0c_1x1/biases'] == (10,)
  # Batch norm without gamma, as in TF-Slim's Inception arg scope.
  assert not any(p.endswith('gamma') for p in paths)
  assert 'InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_variance' in paths


def test_v2_thinned_separable_stem_and_features():
  net = inception_v2.inception_v2(num_classes=0, depth_multiplier=0.25,
                                  global_pool=True)
  features, end_points = net(_images(32))
  # depth(d) = max(int(d / 4), 16): Mixed_5c is 88 + 80 + 56 + 32 wide.
  assert features.shape == (1, 1, 1, 256)
  assert 'Logits' not in end_points and 'PreLogits' not in end_points
  paths = _paths(net)
  # depthwise multiplier min(int(depth(64) / 3), 8) = 5; no batch norm,
  # biases instead: TF-Slim's arg scope does not reach separable convs.
  assert paths['InceptionV2/Conv2d_1a_7x7/depthwise_weights'] == (7, 7, 3, 5)
  assert paths['InceptionV2/Conv2d_1a_7x7/pointwise_weights'] == (
      1, 1, 15, 16)
  assert 'InceptionV2/Conv2d_1a_7x7/biases' in paths
  assert paths['InceptionV2/Mixed_4a/Branch_1/Conv2d_1a_3x3/weights'] == (
      3, 3, 24, 24)
  assert not any('Logits' in p for p in paths)


def test_v2_plain_first_conv_and_bad_depth_multiplier():
  net = inception_v2.inception_v2(num_classes=5, use_separable_conv=False,
                                  depth_multiplier=0.1, global_pool=True,
                                  weight_decay=1e-3)
  logits, end_points = net(_images(32))
  assert logits.shape == (1, 5)
  # Mixed_5c: int(35.2) + int(32.0) + int(22.4) + max(int(12.8), 16).
  assert end_points['PreLogits'].shape == (1, 1, 1, 105)
  paths = _paths(net)
  assert paths['InceptionV2/Conv2d_1a_7x7/weights'] == (7, 7, 3, 16)
  assert 'InceptionV2/Conv2d_1a_7x7/BatchNorm/beta' in paths
  # One decay term per conv kernel, the logits conv's included.
  kernels = [v for v in net.trainable_weights if v.path.endswith('/weights')]
  assert len(net.losses) == len(kernels)
  with pytest.raises(ValueError, match='depth_multiplier'):
    inception_v2.inception_v2(num_classes=5, depth_multiplier=0)


def test_v3_valid_stem_and_auxiliary_head_on_small_input():
  size = 107  # The smallest input the auxiliary head's VALID pool accepts.
  net = inception_v3.inception_v3(num_classes=7, depth_multiplier=0.25,
                                  min_depth=8)
  logits, end_points = net(_images(size))
  assert logits.shape == (1, 7)
  assert end_points['AuxLogits'].shape == (1, 7)
  # TF-Slim's VALID stem and reductions.
  conv1a = _valid(size, 3, 2)
  assert end_points['Conv2d_1a_3x3'].shape[1] == conv1a
  assert end_points['Conv2d_2b_3x3'].shape[1] == _valid(conv1a, 3)
  pool5a = _valid(_valid(_valid(_valid(conv1a, 3), 3, 2), 3), 3, 2)
  assert end_points['MaxPool_5a_3x3'].shape[1] == pool5a
  assert end_points['Mixed_6e'].shape[1] == _valid(pool5a, 3, 2) == 5
  assert end_points['Mixed_7c'].shape[1:3] == (2, 2)
  assert end_points['AvgPool_1a'].shape[1:3] == (1, 1)
  paths = _paths(net)
  # The aux 5x5 conv shrinks to the pooled 1x1 map (5x5 pooled by 5, stride
  # 3) and its scope says so, as in TF-Slim.
  assert paths['InceptionV3/AuxLogits/Conv2d_2a_1x1/weights'] == (
      1, 1, 32, 192)
  assert not any('Conv2d_2a_5x5' in p for p in paths)
  assert paths['InceptionV3/AuxLogits/Conv2d_2b_1x1/biases'] == (7,)
  assert paths['InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights'] == (
      5, 5, 12, 16)
  assert paths['InceptionV3/Mixed_6a/Branch_0/Conv2d_1a_1x1/weights'] == (
      3, 3, 72, 96)
  assert paths['InceptionV3/Mixed_7b/Branch_1/Conv2d_0b_3x1/weights'] == (
      3, 1, 96, 96)


def test_v4_fully_connected_heads_and_bias_free_decay():
  net = inception_v4.inception_v4(num_classes=3, weight_decay=4e-5)
  logits, end_points = net(_images(107))
  assert logits.shape == (1, 3)
  assert end_points['AuxLogits'].shape == (1, 3)
  assert end_points['global_pool'].shape == (1, 1, 1, 1536)
  assert end_points['PreLogitsFlatten'].shape == (1, 1536)
  assert end_points['Mixed_6h'].shape == (1, 5, 5, 1024)
  assert end_points['Mixed_7d'].shape == (1, 2, 2, 1536)
  paths = _paths(net)
  # Conv2d_2a spans the whole pooled map (1x1 here, 5x5 at 299x299).
  assert paths['InceptionV4/AuxLogits/Conv2d_2a/weights'] == (1, 1, 128, 768)
  assert paths['InceptionV4/AuxLogits/Aux_logits/weights'] == (768, 3)
  assert paths['InceptionV4/Logits/Logits/weights'] == (1536, 3)
  assert paths['InceptionV4/Mixed_7b/Branch_2/Conv2d_0e_3x1/weights'] == (
      3, 1, 512, 256)
  kernels = [v for v in net.trainable_weights if v.path.endswith('/weights')]
  assert len(net.losses) == len(kernels)


def test_inception_resnet_v2_scopes_without_aux_head_and_bias_decay():
  net = nets_factory.get_network_fn('inception_resnet_v2', 4,
                                    weight_decay=4e-5, create_aux_logits=False)
  logits, end_points = net(_images(75))  # Minimum size without the aux head.
  assert logits.shape == (1, 4)
  assert 'AuxLogits' not in end_points
  assert list(end_points) == [
      'Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'MaxPool_3a_3x3',
      'Conv2d_3b_1x1', 'Conv2d_4a_3x3', 'MaxPool_5a_3x3', 'Mixed_5b',
      'Mixed_6a', 'PreAuxLogits', 'Mixed_7a', 'Conv2d_7b_1x1', 'global_pool',
      'PreLogitsFlatten', 'Logits', 'Predictions']
  assert end_points['PreAuxLogits'].shape == (1, 3, 3, 1088)
  paths = _paths(net)
  assert not any('AuxLogits' in p for p in paths)
  scope = 'InceptionResnetV2'
  # slim.repeat's scopes, then the bare last block.
  for repeat, block, count, depth in (('Repeat', 'block35', 10, 320),
                                      ('Repeat_1', 'block17', 20, 1088),
                                      ('Repeat_2', 'block8', 9, 2080)):
    for i in (1, count):
      assert paths[f'{scope}/{repeat}/{block}_{i}/Conv2d_1x1/biases'] == (
          depth,)
    assert f'{scope}/{repeat}/{block}_{count + 1}/Conv2d_1x1/biases' not in (
        paths)
  assert paths[f'{scope}/Block8/Conv2d_1x1/weights'] == (1, 1, 448, 2080)
  assert f'{scope}/Block8/Conv2d_1x1/BatchNorm/beta' not in paths
  assert paths[f'{scope}/Logits/Logits/biases'] == (4,)
  # TF-Slim's arg scope decays biases as well as weights.
  decayed = [v for v in net.trainable_weights if not v.path.endswith('beta')]
  assert len(net.losses) == len(decayed)


@pytest.mark.parametrize('activation, expected', [
    ('relu', lambda x: np.maximum(x + 0.17 * 2.0, 0.0)),
    (None, lambda x: x + 0.17 * 2.0),
    ('relu6', lambda x: np.clip(x + np.minimum(0.17 * 50.0, 6.0), 0.0, 6.0)),
])
def test_residual_block_scales_clips_and_activates(activation, expected):
  ls = inception_utils.inception_layers(activation=activation or 'relu')
  block = inception_resnet_v2.ResidualBlock(
      inception_resnet_v2.BLOCK35, ls, scale=0.17, activation=activation,
      name='block35_1')
  x = _images(5, batch=2) * 4.0
  block(x)
  # Make the residual a constant: zero projection kernel, constant biases.
  block.up.kernel.assign(tf.zeros_like(block.up.kernel))
  bias = 50.0 if activation == 'relu6' else 2.0
  block.up.biases.assign(tf.fill(block.up.biases.shape, bias))
  assert block.up.biases.shape == (3,)  # Projected back to the input depth.
  np.testing.assert_allclose(block(x), expected(x.numpy()), rtol=1e-5,
                             atol=1e-5)


def test_aux_head_on_too_small_map_says_what_to_do():
  # Inception v3's Mixed_6e is 3x3 on 75x75 images.
  head = inception_utils.AuxLogits(3, inception_utils.inception_layers(),
                                   conv_name='Conv2d_2a_5x5',
                                   logits_name='Logits')
  with pytest.raises(ValueError, match='create_aux_logits=False'):
    head(tf.zeros([1, 3, 3, 8]))


def test_reduced_kernel_size_follows_static_shape():
  x = tf.zeros([1, 3, 6, 4])
  assert inception_utils.reduced_kernel_size(x, (5, 5)) == (3, 5)
  assert inception_utils.reduced_kernel_size(x, None) == (3, 6)


def test_config_round_trip_and_factory_options():
  net = nets_factory.get_network_fn('inception_v3', 10, weight_decay=1e-4,
                                    is_training=True, create_aux_logits=False,
                                    depth_multiplier=0.5)
  assert isinstance(net, inception_v3.InceptionV3)
  assert net.default_image_size == 299
  assert net.aux_logits is None
  clone = inception_v3.InceptionV3.from_config(net.get_config())
  assert clone.get_config() == net.get_config()
  assert clone.get_config()['depth_multiplier'] == 0.5
  with pytest.raises(TypeError):
    nets_factory.get_network_fn('inception_v4', 10, output_stride=8)


def test_v2_learns_tiny_data_and_checkpoints_every_variable(tmp_path):
  tf.keras.utils.set_random_seed(0)
  net = inception_v2.inception_v2(num_classes=2, depth_multiplier=0.1,
                                  global_pool=True, dropout_keep_prob=1.0,
                                  weight_decay=0.0, is_training=True)
  # Two classes told apart by brightness.
  images = tf.concat([_images(32, 4, seed=1) * 0.2 - 0.5,
                      _images(32, 4, seed=2) * 0.2 + 0.5], 0)
  labels = tf.constant([0] * 4 + [1] * 4)
  optimizer = tf.keras.optimizers.Adam(0.02)

  # Eager: tracing this net's gradient costs more than a few eager steps.
  def step():
    with tf.GradientTape() as tape:
      logits, _ = net(images, training=True)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads = tape.gradient(loss, net.trainable_weights)
    optimizer.apply_gradients(zip(grads, net.trainable_weights))
    return loss

  losses = [float(step()) for _ in range(8)]
  assert min(losses[-2:]) < 0.5 * losses[0]
  path = tf.train.Checkpoint(model=net).save(str(tmp_path / 'ckpt'))
  saved = [name for name, _ in tf.train.list_variables(path)
           if name.startswith('model/')]
  assert len(saved) == len(net.weights)


@pytest.mark.slow
@pytest.mark.parametrize('name, size, params, variables', [
    ('inception_v1', 224, 6618649, 230),
    ('inception_v2', 224, 11179361, 277),
    ('inception_v3', 299, 27145970, 388),
    ('inception_v4', 299, 46009106, 608),
    ('inception_resnet_v2', 299, 59182258, 908),
])
def test_tf_slim_counts_at_default_size(name, size, params, variables):
  net = nets_factory.get_network_fn(name, 1001)
  assert net.default_image_size == size
  tf.function(net).get_concrete_function(tf.TensorSpec([1, size, size, 3]))
  assert sum(int(np.prod(v.shape)) for v in net.trainable_weights) == params
  assert len(net.weights) == variables
