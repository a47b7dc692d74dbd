"""The parts ResNet v1 and v2 share, as TF-Slim's `resnet_utils` defined them.

Residual networks were proposed in:
  Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun
  Deep Residual Learning for Image Recognition. arXiv:1512.03385, 2015
and the pre-activation variant in:
  Identity Mappings in Deep Residual Networks. arXiv:1603.05027, 2016

A ResNet is data: a list of `Block`s, each a scope (`block1`), a unit layer
class (`bottleneck_v1`) and one `Unit(depth, depth_bottleneck, stride)` per
residual unit. As in TF-Slim, a block subsamples in its *last* unit, not its
first; the two are equivalent, the last-unit form saves memory, and matching it
keeps activations and checkpoints interchangeable with TF-Slim's.

`ResNet` is the one builder of both versions. It also implements TF-Slim's
dense-prediction options: `output_stride` (atrous convolution instead of
striding once the requested stride is reached, with the same variables),
`global_pool`, `spatial_squeeze`, `include_root_block` and
`store_non_strided_activations`.
"""

import collections

import keras
import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import Network, prediction_fn as _prediction_fn

Unit = collections.namedtuple('Unit', ['depth', 'depth_bottleneck', 'stride'])
Unit.__doc__ = """One residual unit: output depth, bottleneck depth, stride."""


class Block(collections.namedtuple('Block', ['scope', 'unit_fn', 'args'])):
  """One ResNet block.

  Attributes:
    scope: Its TF-Slim scope (`block1`).
    unit_fn: The residual unit layer class, called as
      `unit_fn(depth, depth_bottleneck, stride, rate, conv=..., batch_norm=...,
      activation=...)`.
    args: One `Unit` per residual unit of the block.
  """


# Units per block of the standard ImageNet depths (the same in v1 and v2).
UNITS_PER_BLOCK = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
# Bottleneck depth and stride of the four blocks; a unit's output is 4x deeper.
BLOCK_BASE_DEPTHS = (64, 128, 256, 512)
BLOCK_STRIDES = (2, 2, 2, 1)


def resnet_block(scope, unit_fn, base_depth, num_units, stride):
  """A block of bottleneck units whose last unit carries the block's stride.

  Args:
    scope: The block's scope (`block1`).
    unit_fn: The residual unit layer class.
    base_depth: Bottleneck depth; units output `4 * base_depth` channels.
    num_units: Number of residual units.
    stride: The block's stride, applied by its last unit.

  Returns:
    A `Block`.
  """
  depth = base_depth * 4
  units = [Unit(depth, base_depth, 1)] * (num_units - 1)
  return Block(scope, unit_fn, units + [Unit(depth, base_depth, stride)])


def standard_blocks(unit_fn, depth, depth_multiplier=1.0, min_base_depth=8):
  """The four blocks of ResNet-`depth`.

  Args:
    unit_fn: The residual unit layer class.
    depth: One of the keys of `UNITS_PER_BLOCK` (50, 101, 152, 200).
    depth_multiplier: Scales every bottleneck depth (TF-Slim's resnet_v1
      option; 1 is the published net).
    min_base_depth: Smallest bottleneck depth after scaling.

  Returns:
    A list of four `Block`s.

  Raises:
    ValueError: for an unknown `depth`.
  """
  if depth not in UNITS_PER_BLOCK:
    raise ValueError(f'Unknown ResNet depth {depth!r}; valid depths: '
                     f'{sorted(UNITS_PER_BLOCK)}.')
  return [
      resnet_block(f'block{i + 1}', unit_fn,
                   max(int(base * depth_multiplier), min_base_depth), units,
                   stride)
      for i, (base, units, stride) in enumerate(zip(
          BLOCK_BASE_DEPTHS, UNITS_PER_BLOCK[depth], BLOCK_STRIDES))]


class Conv2DSame(layers.Conv2D):
  """TF-Slim's `conv2d_same`: a strided conv that pads as if it were stride 1.

  With stride 1 this is a SAME convolution. With a larger stride, TF's SAME
  padding depends on the input size (an even input is padded only at the
  end), so TF-Slim pads explicitly by `kernel_size - 1` split evenly, then
  convolves VALID. The result equals a stride-1 SAME conv subsampled by the
  stride, whatever the input size.
  """

  def __init__(self, num_outputs, kernel_size, stride=1, rate=1, **kwargs):
    """Creates the layer.

    Args:
      num_outputs: Number of output channels.
      kernel_size: An int (square kernels only, as in TF-Slim).
      stride: An int.
      rate: Atrous rate, an int.
      **kwargs: Passed to `layers.Conv2D` (not `padding`, which is decided
        here).
    """
    super().__init__(num_outputs, kernel_size, stride,
                     padding='SAME' if stride == 1 else 'VALID', rate=rate,
                     **kwargs)

  def call(self, x, training=None):
    if self.stride != (1, 1):
      x = layers.fixed_padding(x, self.kernel_size[0], self.rate[0])
    return super().call(x, training=training)


def conv2d_same(conv, num_outputs, kernel_size, stride, rate=1, **overrides):
  """A `Conv2DSame` with the defaults bound into `conv`.

  Args:
    conv: A `layers.bind(layers.Conv2D, ...)` partial holding the net's
      defaults (initializer, regularizer, batch norm, activation).
    num_outputs: Number of output channels.
    kernel_size: An int.
    stride: An int.
    rate: Atrous rate.
    **overrides: Replace some of `conv`'s defaults (e.g. `name`).

  Returns:
    A `Conv2DSame`.
  """
  kwargs = {k: v for k, v in conv.keywords.items() if k != 'padding'}
  kwargs.update(overrides)
  return Conv2DSame(num_outputs, kernel_size, stride, rate=rate, **kwargs)


def subsample(x, factor):
  """Keeps every `factor`-th row and column (TF-Slim's 1x1 max pool)."""
  if factor == 1:
    return x
  return layers.max_pool2d(x, 1, factor, padding='SAME')


class BottleneckUnit(keras.layers.Layer):
  """Shared parts of the bottleneck units of v1 and v2.

  A unit projects its shortcut with a 1x1 conv only when its input depth
  differs from `depth` (otherwise the shortcut is the subsampled input). As in
  TF-Slim that is decided from the input, when the unit is built.

  `call` returns `(output, end_points)`, the end points keyed by the conv
  scopes inside the unit (`conv1`, `shortcut`, ...).
  """

  def __init__(self, depth, depth_bottleneck, stride, rate=1, *, conv,
               batch_norm, activation='relu', name):
    """Creates the unit.

    Args:
      depth: Output depth.
      depth_bottleneck: Depth of the 1x1 and 3x3 bottleneck convs.
      stride: The unit's stride (of its 3x3 conv and its shortcut).
      rate: Atrous rate of the 3x3 conv.
      conv: Bound `layers.Conv2D` with the net's defaults.
      batch_norm: Bound `layers.batch_norm` with the net's defaults.
      activation: The net's activation (a name or callable) for what the
        unit activates outside its convs, where TF-Slim hard-codes ReLU (the
        default): v1's sum, kept at `depth` channels (`layers.same_width`),
        and v2's pre-activation.
      name: TF-Slim's unit scope (`bottleneck_v1`).
    """
    super().__init__(name=name)
    self.depth = depth
    self.depth_bottleneck = depth_bottleneck
    self.stride = stride
    self.rate = rate
    self.conv = conv
    self.batch_norm = batch_norm
    self.shortcut = None

  def build(self, input_shape):
    if int(input_shape[-1]) != self.depth:
      self.shortcut = self.make_shortcut()

  def make_shortcut(self):
    """Returns the projection shortcut layer (named `shortcut`)."""
    raise NotImplementedError


BlockPlan = collections.namedtuple('BlockPlan', ['scope', 'units', 'subsample'])
BlockPlan.__doc__ = """How one block runs: its units and its final subsampling.

Attributes:
  scope: The block's scope.
  units: `(Unit, rate)` pairs, strides already replaced by atrous rates where
    the target output stride has been reached.
  subsample: Factor by which the block's output is subsampled after its end
    point is recorded (not 1 only with `store_non_strided_activations`).
"""


def plan_blocks(blocks, output_stride=None,
                store_non_strided_activations=False):
  """Decides each unit's stride and atrous rate, as TF-Slim's stacking does.

  Once the product of strides reaches `output_stride`, every later stride is
  replaced by stride 1 and multiplies the atrous rate of the following units,
  so the variables are unchanged and the resolution is kept.

  Args:
    blocks: A list of `Block`s.
    output_stride: Requested ratio of input to output resolution (relative to
      the blocks' input), or None for the nominal stride.
    store_non_strided_activations: Move each block's last stride after the
      block, so its end point is recorded before subsampling.

  Returns:
    A list of `BlockPlan`s, one per block.

  Raises:
    ValueError: if `output_stride` cannot be reached by the blocks' strides.
  """
  current_stride, rate = 1, 1
  plans = []
  strides = [unit.stride for block in blocks for unit in block.args]

  def check():
    if output_stride is not None and current_stride > output_stride:
      raise ValueError(f'The target output_stride {output_stride} cannot be '
                       f'reached by the units\' strides {strides}.')

  for block in blocks:
    units, block_stride = [], 1
    for i, unit in enumerate(block.args):
      if store_non_strided_activations and i == len(block.args) - 1:
        block_stride, unit = unit.stride, unit._replace(stride=1)
      if output_stride is not None and current_stride == output_stride:
        units.append((unit._replace(stride=1), rate))
        rate *= unit.stride
      else:
        units.append((unit, 1))
        current_stride *= unit.stride
        check()
    if output_stride is not None and current_stride == output_stride:
      rate *= block_stride
      block_stride = 1
    else:
      current_stride *= block_stride
      check()
    plans.append(BlockPlan(block.scope, units, block_stride))
  if output_stride is not None and current_stride != output_stride:
    raise ValueError(f'The target output_stride {output_stride} cannot be '
                     f'reached: the blocks stride by {current_stride} in all.')
  return plans


class ResNet(Network):
  """The generic ResNet of TF-Slim, v1 (post-activation) or v2 (pre-activation).

  Layout: root block (`conv1`, a 7x7/2 `conv2d_same` with 64 outputs, then a
  3x3/2 SAME max pool), the blocks (`block1/unit_1/bottleneck_v1/...`), v2's
  `postnorm` batch norm, global average pooling (`pool5`), and `logits`, a 1x1
  conv with biases.
  """

  default_image_size = 224

  def __init__(self, num_classes=None, *, blocks, scope, preactivation,
               is_training=False, weight_decay=0.0001,
               batch_norm_decay=0.997, batch_norm_epsilon=1e-5,
               batch_norm_scale=True, activation='relu', use_batch_norm=True,
               global_pool=True, output_stride: int | None = None,
               include_root_block=True, spatial_squeeze=True,
               store_non_strided_activations=False, prediction_fn='softmax'):
    """Builds the layers.

    The defaults are TF-Slim's `resnet_arg_scope` and `resnet_v1`/`resnet_v2`
    arguments.

    Args:
      num_classes: Number of logits; 0 or None returns the features before
        the logits layer (after global pooling when `global_pool`).
      blocks: A list of `Block`s.
      scope: TF-Slim's outer scope (`resnet_v1_50`).
      preactivation: False for v1 (batch norm and activation after each conv,
        root conv normalized); True for v2 (units normalize their input, the
        root conv is bare, a `postnorm` batch norm follows the blocks).
      is_training: Default mode of calls (batch norm statistics).
      weight_decay: L2 weight decay of every conv's weights.
      batch_norm_decay: Moving-average decay of the batch-norm statistics.
      batch_norm_epsilon: Batch norm's epsilon.
      batch_norm_scale: Whether batch norms own a `gamma`.
      activation: Activation of the convs and of what TF-Slim activates
        with a fixed ReLU: v1's unit sums, v2's pre-activations and
        `postnorm`. The default ReLU is TF-Slim's net. 'crelu' doubles the
        outputs of the convs and of v2's pre-activations; v1's root conv and
        sums, the residual stream, keep their width (relu there).
      use_batch_norm: Whether convs use batch norm (else biases).
      global_pool: Average over height and width before the logits.
      output_stride: Ratio of input to output resolution (a multiple of 4 with
        the root block); None is the nominal 32. Reached by atrous convs.
      include_root_block: Whether to run `conv1` and `pool1`.
      spatial_squeeze: Squeeze logits from `[B, 1, 1, C]` to `[B, C]`.
      store_non_strided_activations: Record each block's end point before its
        last subsampling (4x the cost of those units).
      prediction_fn: 'softmax' or a callable for `end_points['predictions']`.

    Raises:
      ValueError: if `output_stride` is not reachable.
    """
    super().__init__(scope=scope, num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, blocks=blocks, scope=scope,
                         preactivation=preactivation, is_training=is_training,
                         weight_decay=weight_decay,
                         batch_norm_decay=batch_norm_decay,
                         batch_norm_epsilon=batch_norm_epsilon,
                         batch_norm_scale=batch_norm_scale,
                         activation=activation, use_batch_norm=use_batch_norm,
                         global_pool=global_pool, output_stride=output_stride,
                         include_root_block=include_root_block,
                         spatial_squeeze=spatial_squeeze,
                         store_non_strided_activations=(
                             store_non_strided_activations),
                         prediction_fn=prediction_fn))
    self.preactivation = preactivation
    self.global_pool = global_pool
    self.include_root_block = include_root_block
    self.spatial_squeeze = spatial_squeeze
    self.prediction_fn = _prediction_fn(prediction_fn)

    batch_norm = layers.bind(
        layers.batch_norm, decay=batch_norm_decay, epsilon=batch_norm_epsilon,
        scale=batch_norm_scale)
    conv = layers.bind(
        layers.Conv2D, activation=activation,
        normalizer=batch_norm if use_batch_norm else None,
        weights_initializer=layers.variance_scaling(),
        weights_regularizer=layers.l2_regularizer(weight_decay))

    blocks_stride = output_stride
    if include_root_block:
      if output_stride is not None:
        if output_stride % 4:
          raise ValueError('The output_stride needs to be a multiple of 4 with '
                           f'the root block; got {output_stride}.')
        blocks_stride = output_stride // 4
      # v2 leaves conv1 bare: the first unit's `preact` normalizes it. v1's
      # conv1 starts the residual stream (an identity shortcut when thinned).
      root = (dict(activation=None, normalizer=None) if preactivation else
              dict(activation=layers.same_width(activation)))
      self.conv1 = conv2d_same(conv, 64, 7, 2, name='conv1', **root)
    self.plans = plan_blocks(blocks, blocks_stride,
                             store_non_strided_activations)
    self.units = [
        [block.unit_fn(unit.depth, unit.depth_bottleneck, unit.stride, rate,
                       conv=conv, batch_norm=batch_norm,
                       activation=activation)
         for unit, rate in plan.units]
        for block, plan in zip(blocks, self.plans)]
    # TF-Slim's postnorm (like preact) applies ReLU whatever its arg scope's
    # activation is; here it follows `activation` (ReLU by default).
    self.postnorm = batch_norm(name='postnorm') if preactivation else None
    self.postnorm_activation = layers.get_activation(activation)
    self.logits = (conv(num_classes, 1, activation=None, normalizer=None,
                        name='logits') if num_classes else None)

  def forward(self, images, training):
    scope = self.name
    end_points = {}
    net = images
    if self.include_root_block:
      net = end_points[f'{scope}/conv1'] = self.conv1(net, training=training)
      net = layers.max_pool2d(net, 3, 2, padding='SAME')
    for plan, units in zip(self.plans, self.units):
      with layers.scope(plan.scope):
        for i, unit in enumerate(units):
          unit_scope = f'unit_{i + 1}'
          with layers.scope(unit_scope):
            net, unit_points = unit(net, training=training)
          prefix = f'{scope}/{plan.scope}/{unit_scope}/{unit.name}'
          end_points.update((f'{prefix}/{name}', value)
                            for name, value in unit_points.items())
          end_points[prefix] = net
      end_points[f'{scope}/{plan.scope}'] = net
      net = subsample(net, plan.subsample)
    if self.postnorm is not None:
      net = self.postnorm_activation(self.postnorm(net, training=training))
    if self.global_pool:
      net = end_points['global_pool'] = layers.global_avg_pool(net)
    if not self.num_classes:
      return net, end_points
    net = end_points[f'{scope}/logits'] = self.logits(net, training=training)
    if self.spatial_squeeze:
      net = end_points[f'{scope}/spatial_squeeze'] = tf.squeeze(net, [1, 2])
    end_points['predictions'] = self.prediction_fn(net)
    return net, end_points
