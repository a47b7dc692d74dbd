"""Shared parts of the Inception family: layer defaults, block specs, heads.

An Inception net is data: a body of ops run in sequence, each op one of

* `Conv` / `SepConv`: a slim convolution (`Conv2d_1a_3x3`),
* `Pool`: a max or average pooling (`MaxPool_3a_3x3`),
* `Mixed`: an Inception module (`Mixed_5b`) of parallel branches, each a
  chain of ops run in its scope `Branch_<i>`, concatenated on channels,
* `Split`: inside a branch, parallel convs on the same input, concatenated
  (Inception v3's `Mixed_7b`, v4's Inception-C blocks).

Every op's `build(owner, ls, prefix)` makes its layers (named with TF-Slim's
scope), attaches them to `owner` and returns a step `step(x, training)`. The
variable path of a layer is fixed at its first call (`InceptionV3/Mixed_5b/
Branch_1/Conv2d_0b_5x5/weights`): the net's scope, the scopes open around
the call, the layer's name.

Layers are attached as attributes (`setattr`), not held in lists: Keras 3
lists of layers are not followed by `tf.train.Checkpoint`.

`inception_layers()` holds TF-Slim's `inception_arg_scope` defaults as
explicit keyword arguments (weight decay 4e-5, batch norm with decay 0.9997,
epsilon 0.001 and no `gamma`, variance-scaling conv initializer, ReLU).
The `activation` option reaches every activated layer; 'crelu' doubles each
conv's output, so modules concatenate twice the channels and every next conv
builds its weights for them (same names, more parameters).
"""

import typing

import keras
import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import Network, prediction_fn as _prediction_fn


class LayerSet(typing.NamedTuple):
  """The bound layer constructors of one net (what slim's arg_scope set).

  Attributes:
    conv: `layers.Conv2D` with the net's defaults bound.
    fc: `layers.FullyConnected` with the net's defaults bound.
    separable: `layers.SeparableConv2D` with slim's defaults (TF-Slim's
      Inception arg scopes do not reach separable convs: no batch norm, no
      weight decay, biases) but the net's activation.
    depth: Maps a nominal channel count to the built one (depth multiplier).
  """
  conv: typing.Callable
  fc: typing.Callable
  separable: typing.Callable
  depth: typing.Callable


def depth_fn(depth_multiplier=1.0, min_depth=16):
  """TF-Slim's thinning rule `max(int(d * depth_multiplier), min_depth)`.

  Args:
    depth_multiplier: Float multiplier of every conv's channel count (> 0).
    min_depth: Floor of the channel count, active when the multiplier is < 1.

  Returns:
    A function of the nominal depth.

  Raises:
    ValueError: if `depth_multiplier` is not greater than zero.
  """
  if depth_multiplier <= 0:
    raise ValueError(
        f'depth_multiplier must be greater than zero; got {depth_multiplier}.')
  return lambda d: max(int(d * depth_multiplier), min_depth)


def inception_layers(*, weight_decay=0.00004, use_batch_norm=True,
                     batch_norm_decay=0.9997, batch_norm_epsilon=0.001,
                     batch_norm_scale=False, activation='relu',
                     weights_initializer=None, regularize_biases=False,
                     depth=None):
  """Returns the `LayerSet` of TF-Slim's `inception_arg_scope`.

  Args:
    weight_decay: L2 weight decay of conv and fully connected weights.
    use_batch_norm: Whether convs use batch norm (else biases).
    batch_norm_decay: Moving-average decay of the batch-norm statistics.
    batch_norm_epsilon: Added to the variance.
    batch_norm_scale: Whether batch norms own a `gamma` (False in TF-Slim).
    activation: Activation of the convs, separable ones included (TF-Slim's
      arg scope leaves those at ReLU, the default).
    weights_initializer: Conv weight initializer; None is slim's
      `variance_scaling_initializer()` (the Inception default).
    regularize_biases: Also decay biases (Inception-ResNet v2's arg scope).
    depth: The depth function (`depth_fn`); None keeps nominal depths.

  Returns:
    A `LayerSet`.
  """
  regularizer = layers.l2_regularizer(weight_decay)
  batch_norm = (layers.bind(layers.batch_norm, decay=batch_norm_decay,
                            epsilon=batch_norm_epsilon, scale=batch_norm_scale)
                if use_batch_norm else None)
  biases = {'biases_regularizer': regularizer} if regularize_biases else {}
  conv = layers.bind(
      layers.Conv2D, activation=activation, normalizer=batch_norm,
      weights_initializer=weights_initializer or layers.variance_scaling(),
      weights_regularizer=regularizer, **biases)
  fc = layers.bind(layers.FullyConnected, weights_regularizer=regularizer,
                   **biases)
  separable = layers.bind(layers.SeparableConv2D, activation=activation)
  return LayerSet(conv, fc, separable, depth or (lambda d: d))


def constructor_args(local_vars):
  """A constructor's arguments from its `locals()`, for `get_config`."""
  return {k: v for k, v in local_vars.items() if k not in ('self', '__class__')}


def _attach(owner, attr, layer):
  setattr(owner, attr, layer)
  return lambda x, training: layer(x, training=training)


def _initializer(stddev):
  return ({'weights_initializer': layers.truncated_normal(stddev)}
          if stddev is not None else {})


class Conv(typing.NamedTuple):
  """A slim conv (with the net's batch norm and activation).

  `stddev` overrides the initializer with TF-Slim's `trunc_normal(stddev)`.
  """
  name: str
  depth: int
  kernel: typing.Any
  stride: int = 1
  padding: str = 'SAME'
  stddev: typing.Optional[float] = None

  @property
  def end_point(self):
    return self.name

  def build(self, owner, ls, prefix=''):
    layer = ls.conv(ls.depth(self.depth), self.kernel, self.stride,
                    self.padding, name=self.name, **_initializer(self.stddev))
    return _attach(owner, prefix + self.name, layer)


class SepConv(typing.NamedTuple):
  """A slim separable conv (`depthwise_weights`, `pointwise_weights`)."""
  name: str
  depth: int
  kernel: typing.Any
  multiplier: int
  stride: int = 1
  padding: str = 'SAME'
  stddev: typing.Optional[float] = None

  @property
  def end_point(self):
    return self.name

  def build(self, owner, ls, prefix=''):
    layer = ls.separable(ls.depth(self.depth), self.kernel, self.multiplier,
                         self.stride, self.padding, name=self.name,
                         **_initializer(self.stddev))
    return _attach(owner, prefix + self.name, layer)


class Pool(typing.NamedTuple):
  """A max ('max') or average ('avg') pooling; no variables."""
  name: str
  kind: str
  kernel: int
  stride: int = 1
  padding: str = 'SAME'

  @property
  def end_point(self):
    return self.name

  def build(self, owner, ls, prefix=''):
    del owner, ls, prefix  # Pools own nothing.
    pools = {'max': layers.max_pool2d, 'avg': layers.avg_pool2d}
    if self.kind not in pools:
      raise ValueError(
          f'Unknown pool kind {self.kind!r}; valid: {sorted(pools)}.')
    pool = pools[self.kind]
    return lambda x, training: pool(x, self.kernel, self.stride, self.padding)


class Split(typing.NamedTuple):
  """Parallel convs on one input inside a branch, concatenated on channels."""
  convs: tuple

  def build(self, owner, ls, prefix=''):
    steps = [conv.build(owner, ls, prefix) for conv in self.convs]
    return lambda x, training: tf.concat([s(x, training) for s in steps], 3)


class Mixed(typing.NamedTuple):
  """An Inception module: branches (tuples of ops) concatenated on channels."""
  name: str
  branches: tuple

  @property
  def end_point(self):
    return self.name

  def build(self, owner, ls, prefix=''):
    return _attach(owner, prefix + self.name,
                   MixedBlock(self.branches, ls, name=self.name))


class MixedBlock(keras.layers.Layer):
  """The layer of a `Mixed` op; its name is the module's scope (`Mixed_5b`)."""

  def __init__(self, branches, ls, name, **kwargs):
    super().__init__(name=name, **kwargs)
    self._branch_steps = [
        [op.build(self, ls, f'Branch_{i}_') for op in branch]
        for i, branch in enumerate(branches)]

  def branch_outputs(self, x, training):
    outputs = []
    for i, steps in enumerate(self._branch_steps):
      with layers.scope(f'Branch_{i}'):
        y = x
        for step in steps:
          y = step(y, training)
      outputs.append(y)
    return outputs

  def call(self, x, training=None):
    return tf.concat(self.branch_outputs(x, training), 3)


def reduced_kernel_size(x, kernel_size):
  """TF-Slim's `_reduced_kernel_size_for_small_input`: min(kernel, input).

  Args:
    x: A `[batch, height, width, channels]` tensor.
    kernel_size: The nominal `[height, width]`, or None for the whole input.

  Returns:
    A `(height, width)` pair; the nominal one when the input size is unknown.
  """
  height, width = x.shape[1], x.shape[2]
  if kernel_size is None:
    if height is None or width is None:
      raise ValueError('A whole-input kernel needs a static input size; got '
                       f'shape {x.shape}.')
    return (height, width)
  kernel_size = tuple(kernel_size)
  if height is None or width is None:
    return kernel_size
  return (min(height, kernel_size[0]), min(width, kernel_size[1]))


class AdaptiveConv2D(layers.Conv2D):
  """A conv whose kernel is fitted to its input when first called.

  TF-Slim's auxiliary heads size their `Conv2d_2a` kernel from the feature
  map: at most 5x5 in Inception v3 (and the scope says so, `Conv2d_2a_3x3` on
  small inputs), the whole map in v4 and Inception-ResNet v2. The kernel, and
  so the name, are fixed before the first call opens the layer's scope.
  """

  def __init__(self, num_outputs, max_kernel_size=None, *, name,
               name_format=None, **kwargs):
    """Creates the layer.

    Args:
      num_outputs: Number of output channels.
      max_kernel_size: Largest `[height, width]`; None for the whole input.
      name: The scope name (used as is without `name_format`).
      name_format: A format of the kernel's height and width giving the
        scope name (`'Conv2d_2a_{}x{}'`), or None.
      **kwargs: Passed to `layers.Conv2D`.
    """
    super().__init__(num_outputs, max_kernel_size or 1, name=name, **kwargs)
    self.max_kernel_size = max_kernel_size
    self.name_format = name_format

  def __call__(self, x, *args, **kwargs):
    if not self.built:
      self.kernel_size = reduced_kernel_size(x, self.max_kernel_size)
      if self.name_format:
        self.name = self.name_format.format(*self.kernel_size)
    return super().__call__(x, *args, **kwargs)


class AuxLogits(keras.layers.Layer):
  """The auxiliary classifier of Inception v3, v4 and Inception-ResNet v2.

  5x5/3 average pool, a 1x1 conv, a conv over the (capped) map, then logits:
  a bare 1x1 conv in v3 (squeezed), flatten and a fully connected layer in v4
  and Inception-ResNet v2.
  """

  def __init__(self, num_classes, ls, *, conv_name, max_kernel_size=None,
               name_format=None, conv_stddev=None, logits_name,
               logits_conv=False, logits_stddev=None, spatial_squeeze=True,
               name='AuxLogits'):
    """Builds the layers.

    Args:
      num_classes: Number of logits.
      ls: The net's `LayerSet`.
      conv_name: Scope of the large conv (`Conv2d_2a_5x5`, `Conv2d_2a`).
      max_kernel_size: Cap of that conv's kernel; None for the whole map.
      name_format: Scope of that conv as a format of its kernel size.
      conv_stddev: Truncated-normal stddev of that conv, or the default.
      logits_name: Scope of the logits layer.
      logits_conv: A bare 1x1 conv (v3) instead of flatten + fully connected.
      logits_stddev: Truncated-normal stddev of the logits, or the default.
      spatial_squeeze: Squeeze conv logits from `[B, 1, 1, C]` to `[B, C]`.
      name: The head's scope.
    """
    super().__init__(name=name)
    self.logits_conv = logits_conv
    self.spatial_squeeze = spatial_squeeze
    self.conv_1b = ls.conv(ls.depth(128), 1, name='Conv2d_1b_1x1')
    self.conv_2a = AdaptiveConv2D(
        ls.depth(768), max_kernel_size, padding='VALID', name=conv_name,
        name_format=name_format, **{**ls.conv.keywords,
                                    **_initializer(conv_stddev)})
    if logits_conv:
      self.logits = ls.conv(num_classes, 1, activation=None, normalizer=None,
                            name=logits_name, **_initializer(logits_stddev))
    else:
      self.logits = ls.fc(num_classes, activation=None, name=logits_name,
                          **_initializer(logits_stddev))

  def call(self, x, training=None):
    if any(d is not None and d < 5 for d in x.shape[1:3]):
      raise ValueError(
          f'The auxiliary head pools 5x5 VALID windows; its input map is '
          f'{x.shape[1]}x{x.shape[2]} (TF-Slim needs images of at least '
          '107x107 for it). Pass create_aux_logits=False for smaller images.')
    x = layers.avg_pool2d(x, 5, 3, 'VALID')
    x = self.conv_1b(x, training=training)
    x = self.conv_2a(x, training=training)
    if not self.logits_conv:
      return self.logits(layers.flatten(x), training=training)
    x = self.logits(x, training=training)
    return tf.squeeze(x, [1, 2]) if self.spatial_squeeze else x


class InceptionNet(Network):
  """Runs a body spec; subclasses add their heads in `forward`."""

  def __init__(self, *, scope, num_classes, is_training, config, body, ls,
               dropout_keep_prob, prediction_fn):
    """Builds the body's layers.

    Args:
      scope: TF-Slim's outer scope (`InceptionV3`).
      num_classes: Number of logits; 0 or None for pre-logits features.
      is_training: Default mode of calls (dropout, batch norm).
      config: The subclass's constructor arguments.
      body: A sequence of ops (`Conv`, `Pool`, `Mixed`, ...).
      ls: The body's `LayerSet`.
      dropout_keep_prob: Fraction of pre-logits units kept in training.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
    """
    super().__init__(scope=scope, num_classes=num_classes,
                     is_training=is_training, config=config)
    self.dropout_keep_prob = dropout_keep_prob
    self.prediction_fn = _prediction_fn(prediction_fn)
    self._body_steps = [(op.end_point, op.build(self, ls)) for op in body]

  def run_body(self, x, training):
    """Returns the body's output and its end points."""
    end_points = {}
    for end_point, step in self._body_steps:
      x = step(x, training)
      if end_point:
        end_points[end_point] = x
    return x, end_points

  def pool(self, net, end_points, *, global_pool, kernel_size, stride,
           end_point, reduce_for_small_input=True):
    """The pooling before the logits (in the `Logits` scope).

    Args:
      net: The body's output.
      end_points: Updated with `global_pool` or `end_point`.
      global_pool: Average the whole map (any input size gives 1x1).
      kernel_size: The fixed VALID average-pool kernel otherwise.
      stride: Its stride (slim's default 2 where TF-Slim left it unset, which
        matters only for inputs larger than the default).
      end_point: End-point name of the fixed pool.
      reduce_for_small_input: Cap the fixed kernel at the map's size.

    Returns:
      The pooled features.
    """
    if global_pool:
      net = end_points['global_pool'] = layers.global_avg_pool(net)
      return net
    if reduce_for_small_input:
      kernel_size = reduced_kernel_size(net, kernel_size)
    net = end_points[end_point] = layers.avg_pool2d(net, kernel_size, stride,
                                                    'VALID')
    return net

  def conv_logits(self, net, end_points, training, *, pre_logits=None,
                  **pool_options):
    """The 1x1-conv head of Inception v1-v3: pool, dropout, logits.

    Uses the subclass's `global_pool`, `logits` (None without classes) and
    `spatial_squeeze` attributes.

    Args:
      net: The body's output.
      end_points: Updated with the head's end points.
      training: Whether dropout is active.
      pre_logits: End-point name of the dropped-out features, or None where
        TF-Slim records none.
      **pool_options: `kernel_size`, `stride`, `end_point` and
        `reduce_for_small_input` of `pool`.

    Returns:
      `(logits, end_points)`, or the pooled features without classes.
    """
    with layers.scope('Logits'):
      net = self.pool(net, end_points, global_pool=self.global_pool,
                      **pool_options)
      if not self.num_classes:
        return net, end_points
      net = self.dropout(net, self.dropout_keep_prob, training)
      if pre_logits:
        end_points[pre_logits] = net
      logits = self.logits(net, training=training)
    if self.spatial_squeeze:
      logits = tf.squeeze(logits, [1, 2])
    return self.predictions(logits, end_points)

  def predictions(self, logits, end_points):
    end_points['Logits'] = logits
    end_points['Predictions'] = self.prediction_fn(logits)
    return logits, end_points
