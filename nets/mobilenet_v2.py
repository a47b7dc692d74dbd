"""MobileNet v2, architecture-exact to TF-Slim's `mobilenet/mobilenet_v2.py`.

MobileNetV2: Inverted Residuals and Linear Bottlenecks, Sandler et al. (2018),
https://arxiv.org/abs/1801.04381

The body is data: `V2_DEF` lists a 3x3 convolution (`Conv`), 17 inverted
residual blocks (`expanded_conv`, `expanded_conv_1`, ...: a 1x1 `expand` conv to
6x the input depth, a 3x3 `depthwise` conv, a linear 1x1 `project` conv, and a
residual connection when the block keeps the stride and the depth) and a 1x1
convolution to 1280 features (`Conv_1`). Every conv has batch norm; all but
`project` use ReLU6. Width variants scale every depth by `depth_multiplier`
rounded to a multiple of 8; with `finegrain_classification_mode` the last conv
keeps its 1280 features when the multiplier is below 1.

Typical use, on 224x224 RGB images scaled to [-1, 1]:

  net = mobilenet_v2_140(num_classes=1001, is_training=True)
  logits, end_points = net(images)
  end_points['layer_19']   # [batch, 7, 7, 1792]
"""

import collections
import functools

import keras
import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import (
    Network, forwards_options, prediction_fn as _prediction_fn)

# A convolution with batch norm and activation.
Conv = collections.namedtuple('Conv', ['kernel', 'stride', 'depth'])
# An inverted residual block: expand 1x1 (to `expansion` times the input depth,
# rounded to a multiple of `expansion_divisible_by`; skipped when that is not
# more than the input depth), depthwise `kernel`, linear project 1x1 to `depth`.
ExpandedConv = collections.namedtuple(
    'ExpandedConv', ['stride', 'depth', 'expansion', 'expansion_divisible_by',
                     'kernel'], defaults=(6, 8, 3))

V2_DEF = (
    Conv(kernel=3, stride=2, depth=32),
    ExpandedConv(stride=1, depth=16, expansion=1, expansion_divisible_by=1),
    ExpandedConv(stride=2, depth=24),
    ExpandedConv(stride=1, depth=24),
    ExpandedConv(stride=2, depth=32),
    ExpandedConv(stride=1, depth=32),
    ExpandedConv(stride=1, depth=32),
    ExpandedConv(stride=2, depth=64),
    ExpandedConv(stride=1, depth=64),
    ExpandedConv(stride=1, depth=64),
    ExpandedConv(stride=1, depth=64),
    ExpandedConv(stride=1, depth=96),
    ExpandedConv(stride=1, depth=96),
    ExpandedConv(stride=1, depth=96),
    ExpandedConv(stride=2, depth=160),
    ExpandedConv(stride=1, depth=160),
    ExpandedConv(stride=1, depth=160),
    ExpandedConv(stride=1, depth=320),
    Conv(kernel=1, stride=1, depth=1280),
)


def make_divisible(value, divisor, min_value=None):
  """Rounds `value` to a multiple of `divisor`, at least `min_value`.

  TF-Slim's rounding of scaled depths: to the nearest multiple, but never more
  than 10% below `value`.

  Args:
    value: The (scaled) depth, a number.
    divisor: The result is a multiple of this.
    min_value: Lower bound; defaults to `divisor`.

  Returns:
    An int.
  """
  if min_value is None:
    min_value = divisor
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


class ExpandedConvBlock(keras.layers.Layer):
  """TF-Slim's `expanded_conv`: expand 1x1, depthwise, linear project 1x1.

  The `expand` layer is made on the first call, when the input depth is known
  (it is skipped when the expansion would not add channels), and so is the
  decision to add the input to the output (stride 1 and equal depths).
  """

  def __init__(self, depth, *, conv, depthwise, expansion=6,
               expansion_divisible_by=8, kernel_size=3, stride=1, rate=1,
               use_explicit_padding=False, residual=True, name):
    """Creates the block.

    Args:
      depth: Output depth of `project`.
      conv: Factory of the 1x1 convolutions (bound slim-style `Conv2D`).
      depthwise: Factory of the depthwise convolution (bound
        `SeparableConv2D` without outputs of its own).
      expansion: Depth of `expand` as a multiple of the input depth.
      expansion_divisible_by: `expand`'s depth is rounded to a multiple of it.
      kernel_size: Kernel of the depthwise convolution.
      stride: Stride of the depthwise convolution.
      rate: Atrous rate of the depthwise convolution.
      use_explicit_padding: Pad the depthwise input explicitly and run VALID.
      residual: Whether to add the input where stride and depths allow.
      name: The TF-Slim scope name (`expanded_conv_3`).
    """
    super().__init__(name=name)
    self.depth = depth
    self.conv = conv
    self.expansion = expansion
    self.expansion_divisible_by = expansion_divisible_by
    self.kernel_size = kernel_size
    self.rate = rate
    self.use_explicit_padding = use_explicit_padding
    self.allow_residual = residual and stride == 1
    self.expand = None
    self.depthwise = depthwise(
        kernel_size=kernel_size, stride=stride, rate=rate,
        padding='VALID' if use_explicit_padding else 'SAME', name='depthwise')
    self.project = conv(depth, 1, activation=None, name='project')

  def build(self, input_shape):
    in_depth = int(input_shape[-1])
    inner = make_divisible(in_depth * self.expansion,
                           self.expansion_divisible_by)
    if inner > in_depth:
      self.expand = self.conv(inner, 1, name='expand')
    self.residual = self.allow_residual and in_depth == self.depth

  def call(self, inputs, training=None):
    """Returns `(output, {end-point suffix: tensor})`."""
    end_points = {}
    net = inputs
    if self.expand is not None:
      net = end_points['expansion_output'] = self.expand(net, training=training)
    if self.use_explicit_padding:
      net = layers.fixed_padding(net, self.kernel_size, self.rate)
    net = end_points['depthwise_output'] = self.depthwise(
        net, training=training)
    net = self.project(net, training=training)
    if self.residual:
      net = net + inputs
    end_points['output'] = net
    return net, end_points


class MobileNetV2(Network):
  """Conv -> 17 inverted residual blocks -> Conv_1 -> global pool -> logits."""

  default_image_size = 224

  def __init__(self, num_classes=1001, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.8, depth_multiplier=1.0,
               finegrain_classification_mode=False, min_depth=8,
               divisible_by=8, conv_defs=None,
               output_stride: int | None = None, use_explicit_padding=False,
               prediction_fn='softmax',
               activation='relu6', weights_stddev=0.09,
               regularize_depthwise=False, batch_norm_decay=0.997,
               batch_norm_epsilon=0.001, batch_norm_scale=True):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the globally pooled
        `[batch, 1, 1, depth]` features.
      weight_decay: L2 weight decay of the conv weights (and of the depthwise
        weights only with `regularize_depthwise`), as TF-Slim's
        `training_scope`.
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of the pooled features kept in training.
      depth_multiplier: Multiplies every layer's depth (> 0).
      finegrain_classification_mode: Keep the last conv's depth when
        `depth_multiplier` < 1 (TF-Slim's mobilenet_v2_035 and _050 do).
      min_depth: Smallest depth of a scaled layer.
      divisible_by: Scaled depths are rounded to multiples of this.
      conv_defs: A sequence of `Conv`/`ExpandedConv`; defaults to `V2_DEF`.
      output_stride: None, 1 or an even number: later layers use atrous
        convolutions instead of striding beyond this input/output ratio.
      use_explicit_padding: Pad the inputs of convs with kernels larger than
        1x1 explicitly and run them VALID (same output sizes as SAME).
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      activation: Activation of every conv but `project` and the logits.
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
    if output_stride is not None and (
        output_stride < 1 or (output_stride > 1 and output_stride % 2)):
      raise ValueError(f'output_stride must be None, 1 or a positive even '
                       f'number, got {output_stride!r}')
    super().__init__(scope='MobilenetV2', num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, weight_decay=weight_decay,
                         is_training=is_training,
                         dropout_keep_prob=dropout_keep_prob,
                         depth_multiplier=depth_multiplier,
                         finegrain_classification_mode=(
                             finegrain_classification_mode),
                         min_depth=min_depth, divisible_by=divisible_by,
                         conv_defs=conv_defs, output_stride=output_stride,
                         use_explicit_padding=use_explicit_padding,
                         prediction_fn=prediction_fn, activation=activation,
                         weights_stddev=weights_stddev,
                         regularize_depthwise=regularize_depthwise,
                         batch_norm_decay=batch_norm_decay,
                         batch_norm_epsilon=batch_norm_epsilon,
                         batch_norm_scale=batch_norm_scale))
    self.dropout_keep_prob = dropout_keep_prob
    self.use_explicit_padding = use_explicit_padding
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
        layers.SeparableConv2D, num_outputs=None, activation=activation,
        normalizer=normalizer, weights_initializer=initializer,
        weights_regularizer=regularizer if regularize_depthwise else None)

    conv_defs = list(conv_defs or V2_DEF)
    if finegrain_classification_mode and depth_multiplier < 1:
      # Undo the multiplier on the last layer only (applied again below).
      conv_defs[-1] = conv_defs[-1]._replace(
          depth=conv_defs[-1].depth / depth_multiplier)

    def depth(d):
      return make_divisible(d * depth_multiplier, divisible_by, min_depth)

    # (layer, kernel size, rate): the explicit padding of a Conv depends on
    # its kernel and rate; blocks pad their depthwise conv themselves.
    self.body = []
    counts = collections.Counter()
    current_stride, rate = 1, 1
    for i, conv_def in enumerate(conv_defs):
      if not isinstance(conv_def, (Conv, ExpandedConv)):
        raise ValueError(f'Unknown layer type {type(conv_def).__name__} at '
                         f'index {i} of conv_defs; valid: Conv, ExpandedConv')
      if output_stride is not None and current_stride == output_stride:
        # Past the target stride, keep the resolution and dilate instead.
        layer_stride, layer_rate = 1, rate
        rate *= conv_def.stride
      else:
        layer_stride, layer_rate = conv_def.stride, 1
        current_stride *= conv_def.stride
      if isinstance(conv_def, Conv):
        name = _unique('Conv', counts)
        layer = conv(depth(conv_def.depth), conv_def.kernel,
                     stride=layer_stride, rate=layer_rate, name=name)
      else:  # ExpandedConv
        name = _unique('expanded_conv', counts)
        layer = ExpandedConvBlock(
            depth(conv_def.depth), conv=conv, depthwise=depthwise,
            expansion=conv_def.expansion,
            expansion_divisible_by=conv_def.expansion_divisible_by,
            kernel_size=conv_def.kernel, stride=layer_stride, rate=layer_rate,
            use_explicit_padding=use_explicit_padding, name=name)
      self.body.append((layer, conv_def.kernel, layer_rate))
    self.logits = (layers.Conv2D(
        num_classes, 1, activation=None, weights_initializer=initializer,
        weights_regularizer=regularizer, name='Conv2d_1c_1x1')
                   if num_classes else None)

  def forward(self, images, training):
    end_points = {}
    net = images
    for i, (layer, kernel_size, rate) in enumerate(self.body):
      end_point = f'layer_{i + 1}'
      if isinstance(layer, ExpandedConvBlock):
        net, block_points = layer(net, training=training)
        end_points.update(
            (f'{end_point}/{k}', v) for k, v in block_points.items())
      else:
        if self.use_explicit_padding and kernel_size > 1:
          net = layers.fixed_padding(net, kernel_size, rate)
        net = layer(net, training=training)
      end_points[end_point] = net
    with layers.scope('Logits'):
      net = end_points['global_pool'] = layers.global_avg_pool(net)
      if not self.num_classes:
        return net, end_points
      net = self.dropout(net, self.dropout_keep_prob, training)
      logits = tf.squeeze(self.logits(net, training=training), [1, 2])
    end_points['Logits'] = logits
    end_points['Predictions'] = self.prediction_fn(logits)
    return logits, end_points


def _unique(base, counts):
  # TF-Slim's default scope names: 'Conv', 'Conv_1', 'Conv_2', ...
  n = counts[base]
  counts[base] += 1
  return f'{base}_{n}' if n else base


@forwards_options(MobileNetV2)
def mobilenet_v2(num_classes=1001, **options):
  """Returns a `MobileNetV2`; see `MobileNetV2.__init__` for the options."""
  return MobileNetV2(num_classes, **options)


# The width variants (as partials, whose signatures show the bound values as
# defaults): 1.4x the depth of every layer, the last one too; 35% of the depth
# of every layer but the last.
mobilenet_v2_140 = functools.partial(mobilenet_v2, depth_multiplier=1.4)
mobilenet_v2_035 = functools.partial(
    mobilenet_v2, depth_multiplier=0.35, finegrain_classification_mode=True)
