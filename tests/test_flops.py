"""The multiply-add count and the FLOPs convention of `slimkit.flops`.

References are closed forms computed by hand for single ops.
"""

import pytest
import tensorflow as tf

from slimkit import flops


def _graph(fn, *specs):
  return tf.function(fn).get_concrete_function(*specs).graph


def test_counts_a_strided_valid_convolution():
  kernel = tf.zeros([3, 5, 4, 7])
  graph = _graph(
      lambda x: tf.nn.conv2d(x, kernel, strides=2, padding='VALID'),
      tf.TensorSpec([2, 17, 21, 4]))
  # Output 8x9 per image (floor((17-3)/2)+1, floor((21-5)/2)+1), 7 channels,
  # each output 3*5*4 multiply-adds; two images.
  assert flops.count_multiply_adds(graph) == 2 * 8 * 9 * 7 * 3 * 5 * 4


def test_counts_depthwise_convolution_and_matmuls():
  depthwise = tf.zeros([3, 3, 6, 2])
  weights = tf.zeros([10, 6 * 2])

  def fn(x, a, b):
    y = tf.nn.depthwise_conv2d(x, depthwise, strides=[1, 1, 1, 1],
                               padding='SAME')
    return (y, tf.matmul(tf.reshape(y, [-1, 12 * 12 * 12])[:, :12], weights,
                         transpose_b=True),
            tf.matmul(a, b, transpose_a=True), tf.linalg.matmul(
                tf.zeros([4, 2, 3]), tf.zeros([4, 3, 5])))

  graph = _graph(fn, tf.TensorSpec([1, 12, 12, 6]), tf.TensorSpec([9, 3]),
                 tf.TensorSpec([9, 8]))
  expected = (12 * 12 * 12 * 3 * 3  # each of 6*2 output channels sees 3x3
              + 1 * 10 * 12  # [1, 12] x [12, 10]
              + 3 * 8 * 9  # [3, 9] x [9, 8]
              + 4 * 2 * 5 * 3)  # 4 x [2, 3] x [3, 5]
  assert flops.count_multiply_adds(graph) == expected


def test_training_flops_and_utilization():
  assert flops.training_flops_per_image(1000) == 6000
  assert flops.gflops_per_sec(6e9, 25.0) == pytest.approx(150.0)
  assert flops.utilization(150.0, 200.0) == pytest.approx(0.75)
  assert flops.utilization(150.0, None) is None
  assert flops.utilization(150.0, 0) is None
