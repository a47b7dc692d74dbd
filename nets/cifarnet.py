"""CifarNet, the CIFAR-10 model of TensorFlow's convolutional-net tutorial.

Variant of Krizhevsky's cuda-convnet "layers-18pct" configuration, as TF-Slim
built it (two 5x5 convs with local response normalization, two fully connected
layers). Options for comparisons: `lrn=False` drops the normalization,
`kernel_size=3` makes both convs 3x3 (`kernel_size=(5, 3)`, on the command
line `--model_options=kernel_size=5/3`, makes conv1 5x5 and conv2 3x3),
`activation` replaces ReLU.

Typical use, on 32x32 RGB images:

  net = cifarnet(num_classes=10, is_training=True)
  logits, end_points = net(images)
"""

import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets.network import (
    Network, forwards_options, prediction_fn as _prediction_fn)


def _lrn(x):
  # TF-Slim's norm1/norm2:
  # tf.nn.lrn(x, 4, bias=1.0, alpha=0.001 / 9.0, beta=0.75).
  return layers.local_response_norm(x, depth_radius=4, bias=1.0,
                                    alpha=0.001 / 9.0, beta=0.75)


class CifarNet(Network):
  """conv1, pool1, norm1, conv2, norm2, pool2, fc3, fc4, logits, in order."""

  default_image_size = 32

  def __init__(self, num_classes=10, *, weight_decay=0.004, is_training=False,
               dropout_keep_prob=0.5, conv_stddev=5e-2, fc_stddev=0.04,
               logits_stddev=1 / 192.0, fc_bias_init=0.1,
               prediction_fn='softmax', activation='relu', lrn=True,
               kernel_size: int | tuple[int, ...] = 5):
    """Builds the layers.

    Args:
      num_classes: Number of logits; 0 or None returns fc4's 192 features.
      weight_decay: L2 weight decay of the fully connected weights fc3 and fc4
        (TF-Slim regularizes neither the convs nor the logits layer).
      is_training: Default mode of calls (dropout).
      dropout_keep_prob: Fraction of fc3's units kept during training.
      conv_stddev: Stddev of the conv weights' truncated-normal initializer.
      fc_stddev: Stddev of fc3's and fc4's initializer.
      logits_stddev: Stddev of the logits layer's initializer.
      fc_bias_init: Initial value of fc3's and fc4's biases.
      prediction_fn: 'softmax' or a callable for `end_points['Predictions']`.
      activation: Activation of every hidden layer.
      lrn: Apply TF-Slim's local response normalization `norm1` (after
        pool1) and `norm2` (after conv2); False leaves them out.
      kernel_size: Height and width of conv1's and conv2's kernels (5 in
        TF-Slim), or a pair `(conv1's, conv2's)` to mix them; the padding is
        SAME, so the feature maps keep their sizes.

    Raises:
      ValueError: if `kernel_size` is not a positive integer or a pair of
        them.
    """
    sizes = (tuple(kernel_size) if isinstance(kernel_size, (tuple, list))
             else (kernel_size, kernel_size))
    if len(sizes) != 2 or any(isinstance(k, bool) or not isinstance(k, int)
                              or k < 1 for k in sizes):
      raise ValueError(
          f'kernel_size must be a positive integer; got {kernel_size!r}. '
          'Or one per convolution, conv1\'s then conv2\'s: (5, 3), on the '
          'command line 5/3.')
    if isinstance(kernel_size, list):  # a config read back from JSON
      kernel_size = tuple(kernel_size)
    super().__init__(scope='CifarNet', num_classes=num_classes,
                     is_training=is_training, config=dict(
                         num_classes=num_classes, weight_decay=weight_decay,
                         is_training=is_training,
                         dropout_keep_prob=dropout_keep_prob,
                         conv_stddev=conv_stddev, fc_stddev=fc_stddev,
                         logits_stddev=logits_stddev,
                         fc_bias_init=fc_bias_init, prediction_fn=prediction_fn,
                         activation=activation, lrn=lrn,
                         kernel_size=kernel_size))
    self.dropout_keep_prob = dropout_keep_prob
    self.prediction_fn = _prediction_fn(prediction_fn)
    conv = layers.bind(layers.Conv2D, activation=activation,
                       weights_initializer=layers.truncated_normal(conv_stddev))
    fc = layers.bind(
        layers.FullyConnected, activation=activation,
        weights_initializer=layers.truncated_normal(fc_stddev),
        biases_initializer=tf.keras.initializers.Constant(fc_bias_init),
        weights_regularizer=layers.l2_regularizer(weight_decay))
    self.lrn = lrn
    self.conv1 = conv(64, sizes[0], name='conv1')
    self.conv2 = conv(64, sizes[1], name='conv2')
    self.fc3 = fc(384, name='fc3')
    self.fc4 = fc(192, name='fc4')
    self.logits = (layers.FullyConnected(
        num_classes, activation=None,
        weights_initializer=layers.truncated_normal(logits_stddev),
        biases_initializer='zeros', name='logits') if num_classes else None)

  def forward(self, images, training):
    end_points = {}
    net = end_points['conv1'] = self.conv1(images, training=training)
    net = end_points['pool1'] = layers.max_pool2d(net, 2, 2)
    if self.lrn:
      net = _lrn(net)
    net = end_points['conv2'] = self.conv2(net, training=training)
    if self.lrn:
      net = _lrn(net)
    net = end_points['pool2'] = layers.max_pool2d(net, 2, 2)
    net = end_points['Flatten'] = layers.flatten(net)
    net = end_points['fc3'] = self.fc3(net, training=training)
    net = end_points['dropout3'] = self.dropout(
        net, self.dropout_keep_prob, training)
    net = end_points['fc4'] = self.fc4(net, training=training)
    if not self.num_classes:
      return net, end_points
    logits = end_points['Logits'] = self.logits(net, training=training)
    end_points['Predictions'] = self.prediction_fn(logits)
    return logits, end_points


@forwards_options(CifarNet)
def cifarnet(num_classes=10, **options):
  """Returns a `CifarNet`; see `CifarNet.__init__` for the options."""
  return CifarNet(num_classes, **options)
