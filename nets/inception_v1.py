"""Inception v1 (GoogLeNet), as TF-Slim built it.

Going deeper with convolutions, Szegedy et al. (2014),
http://arxiv.org/abs/1409.4842

The body is data: `BODY` lists the stem convs and pools and the nine
Inception modules, each `1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1`.
Every conv has batch norm (no `gamma`) and ReLU, SAME padding.

Typical use, on 224x224 RGB images scaled to [-1, 1]:

  net = inception_v1(num_classes=1001, is_training=True)
  logits, end_points = net(images)   # end_points['Mixed_5c'], ['Predictions']
"""

from slimkit.nets import layers
from slimkit.nets.inception_utils import (
    Conv, InceptionNet, Mixed, Pool, constructor_args, inception_layers)
from slimkit.nets.network import forwards_options


def _module(name, d0, d1, d2, d3, b2_name='Conv2d_0b_3x3'):
  """An Inception module from its depths (`d1`, `d2`: 1x1 then 3x3)."""
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', d0, 1),),
      (Conv('Conv2d_0a_1x1', d1[0], 1), Conv('Conv2d_0b_3x3', d1[1], 3)),
      (Conv('Conv2d_0a_1x1', d2[0], 1), Conv(b2_name, d2[1], 3)),
      (Pool('MaxPool_0a_3x3', 'max', 3), Conv('Conv2d_0b_1x1', d3, 1))))


BODY = (
    Conv('Conv2d_1a_7x7', 64, 7, stride=2),
    Pool('MaxPool_2a_3x3', 'max', 3, stride=2),
    Conv('Conv2d_2b_1x1', 64, 1),
    Conv('Conv2d_2c_3x3', 192, 3),
    Pool('MaxPool_3a_3x3', 'max', 3, stride=2),
    _module('Mixed_3b', 64, (96, 128), (16, 32), 32),
    _module('Mixed_3c', 128, (128, 192), (32, 96), 64),
    Pool('MaxPool_4a_3x3', 'max', 3, stride=2),
    _module('Mixed_4b', 192, (96, 208), (16, 48), 64),
    _module('Mixed_4c', 160, (112, 224), (24, 64), 64),
    _module('Mixed_4d', 128, (128, 256), (24, 64), 64),
    _module('Mixed_4e', 112, (144, 288), (32, 64), 64),
    _module('Mixed_4f', 256, (160, 320), (32, 128), 128),
    Pool('MaxPool_5a_2x2', 'max', 2, stride=2),
    # TF-Slim named this one scope `Conv2d_0a_3x3`; checkpoints carry it.
    _module('Mixed_5b', 256, (160, 320), (32, 128), 128,
            b2_name='Conv2d_0a_3x3'),
    _module('Mixed_5c', 384, (192, 384), (48, 128), 128),
)


class InceptionV1(InceptionNet):
  """The body, then 7x7 average pool, dropout and a 1x1 conv to the logits."""

  default_image_size = 224

  def __init__(self, num_classes=1000, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.8, spatial_squeeze=True,
               global_pool=False, prediction_fn='softmax', use_batch_norm=True,
               batch_norm_decay=0.9997, batch_norm_epsilon=0.001,
               batch_norm_scale=False, activation='relu', body_stddev=0.01):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the pooled 1024
        features (`[B, 1, 1, 1024]` at the default size).
      weight_decay: L2 weight decay of every conv's weights.
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of pre-logits units kept in training.
      spatial_squeeze: Squeeze logits from `[B, 1, 1, C]` to `[B, C]`.
      global_pool: Average the whole last map instead of the fixed VALID 7x7
        window, so any input size gives one feature vector.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      use_batch_norm: Whether convs use batch norm (else biases).
      batch_norm_decay: Moving-average decay of the batch-norm statistics.
      batch_norm_epsilon: Added to the variance.
      batch_norm_scale: Whether batch norms own a `gamma`.
      activation: Activation of the convs.
      body_stddev: Stddev of the body's truncated-normal initializer (the
        logits conv keeps the Inception variance-scaling default).
    """
    config = constructor_args(locals())
    arg_scope = dict(weight_decay=weight_decay, use_batch_norm=use_batch_norm,
                     batch_norm_decay=batch_norm_decay,
                     batch_norm_epsilon=batch_norm_epsilon,
                     batch_norm_scale=batch_norm_scale, activation=activation)
    super().__init__(
        scope='InceptionV1', num_classes=num_classes, is_training=is_training,
        config=config, body=BODY, dropout_keep_prob=dropout_keep_prob,
        prediction_fn=prediction_fn,
        ls=inception_layers(
            weights_initializer=layers.truncated_normal(body_stddev),
            **arg_scope))
    self.spatial_squeeze = spatial_squeeze
    self.global_pool = global_pool
    self.logits = (inception_layers(**arg_scope).conv(
        num_classes, 1, activation=None, normalizer=None, name='Conv2d_0c_1x1')
                   if num_classes else None)

  def forward(self, images, training):
    net, end_points = self.run_body(images, training)
    # TF-Slim pools with stride 1 here and never shrinks the 7x7 window.
    return self.conv_logits(net, end_points, training, kernel_size=(7, 7),
                            stride=1, end_point='AvgPool_0a_7x7',
                            reduce_for_small_input=False)


@forwards_options(InceptionV1)
def inception_v1(num_classes=1000, **options):
  """Returns an `InceptionV1`; see `InceptionV1.__init__` for the options."""
  return InceptionV1(num_classes, **options)
