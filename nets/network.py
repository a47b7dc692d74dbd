"""The base class of every net: a Keras model giving `(logits, end_points)`."""

import inspect
import threading

import keras
import tensorflow as tf

from slimkit import seeds
from slimkit.nets import layers as slim_layers


class Network(keras.Model):
  """A classification net with TF-Slim's calling contract.

  `logits, end_points = net(images)` builds the variables on the first call.
  `end_points` maps TF-Slim's end-point names to activations. With
  `num_classes` 0 or None, `logits` are the pooled pre-logits features.

  Subclasses implement `forward(images, training)` and pass their constructor
  arguments to `__init__` as `config`, which makes `get_config`/`from_config`
  rebuild the same net.

  Attributes:
    default_image_size: Height and width the net was designed for.
    num_classes: Number of logits (0 or None: features only).
    is_training: The default mode of `call` when `training` is not given.
  """

  default_image_size = 224

  def __init__(self, *, scope, num_classes, is_training=False, config=None):
    """Creates the net.

    Args:
      scope: TF-Slim's outer scope of the net (`InceptionV3`, `vgg_16`); it is
        the first component of every variable path.
      num_classes: Number of classes; 0 or None for pre-logits features.
      is_training: Mode used when a call does not say `training`.
      config: The subclass's constructor arguments, for `get_config`.
    """
    super().__init__(name=scope)
    self.num_classes = num_classes
    self.is_training = is_training
    self._net_config = dict(config or {})
    # This call's draws, per thread: MirroredStrategy runs each clone's call
    # in a thread of its own and switches between them mid-call (at a
    # merge_call, such as a fake-quant range update).
    self._call_state = threading.local()
    self.fake_quantization = None
    self._input_range = None

  def call(self, images, training=None, seed=None):
    """Runs the net.

    Args:
      images: A float `[batch, height, width, channels]` tensor.
      training: Whether to run in training mode (dropout, batch statistics);
        defaults to the `is_training` the net was built with.
      seed: An int `[2]` seed tensor for the dropout masks (stateless, the
        same masks for the same seed), or None for TensorFlow's stateful
        random ops. The trainer passes one per step and replica under
        `--random_seed`.

    Returns:
      `(logits, end_points)`.
    """
    if training is None:
      training = self.is_training
    # The draws of this call, for `dropout`; each call starts afresh.
    self._call_state.draws = seeds.Draws(seed)
    if self._input_range is not None:
      images = self._quantized_input(images, bool(training))
    return self.forward(images, bool(training))

  def enable_fake_quant(self, quantization):
    """Fake-quantizes the built net from now on (quantization-aware training).

    Every slim layer gets its `<scope>/act_quant/{min,max}` range and
    quantizes its weights and output while `quantization.active()`; the
    input gets `<net scope>/input_quant/{min,max}` (a TFLite int8 model
    quantizes its float input with it). Call after the first call built the
    variables and before restoring a checkpoint.

    Args:
      quantization: A `layers.FakeQuantization`.

    Returns:
      `quantization`.

    Raises:
      ValueError: when the net is not built, or already quantized.
    """
    if not self.weights:
      raise ValueError(f'{self.name} has no variables yet: call it on a batch '
                       'before enabling fake quantization.')
    if self.fake_quantization is not None:
      raise ValueError(f'{self.name} is already fake-quantized.')
    # Keras 3 has no public recursive listing of nested layers.
    nested = self._flatten_layers(include_self=False)
    for layer in nested:
      if isinstance(layer, slim_layers._SlimLayer):
        layer.enable_fake_quant(quantization)
    self._tracker.unlock()
    try:
      self._input_range = slim_layers.ActivationRange(
          f'{self.name}/input_quant')
      self.input_quant_min = self._input_range.min
      self.input_quant_max = self._input_range.max
    finally:
      self._tracker.lock()
    self.fake_quantization = quantization
    return quantization

  @property
  def quantized(self):
    """Whether every call fake-quantizes (evaluation or export of QAT)."""
    return (self.fake_quantization is not None and
            self.fake_quantization.always)

  def _quantized_input(self, images, training):
    q = self.fake_quantization
    if training:
      self._input_range.track(images, q.ema_decay)
    active = q.active()
    if isinstance(active, bool):
      return (self._input_range.quantize(images, q.num_bits) if active
              else images)
    return tf.cond(active,
                   lambda: self._input_range.quantize(images, q.num_bits),
                   lambda: images)

  def forward(self, images, training):
    raise NotImplementedError

  def dropout(self, x, keep_prob, training):
    """`layers.dropout` with this call's draws (see `call`'s `seed`)."""
    draws = getattr(self._call_state, 'draws', None) or seeds.Draws()
    return slim_layers.dropout(x, keep_prob, training, draws=draws)

  def get_config(self):
    return dict(self._net_config)

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def _trackable_children(self, save_type='checkpoint', **kwargs):
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == 'checkpoint':
      # Keras 3 hands TensorFlow's checkpointing only the layers held in plain
      # attributes; layers kept in lists (a spec-driven body of blocks) would
      # be skipped silently. Every variable is therefore also a direct child,
      # under its TF-Slim name, so `tf.train.Checkpoint(model=net)` saves all
      # of them and its keys carry the names TF-Slim gave them.
      for variable in self.weights:
        children.setdefault(variable.path, variable)
    return children

  def slim_variables(self):
    """Returns `{TF-Slim variable name: variable}` for every variable."""
    return {v.path: v for v in self.weights}


def prediction_fn(fn):
  """Resolves a `prediction_fn` option: 'softmax' or a callable on logits."""
  return tf.nn.softmax if fn == 'softmax' else fn


def forwards_options(target, *, bound=()):
  """Declares that a builder passes its `**options` on to `target`.

  A builder such as `resnet_v1_50(num_classes, *, depth_multiplier,
  **options)` hands `**options` to a `Network` class. The decorator sets the
  builder's `__signature__` (Python's standard hook, read by
  `inspect.signature`, `help()` and `nets_factory.network_options`) to its
  own parameters followed by the keyword parameters of `target` that it
  neither declares nor sets itself, with their defaults. Variants made with
  `functools.partial(builder, depth_multiplier=0.75)` then show their own
  defaults too.

  Args:
    target: The class (or function) receiving `**options`.
    bound: Parameters of `target` the builder sets itself (e.g. `blocks`);
      they are not options of the builder.

  Returns:
    A decorator returning the builder itself.
  """
  def decorate(builder):
    own = inspect.signature(builder)
    params = [p for p in own.parameters.values()
              if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in params} | set(bound)
    forwarded = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in inspect.signature(target).parameters.values()
        if p.name not in taken and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                              p.KEYWORD_ONLY)]
    builder.__signature__ = own.replace(parameters=params + forwarded)
    return builder
  return decorate
