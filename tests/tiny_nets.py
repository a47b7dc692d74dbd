"""Tiny nets built from the slim layers, for optimizer and trainer tests."""

import functools

import numpy as np
import tensorflow as tf

from slimkit.nets import layers
from slimkit.nets import network


def net_with_every_kind_of_variable(seed=0):
  """A tiny net with weights, depthwise weights, BN beta/gamma and biases.

  Built from the slim layers every net uses, so the variables have TF-Slim's
  names (`Tiny/conv1/BatchNorm/gamma`); values random everywhere, since zero
  biases and betas would hide a decay.
  """
  bn = functools.partial(layers.batch_norm, scale=True)

  class Tiny(network.Network):

    def __init__(self):
      super().__init__(scope='Tiny', num_classes=3, is_training=True)
      self.conv1 = layers.Conv2D(4, 3, normalizer=bn, name='conv1')
      self.depthwise = layers.SeparableConv2D(None, 3, normalizer=bn,
                                              name='Conv2d_1_depthwise')
      self.logits = layers.FullyConnected(3, activation=None, name='logits')

    def forward(self, images, training):
      net = self.depthwise(self.conv1(images, training=training),
                           training=training)
      logits = self.logits(layers.global_avg_pool(net, keepdims=False))
      return logits, {'Logits': logits}

  net = Tiny()
  net(tf.zeros([1, 8, 8, 1]), training=False)
  rng = np.random.RandomState(seed)
  for v in net.trainable_variables:
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
  return net
