"""The Oxford VGG nets (configurations A, D and E), as TF-Slim built them.

  Karen Simonyan and Andrew Zisserman
  Very Deep Convolutional Networks For Large-Scale Image Recognition
  arXiv:1409.1556, 2015

Five blocks of 3x3 SAME convs (with biases) each followed by a 2x2 max pool,
then the fully connected layers as convs: `fc6` a 7x7 VALID conv, `fc7` and
`fc8` 1x1 convs, with dropout before `fc7` and `fc8`. Variable names are
TF-Slim's (`vgg_16/conv3/conv3_2/weights`, `vgg_16/fc8/biases`).

Typical use, on 224x224 images:

  net = vgg_16(num_classes=1000, is_training=True)
  logits, end_points = net(images)

Fully convolutional use (a prediction map downsampled by 32):

  net = vgg_16(num_classes=1000, spatial_squeeze=False, fc_conv_padding='SAME')
"""

import functools

import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import Network, forwards_options

# Convs per block of each configuration; every config has the same depths.
CONVS_PER_BLOCK = {
    'vgg_a': (1, 1, 2, 2, 2),
    'vgg_16': (2, 2, 3, 3, 3),
    'vgg_19': (2, 2, 4, 4, 4),
}
BLOCK_DEPTHS = (64, 128, 256, 512, 512)


class VGG(Network):
  """conv1..conv5 (each convs then pool) -> fc6 -> fc7 -> fc8 (logits)."""

  default_image_size = 224

  def __init__(self, num_classes=1000, *, scope='vgg_16',
               convs_per_block=CONVS_PER_BLOCK['vgg_16'], is_training=False,
               weight_decay=0.0005, dropout_keep_prob=0.5,
               spatial_squeeze=True, fc_conv_padding='VALID',
               global_pool=False, activation='relu',
               weights_initializer='glorot_uniform'):
    """Builds the layers.

    The defaults are TF-Slim's `vgg_arg_scope` and `vgg_16` arguments.

    Args:
      num_classes: Number of logits; 0 or None returns fc7's features (after
        global pooling when `global_pool`).
      scope: TF-Slim's outer scope (`vgg_a`, `vgg_16`, `vgg_19`).
      convs_per_block: Number of 3x3 convs in each of the five blocks.
      is_training: Default mode of calls (dropout).
      weight_decay: L2 weight decay of every conv's weights.
      dropout_keep_prob: Fraction of fc6's and fc7's units kept in training.
      spatial_squeeze: Squeeze logits from `[B, 1, 1, C]` to `[B, C]`.
      fc_conv_padding: Padding of fc6: 'VALID' (224 px gives 1x1) or 'SAME'
        (a prediction map downsampled by 32, for fully convolutional use).
      global_pool: Average fc7 over height and width before fc8, so any input
        size gives 1x1 logits (not part of the original VGG).
      activation: Activation of every hidden layer.
      weights_initializer: Initializer of every conv (slim's default, Xavier
        uniform).
    """
    super().__init__(scope=scope, num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, scope=scope,
                         convs_per_block=tuple(convs_per_block),
                         is_training=is_training, weight_decay=weight_decay,
                         dropout_keep_prob=dropout_keep_prob,
                         spatial_squeeze=spatial_squeeze,
                         fc_conv_padding=fc_conv_padding,
                         global_pool=global_pool, activation=activation,
                         weights_initializer=weights_initializer))
    self.dropout_keep_prob = dropout_keep_prob
    self.spatial_squeeze = spatial_squeeze
    self.global_pool = global_pool
    conv = layers.bind(
        layers.Conv2D, activation=activation,
        weights_initializer=weights_initializer, biases_initializer='zeros',
        weights_regularizer=layers.l2_regularizer(weight_decay))
    self.blocks = [
        [conv(depth, 3, name=f'conv{b + 1}_{i + 1}') for i in range(count)]
        for b, (depth, count) in enumerate(zip(BLOCK_DEPTHS, convs_per_block))]
    self.fc6 = conv(4096, 7, padding=fc_conv_padding, name='fc6')
    self.fc7 = conv(4096, 1, name='fc7')
    self.fc8 = (conv(num_classes, 1, activation=None, name='fc8')
                if num_classes else None)

  def forward(self, images, training):
    scope = self.name
    end_points = {}
    net = images
    for b, convs in enumerate(self.blocks):
      block = f'conv{b + 1}'
      with layers.scope(block):
        for conv in convs:
          net = end_points[f'{scope}/{block}/{conv.name}'] = conv(
              net, training=training)
      net = end_points[f'{scope}/pool{b + 1}'] = layers.max_pool2d(net, 2, 2)
    net = end_points[f'{scope}/fc6'] = self.fc6(net, training=training)
    net = self.dropout(net, self.dropout_keep_prob, training)
    net = end_points[f'{scope}/fc7'] = self.fc7(net, training=training)
    if self.global_pool:
      net = end_points['global_pool'] = layers.global_avg_pool(net)
    if not self.num_classes:
      return net, end_points
    net = self.dropout(net, self.dropout_keep_prob, training)
    net = self.fc8(net, training=training)
    if self.spatial_squeeze:
      net = tf.squeeze(net, [1, 2])
    end_points[f'{scope}/fc8'] = net
    return net, end_points


@forwards_options(VGG, bound=('scope', 'convs_per_block'))
def _vgg(config, num_classes=1000, **options):
  """VGG configuration `config`; see `VGG.__init__` for the options."""
  return VGG(num_classes, scope=config,
             convs_per_block=CONVS_PER_BLOCK[config], **options)


vgg_a = functools.partial(_vgg, 'vgg_a')
vgg_16 = functools.partial(_vgg, 'vgg_16')
vgg_19 = functools.partial(_vgg, 'vgg_19')
# TF-Slim's aliases.
vgg_d = vgg_16
vgg_e = vgg_19
