"""Inception v2 (Inception with batch normalization), as TF-Slim built it.

Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift, Ioffe and Szegedy (2015), http://arxiv.org/abs/1502.03167

The body is data: the stem (a separable 7x7 conv by default), then the
Inception modules of `MODULES` (`1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 |
3x3 pool -> 1x1`) and two grid reductions. Every channel count goes through
`max(int(d * depth_multiplier), min_depth)`. Padding is SAME throughout.

Typical use, on 224x224 RGB images scaled to [-1, 1]:

  net = inception_v2(num_classes=1001, is_training=True)
  logits, end_points = net(images)
"""

from slimkit.nets.inception_utils import (
    Conv, InceptionNet, Mixed, Pool, SepConv, constructor_args, depth_fn,
    inception_layers)
from slimkit.nets.network import forwards_options


def _module(name, d0, d1, d2, pool, d3):
  """An Inception module; `d1` is 1x1 -> 3x3, `d2` 1x1 -> 3x3 -> 3x3."""
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', d0, 1),),
      (Conv('Conv2d_0a_1x1', d1[0], 1, stddev=0.09),
       Conv('Conv2d_0b_3x3', d1[1], 3)),
      (Conv('Conv2d_0a_1x1', d2[0], 1, stddev=0.09),
       Conv('Conv2d_0b_3x3', d2[1], 3), Conv('Conv2d_0c_3x3', d2[1], 3)),
      (Pool(f'{pool.capitalize()}Pool_0a_3x3', pool, 3),
       Conv('Conv2d_0b_1x1', d3, 1, stddev=0.1))))


def _reduction(name, d0, d1):
  """A grid reduction: two strided conv towers and a strided max pool."""
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', d0[0], 1, stddev=0.09),
       Conv('Conv2d_1a_3x3', d0[1], 3, stride=2)),
      (Conv('Conv2d_0a_1x1', d1[0], 1, stddev=0.09),
       Conv('Conv2d_0b_3x3', d1[1], 3),
       Conv('Conv2d_1a_3x3', d1[1], 3, stride=2)),
      (Pool('MaxPool_1a_3x3', 'max', 3, stride=2),)))


STEM = (
    # Conv2d_1a_7x7 (separable or not) comes first; see `InceptionV2`.
    Pool('MaxPool_2a_3x3', 'max', 3, stride=2),
    Conv('Conv2d_2b_1x1', 64, 1, stddev=0.1),
    Conv('Conv2d_2c_3x3', 192, 3),
    Pool('MaxPool_3a_3x3', 'max', 3, stride=2),
)

MODULES = (
    _module('Mixed_3b', 64, (64, 64), (64, 96), 'avg', 32),
    _module('Mixed_3c', 64, (64, 96), (64, 96), 'avg', 64),
    _reduction('Mixed_4a', (128, 160), (64, 96)),
    _module('Mixed_4b', 224, (64, 96), (96, 128), 'avg', 128),
    _module('Mixed_4c', 192, (96, 128), (96, 128), 'avg', 128),
    _module('Mixed_4d', 160, (128, 160), (128, 160), 'avg', 96),
    _module('Mixed_4e', 96, (128, 192), (160, 192), 'avg', 96),
    _reduction('Mixed_5a', (128, 192), (192, 256)),
    _module('Mixed_5b', 352, (192, 320), (160, 224), 'avg', 128),
    _module('Mixed_5c', 352, (192, 320), (192, 224), 'max', 128),
)


class InceptionV2(InceptionNet):
  """The body, then a 7x7 average pool, dropout and a 1x1 conv to logits."""

  default_image_size = 224

  def __init__(self, num_classes=1000, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.8, min_depth=16,
               depth_multiplier=1.0, use_separable_conv=True,
               spatial_squeeze=True, global_pool=False,
               prediction_fn='softmax', use_batch_norm=True,
               batch_norm_decay=0.9997, batch_norm_epsilon=0.001,
               batch_norm_scale=False, activation='relu'):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the pooled features.
      weight_decay: L2 weight decay of the convs' weights (TF-Slim's arg
        scope does not reach the separable first conv).
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of pre-logits units kept in training.
      min_depth: Floor of every conv's channel count (when thinning).
      depth_multiplier: Multiplier of every conv's channel count (> 0).
      use_separable_conv: Make `Conv2d_1a_7x7` a separable conv (TF-Slim's
        default; bare, with biases) rather than a normal conv.
      spatial_squeeze: Squeeze logits from `[B, 1, 1, C]` to `[B, C]`.
      global_pool: Average the whole last map instead of a VALID 7x7 window
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
    depth = depth_fn(depth_multiplier, min_depth)
    ls = inception_layers(
        weight_decay=weight_decay, use_batch_norm=use_batch_norm,
        batch_norm_decay=batch_norm_decay,
        batch_norm_epsilon=batch_norm_epsilon,
        batch_norm_scale=batch_norm_scale, activation=activation, depth=depth)
    if use_separable_conv:
      # TF-Slim keeps the depthwise stage at most as wide as the pointwise
      # one: 3 input channels times min(depth(64) / 3, 8).
      first = SepConv('Conv2d_1a_7x7', 64, 7, min(int(depth(64) / 3), 8),
                      stride=2, stddev=1.0)
    else:
      first = Conv('Conv2d_1a_7x7', 64, 7, stride=2, stddev=1.0)
    super().__init__(
        scope='InceptionV2', num_classes=num_classes, is_training=is_training,
        config=config, body=(first,) + STEM + MODULES, ls=ls,
        dropout_keep_prob=dropout_keep_prob, prediction_fn=prediction_fn)
    self.spatial_squeeze = spatial_squeeze
    self.global_pool = global_pool
    self.logits = (ls.conv(num_classes, 1, activation=None, normalizer=None,
                           name='Conv2d_1c_1x1') if num_classes else None)

  def forward(self, images, training):
    net, end_points = self.run_body(images, training)
    return self.conv_logits(net, end_points, training, pre_logits='PreLogits',
                            kernel_size=(7, 7), stride=2,
                            end_point='AvgPool_1a')


@forwards_options(InceptionV2)
def inception_v2(num_classes=1000, **options):
  """Returns an `InceptionV2`; see `InceptionV2.__init__` for the options."""
  return InceptionV2(num_classes, **options)
