"""TensorBoard summaries of a training step, with TF-Slim's tags.

A summary step writes `total_loss`, `losses/clone_<i>_loss`,
`losses/regularization_loss`, `learning_rate`, the activations'
`activations/<end point>` histograms and `sparsity/<end point>`, the
trainable variables' `variables/<name>` histograms and the input `images`.
"""

import re

import tensorflow as tf

# TensorBoard's histogram one-hot encodes every value (30 float64 buckets): on
# a whole batch of activations that is gigabytes (MobileNet at 128 px, batch
# 32: the summary step peaked at 5.4 GB against 1.2 GB for a train step). A
# uniform random sample of this many values draws the same histogram.
_HISTOGRAM_SAMPLE = 1 << 16


def histogram_sample(value, max_values=_HISTOGRAM_SAMPLE):
  """At most `max_values` elements of `value`, drawn uniformly (flat)."""
  flat = tf.reshape(value, [-1])
  size = flat.shape.num_elements()
  if size is not None and size <= max_values:
    return flat
  picks = tf.random.uniform([max_values], 0, tf.size(flat, out_type=tf.int64),
                            dtype=tf.int64)
  return tf.gather(flat, picks)


def image_summary(images, count):
  """The first `count` images, each rescaled to [0, 1] for TensorBoard."""
  images = tf.cast(images[:count], tf.float32)
  # Preprocessed images are in [-1, 1] or mean-subtracted: rescale each one to
  # [0, 1] so TensorBoard shows them.
  low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
  high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
  return (images - low) / tf.maximum(high - low, 1e-6)


def summary_name(name):
  """`name` with the characters TensorBoard refuses in a tag replaced."""
  return re.sub(r'[^A-Za-z0-9_./-]', '_', name)


def write_step(writer, step, *, total_loss, clone_losses, regularization,
               learning_rate, end_points, variables, images, num_images):
  """Writes one step's summaries (call inside the step's `tf.function`).

  Args:
    writer: A `tf.summary` writer.
    step: The global step (a tensor).
    total_loss: The loss summed over clones.
    clone_losses: Each clone's cross-entropy.
    regularization: The regularization loss.
    learning_rate: The optimizer's learning rate at this step.
    end_points: The net's end points (of one clone).
    variables: The trainable variables.
    images: The input batch (of one clone).
    num_images: How many of them to show.
  """
  with writer.as_default(step=tf.cast(step, tf.int64)):
    tf.summary.scalar('total_loss', total_loss)
    for i, loss in enumerate(clone_losses):
      tf.summary.scalar(f'losses/clone_{i}_loss', loss)
    tf.summary.scalar('losses/regularization_loss', regularization)
    tf.summary.scalar('learning_rate', learning_rate)
    for name, value in sorted(end_points.items()):
      name = summary_name(name)
      tf.summary.histogram(f'activations/{name}', histogram_sample(value))
      tf.summary.scalar(f'sparsity/{name}', tf.math.zero_fraction(value))
    for v in variables:
      tf.summary.histogram(f'variables/{summary_name(v.path)}',
                           histogram_sample(v.value))
    tf.summary.image('images', image_summary(images, num_images),
                     max_outputs=num_images)
