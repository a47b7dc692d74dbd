"""ResNet v2 (full pre-activation), as TF-Slim built it.

  Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun
  Identity Mappings in Deep Residual Networks. arXiv:1603.05027

Each unit normalizes and activates its input (`preact`) before its convs, so
the residual path ends on a bare conv and the sum is not activated; the root
conv is therefore bare too, and a `postnorm` batch norm with ReLU follows the
last block. Variable names are TF-Slim's
(`resnet_v2_50/block3/unit_2/bottleneck_v2/conv2/BatchNorm/moving_variance`,
`resnet_v2_50/block1/unit_1/bottleneck_v2/preact/gamma`).

Typical use, classification of 224x224 images:

  net = resnet_v2_50(num_classes=1001, is_training=True)
  logits, end_points = net(images)
"""

import functools

from slimkit.nets import layers
from slimkit.nets import resnet_utils
from slimkit.nets.network import forwards_options


class BottleneckV2(resnet_utils.BottleneckUnit):
  """preact (batch norm + activation) -> conv1 (1x1) -> conv2 (3x3,
  strided) -> conv3 (1x1, bare), added to the shortcut."""

  def __init__(self, depth, depth_bottleneck, stride, rate=1, *, conv,
               batch_norm, activation='relu', name='bottleneck_v2'):
    """See `resnet_utils.BottleneckUnit`."""
    super().__init__(depth, depth_bottleneck, stride, rate, conv=conv,
                     batch_norm=batch_norm, activation=activation, name=name)
    self.preact = batch_norm(name='preact')
    # Feeds only convs (conv1, a projection shortcut): it may widen.
    self.preact_activation = layers.get_activation(activation)
    self.conv1 = conv(depth_bottleneck, 1, name='conv1')
    self.conv2 = resnet_utils.conv2d_same(conv, depth_bottleneck, 3, stride,
                                          rate=rate, name='conv2')
    self.conv3 = conv(depth, 1, activation=None, normalizer=None, name='conv3')

  def make_shortcut(self):
    return self.conv(self.depth, 1, self.stride, activation=None,
                     normalizer=None, name='shortcut')

  def call(self, inputs, training=None):
    end_points = {}
    # TF-Slim's preact applies ReLU whatever its arg scope's activation is;
    # here the net's activation, ReLU by default.
    preact = self.preact_activation(self.preact(inputs, training=training))
    if self.shortcut is None:
      # An identity shortcut takes the raw input, not the pre-activation.
      shortcut = resnet_utils.subsample(inputs, self.stride)
    else:
      shortcut = end_points['shortcut'] = self.shortcut(preact,
                                                        training=training)
    net = end_points['conv1'] = self.conv1(preact, training=training)
    net = end_points['conv2'] = self.conv2(net, training=training)
    net = end_points['conv3'] = self.conv3(net, training=training)
    return shortcut + net, end_points


@forwards_options(resnet_utils.ResNet, bound=('preactivation',))
def resnet_v2(num_classes=None, *, blocks, scope='resnet_v2', **options):
  """Returns a ResNet v2 of `blocks`; options as `resnet_utils.ResNet`."""
  return resnet_utils.ResNet(num_classes, blocks=blocks, scope=scope,
                             preactivation=True, **options)


@forwards_options(resnet_utils.ResNet, bound=('blocks', 'preactivation'))
def _resnet_v2_depth(depth, num_classes=None, *, depth_multiplier=1.0,
                     min_base_depth=8, scope=None, **options):
  """ResNet-`depth` v2; options as `resnet_utils.ResNet`.

  Args:
    depth: 50, 101, 152 or 200.
    num_classes: Number of logits; 0 or None for pre-logits features.
    depth_multiplier: Scales every bottleneck depth. TF-Slim's v2 builders lack
      it; the default 1 is their net. Smaller values make cheap test nets.
    min_base_depth: Smallest bottleneck depth after scaling.
    scope: Outer scope; defaults to `resnet_v2_<depth>`.
    **options: Keyword arguments of `resnet_utils.ResNet`.

  Returns:
    A `resnet_utils.ResNet`.
  """
  blocks = resnet_utils.standard_blocks(BottleneckV2, depth, depth_multiplier,
                                        min_base_depth)
  return resnet_v2(num_classes, blocks=blocks,
                   scope=scope or f'resnet_v2_{depth}', **options)


resnet_v2_50 = functools.partial(_resnet_v2_depth, 50)
resnet_v2_101 = functools.partial(_resnet_v2_depth, 101)
resnet_v2_152 = functools.partial(_resnet_v2_depth, 152)
resnet_v2_200 = functools.partial(_resnet_v2_depth, 200)
