"""TF-Slim's (TF 1, name-based) checkpoints, written as TF-Slim wrote them.

`write_tf1_checkpoint` saves `{name: array}` with `tf.compat.v1.train.Saver`;
`random_values` gives every slim variable of a built net a plausible random
value (non-trivial batch-norm statistics). Shared by the checkpoint, export,
QAT and script tests.
"""

import numpy as np
import tensorflow as tf

from slimkit.nets import nets_factory


def write_tf1_checkpoint(prefix, values):
  """Saves `{name: array}` with TF 1's Saver, as TF-Slim's training did."""
  graph = tf.Graph()
  with graph.as_default():
    # Fed, not embedded as constants: deep nets' graphs stay small and fast.
    feeds = {}
    for name, value in values.items():
      placeholder = tf.compat.v1.placeholder(value.dtype, value.shape)
      tf.compat.v1.get_variable(name, initializer=placeholder)
      feeds[placeholder] = value
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer(), feeds)
      return saver.save(session, str(prefix), write_meta_graph=False)


def random_value(name, shape, rng):
  """A plausible random value for a TF-Slim variable of `name`."""
  leaf = name.rsplit('/', 1)[-1]
  if leaf == 'moving_variance':
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if leaf == 'gamma':
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if leaf in ('beta', 'moving_mean', 'biases'):
    return rng.normal(0.0, 0.2, shape).astype(np.float32)
  # Kernels: fan-in scaling keeps activations of deep stacks near unit size.
  fan_in = int(np.prod(shape[:-1])) if leaf != 'depthwise_weights' else int(
      np.prod(shape[:2]))
  return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)


def random_values(net, seed=0):
  rng = np.random.default_rng(seed)
  return {name: random_value(name, tuple(v.shape), rng)
          for name, v in net.slim_variables().items()}


def build(name, num_classes=10, size=None, channels=3, **options):
  net = nets_factory.get_network_fn(name, num_classes, **options)
  size = size or net.default_image_size
  net(tf.zeros([1, size, size, channels]))
  return net
