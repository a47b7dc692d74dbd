"""Evaluates checkpoints: Accuracy, Recall_5 and mean loss, once or watching.

  metrics = evaluator.evaluate_checkpoint(
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10),
      dataset_fn=lambda: input_pipeline.make_dataset(..., is_training=False),
      checkpoint_path='/tmp/run', eval_dir='/tmp/run/eval')
  metrics['Accuracy'], metrics['Recall_5'], metrics['loss']

`checkpoint_path` is a checkpoint file prefix or a directory whose newest
checkpoint is used, as in TF-Slim. With `moving_average_decay` the net's
variables take the averages saved by training (`ema/` in the checkpoint).
`watch()` evaluates each new checkpoint as training writes it, like TF-Slim's
`evaluation_loop`. Metrics go to the log and to TensorBoard summaries
`eval/Accuracy`, `eval/Recall_5` and `eval/loss` in `eval_dir`, at the
checkpoint's global step.
"""

import dataclasses
import time
import weakref
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from slimkit import checkpoints
from slimkit import runs


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How to evaluate.

  Attributes:
    eval_dir: Where summaries go (None: no summaries).
    max_num_batches: Evaluate at most this many batches (None: the whole split).
    moving_average_decay: When set, evaluate the moving averages of the
      weights saved by training instead of the weights.
    skipped_records: The int64 variable counting the corrupt records the
      input skips (`input_pipeline.make_dataset(skip_counter=...)`); the
      count of each evaluation is reported as `skipped_records`.
  """
  eval_dir: Optional[str] = None
  max_num_batches: Optional[int] = None
  moving_average_decay: Optional[float] = None
  skipped_records: Optional[tf.Variable] = None


class UnreadableCheckpointError(OSError):
  """A checkpoint that vanished or is cut short while being read."""


def _build(network_fn, dataset):
  image_spec = dataset.element_spec[0]
  net = network_fn()
  net(tf.zeros([1] + list(image_spec.shape[1:]), image_spec.dtype),
      training=False)
  return net


def restore_for_eval(net, checkpoint, moving_average_decay=None):
  """Loads a TF-Slim checkpoint or one of ours into `net`.

  With `moving_average_decay`, the averaged weights are read: our `ema` group
  or TF-Slim's `<name>/ExponentialMovingAverage` shadows.

  Raises:
    ValueError: when averages are asked for but the checkpoint has none, a
      fake-quantized net (`--quantize`) meets a checkpoint without ranges,
      or a variable is missing or of another shape.
  """
  try:
    report = checkpoints.restore(net, checkpoint,
                                 use_moving_average=bool(moving_average_decay))
  except checkpoints.CheckpointError:
    # Evaluating needs every variable: name the checkpoint's own net rather
    # than the fine-tuning remedies, which would score an untrained one.
    other = checkpoints.other_net_message(net, checkpoint)
    if other:
      raise ValueError(other) from None
    raise
  if report.fresh_ranges and getattr(net, 'quantized', False):
    raise ValueError(
        f'{checkpoint} has no quantization ranges ({report.fresh_ranges[0]}, '
        '...): it was trained without --quantize_delay. Evaluate without '
        '--quantize.')
  if moving_average_decay and not report.averaged:
    raise ValueError(
        f'{checkpoint} has no moving averages: it was trained without '
        '--moving_average_decay. Evaluate without --moving_average_decay.')
  return report


def evaluate_checkpoint(*, network_fn, dataset_fn, checkpoint_path,
                        options=EvalOptions(), net=None):
  """Evaluates one checkpoint on one ordered pass of the data.

  Args:
    network_fn: `() -> Network` in inference mode.
    dataset_fn: `() -> tf.data.Dataset` of `(images, labels)` batches.
    checkpoint_path: A checkpoint prefix or a directory (its newest one).
    options: `EvalOptions`.
    net: An already built net to reuse (watch mode).

  Returns:
    A dict with `Accuracy`, `Recall_5`, `loss`, `num_examples`,
    `global_step` and `checkpoint`.

  Raises:
    FileNotFoundError: when there is no checkpoint.
    ValueError: when the data has no example or labels exceed the logits.
  """
  checkpoint = checkpoints.resolve_checkpoint(checkpoint_path)
  dataset = dataset_fn()
  if options.max_num_batches:
    dataset = dataset.take(options.max_num_batches)
  if net is None:
    net = _build(network_fn, dataset)
  try:
    restore_for_eval(net, checkpoint, options.moving_average_decay)
    step = runs.checkpoint_step(checkpoint)
  except (tf.errors.OpError, IndexError) as e:
    # Pruned by training, or cut short (killed or disk full while writing):
    # the reader raises IndexError for a data file shorter than its index.
    message = getattr(e, 'message', None) or str(e)
    raise UnreadableCheckpointError(
        f'Checkpoint {checkpoint} cannot be read: {type(e).__name__}: '
        f'{message.splitlines()[0] if message else ""}') from None
  return _run_metrics(_cached_metric_step(net), dataset, options,
                      global_step=step, source=checkpoint)


def evaluate_predictions(*, predict_fn, dataset_fn, options=EvalOptions(),
                         global_step=0, source=''):
  """Evaluates any classifier outside TensorFlow as a checkpoint is evaluated.

  The same ordered pass, metrics, log line and summaries as
  `evaluate_checkpoint`, for a model that is not a Keras net (a TFLite file).

  Args:
    predict_fn: `(numpy float32 images) -> numpy logits [batch, classes]`
      (for a model returning probabilities `p`, `log(p)`: the softmax
      cross-entropy of `log(p)` is that of `p`).
    dataset_fn: `() -> tf.data.Dataset` of `(images, labels)` batches.
    options: `EvalOptions` (`moving_average_decay` must be None).
    global_step: The step the summaries are written at.
    source: What is evaluated, for the log (stored as `checkpoint`).

  Returns:
    The dict `evaluate_checkpoint` returns.

  Raises:
    ValueError: when the data has no example or labels exceed the logits.
  """
  if options.moving_average_decay:
    raise ValueError(f'{source}: moving averages belong to checkpoints; '
                     'evaluate without --moving_average_decay.')
  dataset = dataset_fn()
  if options.max_num_batches:
    dataset = dataset.take(options.max_num_batches)
  sums = tf.function(_metric_sums, reduce_retracing=True, autograph=False)

  def step_fn(images, labels):
    logits = np.asarray(predict_fn(images.numpy()), np.float32)
    return sums(tf.constant(logits), labels)

  return _run_metrics(step_fn, dataset, options, global_step=int(global_step),
                      source=source)


def evaluate_net(net, dataset):
  """Accuracy, Recall_5 and mean loss of `net` over one pass of `dataset`.

  The net runs in inference mode (batch norm's moving statistics, no
  dropout), on the variables as they are: a checkpoint's after
  `restore_for_eval`, or the live ones during training.

  Args:
    net: A built `Network`.
    dataset: A `tf.data.Dataset` of `(images, labels)` batches.

  Returns:
    A dict with `Accuracy`, `Recall_5`, `loss` and `num_examples`.

  Raises:
    ValueError: when the data has no example or labels exceed the logits.
  """
  return _totals(_cached_metric_step(net), dataset)


def _totals(step_fn, dataset):
  """The metrics of `step_fn`'s per-batch sums over `dataset`."""
  correct = in_top5 = 0
  loss_sum = 0.0
  count = 0
  for images, labels in dataset:
    c, t5, l, n = step_fn(images, labels)
    correct += int(c)
    in_top5 += int(t5)
    loss_sum += float(l)
    count += int(n)
  if count == 0:
    raise ValueError('The evaluation data has no example.')
  return {'Accuracy': correct / count, 'Recall_5': in_top5 / count,
          'loss': loss_sum / count, 'num_examples': count}


def _run_metrics(step_fn, dataset, options, *, global_step, source):
  """Runs `step_fn` over `dataset`; logs and writes the metrics."""
  skipped_before = (int(options.skipped_records.numpy())
                    if options.skipped_records is not None else 0)
  metrics = _totals(step_fn, dataset)
  metrics.update(global_step=global_step, checkpoint=source)
  if options.skipped_records is not None:
    metrics['skipped_records'] = (int(options.skipped_records.numpy()) -
                                  skipped_before)
    logging.info('Skipped %d corrupt record(s) (--skip_corrupt_records).',
                 metrics['skipped_records'])
  logging.info('Evaluated %s (global step %d) on %d examples: Accuracy = '
               '%.4f, Recall_5 = %.4f, loss = %.4f', source, global_step,
               metrics['num_examples'], metrics['Accuracy'],
               metrics['Recall_5'], metrics['loss'])
  if options.eval_dir:
    writer = tf.summary.create_file_writer(options.eval_dir)
    write_summaries(writer, metrics, global_step)
    writer.close()
  return metrics


def write_summaries(writer, metrics, step):
  """Writes `eval/Accuracy`, `eval/Recall_5` and `eval/loss` at `step`.

  Args:
    writer: A `tf.summary` writer (of the eval or validation folder).
    metrics: The dict `evaluate_*` returns (`skipped_records` written too
      when present).
    step: The global step the metrics belong to.
  """
  with writer.as_default(step=step):
    for name in ('Accuracy', 'Recall_5', 'loss'):
      tf.summary.scalar(f'eval/{name}', metrics[name])
    if 'skipped_records' in metrics:
      tf.summary.scalar('eval/skipped_records', metrics['skipped_records'])
  writer.flush()


# One traced metric step per net: watch mode evaluates every checkpoint with
# the same net, and tracing it again cost about a second per evaluation.
_METRIC_STEPS = weakref.WeakKeyDictionary()


def _cached_metric_step(net):
  step = _METRIC_STEPS.get(net)
  if step is None:
    step = _METRIC_STEPS[net] = _metric_step(net)
  return step


def _metric_step(net):
  # No AutoGraph, as the training step: nothing here branches on tensors,
  # and converting the net's code cost the first validation a second.
  @tf.function(autograph=False)
  def step(images, labels):
    logits, _ = net(images, training=False)
    return _metric_sums(logits, labels)
  return step


def _metric_sums(logits, labels):
  """Correct top-1 and top-5 counts, summed loss and count of one batch."""
  logits = tf.cast(logits, tf.float32)
  num_classes = tf.shape(logits)[-1]
  labels = tf.cast(labels, tf.int32)
  tf.debugging.assert_less(
      labels, num_classes,
      message='a label is >= the number of logits; check --labels_offset '
      'and --dataset_name')
  k = tf.minimum(5, num_classes)
  top1 = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
  _, topk = tf.math.top_k(logits, k=k)
  top5 = tf.reduce_any(tf.equal(topk, labels[:, None]), axis=-1)
  loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                        logits=logits)
  return (tf.reduce_sum(tf.cast(top1, tf.int64)),
          tf.reduce_sum(tf.cast(top5, tf.int64)), tf.reduce_sum(loss),
          tf.shape(labels, out_type=tf.int64)[0])


def watch(*, network_fn, dataset_fn, checkpoint_dir, options=EvalOptions(),
          eval_interval_secs=60, eval_timeout_secs=None,
          max_number_of_evaluations=None):
  """Evaluates every new checkpoint in `checkpoint_dir` as it appears.

  Args:
    network_fn: `() -> Network`.
    dataset_fn: `() -> tf.data.Dataset`.
    checkpoint_dir: The training directory.
    options: `EvalOptions`.
    eval_interval_secs: Minimum seconds between two evaluations.
    eval_timeout_secs: Stop after this long without a new checkpoint (None:
      wait forever).
    max_number_of_evaluations: Stop after this many evaluations (None: no
      limit).

  Returns:
    The list of metric dicts, one per evaluated checkpoint.
  """
  results = []
  net = None
  for checkpoint in tf.train.checkpoints_iterator(
      checkpoint_dir, min_interval_secs=eval_interval_secs,
      timeout=eval_timeout_secs):
    if net is None:
      net = _build(network_fn, dataset_fn())
    # The file can vanish between the listing and the read while training
    # prunes old checkpoints, or be cut short by a crash: try once more (a
    # copy may still be landing), then move on to the next checkpoint.
    for attempt in range(2):
      try:
        results.append(evaluate_checkpoint(
            network_fn=network_fn, dataset_fn=dataset_fn,
            checkpoint_path=checkpoint, options=options, net=net))
        break
      except (UnreadableCheckpointError, tf.errors.NotFoundError,
              FileNotFoundError) as e:
        if attempt:
          logging.warning('Skipping %s: %s', checkpoint, e)
        else:
          time.sleep(1.0)
    if (max_number_of_evaluations and
        len(results) >= max_number_of_evaluations):
      break
  logging.info('Watched %s: %d evaluation(s); no new checkpoint for %s s.',
               checkpoint_dir, len(results), eval_timeout_secs)
  return results


def format_metrics(metrics):
  """One line for people: `eval/Accuracy[0.9672]` as TF-Slim printed it."""
  return ' '.join(f'eval/{name}[{metrics[name]:.4f}]'
                  for name in ('Accuracy', 'Recall_5', 'loss'))

