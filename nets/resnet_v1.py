"""ResNet v1 (batch norm after every conv), as TF-Slim built it.

  Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun
  Deep Residual Learning for Image Recognition. arXiv:1512.03385

Bottleneck units with projection shortcuts only where the depth grows, batch
normalization after every weight layer: the MSRA ImageNet models. Variable
names are TF-Slim's (`resnet_v1_50/block1/unit_1/bottleneck_v1/conv2/weights`),
so TF-Slim's checkpoints map one to one.

Typical use, classification of 224x224 images:

  net = resnet_v1_50(num_classes=1000, is_training=True)
  logits, end_points = net(images)

Dense features for segmentation (stride 16 via atrous convolution):

  net = resnet_v1_101(num_classes=21, global_pool=False, output_stride=16,
                      spatial_squeeze=False)
"""

import functools

from slimkit.nets import layers
from slimkit.nets import resnet_utils
from slimkit.nets.network import forwards_options


class BottleneckV1(resnet_utils.BottleneckUnit):
  """conv1 (1x1) -> conv2 (3x3, strided) -> conv3 (1x1), each with batch norm;
  the activation (ReLU) after conv1, conv2 and the sum with the shortcut."""

  def __init__(self, depth, depth_bottleneck, stride, rate=1, *, conv,
               batch_norm, activation='relu', name='bottleneck_v1'):
    """See `resnet_utils.BottleneckUnit`."""
    super().__init__(depth, depth_bottleneck, stride, rate, conv=conv,
                     batch_norm=batch_norm, activation=activation, name=name)
    # The sum is the residual stream: its width is fixed.
    self.output_activation = layers.same_width(activation)
    self.conv1 = conv(depth_bottleneck, 1, name='conv1')
    self.conv2 = resnet_utils.conv2d_same(conv, depth_bottleneck, 3, stride,
                                          rate=rate, name='conv2')
    self.conv3 = conv(depth, 1, activation=None, name='conv3')

  def make_shortcut(self):
    return self.conv(self.depth, 1, self.stride, activation=None,
                     name='shortcut')

  def call(self, inputs, training=None):
    end_points = {}
    if self.shortcut is None:
      shortcut = resnet_utils.subsample(inputs, self.stride)
    else:
      shortcut = end_points['shortcut'] = self.shortcut(inputs,
                                                        training=training)
    net = end_points['conv1'] = self.conv1(inputs, training=training)
    net = end_points['conv2'] = self.conv2(net, training=training)
    net = end_points['conv3'] = self.conv3(net, training=training)
    return self.output_activation(shortcut + net), end_points


@forwards_options(resnet_utils.ResNet, bound=('preactivation',))
def resnet_v1(num_classes=None, *, blocks, scope='resnet_v1', **options):
  """Returns a ResNet v1 of `blocks`; options as `resnet_utils.ResNet`."""
  return resnet_utils.ResNet(num_classes, blocks=blocks, scope=scope,
                             preactivation=False, **options)


@forwards_options(resnet_utils.ResNet, bound=('blocks', 'preactivation'))
def _resnet_v1_depth(depth, num_classes=None, *, depth_multiplier=1.0,
                     min_base_depth=8, scope=None, **options):
  """ResNet-`depth` v1; options as `resnet_utils.ResNet`.

  Args:
    depth: 50, 101, 152 or 200.
    num_classes: Number of logits; 0 or None for pre-logits features.
    depth_multiplier: Scales every bottleneck depth (1 is the published net).
    min_base_depth: Smallest bottleneck depth after scaling.
    scope: Outer scope; defaults to `resnet_v1_<depth>`.
    **options: Keyword arguments of `resnet_utils.ResNet`.

  Returns:
    A `resnet_utils.ResNet`.
  """
  blocks = resnet_utils.standard_blocks(BottleneckV1, depth, depth_multiplier,
                                        min_base_depth)
  return resnet_v1(num_classes, blocks=blocks,
                   scope=scope or f'resnet_v1_{depth}', **options)


resnet_v1_50 = functools.partial(_resnet_v1_depth, 50)
resnet_v1_101 = functools.partial(_resnet_v1_depth, 101)
resnet_v1_152 = functools.partial(_resnet_v1_depth, 152)
resnet_v1_200 = functools.partial(_resnet_v1_depth, 200)
