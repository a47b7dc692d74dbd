"""LeNet, the small convolutional net of LeCun et al. (1998), as in TF-Slim.

Gradient-Based Learning Applied to Document Recognition,
http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf

Typical use, on 28x28 grayscale digits (MNIST, digits):

  net = lenet(num_classes=10, is_training=True)
  logits, end_points = net(images)
"""

from slimkit.nets import layers
from slimkit.nets.network import (
    Network, forwards_options, prediction_fn as _prediction_fn)


class LeNet(Network):
  """conv1 -> pool1 -> conv2 -> pool2 -> fc3 -> dropout3 -> fc4 (logits)."""

  default_image_size = 28

  def __init__(self, num_classes=10, *, weight_decay=0.0, is_training=False,
               dropout_keep_prob=0.5, weights_stddev=0.1,
               prediction_fn='softmax', activation='relu'):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns fc3's 1024 features.
      weight_decay: L2 weight decay of conv and fully connected weights.
      is_training: Default mode of calls (dropout).
      dropout_keep_prob: Fraction of fc3's units kept during training.
      weights_stddev: Stddev of the truncated-normal weight initializer.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      activation: Activation of every hidden layer.
    """
    super().__init__(scope='LeNet', num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, weight_decay=weight_decay,
                         is_training=is_training,
                         dropout_keep_prob=dropout_keep_prob,
                         weights_stddev=weights_stddev,
                         prediction_fn=prediction_fn, activation=activation))
    self.dropout_keep_prob = dropout_keep_prob
    self.prediction_fn = _prediction_fn(prediction_fn)
    defaults = dict(activation=activation,
                    weights_initializer=layers.truncated_normal(weights_stddev),
                    weights_regularizer=layers.l2_regularizer(weight_decay))
    conv = layers.bind(layers.Conv2D, **defaults)
    fc = layers.bind(layers.FullyConnected, **defaults)
    self.conv1 = conv(32, 5, name='conv1')
    self.conv2 = conv(64, 5, name='conv2')
    self.fc3 = fc(1024, name='fc3')
    self.fc4 = (fc(num_classes, activation=None, name='fc4')
                if num_classes else None)

  def forward(self, images, training):
    end_points = {}
    net = end_points['conv1'] = self.conv1(images, training=training)
    net = end_points['pool1'] = layers.max_pool2d(net, 2, 2)
    net = end_points['conv2'] = self.conv2(net, training=training)
    net = end_points['pool2'] = layers.max_pool2d(net, 2, 2)
    net = end_points['Flatten'] = layers.flatten(net)
    net = end_points['fc3'] = self.fc3(net, training=training)
    if not self.num_classes:
      return net, end_points
    net = end_points['dropout3'] = self.dropout(
        net, self.dropout_keep_prob, training)
    logits = end_points['Logits'] = self.fc4(net, training=training)
    end_points['Predictions'] = self.prediction_fn(logits)
    return logits, end_points


@forwards_options(LeNet)
def lenet(num_classes=10, **options):
  """Returns a `LeNet`; see `LeNet.__init__` for the options."""
  return LeNet(num_classes, **options)
