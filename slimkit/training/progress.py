"""What a training run reports as it goes: its log line and its validations.

`Log` writes the line every `log_every_n_steps` (loss, sec/step, images/s,
training GFLOP/s and utilisation, time left) with its TensorBoard scalars,
and watches the cross-entropy (`loss_watch.py`). `Validator` evaluates the
validation split every `eval_every_n_steps` into `train_dir/validation`.
Both are driven by the loop in `trainer.py`.
"""

import datetime
import os
import time

from absl import logging
import tensorflow as tf

from slimkit import evaluator
from slimkit import flops
from slimkit import runs
from slimkit.training import loss_watch
from slimkit.training import losses


def training_flops(net, image_spec):
  """Training FLOPs per image of the built net, or None if it cannot tell.

  Traced once at batch 1 (about 0.3 s for MobileNet v1, 0.8 s for ResNet-50
  on 2 CPU cores), never on the step path.
  """
  try:
    return flops.training_flops_per_image(flops.multiply_adds(
        net, image_spec.shape[1:], image_spec.dtype))
  except (TypeError, ValueError) as e:  # e.g. an input without static shape
    logging.warning('Not counting the FLOPs of %s: %s', net.name, e)
    return None



class Log:
  """The log line every `log_every_n_steps`, and its summaries."""

  def __init__(self, options, global_batch, step, net, has_aux, writer,
               flops_per_image=None):
    self.options, self.global_batch, self.writer = options, global_batch, writer
    self.flops_per_image = flops_per_image
    self.last_time, self.last_step = time.time(), step
    self.loss = None
    self.watch = loss_watch.LossWatch(
        net.num_classes or 1,
        aux_weight=losses.AUX_LOSS_WEIGHT if has_aux else 0.0)

  def initial(self, cross_entropy):
    """Notes a first cross-entropy that only the initial weights explain."""
    note = self.watch.initial(float(cross_entropy))
    if note:
      logging.info(note)

  def line(self, step, loss, cross_entropy, summarized, max_steps):
    """Logs `step` (the loop has checked its group for a bad step)."""
    self.loss = float(loss)
    warning = self.watch.check(step, float(cross_entropy))
    if warning:
      logging.warning(warning)
    now = time.time()
    sec_per_step = (now - self.last_time) / max(step - self.last_step, 1)
    images_per_sec = self.global_batch / max(sec_per_step, 1e-9)
    left = ''
    if max_steps:
      remaining = datetime.timedelta(
          seconds=int(sec_per_step * (max_steps - step)))
      left = f', {remaining} left'
    skipped = ''
    if self.options.skipped_records is not None:
      skipped_count = int(self.options.skipped_records.numpy())
      skipped = f', {skipped_count} corrupt records skipped'
    gflops = utilization = None
    speed = ''
    if self.flops_per_image:
      gflops = flops.gflops_per_sec(self.flops_per_image, images_per_sec)
      utilization = flops.utilization(gflops, self.options.peak_gflops)
      speed = f', {gflops:.1f} GFLOP/s'
      if utilization is not None:
        speed += (f', {100 * utilization:.0f}% of '
                  f'{self.options.peak_gflops:.0f}')
    logging.info('global step %d: loss = %.4f (%.3f sec/step, %.1f '
                 'images/sec%s%s%s)', step, self.loss, sec_per_step,
                 images_per_sec, speed, left, skipped)
    with self.writer.as_default(step=step):
      tf.summary.scalar('images_per_sec', images_per_sec)
      if gflops is not None:
        tf.summary.scalar('gflops_per_sec', gflops)
      if utilization is not None:
        tf.summary.scalar('utilization', utilization)
      if not summarized:  # a summary step wrote it already
        tf.summary.scalar('total_loss', self.loss)
      if skipped:
        tf.summary.scalar('input/skipped_records', skipped_count)
    self.last_time, self.last_step = now, step


class Validator:
  """Validation during training (`TrainOptions.eval_every_n_steps`).

  Every worker evaluates the whole split on its own copy of the weights (no
  collective: a long evaluation cannot time the others out); only the one
  that writes summaries writes them, to `train_dir/validation`. With
  parameter servers the coordinator evaluates, between groups of steps.
  """

  def __init__(self, net, dataset_fn, options, writes):
    self.net = net
    self.dataset_fn = dataset_fn
    self.every = options.eval_every_n_steps
    self.max_batches = options.validation_max_batches
    self.enabled = bool(self.every)
    self.results = []
    self.done = set()
    self._dataset = None
    self._writer = None
    if self.enabled and writes:
      self._writer = tf.summary.create_file_writer(
          os.path.join(options.train_dir, runs.VALIDATION_DIR))

  def due(self, step, count=1):
    """Whether a multiple of `every` is among the last `count` steps."""
    return self.enabled and step // self.every > (step - count) // self.every

  def run(self, step):
    """Evaluates at `step`, logs and writes; returns the seconds it took."""
    start = time.time()
    if self._dataset is None:
      # Built once: each pass over it is one ordered pass of the split, and
      # building traces its preprocessing again (about a second).
      self._dataset = self.dataset_fn()
      if self.max_batches:
        self._dataset = self._dataset.take(self.max_batches)
    metrics = evaluator.evaluate_net(self.net, self._dataset)
    if self._writer is not None:
      evaluator.write_summaries(self._writer, metrics, step)
    seconds = time.time() - start
    logging.info('Validation at global step %d: %s (%d examples, %.1f s)',
                 step, evaluator.format_metrics(metrics),
                 metrics['num_examples'], seconds)
    self.results.append((step, metrics))
    self.done.add(step)
    return seconds

  def close(self):
    if self._writer is not None:
      self._writer.close()
