"""Slim-style layers on Keras 3 that own variables named as TF-Slim names them.

Longer than most modules, on purpose: the layers, their batch norm and their
fake quantization decide every variable name and every numeric detail the
nets share, and they read best side by side in one file.

Every net in `nets/` is built from these few layers, so variable names and
layer behaviour are decided here once:

* `Conv2D` owns `<scope>/weights` and either `<scope>/biases` or a batch norm
  `<scope>/BatchNorm/{beta,gamma,moving_mean,moving_variance}`.
* `SeparableConv2D` owns `<scope>/depthwise_weights` (and
  `<scope>/pointwise_weights` when it has outputs of its own).
* `FullyConnected` owns `<scope>/weights` and `<scope>/biases` (or a batch
  norm).

A layer's variable path is `<parent path>/<layer name>/<variable>`, where the
parent path is the Keras name scope open when the layer is first called. Nets
therefore name each layer after its TF-Slim scope and open the enclosing scopes
(`keras.name_scope('Mixed_5b')`) around the first call; the model's own name
(`InceptionV3`, `resnet_v1_50`) is the outermost scope.

TF-Slim configured these layers through `arg_scope`. Here the same defaults are
plain keyword arguments: a net binds them once with `functools.partial` and
hands the bound constructors down, so every default is visible in the net's
builder signature.

Weight decay follows TF-Slim's `l2_regularizer(wd)`: the loss term of a weight
tensor `w` is `wd * sum(w ** 2) / 2`.

Activations are named in one registry, `ACTIVATIONS`, which every net's
`activation` option draws on; `same_width` gives the one to use where a
tensor's channel count is fixed (crelu doubles it elsewhere).

Quantization-aware training (TF-Slim's `--quantize_delay`): `FakeQuantization`
switched on in a built net (`Network.enable_fake_quant`) makes every one of
these layers, from a global step on, compute with its weights fake-quantized
to 8 bits (symmetric, per output channel, from their current range) and its
output fake-quantized to 8 bits with a range tracked as an exponential moving
average of the batch's min and max (`<scope>/act_quant/min`, `.../max`, the
names TF-Slim's `contrib.quantize` gave them). A layer with batch norm folds
it into its weights first, with the moving statistics, as TFLite runs it; its
statistics stop moving once quantization starts. See docs/tflite.md.
"""

import contextlib
import dataclasses
import functools
import typing

import keras
import tensorflow as tf

from slimkit.registry import Registry


@keras.saving.register_keras_serializable(package='slimkit')
class SlimL2(keras.regularizers.Regularizer):
  """TF-Slim's L2 weight decay: `weight_decay * sum(w ** 2) / 2`."""

  def __init__(self, weight_decay):
    self.weight_decay = float(weight_decay)

  def __call__(self, x):
    # tf.nn.l2_loss is sum(x ** 2) / 2, exactly slim.l2_regularizer's kernel.
    return self.weight_decay * tf.nn.l2_loss(tf.cast(x, tf.float32))

  def get_config(self):
    return {'weight_decay': self.weight_decay}


def l2_regularizer(weight_decay):
  """Returns TF-Slim's L2 regularizer, or None when `weight_decay` is 0/None."""
  if not weight_decay:
    return None
  return SlimL2(weight_decay)


def truncated_normal(stddev):
  """TF 1's `truncated_normal_initializer(stddev)` (mean 0, cut at 2 stddev)."""
  return keras.initializers.TruncatedNormal(mean=0.0, stddev=stddev)


def variance_scaling(factor=2.0, mode='FAN_IN', uniform=False):
  """TF-Slim's `variance_scaling_initializer` (the ResNet default)."""
  # slim's "FAN_AVG" with factor 1 and uniform=True is Glorot uniform; its
  # truncated-normal variant corrects the stddev for the truncation as Keras
  # does for distribution='truncated_normal'.
  return keras.initializers.VarianceScaling(
      scale=factor, mode={'FAN_IN': 'fan_in', 'FAN_OUT': 'fan_out',
                          'FAN_AVG': 'fan_avg'}[mode],
      distribution='uniform' if uniform else 'truncated_normal')


# cuDNN refuses a smaller epsilon; TF-Slim's fused batch norm raised it to
# this value too, so checkpoints trained with 1e-5 behave as they did there.
_MIN_FUSED_EPSILON = 1.001e-5


class BatchNorm(keras.layers.BatchNormalization):
  """Keras's batch norm with its variables, run on TF's fused kernel.

  The variables, their names and the `trainable=False` behaviour are Keras's
  (which are TF-Slim's); only the arithmetic of 4-D NHWC inputs moves to
  `FusedBatchNormV3`, as `slim.batch_norm` did by default. On this CPU the
  fused kernel runs a training forward and backward pass about 2.3x faster
  than Keras's composed ops (`bench/batch_norm.py`), and it keeps bfloat16 and
  float16 activations in their dtype instead of upcasting them to float32.

  As in TF-Slim, the moving variance is updated with the unbiased batch
  variance (Keras's own layer uses the biased one); the normalization itself
  uses the biased variance in both.
  """

  def call(self, inputs, training=None, mask=None):
    # Masks, renorm, other layouts and symbolic `training` take Keras's path.
    if (mask is not None or self.renorm or self.synchronized
        or len(inputs.shape) != 4 or self.axis not in (3, -1)
        or not isinstance(training, (bool, type(None)))):
      return super().call(inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    scale = (self.gamma.value if self.scale
             else tf.ones([channels], tf.float32))
    offset = (self.beta.value if self.center
              else tf.zeros([channels], tf.float32))
    train = bool(training) and self.trainable
    outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=scale, offset=offset,
        mean=self.moving_mean.value, variance=self.moving_variance.value,
        epsilon=max(self.epsilon, _MIN_FUSED_EPSILON),
        # In training the kernel returns the moving averages updated with
        # this factor: new = (1 - factor) * old + factor * batch statistic.
        exponential_avg_factor=1.0 - self.momentum,
        data_format='NHWC', is_training=train)
    if train:
      self.moving_mean.assign(mean)
      self.moving_variance.assign(variance)
    return tf.cast(outputs, self.compute_dtype)

  def folding(self):
    """`(scale, offset)` with `norm(x) = x * scale + offset` at inference."""
    gamma = self.gamma if self.scale else 1.0
    scale = gamma * tf.math.rsqrt(
        self.moving_variance + max(self.epsilon, _MIN_FUSED_EPSILON))
    offset = -self.moving_mean * scale
    if self.center:
      offset += self.beta
    return scale, offset


def batch_norm(decay=0.999, epsilon=0.001, center=True, scale=False,
               name='BatchNorm', **kwargs):
  """TF-Slim's batch norm (defaults of `slim.batch_norm`), named `BatchNorm`.

  The layer owns `beta`, `gamma`, `moving_mean` and `moving_variance`, the
  names TF-Slim uses, and updates the moving statistics with `decay` exactly
  as slim's fused batch norm does. A layer whose `trainable` is False runs in
  inference mode, so frozen layers keep their statistics.

  Args:
    decay: Moving-average decay of the statistics (Keras' `momentum`).
    epsilon: Added to the variance.
    center: Whether the layer owns an offset `beta`.
    scale: Whether the layer owns a scale `gamma` (False in Inception nets).
    name: Scope name; TF-Slim's is `BatchNorm`.
    **kwargs: Passed to `keras.layers.BatchNormalization`.

  Returns:
    A `BatchNorm` layer.
  """
  return BatchNorm(momentum=decay, epsilon=epsilon, center=center,
                   scale=scale, name=name, **kwargs)


@dataclasses.dataclass(frozen=True)
class Activation:
  """One activation a net's `activation` option can name.

  Attributes:
    fn: The function of a tensor.
    width: Output channels per input channel (2 for crelu, else 1).
  """
  fn: typing.Callable
  width: int = 1


ACTIVATIONS = Registry('activation')
for _name, _entry in (
    ('relu', Activation(tf.nn.relu)),
    ('relu6', Activation(tf.nn.relu6)),
    ('elu', Activation(tf.nn.elu)),
    ('selu', Activation(tf.nn.selu)),
    ('swish', Activation(tf.nn.silu)),  # x * sigmoid(x), also called SiLU
    ('gelu', Activation(tf.nn.gelu)),  # the exact (erf) form
    ('tanh', Activation(tf.math.tanh)),
    # Shang et al. 2016: concat(relu(x), relu(-x)) on channels, so the next
    # layer (which builds its weights from its input) sees twice as many.
    ('crelu', Activation(tf.nn.crelu, width=2)),
    ('leaky_relu', Activation(tf.nn.leaky_relu)),  # slope 0.2 below zero
):
  ACTIVATIONS.register(_name, _entry)


def _checked_initializer(initializer):
  """`initializer`, refused now (when the net is made) if it is a bad name."""
  if isinstance(initializer, str):
    try:
      keras.initializers.get(initializer)
    except ValueError:
      raise ValueError(
          f'Unknown initializer {initializer!r}: use a Keras initializer name '
          '(glorot_uniform, glorot_normal, he_normal, he_uniform, '
          'lecun_normal, truncated_normal, ...).') from None
  return initializer


def _checked_padding(padding):
  """'SAME' or 'VALID' (any case), refused now otherwise."""
  if not isinstance(padding, str) or padding.upper() not in ('SAME', 'VALID'):
    raise ValueError(f'padding={padding!r}; valid: SAME, VALID.')
  return padding.upper()


def _own_copy(initializer):
  """`initializer`, or a copy with a seed of its own for each weight.

  A Keras 3 initializer made without a seed fixes one when it is made, so
  one instance gives every weight of the same shape the same values; the
  layers share instances through `bind` (MobileNet v1's Conv2d_7..11
  pointwise kernels all started equal). A copy draws a new seed from Keras's
  global generator (seeded by `--random_seed`). Names ('zeros',
  'glorot_uniform') and seeded initializers are used as they are.
  """
  if (isinstance(initializer, keras.initializers.Initializer) and
      'seed' in initializer.get_config() and
      initializer.get_config()['seed'] is None):
    return initializer.clone()
  return initializer


def get_activation(activation):
  """Resolves an `activation` argument of a layer or net.

  Args:
    activation: A registered name (`ACTIVATIONS.names()`), a callable, or
      None for no activation.

  Returns:
    A callable, or None.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if activation is None or callable(activation):
    return activation
  return ACTIVATIONS.get(activation).fn


def same_width(activation):
  """The activation of a tensor whose width must not change.

  A residual sum (ResNet v1's units, Inception-ResNet's blocks) is added to
  the next block's input, so its channels are fixed. A widening activation
  (crelu) acts there as its first half, relu; every other activation is
  returned unchanged, so the defaults are untouched.

  Args:
    activation: As for `get_activation`.

  Returns:
    A callable, or None.
  """
  if isinstance(activation, str) and ACTIVATIONS.get(activation).width != 1:
    return tf.nn.relu
  return get_activation(activation)


# The suffixes of the range variables quantization-aware training adds; a
# checkpoint without them (float training, TF-Slim) still restores.
QUANT_RANGE_SUFFIXES = ('/act_quant/min', '/act_quant/max',
                        '/input_quant/min', '/input_quant/max')


def is_quant_range(name):
  """Whether variable `name` is a fake-quantization range."""
  return name.endswith(QUANT_RANGE_SUFFIXES)


class FakeQuantization:
  """When a net fake-quantizes: from a global step on, or always.

  Attributes:
    delay: The global step from which training is quantized.
    ema_decay: Decay of the moving average of the activation ranges
      (TF-Slim's 0.999).
    num_bits: Bits of weights and activations (8, what TFLite runs).
    always: Quantize every call (evaluation with `--quantize`, export); else
      only from `delay` on, once a step is bound.
  """

  def __init__(self, delay=0, *, ema_decay=0.999, num_bits=8, always=False):
    self.delay = int(delay)
    self.ema_decay = float(ema_decay)
    self.num_bits = int(num_bits)
    self.always = bool(always)
    self._step = None

  def bind_step(self, step):
    """Quantizes from `step >= delay` on (`step` a variable, read each call)."""
    self._step = step

  def active(self):
    """True, False, or a boolean tensor of the bound step."""
    if self.always:
      return True
    if self._step is None:
      return False
    return tf.greater_equal(tf.cast(self._step, tf.int64), self.delay)


class ActivationRange:
  """The tracked range `[min, max]` of one tensor, as two variables."""

  def __init__(self, path):
    with contextlib.ExitStack() as scopes:
      for part in path.split('/'):
        scopes.enter_context(keras.name_scope(part))
      # Replicas write the mean of their batch ranges.
      self.min = keras.Variable(0.0, name='min', trainable=False,
                                aggregation='mean')
      self.max = keras.Variable(0.0, name='max', trainable=False,
                                aggregation='mean')

  def track(self, x, decay):
    """Moves the range towards the batch's (set to it on the first batch)."""
    x = tf.cast(x, tf.float32)
    low, high = tf.reduce_min(x), tf.reduce_max(x)
    fresh = self.max.value <= self.min.value
    self.min.assign(tf.where(fresh, low, decay * self.min.value +
                             (1.0 - decay) * low))
    self.max.assign(tf.where(fresh, high, decay * self.max.value +
                             (1.0 - decay) * high))

  def quantize(self, x, num_bits):
    # TFLite's zero point must be exactly representable: the range holds 0.
    low = tf.minimum(self.min.value, 0.0)
    high = tf.maximum(self.max.value, low + 1e-6)
    y = tf.quantization.fake_quant_with_min_max_vars(
        tf.cast(x, tf.float32), low, high, num_bits=num_bits)
    return tf.cast(y, x.dtype)


def quantize_weights(kernel, num_bits, depthwise=False, per_channel=True):
  """Fake-quantizes a kernel symmetrically, as TFLite's int8 kernels take it.

  Args:
    kernel: `[..., outputs]`, or a depthwise `[h, w, in, multiplier]`
      (whose TFLite output channels are `in * multiplier`).
    num_bits: Bits (8).
    depthwise: Whether `kernel` is a depthwise kernel.
    per_channel: One scale per output channel (convolutions), or one for
      the tensor (fully connected: TFLite transposes the matmul weights, and
      the converter refuses a per-channel range on the other axis).

  Returns:
    The kernel on the grid `scale * k`, `|k| <= 2 ** (num_bits - 1) - 1`.
  """
  if not per_channel:
    bound = tf.maximum(tf.stop_gradient(tf.reduce_max(tf.abs(kernel))), 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars(
        kernel, -bound, bound, num_bits=num_bits, narrow_range=True)
  shape = tf.shape(kernel)
  flat = (tf.reshape(kernel, tf.concat([shape[:2], [-1]], 0)) if depthwise
          else kernel)
  axes = list(range(len(flat.shape) - 1))
  bound = tf.maximum(tf.stop_gradient(tf.reduce_max(tf.abs(flat), axis=axes)),
                     1e-8)
  quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(
      flat, -bound, bound, num_bits=num_bits, narrow_range=True)
  return tf.reshape(quantized, shape) if depthwise else quantized



class _SlimLayer(keras.layers.Layer):
  """Shared parts of the weight layers: bias or batch norm, then activation."""

  def __init__(self, *, activation, normalizer, biases_initializer,
               weights_initializer, weights_regularizer, name,
               biases_regularizer=None, **kwargs):
    # `biases_regularizer` (slim's, e.g. Inception-ResNet v2 decays biases
    # too) reaches here through the subclasses' **kwargs.
    super().__init__(name=name, **kwargs)
    self.activation = get_activation(activation)
    self.weights_initializer = _checked_initializer(weights_initializer)
    self.weights_regularizer = weights_regularizer
    self.biases_initializer = biases_initializer
    self.biases_regularizer = biases_regularizer
    # A normalizer replaces the bias, as in slim (biases only without one).
    self.norm = normalizer() if normalizer is not None else None
    self.biases = None
    self._quantization = None
    self._act_range = None

  def _add_biases(self, num_outputs):
    if self.norm is None and self.biases_initializer is not None:
      self.biases = self.add_weight(
          name='biases', shape=(num_outputs,),
          initializer=_own_copy(self.biases_initializer),
          regularizer=self.biases_regularizer)

  def _finish(self, x, training):
    if self.biases is not None:
      x = tf.nn.bias_add(x, tf.cast(self.biases, x.dtype))
    if self.norm is not None:
      x = self.norm(x, training=training)
    if self.activation is not None:
      x = self.activation(x)
    return x

  # Subclasses: `_kernels()` lists the kernels in order, `_linear(x,
  # kernels)` applies them, `_fold(kernel, scale)` scales the last one's
  # output channels and `_depthwise` says which kernels are depthwise.
  _depthwise = (False,)
  _per_channel = True

  def _fold(self, kernel, scale):
    return kernel * scale

  def call(self, x, training=None):
    if self._quantization is None:
      return self._finish(self._linear(x, self._kernels()), training)
    return self._fake_quantized_call(x, training)

  def enable_fake_quant(self, quantization):
    """Adds `<scope>/act_quant/{min,max}` and quantizes from then on.

    Args:
      quantization: The net's `FakeQuantization`.
    """
    scope = self._kernels()[0].path.rsplit('/', 1)[0]
    # Keras locks a built layer's state; its own post-build quantization
    # (`Layer.quantize`) unlocks the tracker the same way.
    self._tracker.unlock()
    try:
      self._act_range = ActivationRange(scope + '/act_quant')
      self.act_quant_min = self._act_range.min
      self.act_quant_max = self._act_range.max
    finally:
      self._tracker.lock()
    self._quantization = quantization

  def _quantized_output(self, x):
    """The layer with quantized (batch-norm-folded) weights, before the output
    quantization; batch norm runs in inference mode (statistics fixed)."""
    q = self._quantization
    kernels = list(self._kernels())
    bias = self.biases
    if self.norm is not None:
      scale, bias = self.norm.folding()
      kernels[-1] = self._fold(kernels[-1], scale)
    kernels = [tf.cast(quantize_weights(k, q.num_bits, depthwise,
                                        self._per_channel), x.dtype)
               for k, depthwise in zip(kernels, self._depthwise)]
    x = self._linear(x, kernels)
    if bias is not None:
      x = tf.nn.bias_add(x, tf.cast(bias, x.dtype))
    if self.activation is not None:
      x = self.activation(x)
    return x

  def _fake_quantized_call(self, x, training):
    q = self._quantization
    active = q.active()
    float_path = lambda: self._finish(self._linear(x, self._kernels()),
                                      training)
    if isinstance(active, bool):
      y = self._quantized_output(x) if active else float_path()
    else:
      y = tf.cond(active, lambda: self._quantized_output(x), float_path)
    if training:
      # Tracked from the first step, so the range is ready when the
      # quantization starts (as TF-Slim's moving-average quantizer).
      self._act_range.track(y, q.ema_decay)
    if isinstance(active, bool):
      return self._act_range.quantize(y, q.num_bits) if active else y
    return tf.cond(active, lambda: self._act_range.quantize(y, q.num_bits),
                   lambda: y)


class Conv2D(_SlimLayer):
  """`slim.conv2d`: convolution, then bias or batch norm, then activation."""

  def __init__(self, num_outputs, kernel_size, stride=1, padding='SAME', rate=1,
               *, activation='relu', normalizer=None,
               weights_initializer='glorot_uniform', biases_initializer='zeros',
               weights_regularizer=None, name, **kwargs):
    """Creates the layer.

    Args:
      num_outputs: Number of output channels.
      kernel_size: An int or a pair `[height, width]`.
      stride: An int or a pair.
      padding: 'SAME' or 'VALID'.
      rate: Atrous (dilation) rate, an int or a pair.
      activation: A callable, a name of `ACTIVATIONS`, or None.
      normalizer: A zero-argument factory of the normalization layer (e.g.
        `functools.partial(batch_norm, scale=True)`), or None for biases.
      weights_initializer: Keras initializer of the kernel.
      biases_initializer: Keras initializer of the biases; None for none.
      weights_regularizer: A regularizer of the kernel, or None.
      name: The TF-Slim scope name of this layer (e.g. `Conv2d_0a_1x1`).
      **kwargs: Passed to `keras.layers.Layer` (e.g. `trainable`).
    """
    super().__init__(activation=activation, normalizer=normalizer,
                     biases_initializer=biases_initializer,
                     weights_initializer=weights_initializer,
                     weights_regularizer=weights_regularizer, name=name,
                     **kwargs)
    self.num_outputs = num_outputs
    self.kernel_size = _pair(kernel_size)
    self.stride = _pair(stride)
    self.padding = _checked_padding(padding)
    self.rate = _pair(rate)

  def build(self, input_shape):
    self.kernel = self.add_weight(
        name='weights',
        shape=self.kernel_size + (int(input_shape[-1]), self.num_outputs),
        initializer=_own_copy(self.weights_initializer),
        regularizer=self.weights_regularizer)
    self._add_biases(self.num_outputs)

  def _kernels(self):
    return (self.kernel,)

  def _linear(self, x, kernels):
    return tf.nn.conv2d(x, tf.cast(kernels[0], x.dtype), strides=self.stride,
                        padding=self.padding, dilations=self.rate)


class SeparableConv2D(_SlimLayer):
  """`slim.separable_conv2d`: depthwise, then an optional pointwise conv.

  With `num_outputs=None` this is the depthwise convolution alone, owning only
  `depthwise_weights` (MobileNet's `Conv2d_N_depthwise`); otherwise it also owns
  `pointwise_weights` (Inception v2's first layer).
  """

  def __init__(self, num_outputs, kernel_size, depth_multiplier=1, stride=1,
               padding='SAME', rate=1, *, activation='relu', normalizer=None,
               weights_initializer='glorot_uniform', biases_initializer='zeros',
               weights_regularizer=None, pointwise_initializer=None, name,
               **kwargs):
    """Creates the layer.

    Args:
      num_outputs: Channels of the pointwise conv, or None for depthwise only.
      kernel_size: An int or a pair.
      depth_multiplier: Depthwise channels per input channel.
      stride: An int or a pair.
      padding: 'SAME' or 'VALID'.
      rate: Atrous rate of the depthwise conv.
      activation: A callable, a name of `ACTIVATIONS`, or None.
      normalizer: A zero-argument factory of the normalization layer, or None.
      weights_initializer: Initializer of the depthwise kernel.
      biases_initializer: Initializer of the biases; None for none.
      weights_regularizer: Regularizer of the kernels (slim regularizes the
        depthwise kernel only when given one; nets pass None where slim did).
      pointwise_initializer: Initializer of the pointwise kernel; defaults to
        `weights_initializer`.
      name: The TF-Slim scope name.
      **kwargs: Passed to `keras.layers.Layer`.
    """
    super().__init__(activation=activation, normalizer=normalizer,
                     biases_initializer=biases_initializer,
                     weights_initializer=weights_initializer,
                     weights_regularizer=weights_regularizer, name=name,
                     **kwargs)
    self.num_outputs = num_outputs
    self.kernel_size = _pair(kernel_size)
    self.depth_multiplier = depth_multiplier
    self.stride = _pair(stride)
    self.padding = _checked_padding(padding)
    self.rate = _pair(rate)
    self.pointwise_initializer = pointwise_initializer or weights_initializer
    self.pointwise_kernel = None

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.depthwise_kernel = self.add_weight(
        name='depthwise_weights',
        shape=self.kernel_size + (channels, self.depth_multiplier),
        initializer=_own_copy(self.weights_initializer),
        regularizer=self.weights_regularizer)
    outputs = channels * self.depth_multiplier
    if self.num_outputs is not None:
      self.pointwise_kernel = self.add_weight(
          name='pointwise_weights', shape=(1, 1, outputs, self.num_outputs),
          initializer=_own_copy(self.pointwise_initializer),
          regularizer=self.weights_regularizer)
      outputs = self.num_outputs
    self._add_biases(outputs)

  @property
  def _depthwise(self):
    return (True,) if self.pointwise_kernel is None else (True, False)

  def _kernels(self):
    if self.pointwise_kernel is None:
      return (self.depthwise_kernel,)
    return (self.depthwise_kernel, self.pointwise_kernel)

  def _fold(self, kernel, scale):
    if self.pointwise_kernel is None:
      # Output channel c * multiplier + m is depthwise_kernel[..., c, m].
      return kernel * tf.reshape(scale, kernel.shape[2:])
    return kernel * scale

  def _linear(self, x, kernels):
    strides = (1,) + self.stride + (1,)
    depthwise = tf.cast(kernels[0], x.dtype)
    if len(kernels) == 1:
      return tf.nn.depthwise_conv2d(x, depthwise, strides=strides,
                                    padding=self.padding, dilations=self.rate)
    return tf.nn.separable_conv2d(
        x, depthwise, tf.cast(kernels[1], x.dtype), strides=strides,
        padding=self.padding, dilations=self.rate)


class FullyConnected(_SlimLayer):
  """`slim.fully_connected`: matmul, bias or batch norm, then activation."""

  def __init__(self, num_outputs, *, activation='relu', normalizer=None,
               weights_initializer='glorot_uniform', biases_initializer='zeros',
               weights_regularizer=None, name, **kwargs):
    """Creates the layer.

    Args:
      num_outputs: Number of output units.
      activation: A callable, a name of `ACTIVATIONS`, or None.
      normalizer: A zero-argument factory of the normalization layer, or None.
      weights_initializer: Initializer of the `[inputs, outputs]` weights.
      biases_initializer: Initializer of the biases; None for none.
      weights_regularizer: A regularizer of the weights, or None.
      name: The TF-Slim scope name.
      **kwargs: Passed to `keras.layers.Layer`.
    """
    super().__init__(activation=activation, normalizer=normalizer,
                     biases_initializer=biases_initializer,
                     weights_initializer=weights_initializer,
                     weights_regularizer=weights_regularizer, name=name,
                     **kwargs)
    self.num_outputs = num_outputs

  def build(self, input_shape):
    self.kernel = self.add_weight(
        name='weights', shape=(int(input_shape[-1]), self.num_outputs),
        initializer=_own_copy(self.weights_initializer),
        regularizer=self.weights_regularizer)
    self._add_biases(self.num_outputs)

  _per_channel = False

  def _kernels(self):
    return (self.kernel,)

  def _linear(self, x, kernels):
    return tf.matmul(x, tf.cast(kernels[0], x.dtype))


def max_pool2d(x, kernel_size, stride=2, padding='VALID'):
  """`slim.max_pool2d` (whose default padding is VALID)."""
  return tf.nn.max_pool2d(x, _pair(kernel_size), _pair(stride), padding.upper())


def avg_pool2d(x, kernel_size, stride=2, padding='VALID'):
  """`slim.avg_pool2d` (whose default padding is VALID)."""
  return tf.nn.avg_pool2d(x, _pair(kernel_size), _pair(stride), padding.upper())


def local_response_norm(x, *, depth_radius, bias, alpha, beta):
  """`tf.nn.lrn`: `x / (bias + alpha * sqr_sum) ** beta` across channels.

  `sqr_sum` sums the squares of the `2 * depth_radius + 1` nearest channels.
  TF has no CPU kernel of the op for bfloat16, so bfloat16 inputs are
  normalized in float32 (float32 inputs run the op as they are).

  Args:
    x: A `[batch, height, width, channels]` tensor.
    depth_radius: Channels on each side in the sum.
    bias: The offset `bias`.
    alpha: The scale of the sum.
    beta: The exponent.

  Returns:
    The normalized tensor, of `x`'s shape and dtype.
  """
  if x.dtype == tf.bfloat16:
    return tf.cast(local_response_norm(tf.cast(x, tf.float32),
                                       depth_radius=depth_radius, bias=bias,
                                       alpha=alpha, beta=beta), x.dtype)
  return tf.nn.lrn(x, depth_radius=depth_radius, bias=bias, alpha=alpha,
                   beta=beta)


def global_avg_pool(x, keepdims=True):
  """Mean over height and width, as TF-Slim's `global_pool` option does."""
  return tf.reduce_mean(x, axis=[1, 2], keepdims=keepdims)


def flatten(x):
  """`slim.flatten`: keeps the batch dimension, flattens the rest."""
  size = x.shape[1:].num_elements()
  # A static size keeps the static shape, which the next layer's build needs.
  return tf.reshape(x, [-1, size] if size is not None else [tf.shape(x)[0], -1])


def dropout(x, keep_prob, training, draws=None):
  """`slim.dropout`: active only in training, with TF-Slim's `keep_prob`.

  Args:
    x: The activations.
    keep_prob: Fraction of units kept (and scaled by `1 / keep_prob`).
    training: Whether dropout is active.
    draws: A `seeds.Draws`: with a seed the mask is stateless (the same for
      the same seed); None or no seed uses TensorFlow's stateful op.

  Returns:
    The activations with dropout applied in training.
  """
  if not training or keep_prob >= 1.0:
    return x
  seed = draws.next_seed() if draws is not None else None
  if seed is None:
    return tf.nn.dropout(x, rate=1.0 - keep_prob)
  return tf.nn.experimental.stateless_dropout(x, rate=1.0 - keep_prob,
                                              seed=seed)


def fixed_padding(x, kernel_size, rate=1):
  """Pads height and width so a VALID conv acts as TF-Slim's `conv2d_same`.

  TF-Slim's ResNets pad strided convolutions explicitly (independently of the
  input size) instead of using SAME, which pads asymmetrically depending on
  the input size. Matching it is needed for outputs to match a checkpoint.

  Args:
    x: A `[batch, height, width, channels]` tensor.
    kernel_size: The conv's kernel size (an int).
    rate: The conv's atrous rate.

  Returns:
    The padded tensor.
  """
  effective = kernel_size + (kernel_size - 1) * (rate - 1)
  total = effective - 1
  begin = total // 2
  return tf.pad(x, [[0, 0], [begin, total - begin], [begin, total - begin],
                    [0, 0]])


def scope(name):
  """Opens a TF-Slim variable scope for the layers first called inside it."""
  return keras.name_scope(name)


def bind(layer_cls, **defaults):
  """Binds a layer's defaults once: the explicit replacement of `arg_scope`.

  Args:
    layer_cls: A layer class or factory.
    **defaults: Keyword arguments applied to every layer made by the result.

  Returns:
    A `functools.partial` whose keywords callers may still override.
  """
  return functools.partial(layer_cls, **defaults)


def _pair(value):
  if isinstance(value, int):
    return (value, value)
  return tuple(int(v) for v in value)
