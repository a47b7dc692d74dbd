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


def histogram_buckets(values, bucket_count=HISTOGRAM_BUCKETS):
  """`tf.summary.histogram`'s buckets of each of `values`, in one computation.

  TensorBoard buckets each histogram in its own ops, branching twice with
  `tf.cond` (empty data, one distinct value) and spacing the edges with
  `tf.linspace`, a composite of twenty ops: tracing LeNet's 17 histograms
  took 1.7 s of every start on 2 cores. Here all are bucketed together, both
  branches' results are computed and one selected, and the edges are
  linspace's arithmetic written out (`min + step * k`, with its step): the
  same float64 operations on every element, so the same tensors (in a
  traced function, where grappler rewrites graphs, too).

  Args:
    values: Non-empty tensors of static sizes, castable to float64.
    bucket_count: A positive Python int.

  Returns:
    float64 `[len(values), bucket_count, 3]`: each bucket's left edge, right
    edge and count, as TensorBoard's histogram plugin computes them.
  """
  flat = [tf.cast(tf.reshape(v, [-1]), tf.float64) for v in values]
  sizes = [v.shape.num_elements() for v in values]
  mins = tf.stack([tf.reduce_min(x) for x in flat])
  maxs = tf.stack([tf.reduce_max(x) for x in flat])
  ranges = maxs - mins
  single_value = tf.equal(ranges, 0)
  # x / 30 as TensorBoard's, but as DivNoNan (the same IEEE division, the
  # divisor is never 0): grappler's constant folding rewrites a plain
  # `min + range / 30 * k` into `min + range * (k / 30)`, which moves some
  # edges by an ulp; TensorBoard's branch functions escape that rewrite.
  steps = tf.math.divide_no_nan(ranges, tf.constant(bucket_count, tf.float64))
  # Many values. (Where there is one, that result is not selected; a width
  # of 1 keeps its division finite.)
  widths = tf.where(single_value, tf.ones_like(steps), steps)
  ids = tf.repeat(tf.range(len(values)), sizes)
  data = tf.concat(flat, 0)
  indices = tf.minimum(
      tf.cast(tf.floor((data - tf.gather(mins, ids)) / tf.gather(widths, ids)),
              tf.int32), bucket_count - 1)
  # As tf.one_hot, an index below 0 (a NaN's) counts in no bucket: it goes
  # to one slot past the end, dropped.
  slots = tf.where(indices >= 0, ids * bucket_count + indices,
                   len(values) * bucket_count)
  counts = tf.reshape(tf.math.unsorted_segment_sum(
      tf.ones_like(data), slots, len(values) * bucket_count + 1)[:-1],
                      [len(values), bucket_count])
  def spaced_edges():
    # TensorBoard ends the edges at the maximum itself (linspace's last
    # value may miss it by a rounding error).
    inner = mins[:, tf.newaxis] + steps[:, tf.newaxis] * tf.constant(
        np.arange(1, bucket_count), tf.float64)
    return tf.concat([mins[:, tf.newaxis], inner, maxs[:, tf.newaxis]], 1)

  # In a branch of its own, as TensorBoard's: in the training step's graph
  # grappler rewrote this arithmetic outside one and moved edges by an ulp.
  # (Both branches are the same; the predicate only keeps the branch.)
  edges = tf.cond(tf.reduce_all(ranges >= 0), spaced_edges, spaced_edges)
  many = tf.stack([edges[:, :-1], edges[:, 1:], counts], axis=2)
  # One value: every edge at it, every element in the last bucket.
  at_max = tf.tile(maxs[:, tf.newaxis], [1, bucket_count])
  last = tf.one_hot(bucket_count - 1, bucket_count, dtype=tf.float64)
  one = tf.stack([at_max, at_max,
                  tf.constant(sizes, tf.float64)[:, tf.newaxis] * last],
                 axis=2)
  return tf.where(single_value[:, tf.newaxis, tf.newaxis], one, many)


def histograms(named_values):
  """`tf.summary.histogram(name, value)` of each pair, at the default step.

  The same tags, plugin metadata and buckets as TensorBoard's, traced in a
  fraction of the time (`histogram_buckets`); values that may be empty go
  to `tf.summary.histogram`. Nothing is computed when summaries are off.

  Args:
    named_values: `[(name, tensor)]`.
  """
  record = tf.get_static_value(tf.summary.should_record_summaries())
  if record is not None and not record:
    return  # e.g. a worker's no-op writer
  known = []
  for name, value in named_values:
    if value.shape.num_elements():
      known.append((name, value))
    else:  # empty, or of a size not known statically
      tf.summary.histogram(name, value)
  if not known:
    return
  buckets = histogram_buckets([value for _, value in known])
  metadata = histogram_metadata.create_summary_metadata(display_name=None,
                                                        description=None)
  for i, (name, value) in enumerate(known):
    with tf.summary.experimental.summary_scope(
        name, 'histogram_summary', values=[value]) as (tag, _):
      tf.summary.write(tag=tag, tensor=buckets[i], metadata=metadata)


def zero_fraction(value):
  """`tf.math.zero_fraction(value)`, without its `tf.cond` when the size is
  known statically (the branch it would take, the same ops)."""
  size = value.shape.num_elements()
  if size is None or size > np.iinfo(np.int32).max:
    return tf.math.zero_fraction(value)
  size = tf.constant(size, tf.int64)
  nonzero = tf.cast(tf.reduce_sum(tf.cast(
      tf.not_equal(value, tf.zeros([], value.dtype)), tf.int32)), tf.int64)
  return tf.cast(size - nonzero, tf.float32) / tf.cast(size, tf.float32)


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
      tf.summary.scalar(f'sparsity/{summary_name(name)}',
                        zero_fraction(value))
    histograms(
        [(f'activations/{summary_name(name)}', histogram_sample(value))
         for name, value in sorted(end_points.items())] +
        [(f'variables/{summary_name(v.path)}', histogram_sample(v.value))
         for v in variables])
    tf.summary.image('images', image_summary(images, num_images),
                     max_outputs=num_images)
