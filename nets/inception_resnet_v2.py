"""Inception-ResNet v2, as TF-Slim built it.

Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning, Szegedy et al. (2016), http://arxiv.org/abs/1602.07261

The body is data: the stem and `Mixed_5b`, 10 x block35 (scaled by 0.17),
the reduction `Mixed_6a`, 20 x block17 (0.10), the reduction `Mixed_7a`,
9 x block8 (0.20), a last block8 without activation, and `Conv2d_7b_1x1`.
A residual block concatenates its branches, projects them back to the input
depth with a 1x1 conv that has biases and no batch norm (`Conv2d_1x1`), adds
the scaled result to its input and applies the activation. Repeated blocks
live in TF-Slim's `slim.repeat` scopes: `Repeat/block35_1` ...
`Repeat_2/block8_9`, then `Block8`.

Typical use, on 299x299 RGB images scaled to [-1, 1]:

  net = inception_resnet_v2(num_classes=1001, is_training=True)
  logits, end_points = net(images)   # end_points['AuxLogits'] as well
"""

import typing

import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.inception_utils import (
    AuxLogits, Conv, InceptionNet, Mixed, MixedBlock, Pool, constructor_args,
    inception_layers)
from slimkit.nets.network import forwards_options


def _is_relu6(activation):
  return activation in ('relu6', tf.nn.relu6)


class ResidualBlock(MixedBlock):
  """A residual Inception block (`block35`, `block17`, `block8`)."""

  def __init__(self, branches, ls, *, scale, activation, name, **kwargs):
    """Builds the layers.

    Args:
      branches: The branches, as for a `Mixed` block.
      ls: The net's `LayerSet`.
      scale: Factor of the residual before it is added.
      activation: Applied after the addition (a name or callable), or None.
      name: The block's scope (`block35_1`, `Block8`).
      **kwargs: Passed to `keras.layers.Layer`.
    """
    super().__init__(branches, ls, name=name, **kwargs)
    self.scale = scale
    # TF-Slim simulates a band-pass ReLU6 by clipping the residual.
    self.clip = _is_relu6(activation)
    # The sum keeps the block's width: a widening activation (crelu) acts as
    # relu here, as on every residual stream.
    self.activation = layers.same_width(activation)
    # Projects back to the input depth, known when the block is built.
    self.up = ls.conv(None, 1, activation=None, normalizer=None,
                      name='Conv2d_1x1')

  def build(self, input_shape):
    self.up.num_outputs = int(input_shape[-1])

  def call(self, x, training=None):
    mixed = tf.concat(self.branch_outputs(x, training), 3)
    up = self.up(mixed, training=training) * self.scale
    if self.clip:
      up = tf.clip_by_value(up, -6.0, 6.0)
    x = x + up
    return self.activation(x) if self.activation is not None else x


def _net_activation(ls):
  # TF-Slim uses the convs' activation_fn for the blocks too.
  return ls.conv.keywords['activation']


class Residual(typing.NamedTuple):
  """One residual block at the top level (the last, bare `Block8`)."""
  name: str
  branches: tuple
  scale: float = 1.0
  activate: bool = True
  end_point: typing.Optional[str] = None

  def build(self, owner, ls, prefix=''):
    block = ResidualBlock(
        self.branches, ls, scale=self.scale, name=self.name,
        activation=_net_activation(ls) if self.activate else None)
    setattr(owner, prefix + self.name, block)
    return lambda x, training: block(x, training=training)


class Repeat(typing.NamedTuple):
  """`slim.repeat`: `count` blocks `<block>_1..N` in the scope `scope`."""
  scope: str
  block: str
  count: int
  branches: tuple
  scale: float
  end_point: typing.Optional[str] = None

  def build(self, owner, ls, prefix=''):
    blocks = []
    for i in range(self.count):
      block = ResidualBlock(self.branches, ls, scale=self.scale,
                            activation=_net_activation(ls),
                            name=f'{self.block}_{i + 1}')
      setattr(owner, f'{prefix}{self.scope}_{block.name}', block)
      blocks.append(block)

    def step(x, training):
      with layers.scope(self.scope):
        for block in blocks:
          x = block(x, training=training)
      return x
    return step


BLOCK35 = (
    (Conv('Conv2d_1x1', 32, 1),),
    (Conv('Conv2d_0a_1x1', 32, 1), Conv('Conv2d_0b_3x3', 32, 3)),
    (Conv('Conv2d_0a_1x1', 32, 1), Conv('Conv2d_0b_3x3', 48, 3),
     Conv('Conv2d_0c_3x3', 64, 3)),
)

BLOCK17 = (
    (Conv('Conv2d_1x1', 192, 1),),
    (Conv('Conv2d_0a_1x1', 128, 1), Conv('Conv2d_0b_1x7', 160, (1, 7)),
     Conv('Conv2d_0c_7x1', 192, (7, 1))),
)

BLOCK8 = (
    (Conv('Conv2d_1x1', 192, 1),),
    (Conv('Conv2d_0a_1x1', 192, 1), Conv('Conv2d_0b_1x3', 224, (1, 3)),
     Conv('Conv2d_0c_3x1', 256, (3, 1))),
)

_MAX_POOL_1A = Pool('MaxPool_1a_3x3', 'max', 3, stride=2, padding='VALID')

BODY = (
    Conv('Conv2d_1a_3x3', 32, 3, stride=2, padding='VALID'),
    Conv('Conv2d_2a_3x3', 32, 3, padding='VALID'),
    Conv('Conv2d_2b_3x3', 64, 3),
    Pool('MaxPool_3a_3x3', 'max', 3, stride=2, padding='VALID'),
    Conv('Conv2d_3b_1x1', 80, 1, padding='VALID'),
    Conv('Conv2d_4a_3x3', 192, 3, padding='VALID'),
    Pool('MaxPool_5a_3x3', 'max', 3, stride=2, padding='VALID'),
    Mixed('Mixed_5b', (
        (Conv('Conv2d_1x1', 96, 1),),
        (Conv('Conv2d_0a_1x1', 48, 1), Conv('Conv2d_0b_5x5', 64, 5)),
        (Conv('Conv2d_0a_1x1', 64, 1), Conv('Conv2d_0b_3x3', 96, 3),
         Conv('Conv2d_0c_3x3', 96, 3)),
        (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', 64, 1)))),
    Repeat('Repeat', 'block35', 10, BLOCK35, scale=0.17),
    Mixed('Mixed_6a', (
        (Conv('Conv2d_1a_3x3', 384, 3, stride=2, padding='VALID'),),
        (Conv('Conv2d_0a_1x1', 256, 1), Conv('Conv2d_0b_3x3', 256, 3),
         Conv('Conv2d_1a_3x3', 384, 3, stride=2, padding='VALID')),
        (_MAX_POOL_1A,))),
    Repeat('Repeat_1', 'block17', 20, BLOCK17, scale=0.10,
           end_point='PreAuxLogits'),
    Mixed('Mixed_7a', (
        (Conv('Conv2d_0a_1x1', 256, 1),
         Conv('Conv2d_1a_3x3', 384, 3, stride=2, padding='VALID')),
        (Conv('Conv2d_0a_1x1', 256, 1),
         Conv('Conv2d_1a_3x3', 288, 3, stride=2, padding='VALID')),
        (Conv('Conv2d_0a_1x1', 256, 1), Conv('Conv2d_0b_3x3', 288, 3),
         Conv('Conv2d_1a_3x3', 320, 3, stride=2, padding='VALID')),
        (_MAX_POOL_1A,))),
    Repeat('Repeat_2', 'block8', 9, BLOCK8, scale=0.20),
    Residual('Block8', BLOCK8, activate=False),
    Conv('Conv2d_7b_1x1', 1536, 1),
)


class InceptionResnetV2(InceptionNet):
  """The body, the auxiliary head, then global pool, dropout, logits."""

  default_image_size = 299

  def __init__(self, num_classes=1001, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.8,
               create_aux_logits=True, prediction_fn='softmax',
               activation='relu', batch_norm_decay=0.9997,
               batch_norm_epsilon=0.001, batch_norm_scale=False):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the globally pooled
        `[B, 1, 1, 1536]` features (and builds no auxiliary head).
      weight_decay: L2 weight decay of the weights and biases of convs and
        fully connected layers (TF-Slim's arg scope decays biases too).
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of pre-logits units kept in training.
      create_aux_logits: Build the auxiliary classifier on `PreAuxLogits`
        (`end_points['AuxLogits']`); it needs inputs of at least 107x107.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      activation: Activation of the convs and of the residual blocks; with
        'relu6' the residuals are clipped to [-6, 6] as in TF-Slim. 'crelu'
        doubles the convs' outputs; the blocks' sums keep their width (relu).
      batch_norm_decay: Moving-average decay of the batch-norm statistics.
      batch_norm_epsilon: Added to the variance.
      batch_norm_scale: Whether batch norms own a `gamma`.
    """
    config = constructor_args(locals())
    ls = inception_layers(
        weight_decay=weight_decay, batch_norm_decay=batch_norm_decay,
        batch_norm_epsilon=batch_norm_epsilon,
        batch_norm_scale=batch_norm_scale, activation=activation,
        weights_initializer='glorot_uniform', regularize_biases=True)
    super().__init__(
        scope='InceptionResnetV2', num_classes=num_classes,
        is_training=is_training, config=config, body=BODY, ls=ls,
        dropout_keep_prob=dropout_keep_prob, prediction_fn=prediction_fn)
    self.aux_logits = None
    if create_aux_logits and num_classes:
      # `Conv2d_2a_5x5` spans the whole pooled map (5x5 at 299x299).
      self.aux_logits = AuxLogits(num_classes, ls, conv_name='Conv2d_2a_5x5',
                                  logits_name='Logits')
    self.logits = (ls.fc(num_classes, activation=None, name='Logits')
                   if num_classes else None)

  def forward(self, images, training):
    net, end_points = self.run_body(images, training)
    if self.aux_logits is not None:
      end_points['AuxLogits'] = self.aux_logits(end_points['PreAuxLogits'],
                                                training=training)
    with layers.scope('Logits'):
      net = end_points['global_pool'] = layers.global_avg_pool(net)
      if not self.num_classes:
        return net, end_points
      net = layers.flatten(net)
      net = end_points['PreLogitsFlatten'] = self.dropout(
          net, self.dropout_keep_prob, training)
      logits = self.logits(net, training=training)
    return self.predictions(logits, end_points)


@forwards_options(InceptionResnetV2)
def inception_resnet_v2(num_classes=1001, **options):
  """Returns an `InceptionResnetV2`; see its `__init__` for the options."""
  return InceptionResnetV2(num_classes, **options)
