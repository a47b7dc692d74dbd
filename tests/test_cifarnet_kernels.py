"""cifarnet's mixed kernel sizes: one per convolution, from the command line
(`kernel_size=5/3`) and in a study's `--vary`."""

import math

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from slimkit.nets import cifarnet
from slimkit.nets import nets_factory
from slimkit.study import grid


def _size(variables):
  return sum(math.prod(v.shape) for v in variables)


def test_one_kernel_size_per_convolution():
  net = nets_factory.get_network_fn('cifarnet', 10, kernel_size=(5, 3))
  images = tf.random.stateless_uniform([2, 32, 32, 3], [0, 1], -1.0, 1.0)
  _, end_points = net(images)
  shapes = {v.path: tuple(v.shape) for v in net.weights}
  assert shapes['CifarNet/conv1/weights'] == (5, 5, 3, 64)
  assert shapes['CifarNet/conv2/weights'] == (3, 3, 64, 64)
  # TF-Slim's 5x5 CifarNet has 1,756,426 parameters; conv2 at 3x3 has
  # 25 - 9 fewer weights per input-output pair.
  assert _size(net.trainable_weights) == 1756426 - 16 * 64 * 64
  # conv2 is a 3x3 SAME convolution of what feeds it (pool1, then norm1).
  weights = {v.path: v for v in net.weights}
  norm1 = tf.nn.lrn(end_points['pool1'], 4, bias=1.0, alpha=0.001 / 9.0,
                    beta=0.75)
  expected = tf.nn.relu(tf.nn.conv2d(
      norm1, weights['CifarNet/conv2/weights'], 1, 'SAME') +
                        weights['CifarNet/conv2/biases'])
  np.testing.assert_allclose(end_points['conv2'], expected, rtol=1e-4,
                             atol=1e-4)


def test_an_int_still_sets_both_and_a_list_is_a_pair():
  same = cifarnet.cifarnet(10, kernel_size=3)
  same(tf.zeros([1, 32, 32, 3]))
  assert {tuple(v.shape)[:2] for v in same.weights
          if v.path.endswith('weights') and 'conv' in v.path} == {(3, 3)}
  pair = cifarnet.cifarnet(10, kernel_size=[3, 5])  # a config from JSON
  pair(tf.zeros([1, 32, 32, 3]))
  shapes = {v.path: tuple(v.shape) for v in pair.weights}
  assert shapes['CifarNet/conv2/weights'][:2] == (5, 5)


@pytest.mark.parametrize('value', [(5, 3, 3), (5, 0), (5, True), (), '5'])
def test_bad_kernel_sizes_are_refused(value):
  with pytest.raises(ValueError, match='kernel_size must be a positive '
                     'integer.*one per convolution'):
    cifarnet.cifarnet(10, kernel_size=value)


def test_the_command_line_spelling():
  option = nets_factory.network_options('cifarnet')['kernel_size']
  assert option.per_layer and option.default == 5
  assert nets_factory.parse_model_options(
      'cifarnet', 'kernel_size=5/3,lrn=false') == {'kernel_size': (5, 3),
                                                   'lrn': False}
  assert nets_factory.parse_model_options('cifarnet', 'kernel_size=3') == {
      'kernel_size': 3}
  assert nets_factory.format_model_options(
      {'kernel_size': (5, 3), 'lrn': False}) == 'kernel_size=5/3,lrn=False'
  with pytest.raises(ValueError, match=r"kernel_size='5/x': expected an "
                     r'integer \(default 5\), or one per layer'):
    nets_factory.parse_model_options('cifarnet', 'kernel_size=5/x')
  with pytest.raises(ValueError, match='one per convolution'):
    nets_factory.parse_model_options('cifarnet', 'kernel_size=5/3/3')
  # Other int options take one value only.
  assert not nets_factory.network_options('mobilenet_v1').get(
      'min_depth', nets_factory.ModelOption('x', 1, int)).per_layer


def test_a_study_varies_3x3_5x5_and_mixed():
  values = flags.FlagValues()
  flags.DEFINE_string('optimizer', 'sgd', '', flag_values=values)
  axes = grid.check_axes([grid.parse_vary('kernel_size=3,5,5/3')],
                         flag_values=values, model_name='cifarnet')
  assert axes[0].is_model_option and axes[0].values == ('3', '5', '5/3')
  runs = grid.build_runs(axes, seeds=(0,))
  assert [r.name for r in runs] == ['kernel_size=3,seed=0',
                                    'kernel_size=5,seed=0',
                                    'kernel_size=5_3,seed=0']
  assert grid.merge_model_options('lrn=false', runs[2].model_option_values(
      axes)) == 'lrn=false,kernel_size=5/3'
  kernels = dict(grid.read_flagfile('studies/kernels.flags'))
  assert kernels['vary'] == 'kernel_size=3,5,5/3'
