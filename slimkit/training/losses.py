"""TF-Slim's training loss and the moving average of the weights.

`classification_loss` is one clone's loss as TF-Slim's
`train_image_classifier.py` computed it (softmax cross-entropy with label
smoothing, plus 0.4 x the auxiliary head's); `MovingAverage` is
`tf.train.ExponentialMovingAverage` with the global step as `num_updates`.
"""

import tensorflow as tf

# The weight of the auxiliary head's loss, as in TF-Slim's training script.
AUX_LOSS_WEIGHT = 0.4


def classification_loss(logits, labels, end_points=None, label_smoothing=0.0):
  """TF-Slim's training loss of one clone: mean softmax cross-entropy.

  Args:
    logits: `[batch, num_classes]` float logits.
    labels: `[batch]` integer labels in `[0, num_classes)`, or soft labels
      (MixUp, CutMix): float `[batch, num_classes]` rows summing to 1.
    end_points: The net's end points; an `AuxLogits` entry adds its loss
      weighted by 0.4, as TF-Slim did for Inception.
    label_smoothing: Mass moved uniformly over all classes (of soft labels
      too: smoothing is linear, so smoothing a mix is mixing the smoothed
      one-hot labels).

  Returns:
    A float32 scalar.
  """
  labels = tf.convert_to_tensor(labels)

  def xent(x):
    x = tf.cast(x, tf.float32)
    if labels.dtype.is_floating:
      onehot = tf.cast(labels, tf.float32)
    else:
      onehot = tf.one_hot(labels, tf.shape(x)[-1], dtype=tf.float32)
    if label_smoothing:
      num_classes = tf.cast(tf.shape(x)[-1], tf.float32)
      onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
    return tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=x))

  loss = xent(logits)
  if end_points and end_points.get('AuxLogits') is not None:
    loss += AUX_LOSS_WEIGHT * xent(end_points['AuxLogits'])
  return loss


def regularization_loss(net):
  """The sum of the net's regularization losses, float32 (0 without any)."""
  if not net.losses:
    return tf.constant(0.0)
  return tf.add_n([tf.cast(l, tf.float32) for l in net.losses])


def all_finite(tensors):
  """Whether every element of `tensors` is finite (a bool scalar).

  A sum is finite only if every term is (an inf or a NaN makes it inf or
  NaN), so one read of each tensor answers for a good step. Only a sum that
  is not finite (a bad value, or finite values whose sum overflows) pays the
  element-wise test, which writes and reads a mask as large as the tensors
  (lenet: 2 of 38 ms of op time per step on 2 CPU cores).
  """
  tensors = [tf.cast(t, tf.float32) for t in tensors]

  def elementwise():
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t))
                          for t in tensors])

  total = tf.add_n([tf.reduce_sum(t) for t in tensors])
  return tf.cond(tf.math.is_finite(total), lambda: tf.constant(True),
                 elementwise)


class MovingAverage:
  """Moving averages of variables, as `tf.train.ExponentialMovingAverage`.

  With the global step as `num_updates` (as TF-Slim), the effective decay is
  `min(decay, (1 + step) / (10 + step))`, so early averages follow quickly.
  Create it inside the strategy's scope: the averages are then mirrored.
  """

  def __init__(self, variables, decay):
    self.decay = float(decay)
    self.variables = list(variables)
    self.averages = {
        v.path: tf.Variable(tf.identity(v.value), trainable=False,
                            name='ExponentialMovingAverage')
        for v in self.variables}

  def update(self, step):
    step = tf.cast(step, tf.float32)
    decay = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
    for v in self.variables:
      average = self.averages[v.path]
      average.assign_sub((1.0 - decay) * (average - tf.cast(v.value,
                                                            average.dtype)))

  def reset(self):
    """Sets every average to its variable's current value."""
    for v in self.variables:
      self.averages[v.path].assign(v.value)
