"""Floating-point operations of a net, for throughput and utilisation.

Convention (as TF-Slim's published tables, TF's profiler and the MFU
literature): only the multiply-adds of convolutions (dense and depthwise)
and matrix products are counted; batch norm, activations, pooling and
additions are left out. One multiply-add is 2 FLOPs. A training step costs
about 3 forward passes (the forward pass, and the backward pass's gradients
with respect to the activations and to the weights), so training costs
2 x 3 = 6 FLOPs per forward multiply-add per image.
"""

import math

FLOPS_PER_MULTIPLY_ADD = 2
# Forward, gradient of the inputs, gradient of the weights.
TRAINING_PASSES = 3


def count_multiply_adds(graph):
  """Counts the multiply-adds of the convolutions and matmuls in `graph`.

  Shapes must be static.

  Args:
    graph: A `tf.Graph`, e.g. a concrete function's graph traced at batch 1.

  Returns:
    The number of multiply-adds, an int.
  """
  total = 0
  for op in graph.get_operations():
    if op.type == 'Conv2D':
      kh, kw, cin, _ = op.inputs[1].shape.as_list()
      total += op.outputs[0].shape.num_elements() * kh * kw * cin
    elif op.type == 'DepthwiseConv2dNative':
      kh, kw, _, _ = op.inputs[1].shape.as_list()
      total += op.outputs[0].shape.num_elements() * kh * kw
    elif op.type in ('MatMul', 'BatchMatMulV2', 'BatchMatMulV3'):
      a_shape = op.inputs[0].shape.as_list()
      transpose = op.get_attr('transpose_a' if op.type == 'MatMul' else 'adj_x')
      inner = a_shape[-2] if transpose else a_shape[-1]
      total += op.outputs[0].shape.num_elements() * inner
  return total


def multiply_adds(net, image_shape, dtype='float32'):
  """Forward multiply-adds per image of `net` on `image_shape` inputs.

  Traces the net at batch 1 (no forward computation runs).

  Args:
    net: A callable net (`nets_factory.get_network_fn`'s result); it may be
      built already.
    image_shape: `(height, width, channels)`.
    dtype: The images' dtype.

  Returns:
    The multiply-adds of one image, an int.
  """
  # Imported here: scripts answer --help and bad flags before TF loads.
  import tensorflow as tf

  # A fresh function: the net's own traced functions are left alone. No
  # AutoGraph: the nets have no Python control flow on tensors (the training
  # step traces them without it too), and converting their code took longer
  # than tracing it.
  forward = tf.function(lambda x: net(x, training=False), autograph=False)
  concrete = forward.get_concrete_function(
      tf.TensorSpec([1, *image_shape], dtype))
  return count_multiply_adds(concrete.graph)


def training_flops_per_image(forward_multiply_adds):
  """FLOPs of one image's training step: multiply-adds x 2 x 3."""
  return forward_multiply_adds * FLOPS_PER_MULTIPLY_ADD * TRAINING_PASSES


def gflops_per_sec(flops_per_image, images_per_sec):
  """Achieved GFLOP/s at `images_per_sec`."""
  return flops_per_image * images_per_sec / 1e9


def utilization(achieved_gflops, peak_gflops):
  """Achieved over peak, a fraction; None when the peak is unknown."""
  if not peak_gflops or not math.isfinite(peak_gflops):
    return None
  return achieved_gflops / peak_gflops
