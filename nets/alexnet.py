"""AlexNet v2, the "one weird trick" AlexNet, as TF-Slim built it.

  Alex Krizhevsky, One weird trick for parallelizing convolutional neural
  networks, arXiv:1404.5997, 2014
(refining Krizhevsky, Sutskever and Hinton, ImageNet Classification with Deep
Convolutional Neural Networks, NIPS 2012), without the LRN layers; `lrn=True`
puts the 2012 paper's local response normalization back after conv1 and conv2.

Five convs with three 3x3/2 max pools, then the fully connected layers as
convs: `fc6` a 5x5 VALID conv, `fc7` and `fc8` 1x1 convs, with dropout before
`fc7` and `fc8`. Variable names are TF-Slim's (`alexnet_v2/conv1/weights`,
`alexnet_v2/fc8/biases`).

Typical use, on 224x224 images:

  net = alexnet_v2(num_classes=1000, is_training=True)
  logits, end_points = net(images)
"""

import keras
import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import Network, forwards_options

# (scope, outputs, kernel, stride, padding); a 3x3/2 VALID max pool follows
# conv1, conv2 and conv5.
_CONV_DEFS = (
    ('conv1', 64, 11, 4, 'VALID'),
    ('conv2', 192, 5, 1, 'SAME'),
    ('conv3', 384, 3, 1, 'SAME'),
    ('conv4', 384, 3, 1, 'SAME'),
    ('conv5', 256, 3, 1, 'SAME'),
)
_POOL_AFTER = {'conv1': 'pool1', 'conv2': 'pool2', 'conv5': 'pool5'}
# With `lrn`, the 2012 paper's response normalization follows conv1 and conv2
# (after their ReLU, before their max pool).
_NORM_AFTER = {'conv1': 'norm1', 'conv2': 'norm2'}


def paper_lrn(x):
  """Krizhevsky et al. 2012's response normalization (section 3.3).

  `b_i = a_i / (k + alpha * sum_j a_j ** 2) ** beta` over the n = 5 adjacent
  channels j = i - 2 .. i + 2, with k = 2, alpha = 1e-4, beta = 0.75. The
  paper's alpha multiplies the plain sum, as `tf.nn.lrn`'s does (TF's op
  computes `input / (bias + alpha * sqr_sum) ** beta` with `sqr_sum` over
  `depth_radius` channels on each side), so the paper's values carry over
  unchanged: depth_radius 2, bias 2, alpha 1e-4. Caffe's LRN layer instead
  divides its alpha by n: the bvlc_alexnet model's alpha = 1e-4 means
  2e-5 here, and its k is 1.

  Args:
    x: A `[batch, height, width, channels]` tensor.

  Returns:
    The normalized tensor, of the same shape.
  """
  return layers.local_response_norm(x, depth_radius=2, bias=2.0, alpha=1e-4,
                                    beta=0.75)


class AlexNetV2(Network):
  """conv1..conv5 with pool1, pool2, pool5 -> fc6 -> fc7 -> fc8 (logits)."""

  default_image_size = 224

  def __init__(self, num_classes=1000, *, is_training=False,
               weight_decay=0.0005, dropout_keep_prob=0.5,
               spatial_squeeze=True, global_pool=False, activation='relu',
               biases_init=0.1, fc_stddev=0.005,
               conv_initializer='glorot_uniform', lrn=False):
    """Builds the layers.

    The defaults are TF-Slim's `alexnet_v2_arg_scope` and `alexnet_v2`
    arguments.

    Args:
      num_classes: Number of logits; 0 or None returns fc7's features (after
        global pooling when `global_pool`).
      is_training: Default mode of calls (dropout).
      weight_decay: L2 weight decay of every conv's weights.
      dropout_keep_prob: Fraction of fc6's and fc7's units kept in training.
      spatial_squeeze: Squeeze logits from `[B, 1, 1, C]` to `[B, C]`.
      global_pool: Average fc7 over height and width before fc8, so larger
        inputs still give 1x1 logits.
      activation: Activation of every hidden layer.
      biases_init: Initial biases of every layer but fc8 (whose are 0).
      fc_stddev: Stddev of fc6, fc7 and fc8's truncated-normal initializer.
      conv_initializer: Initializer of conv1..conv5 (slim's default, Xavier
        uniform).
      lrn: Normalize conv1's and conv2's activations as Krizhevsky et al.
        (2012) did (`paper_lrn`, end points `norm1`, `norm2`), before their
        pools; TF-Slim's v2 has none (False). No variables are added.
    """
    super().__init__(scope='alexnet_v2', num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, is_training=is_training,
                         weight_decay=weight_decay,
                         dropout_keep_prob=dropout_keep_prob,
                         spatial_squeeze=spatial_squeeze,
                         global_pool=global_pool, activation=activation,
                         biases_init=biases_init, fc_stddev=fc_stddev,
                         conv_initializer=conv_initializer, lrn=lrn))
    self.dropout_keep_prob = dropout_keep_prob
    self.spatial_squeeze = spatial_squeeze
    self.global_pool = global_pool
    self.lrn = lrn
    conv = layers.bind(
        layers.Conv2D, activation=activation,
        weights_initializer=conv_initializer,
        biases_initializer=keras.initializers.Constant(biases_init),
        weights_regularizer=layers.l2_regularizer(weight_decay))
    self.convs = [conv(depth, kernel, stride, padding, name=name)
                  for name, depth, kernel, stride, padding in _CONV_DEFS]
    fc = layers.bind(conv, weights_initializer=layers.truncated_normal(
        fc_stddev))
    self.fc6 = fc(4096, 5, padding='VALID', name='fc6')
    self.fc7 = fc(4096, 1, name='fc7')
    self.fc8 = (fc(num_classes, 1, activation=None, biases_initializer='zeros',
                   name='fc8') if num_classes else None)

  def forward(self, images, training):
    scope = self.name
    end_points = {}
    net = images
    for conv in self.convs:
      net = end_points[f'{scope}/{conv.name}'] = conv(net, training=training)
      if self.lrn and conv.name in _NORM_AFTER:
        net = end_points[f'{scope}/{_NORM_AFTER[conv.name]}'] = paper_lrn(net)
      if conv.name in _POOL_AFTER:
        net = end_points[f'{scope}/{_POOL_AFTER[conv.name]}'] = (
            layers.max_pool2d(net, 3, 2))
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


@forwards_options(AlexNetV2)
def alexnet_v2(num_classes=1000, **options):
  """Returns an `AlexNetV2`; see `AlexNetV2.__init__` for the options."""
  return AlexNetV2(num_classes, **options)
