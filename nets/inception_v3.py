"""Inception v3, as TF-Slim built it.

Rethinking the Inception Architecture for Computer Vision, Szegedy et al.
(2015), http://arxiv.org/abs/1512.00567

The body is data: a VALID-padded stem, then the modules of `BODY`: three
35x35 modules, a grid reduction, four 17x17 modules with factorized 7x7
convs, a reduction and two 8x8 modules whose towers split into 1x3 and 3x1
convs. Scope names are TF-Slim's, quirks included (`Mixed_6a`'s strided 3x3
convs are named `Conv2d_1a_1x1`, `Mixed_5c` has `Conv_1_0c_5x5`). Every channel
count goes through `max(int(d * depth_multiplier), min_depth)`. An auxiliary
classifier reads `Mixed_6e`.

Typical use, on 299x299 RGB images scaled to [-1, 1]:

  net = inception_v3(num_classes=1001, is_training=True)
  logits, end_points = net(images)   # end_points['AuxLogits'] as well
"""

from slimkit.nets.inception_utils import (
    AuxLogits, Conv, InceptionNet, Mixed, Pool, Split, constructor_args,
    depth_fn, inception_layers)
from slimkit.nets.network import forwards_options


def _module_35(name, d3, b1_names=('Conv2d_0a_1x1', 'Conv2d_0b_5x5')):
  """A 35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg -> 1x1."""
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', 64, 1),),
      (Conv(b1_names[0], 48, 1), Conv(b1_names[1], 64, 5)),
      (Conv('Conv2d_0a_1x1', 64, 1), Conv('Conv2d_0b_3x3', 96, 3),
       Conv('Conv2d_0c_3x3', 96, 3)),
      (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', d3, 1))))


def _module_17(name, d):
  """A 17x17 module with 7x7 convs factorized into 1x7 and 7x1 (`d` wide)."""
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', 192, 1),),
      (Conv('Conv2d_0a_1x1', d, 1), Conv('Conv2d_0b_1x7', d, (1, 7)),
       Conv('Conv2d_0c_7x1', 192, (7, 1))),
      (Conv('Conv2d_0a_1x1', d, 1), Conv('Conv2d_0b_7x1', d, (7, 1)),
       Conv('Conv2d_0c_1x7', d, (1, 7)), Conv('Conv2d_0d_7x1', d, (7, 1)),
       Conv('Conv2d_0e_1x7', 192, (1, 7))),
      (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', 192, 1))))


def _module_8(name, b1_split_names):
  """An 8x8 module whose 3x3 towers end split into 1x3 and 3x1 convs."""
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', 320, 1),),
      (Conv('Conv2d_0a_1x1', 384, 1),
       Split((Conv(b1_split_names[0], 384, (1, 3)),
              Conv(b1_split_names[1], 384, (3, 1))))),
      (Conv('Conv2d_0a_1x1', 448, 1), Conv('Conv2d_0b_3x3', 384, 3),
       Split((Conv('Conv2d_0c_1x3', 384, (1, 3)),
              Conv('Conv2d_0d_3x1', 384, (3, 1))))),
      (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', 192, 1))))


BODY = (
    Conv('Conv2d_1a_3x3', 32, 3, stride=2, padding='VALID'),
    Conv('Conv2d_2a_3x3', 32, 3, padding='VALID'),
    Conv('Conv2d_2b_3x3', 64, 3),
    Pool('MaxPool_3a_3x3', 'max', 3, stride=2, padding='VALID'),
    Conv('Conv2d_3b_1x1', 80, 1, padding='VALID'),
    Conv('Conv2d_4a_3x3', 192, 3, padding='VALID'),
    Pool('MaxPool_5a_3x3', 'max', 3, stride=2, padding='VALID'),
    _module_35('Mixed_5b', 32),
    _module_35('Mixed_5c', 64, b1_names=('Conv2d_0b_1x1', 'Conv_1_0c_5x5')),
    _module_35('Mixed_5d', 64),
    Mixed('Mixed_6a', (
        (Conv('Conv2d_1a_1x1', 384, 3, stride=2, padding='VALID'),),
        (Conv('Conv2d_0a_1x1', 64, 1), Conv('Conv2d_0b_3x3', 96, 3),
         Conv('Conv2d_1a_1x1', 96, 3, stride=2, padding='VALID')),
        (Pool('MaxPool_1a_3x3', 'max', 3, stride=2, padding='VALID'),))),
    _module_17('Mixed_6b', 128),
    _module_17('Mixed_6c', 160),
    _module_17('Mixed_6d', 160),
    _module_17('Mixed_6e', 192),
    Mixed('Mixed_7a', (
        (Conv('Conv2d_0a_1x1', 192, 1),
         Conv('Conv2d_1a_3x3', 320, 3, stride=2, padding='VALID')),
        (Conv('Conv2d_0a_1x1', 192, 1), Conv('Conv2d_0b_1x7', 192, (1, 7)),
         Conv('Conv2d_0c_7x1', 192, (7, 1)),
         Conv('Conv2d_1a_3x3', 192, 3, stride=2, padding='VALID')),
        (Pool('MaxPool_1a_3x3', 'max', 3, stride=2, padding='VALID'),))),
    _module_8('Mixed_7b', ('Conv2d_0b_1x3', 'Conv2d_0b_3x1')),
    _module_8('Mixed_7c', ('Conv2d_0b_1x3', 'Conv2d_0c_3x1')),
)


class InceptionV3(InceptionNet):
  """The body, the auxiliary head, then pool, dropout and a 1x1 conv."""

  default_image_size = 299

  def __init__(self, num_classes=1000, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.8, min_depth=16,
               depth_multiplier=1.0, spatial_squeeze=True,
               create_aux_logits=True, global_pool=False,
               prediction_fn='softmax', use_batch_norm=True,
               batch_norm_decay=0.9997, batch_norm_epsilon=0.001,
               batch_norm_scale=False, activation='relu'):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the pooled features
        (and builds no auxiliary head).
      weight_decay: L2 weight decay of every conv's weights.
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of pre-logits units kept in training.
      min_depth: Floor of every conv's channel count (when thinning).
      depth_multiplier: Multiplier of every conv's channel count (> 0).
      spatial_squeeze: Squeeze logits (and auxiliary logits) from
        `[B, 1, 1, C]` to `[B, C]`.
      create_aux_logits: Build the auxiliary classifier on `Mixed_6e`
        (`end_points['AuxLogits']`); it needs inputs of at least 107x107.
      global_pool: Average the whole last map instead of a VALID 8x8 window
        (capped at the map's size).
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      use_batch_norm: Whether convs use batch norm (else biases).
      batch_norm_decay: Moving-average decay of the batch-norm statistics.
      batch_norm_epsilon: Added to the variance.
      batch_norm_scale: Whether batch norms own a `gamma`.
      activation: Activation of the convs.

    Raises:
      ValueError: if `depth_multiplier` is not greater than zero.
    """
    config = constructor_args(locals())
    ls = inception_layers(
        weight_decay=weight_decay, use_batch_norm=use_batch_norm,
        batch_norm_decay=batch_norm_decay,
        batch_norm_epsilon=batch_norm_epsilon,
        batch_norm_scale=batch_norm_scale, activation=activation,
        depth=depth_fn(depth_multiplier, min_depth))
    super().__init__(
        scope='InceptionV3', num_classes=num_classes, is_training=is_training,
        config=config, body=BODY, ls=ls, dropout_keep_prob=dropout_keep_prob,
        prediction_fn=prediction_fn)
    self.spatial_squeeze = spatial_squeeze
    self.global_pool = global_pool
    self.aux_logits = None
    if create_aux_logits and num_classes:
      # The 5x5 conv shrinks (and is renamed) on inputs below 299x299.
      self.aux_logits = AuxLogits(
          num_classes, ls, conv_name='Conv2d_2a_5x5', max_kernel_size=(5, 5),
          name_format='Conv2d_2a_{}x{}', conv_stddev=0.01,
          logits_name='Conv2d_2b_1x1', logits_conv=True, logits_stddev=0.001,
          spatial_squeeze=spatial_squeeze)
    self.logits = (ls.conv(num_classes, 1, activation=None, normalizer=None,
                           name='Conv2d_1c_1x1') if num_classes else None)

  def forward(self, images, training):
    net, end_points = self.run_body(images, training)
    if self.aux_logits is not None:
      end_points['AuxLogits'] = self.aux_logits(end_points['Mixed_6e'],
                                                training=training)
    return self.conv_logits(net, end_points, training, pre_logits='PreLogits',
                            kernel_size=(8, 8), stride=2,
                            end_point='AvgPool_1a')


@forwards_options(InceptionV3)
def inception_v3(num_classes=1000, **options):
  """Returns an `InceptionV3`; see `InceptionV3.__init__` for the options."""
  return InceptionV3(num_classes, **options)
