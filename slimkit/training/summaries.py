"""TensorBoard summaries of a training step, with TF-Slim's tags.

A summary step writes `total_loss`, `losses/clone_<i>_loss`,
`losses/regularization_loss`, `learning_rate`, the activations'
`activations/<end point>` histograms and `sparsity/<end point>`, the
trainable variables' `variables/<name>` histograms and the input `images`.
"""

import re

import numpy as np
from tensorboard.plugins.histogram import metadata as histogram_metadata
import tensorflow as tf

# TensorBoard's histogram one-hot encodes every value (30 float64 buckets): on
# a whole batch of activations that is gigabytes (MobileNet at 128 px, batch
# 32: the summary step peaked at 5.4 GB against 1.2 GB for a train step). A
# uniform random sample of this many values draws the same histogram.
_HISTOGRAM_SAMPLE = 1 << 16
# TensorBoard's default bucket count of `tf.summary.histogram`.
HISTOGRAM_BUCKETS = 30


def histogram_sample(value, max_values=_HISTOGRAM_SAMPLE):
  """At most `max_values` elements of `value`, drawn uniformly (flat)."""
  flat = tf.reshape(value, [-1])
  size = flat.shape.num_elements()
  if size is not None and size <= max_values:
    return flat
  picks = tf.random.uniform([max_values], 0, tf.size(flat, out_type=tf.int64),
                            dtype=tf.int64)
  return tf.gather(flat, picks)


def histogram_buckets(data, bucket_count=HISTOGRAM_BUCKETS):
  """`tf.summary.histogram`'s buckets of non-empty `data`, traced faster.

  TensorBoard's bucketing branches twice with `tf.cond` (empty data, one
  distinct value) and spaces the edges with `tf.linspace`, a composite of
  twenty ops: tracing LeNet's 17 histograms took 1.7 s of every start on 2
  cores. Here both results are computed and one is selected, and the edges
  are linspace's arithmetic written out (`min + step * k`, with linspace's
  step): the same float64 operations, so the same tensor.

  Args:
    data: A non-empty tensor of any shape, castable to float64.
    bucket_count: A positive Python int.

  Returns:
    float64 `[bucket_count, 3]`: each bucket's left edge, right edge and
    count, as TensorBoard's histogram plugin computes them.
  """
  data = tf.cast(tf.reshape(data, [-1]), tf.float64)
  min_, max_ = tf.reduce_min(data), tf.reduce_max(data)
  range_ = max_ - min_
  single_value = tf.equal(range_, 0)
  step = range_ / tf.cast(bucket_count, tf.float64)
  # Many values. (Where there is one, its result is not selected; a width
  # of 1 keeps the division finite.)
  width = tf.where(single_value, tf.constant(1.0, tf.float64), step)
  indices = tf.minimum(tf.cast(tf.floor((data - min_) / width), tf.int32),
                       bucket_count - 1)
  counts = tf.reduce_sum(tf.one_hot(indices, depth=bucket_count,
                                    dtype=tf.float64), axis=0)
  # TensorBoard ends the edges at the maximum itself (linspace's last value
  # may miss it by a rounding error).
  inner = min_ + step * tf.constant(np.arange(1, bucket_count), tf.float64)
  edges = tf.concat([[min_], inner, [max_]], 0)
  many = tf.stack([edges[:-1], edges[1:], counts], axis=1)
  # One value: every edge at it, every element in the last bucket.
  last = tf.one_hot(bucket_count - 1, bucket_count, dtype=tf.float64)
  one = tf.stack([tf.fill([bucket_count], max_), tf.fill([bucket_count], max_),
                  last * tf.cast(tf.size(data), tf.float64)], axis=1)
  return tf.where(single_value, one, many)


def histogram(name, data):
  """`tf.summary.histogram(name, data)` at the default step, traced faster.

  The same tag, plugin metadata and buckets (`histogram_buckets`; data that
  may be empty goes to TensorBoard's own).
  """
  if not data.shape.num_elements():  # empty or not known statically
    return tf.summary.histogram(name, data)
  with tf.summary.experimental.summary_scope(
      name, 'histogram_summary', values=[data]) as (tag, _):
    return tf.summary.write(
        tag=tag, tensor=lambda: histogram_buckets(data),
        metadata=histogram_metadata.create_summary_metadata(
            display_name=None, description=None))


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
      histogram(f'activations/{name}', histogram_sample(value))
      tf.summary.scalar(f'sparsity/{name}', tf.math.zero_fraction(value))
    for v in variables:
      histogram(f'variables/{summary_name(v.path)}',
                histogram_sample(v.value))
    tf.summary.image('images', image_summary(images, num_images),
                     max_outputs=num_images)
