"""Inception v4, as TF-Slim built it.

Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning, Szegedy et al. (2016), http://arxiv.org/abs/1602.07261

The body is data: the stem (`Conv2d_1a_3x3` ... `Mixed_5a`), four
Inception-A blocks, Reduction-A, seven Inception-B blocks, Reduction-B and
three Inception-C blocks, all as `Mixed` specs below. SAME padding except
where a spec says VALID. An auxiliary classifier reads `Mixed_6h`; both heads
end in fully connected layers.

Typical use, on 299x299 RGB images scaled to [-1, 1]:

  net = inception_v4(num_classes=1001, is_training=True)
  logits, end_points = net(images)   # end_points['AuxLogits'] as well
"""

from slimkit.nets import layers
from slimkit.nets.inception_utils import (
    AuxLogits, Conv, InceptionNet, Mixed, Pool, Split, constructor_args,
    inception_layers)
from slimkit.nets.network import forwards_options


def _inception_a(name):
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', 96, 1),),
      (Conv('Conv2d_0a_1x1', 64, 1), Conv('Conv2d_0b_3x3', 96, 3)),
      (Conv('Conv2d_0a_1x1', 64, 1), Conv('Conv2d_0b_3x3', 96, 3),
       Conv('Conv2d_0c_3x3', 96, 3)),
      (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', 96, 1))))


def _inception_b(name):
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', 384, 1),),
      (Conv('Conv2d_0a_1x1', 192, 1), Conv('Conv2d_0b_1x7', 224, (1, 7)),
       Conv('Conv2d_0c_7x1', 256, (7, 1))),
      (Conv('Conv2d_0a_1x1', 192, 1), Conv('Conv2d_0b_7x1', 192, (7, 1)),
       Conv('Conv2d_0c_1x7', 224, (1, 7)), Conv('Conv2d_0d_7x1', 224, (7, 1)),
       Conv('Conv2d_0e_1x7', 256, (1, 7))),
      (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', 128, 1))))


def _inception_c(name):
  return Mixed(name, (
      (Conv('Conv2d_0a_1x1', 256, 1),),
      (Conv('Conv2d_0a_1x1', 384, 1),
       Split((Conv('Conv2d_0b_1x3', 256, (1, 3)),
              Conv('Conv2d_0c_3x1', 256, (3, 1))))),
      (Conv('Conv2d_0a_1x1', 384, 1), Conv('Conv2d_0b_3x1', 448, (3, 1)),
       Conv('Conv2d_0c_1x3', 512, (1, 3)),
       Split((Conv('Conv2d_0d_1x3', 256, (1, 3)),
              Conv('Conv2d_0e_3x1', 256, (3, 1))))),
      (Pool('AvgPool_0a_3x3', 'avg', 3), Conv('Conv2d_0b_1x1', 256, 1))))


_MAX_POOL_1A = Pool('MaxPool_1a_3x3', 'max', 3, stride=2, padding='VALID')

BODY = (
    Conv('Conv2d_1a_3x3', 32, 3, stride=2, padding='VALID'),
    Conv('Conv2d_2a_3x3', 32, 3, padding='VALID'),
    Conv('Conv2d_2b_3x3', 64, 3),
    Mixed('Mixed_3a', (
        (Pool('MaxPool_0a_3x3', 'max', 3, stride=2, padding='VALID'),),
        (Conv('Conv2d_0a_3x3', 96, 3, stride=2, padding='VALID'),))),
    Mixed('Mixed_4a', (
        (Conv('Conv2d_0a_1x1', 64, 1),
         Conv('Conv2d_1a_3x3', 96, 3, padding='VALID')),
        (Conv('Conv2d_0a_1x1', 64, 1), Conv('Conv2d_0b_1x7', 64, (1, 7)),
         Conv('Conv2d_0c_7x1', 64, (7, 1)),
         Conv('Conv2d_1a_3x3', 96, 3, padding='VALID')))),
    Mixed('Mixed_5a', (
        (Conv('Conv2d_1a_3x3', 192, 3, stride=2, padding='VALID'),),
        (_MAX_POOL_1A,))),
    *(_inception_a(f'Mixed_5{c}') for c in 'bcde'),
    Mixed('Mixed_6a', (  # Reduction-A.
        (Conv('Conv2d_1a_3x3', 384, 3, stride=2, padding='VALID'),),
        (Conv('Conv2d_0a_1x1', 192, 1), Conv('Conv2d_0b_3x3', 224, 3),
         Conv('Conv2d_1a_3x3', 256, 3, stride=2, padding='VALID')),
        (_MAX_POOL_1A,))),
    *(_inception_b(f'Mixed_6{c}') for c in 'bcdefgh'),
    Mixed('Mixed_7a', (  # Reduction-B.
        (Conv('Conv2d_0a_1x1', 192, 1),
         Conv('Conv2d_1a_3x3', 192, 3, stride=2, padding='VALID')),
        (Conv('Conv2d_0a_1x1', 256, 1), Conv('Conv2d_0b_1x7', 256, (1, 7)),
         Conv('Conv2d_0c_7x1', 320, (7, 1)),
         Conv('Conv2d_1a_3x3', 320, 3, stride=2, padding='VALID')),
        (_MAX_POOL_1A,))),
    *(_inception_c(f'Mixed_7{c}') for c in 'bcd'),
)


class InceptionV4(InceptionNet):
  """The body, the auxiliary head, then global pool, dropout, logits."""

  default_image_size = 299

  def __init__(self, num_classes=1001, *, weight_decay=0.00004,
               is_training=False, dropout_keep_prob=0.8,
               create_aux_logits=True, prediction_fn='softmax',
               use_batch_norm=True, batch_norm_decay=0.9997,
               batch_norm_epsilon=0.001, batch_norm_scale=False,
               activation='relu'):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns the globally pooled
        `[B, 1, 1, 1536]` features (and builds no auxiliary head).
      weight_decay: L2 weight decay of conv and fully connected weights.
      is_training: Default mode of calls (dropout, batch norm).
      dropout_keep_prob: Fraction of pre-logits units kept in training.
      create_aux_logits: Build the auxiliary classifier on `Mixed_6h`
        (`end_points['AuxLogits']`); it needs inputs of at least 107x107.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      use_batch_norm: Whether convs use batch norm (else biases).
      batch_norm_decay: Moving-average decay of the batch-norm statistics.
      batch_norm_epsilon: Added to the variance.
      batch_norm_scale: Whether batch norms own a `gamma`.
      activation: Activation of the convs.
    """
    config = constructor_args(locals())
    ls = inception_layers(
        weight_decay=weight_decay, use_batch_norm=use_batch_norm,
        batch_norm_decay=batch_norm_decay,
        batch_norm_epsilon=batch_norm_epsilon,
        batch_norm_scale=batch_norm_scale, activation=activation)
    super().__init__(
        scope='InceptionV4', num_classes=num_classes, is_training=is_training,
        config=config, body=BODY, ls=ls, dropout_keep_prob=dropout_keep_prob,
        prediction_fn=prediction_fn)
    self.aux_logits = None
    if create_aux_logits and num_classes:
      # `Conv2d_2a` spans the whole pooled map (5x5 at 299x299).
      self.aux_logits = AuxLogits(num_classes, ls, conv_name='Conv2d_2a',
                                  logits_name='Aux_logits')
    self.logits = (ls.fc(num_classes, activation=None, name='Logits')
                   if num_classes else None)

  def forward(self, images, training):
    net, end_points = self.run_body(images, training)
    if self.aux_logits is not None:
      end_points['AuxLogits'] = self.aux_logits(end_points['Mixed_6h'],
                                                training=training)
    with layers.scope('Logits'):
      # TF-Slim's window spans the whole map: a global average.
      net = end_points['global_pool'] = layers.global_avg_pool(net)
      if not self.num_classes:
        return net, end_points
      net = self.dropout(net, self.dropout_keep_prob, training)
      net = end_points['PreLogitsFlatten'] = layers.flatten(net)
      logits = self.logits(net, training=training)
    return self.predictions(logits, end_points)


@forwards_options(InceptionV4)
def inception_v4(num_classes=1001, **options):
  """Returns an `InceptionV4`; see `InceptionV4.__init__` for the options."""
  return InceptionV4(num_classes, **options)
