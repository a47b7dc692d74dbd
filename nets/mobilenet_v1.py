"""MobileNet v1, architecture-exact to TF-Slim's `mobilenet_v1.py`.

MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications, Howard et al. (2017), https://arxiv.org/abs/1704.04861

The body is data: `CONV_DEFS` lists a plain 3x3 convolution followed by 13
depthwise-separable convolutions (`Conv2d_N_depthwise` + `Conv2d_N_pointwise`,
each with batch norm and ReLU6). The width variants scale every layer's depth by
`depth_multiplier` (never below `min_depth`).

Typical use, on 224x224 RGB images scaled to [-1, 1]:

  net = mobilenet_v1_050(num_classes=1001, is_training=True)
  logits, end_points = net(images)
  end_points['Conv2d_13_pointwise']   # [batch, 7, 7, 512]
"""

import collections
import functools

import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import (
    Network, forwards_options, prediction_fn as _prediction_fn)

# A full convolution, and a depthwise 3x3 followed by a pointwise 1x1.
Conv = collections.namedtuple('Conv', ['kernel', 'stride', 'depth'])
DepthSepConv = collections.namedtuple('DepthSepConv',
                                      ['kernel', 'stride', 'depth'])

CONV_DEFS = (
    Conv(kernel=3, stride=2, depth=32),
    DepthSepConv(kernel=3, stride=1, depth=64),
    DepthSepConv(kernel=3, stride=2, depth=128),
    DepthSepConv(kernel=3, stride=1, depth=128),
    DepthSepConv(kernel=3, stride=2, depth=256),
    DepthSepConv(kernel=3, stride=1, depth=256),
    DepthSepConv(kernel=3, stride=2, depth=512),
    DepthSepConv(kernel=3, stride=1, depth=512),
    DepthSepConv(kernel=3, stride=1, depth=512),
    DepthSepConv(kernel=3, stride=1, depth=512),
    DepthSepConv(kernel=3, stride=1, depth=512),
    DepthSepConv(kernel=3, stride=1, depth=512),
    DepthSepConv(kernel=3, stride=2, depth=1024),
    DepthSepConv(kernel=3, stride=1, depth=1024),
)

_OUTPUT_STRIDES = (8, 16, 32)


class MobileNetV1(Network):
  """Conv2d_0 -> 13 depthwise-separable convs -> average pool -> 1x1 logits."""

  default_image_size = 224

  def __init__(self, num_classes=1000, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.999, depth_multiplier=1.0,
               min_depth=8, conv_defs=None,
               output_stride: int | None = None, use_explicit_padding=False,
               global_pool=False, spatial_squeeze=True, prediction_fn='softmax',
               activation='relu6', weights_stddev=0.09,
               regularize_depthwise=False, batch_norm_decay=0.9997,
               batch_norm_epsilon=0.001, batch_norm_scale=True):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the pooled
        `[batch, 1, 1, depth]` features (before dropout).
      weight_decay: L2 weight decay of the conv weights (and of the depthwise
        weights only with `regularize_depthwise`).
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of the pooled features kept in training.
      depth_multiplier: Multiplies every layer's depth (> 0).
      min_depth: Smallest depth a layer gets when `depth_multiplier` < 1.
      conv_defs: A sequence of `Conv`/`DepthSepConv`; defaults to `CONV_DEFS`.
      output_stride: None, or 8, 16 or 32: later layers use atrous
        convolutions instead of striding beyond this input/output ratio.
      use_explicit_padding: Pad 3x3 convs' inputs explicitly and run them
        VALID, as TF-Slim's option of that name (same output sizes as SAME).
      global_pool: Average over the whole feature map before the logits
        (end point 'global_pool') instead of a 7x7 window ('AvgPool_1a').
      spatial_squeeze: Return `[batch, classes]` logits rather than
        `[batch, 1, 1, classes]`.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      activation: Activation of every conv but the logits.
      weights_stddev: Stddev of the truncated-normal weight initializer.
      regularize_depthwise: Whether weight decay also applies to depthwise
        weights (TF-Slim: no).
      batch_norm_decay: Moving-average decay of batch-norm statistics.
      batch_norm_epsilon: Added to the batch-norm variance.
      batch_norm_scale: Whether batch norm owns `gamma`.

    Raises:
      ValueError: for a non-positive `depth_multiplier`, an unsupported
        `output_stride` or an unknown layer type in `conv_defs`.
    """
    if depth_multiplier <= 0:
      raise ValueError(
          f'depth_multiplier must be > 0, got {depth_multiplier!r}')
    if output_stride is not None and output_stride not in _OUTPUT_STRIDES:
      raise ValueError(f'output_stride must be None or one of '
                       f'{_OUTPUT_STRIDES}, got {output_stride!r}')
    super().__init__(scope='MobilenetV1', num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, weight_decay=weight_decay,
                         is_training=is_training,
                         dropout_keep_prob=dropout_keep_prob,
                         depth_multiplier=depth_multiplier,
                         min_depth=min_depth, conv_defs=conv_defs,
                         output_stride=output_stride,
                         use_explicit_padding=use_explicit_padding,
                         global_pool=global_pool,
                         spatial_squeeze=spatial_squeeze,
                         prediction_fn=prediction_fn, activation=activation,
                         weights_stddev=weights_stddev,
                         regularize_depthwise=regularize_depthwise,
                         batch_norm_decay=batch_norm_decay,
                         batch_norm_epsilon=batch_norm_epsilon,
                         batch_norm_scale=batch_norm_scale))
    self.dropout_keep_prob = dropout_keep_prob
    self.use_explicit_padding = use_explicit_padding
    self.global_pool = global_pool
    self.spatial_squeeze = spatial_squeeze
    self.prediction_fn = _prediction_fn(prediction_fn)

    initializer = layers.truncated_normal(weights_stddev)
    regularizer = layers.l2_regularizer(weight_decay)
    normalizer = functools.partial(
        layers.batch_norm, decay=batch_norm_decay, epsilon=batch_norm_epsilon,
        scale=batch_norm_scale)
    padding = 'VALID' if use_explicit_padding else 'SAME'
    conv = layers.bind(layers.Conv2D, padding=padding, activation=activation,
                       normalizer=normalizer, weights_initializer=initializer,
                       weights_regularizer=regularizer)
    depthwise = layers.bind(
        layers.SeparableConv2D, num_outputs=None, padding=padding,
        activation=activation, normalizer=normalizer,
        weights_initializer=initializer,
        weights_regularizer=regularizer if regularize_depthwise else None)

    def depth(d):
      return max(int(d * depth_multiplier), min_depth)

    # (end point, layer, kernel size, rate) in order; the padding of a layer
    # with explicit padding depends on its kernel and rate.
    self.body = []
    current_stride, rate = 1, 1
    for i, conv_def in enumerate(conv_defs or CONV_DEFS):
      if not isinstance(conv_def, (Conv, DepthSepConv)):
        raise ValueError(f'Unknown layer type {type(conv_def).__name__} at '
                         f'index {i} of conv_defs; valid: Conv, DepthSepConv')
      if output_stride is not None and current_stride == output_stride:
        # Past the target stride, keep the resolution and dilate instead.
        layer_stride, layer_rate = 1, rate
        rate *= conv_def.stride
      else:
        layer_stride, layer_rate = conv_def.stride, 1
        current_stride *= conv_def.stride
      if isinstance(conv_def, Conv):
        name = f'Conv2d_{i}'
        self.body.append((name, conv(depth(conv_def.depth), conv_def.kernel,
                                     stride=layer_stride, name=name),
                          conv_def.kernel, 1))
      else:  # DepthSepConv
        name = f'Conv2d_{i}_depthwise'
        self.body.append((name, depthwise(
            kernel_size=conv_def.kernel, stride=layer_stride, rate=layer_rate,
            name=name), conv_def.kernel, layer_rate))
        name = f'Conv2d_{i}_pointwise'
        self.body.append((name, conv(depth(conv_def.depth), 1, name=name), 1,
                          1))
    self.logits = (layers.Conv2D(
        num_classes, 1, activation=None, weights_initializer=initializer,
        weights_regularizer=regularizer, name='Conv2d_1c_1x1')
                   if num_classes else None)

  def forward(self, images, training):
    end_points = {}
    net = images
    for name, layer, kernel_size, rate in self.body:
      if self.use_explicit_padding and kernel_size > 1:
        net = layers.fixed_padding(net, kernel_size, rate)
      net = end_points[name] = layer(net, training=training)
    with layers.scope('Logits'):
      if self.global_pool:
        net = end_points['global_pool'] = layers.global_avg_pool(net)
      else:
        # A 7x7 window pools a 224 input to 1x1; smaller inputs shrink it.
        window = [min(int(net.shape[1]), 7), min(int(net.shape[2]), 7)]
        net = end_points['AvgPool_1a'] = layers.avg_pool2d(
            net, window, stride=2, padding='VALID')
      if not self.num_classes:
        return net, end_points
      net = self.dropout(net, self.dropout_keep_prob, training)
      logits = self.logits(net, training=training)
      if self.spatial_squeeze:
        logits = tf.squeeze(logits, [1, 2], name='SpatialSqueeze')
    end_points['Logits'] = logits
    end_points['Predictions'] = self.prediction_fn(logits)
    return logits, end_points


@forwards_options(MobileNetV1)
def mobilenet_v1(num_classes=1000, **options):
  """Returns a `MobileNetV1`; see `MobileNetV1.__init__` for the options."""
  return MobileNetV1(num_classes, **options)


# The width variants: 75%, 50% and 25% of the depth of every layer. As
# partials their signatures show the bound multiplier as the default.
mobilenet_v1_075 = functools.partial(mobilenet_v1, depth_multiplier=0.75)
mobilenet_v1_050 = functools.partial(mobilenet_v1, depth_multiplier=0.50)
mobilenet_v1_025 = functools.partial(mobilenet_v1, depth_multiplier=0.25)
