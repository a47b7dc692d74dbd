"""A model-agnostic training loop over a `tf.distribute` strategy.

The net, the input and the optimizer come in as builders; the trainer knows
nothing about them beyond `logits, end_points = net(images, training=True)`:

  result = trainer.train(
      strategy=deployment.strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10, ...),
      dataset_fn=lambda ctx: input_pipeline.make_dataset(..., input_context=ctx),
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(train_dir='/tmp/run', batch_size=32))

What it does, as TF-Slim's `train_image_classifier.py` did:
* one compiled step run on every clone by `strategy.run`; softmax
  cross-entropy with label smoothing, of int labels or of the soft labels
  of MixUp and CutMix (plus 0.4 x the auxiliary head's loss),
  the net's regularization losses added once, gradients summed across clones;
* a non-finite loss or gradient never reaches the weights: that step applies
  zero gradients, is recorded, and training stops at the next check with
  `NonFiniteLossError` naming the step; no checkpoint is written after it;
* an exponential moving average of the model variables (trainable weights and
  batch-norm statistics) when `moving_average_decay` is set, saved in the
  checkpoint under `ema/`, which evaluation restores instead of the weights;
* checkpoints `model.ckpt-<step>` in `train_dir` every `save_interval_secs`
  and at the end; a restart resumes from the newest one that reads
  completely (see docs/reliability.md); SIGTERM or Ctrl-C stops between
  steps with a final checkpoint; a failed save raises `CheckpointSaveError`
  and leaves the previous checkpoint in place;
* TensorBoard summaries every `save_summaries_secs`; a log line every
  `log_every_n_steps`, with a warning when the cross-entropy starts far above
  or stays at chance level (`loss_watch.py`);
* with `random_seed`, reproducible: dropout is stateless, keyed on the seed,
  the global step and the clone, and the input is seeded (see TrainOptions);
* several workers (`MultiWorkerMirroredStrategy`): all start from the chief's
  state, agree every `log_every_n_steps` steps on saving, summarizing and
  stopping; only the chief writes to `train_dir` (the others save to a
  temporary directory they remove); with `ParameterServerStrategy` this
  process coordinates asynchronous workers (docs/distributed.md).

Checkpoint layout (object-based, `tf.train.Checkpoint`): `model_variables/`
maps TF-Slim variable names (`LeNet/conv1/weights`) to the net's variables, so
a checkpoint can be read by name; `ema/` the same names to their averages;
`optimizer/` and `global_step`.
"""

import dataclasses
import datetime
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from typing import Optional, Sequence

from absl import logging
import tensorflow as tf

from slimkit import seeds
from slimkit import checkpoints
from slimkit import evaluator
from slimkit.training import loss_watch
from slimkit.training import precision as precision_lib
from slimkit.nets import layers

# The weight of the auxiliary head's loss, as in TF-Slim's training script.
AUX_LOSS_WEIGHT = 0.4

CHECKPOINT_NAME = 'model.ckpt'


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss or gradient."""

  def __init__(self, step):
    super().__init__(
        f'The loss or a gradient became NaN or infinite at global step {step}; '
        'training stopped. That step was not applied, and no checkpoint was '
        'written after it. Try a lower --learning_rate, or check the input.')
    self.step = step


class CheckpointSaveError(OSError):
  """A checkpoint could not be written (disk full, no permission)."""


class CheckpointMismatchError(ValueError):
  """`train_dir` holds checkpoints of another model or class count."""


class _StopOnSignal:
  """Turns SIGTERM and the first Ctrl-C into a request to stop between steps.

  The loop checks `requested` after each step, then saves and returns; a
  second Ctrl-C interrupts at once (KeyboardInterrupt). Only the main thread
  can install handlers; elsewhere this does nothing. (One process only: on a
  multi-worker cluster each worker stops on its own signal.)
  """

  def __init__(self):
    self.requested = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested == 'SIGINT' and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = name
    logging.warning('Received %s: stopping after this step and saving a '
                    'checkpoint (Ctrl-C again to abandon the step).', name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def _restore_newest_readable(checkpoint, manager, model_variables):
  """Restores the newest checkpoint of `manager` that reads completely.

  A checkpoint cut short (killed while writing, disk full) is skipped with a
  warning and the one before it is used.

  Returns:
    The restored checkpoint prefix, or None when none is readable.

  Raises:
    CheckpointMismatchError: when a readable checkpoint holds other
      variables (another model or class count), listing them.
  """
  for path in reversed(manager.checkpoints):
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
      return path
    except (AssertionError, ValueError) as e:
      mismatched = _mismatched_variables(path, model_variables)
      if mismatched:
        raise CheckpointMismatchError(
            f'{manager.directory} holds checkpoints of another model or '
            f'class count ({path}); {len(mismatched)} variable(s) do not '
            'match:\n  ' + '\n  '.join(mismatched[:20]) +
            '\nUse a new --train_dir (and --checkpoint_path to start from '
            'that checkpoint).') from None
      # Readable but not ours to resume (e.g. another --optimizer's
      # slots): an older checkpoint would not match either.
      raise CheckpointMismatchError(
          f'Cannot resume from {path}: {str(e).splitlines()[0]}. Rerun with '
          'the flags the run was started with (see flags.txt there), or use '
          'a new --train_dir.') from None
    except (tf.errors.OpError, OSError, IndexError) as e:
      # IndexError: the reader's error for a data file cut short.
      logging.warning('Checkpoint %s is unreadable (%s); trying the previous '
                      'checkpoint.', path, type(e).__name__)
  return None


def _mismatched_variables(path, model_variables):
  """Lines naming the variables that differ between the net and `path`."""
  try:
    stored = {}
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    for name, key in checkpoints.named_values(path).items():
      stored[name] = tuple(shapes[key])
  except (tf.errors.OpError, OSError, IndexError):
    return []
  lines = []
  ours = {v.path: tuple(v.shape) for v in model_variables}
  for name, shape in sorted(ours.items()):
    if name not in stored:
      lines.append(f'{name} {shape}: not in the checkpoint')
    elif stored[name] != shape:
      lines.append(f'{name}: shape {shape} here, {stored[name]} in the '
                   'checkpoint')
  lines.extend(f'{name} {shape}: in the checkpoint only'
               for name, shape in sorted(stored.items()) if name not in ours)
  return lines


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """Everything the training loop needs besides the builders.

  Attributes:
    train_dir: Where checkpoints and summaries go.
    batch_size: Images per clone per step.
    max_number_of_steps: Stop when the global step reaches this (counted
      across restarts); None trains until interrupted.
    log_every_n_steps: Steps between log lines.
    save_summaries_secs: Seconds between TensorBoard summaries.
    save_interval_secs: Seconds between checkpoints.
    label_smoothing: TF-Slim's label smoothing of the cross-entropy.
    moving_average_decay: Decay of the weights' moving average, or None.
    trainable_scopes: TF-Slim scope prefixes of the variables to train
      (`('LeNet/fc4',)`); empty trains every trainable variable.
    checkpoint_path: A checkpoint of ours (file or directory) to initialise a
      fresh run from; ignored when `train_dir` has a checkpoint.
    checkpoint_exclude_scopes: Variable name prefixes not to initialise from
      `checkpoint_path`.
    ignore_missing_vars: Whether variables absent from `checkpoint_path` are
      left at their initial values instead of being an error.
    max_checkpoints_to_keep: How many checkpoints stay in `train_dir`.
    num_summary_images: Input images shown in TensorBoard.
    skipped_records: The int64 variable counting the corrupt records the
      input skips (`input_pipeline.make_dataset(skip_counter=...)`), shown
      in the log and as the `input/skipped_records` summary; None: none.
    precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' (see
      `precision.py`): the net computes in that policy's dtype, variables
      and checkpoints stay float32; float16 scales the loss.
    xla: Compile each clone's step with XLA (for GPUs and TPUs; on CPU it is
      usually slower).
    random_seed: With a seed (see `slimkit.seeds`, which the caller must
      have applied with `seeds.seed_everything` before building anything),
      the run is reproducible: dropout is keyed on the seed, the global step
      and the replica, and `dataset_fn` is called with `seed=` (the seed)
      and `records_consumed=` (the records of its stream that the steps
      before a resume consumed), so that a resumed run can continue its
      input where it stopped. None: TF's stateful random ops.
    eval_every_n_steps: Validation during training: every this many global
      steps, and at the last step, the current weights are evaluated (in
      inference mode) on `train`'s `validation_dataset_fn` and
      `eval/Accuracy`, `eval/Recall_5` and `eval/loss` are written to
      `train_dir/validation` at that step. None: no validation. It does not
      change training: it draws no random numbers and moves no statistic.
    validation_max_batches: Evaluate at most this many batches (None: all).
    quantize_delay: Quantization-aware training (TF-Slim's
      `--quantize_delay`): from this global step on, the net runs with
      fake-quantized weights and activations; None (or negative): never.
      The ranges are saved with the net's variables (`.../act_quant/min`).
  """
  train_dir: str
  batch_size: int
  max_number_of_steps: Optional[int] = None
  log_every_n_steps: int = 10
  save_summaries_secs: float = 600
  save_interval_secs: float = 600
  label_smoothing: float = 0.0
  moving_average_decay: Optional[float] = None
  trainable_scopes: Sequence[str] = ()
  checkpoint_path: Optional[str] = None
  checkpoint_exclude_scopes: Sequence[str] = ()
  ignore_missing_vars: bool = False
  max_checkpoints_to_keep: int = 5
  num_summary_images: int = 3
  skipped_records: Optional[tf.Variable] = None
  precision: str = 'float32'
  xla: bool = False
  random_seed: Optional[int] = None
  eval_every_n_steps: Optional[int] = None
  validation_max_batches: Optional[int] = None
  quantize_delay: Optional[int] = None


def _fake_quantization(net, options):
  """Adds the fake-quantization ranges to a built net (`quantize_delay`)."""
  if options.quantize_delay is None or options.quantize_delay < 0:
    return None
  logging.info('Quantization-aware training from global step %d.',
               options.quantize_delay)
  return net.enable_fake_quant(
      layers.FakeQuantization(delay=options.quantize_delay))


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a training run ended with.

  Attributes:
    global_step: The global step reached.
    loss: The last logged total loss (None without a step).
    checkpoint: The last checkpoint written.
    validation: `(step, metrics)` of each validation of this process.
  """
  global_step: int
  loss: Optional[float]
  checkpoint: Optional[str]
  validation: tuple = ()

# Where validation during training writes its summaries, in train_dir.
VALIDATION_DIR = 'validation'


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


class MovingAverage:
  """Exponential moving averages of variables, as `tf.train.ExponentialMovingAverage`.

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


def _image_summary(images, count):
  images = tf.cast(images[:count], tf.float32)
  # Preprocessed images are in [-1, 1] or mean-subtracted: rescale each one to
  # [0, 1] so TensorBoard shows them.
  low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
  high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
  return (images - low) / tf.maximum(high - low, 1e-6)


# TensorBoard's histogram one-hot encodes every value (30 float64 buckets): on
# a whole batch of activations that is gigabytes (MobileNet at 128 px, batch
# 32: the summary step peaked at 5.4 GB against 1.2 GB for a train step). A
# uniform random sample of this many values draws the same histogram.
_HISTOGRAM_SAMPLE = 1 << 16


def _histogram_sample(value, max_values=_HISTOGRAM_SAMPLE):
  flat = tf.reshape(value, [-1])
  size = flat.shape.num_elements()
  if size is not None and size <= max_values:
    return flat
  picks = tf.random.uniform([max_values], 0, tf.size(flat, out_type=tf.int64),
                            dtype=tf.int64)
  return tf.gather(flat, picks)


def _summary_name(name):
  return re.sub(r'[^A-Za-z0-9_./-]', '_', name)


def _all_finite(tensors):
  return tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.cast(t, tf.float32)))
                        for t in tensors])


def train(*, strategy, network_fn, dataset_fn, optimizer_fn, learning_rate,
          options, validation_dataset_fn=None):
  """Trains until `max_number_of_steps` or until interrupted.

  Args:
    strategy: A `tf.distribute.Strategy` (see `model_deploy`).
    network_fn: `() -> Network`; called inside the strategy's scope.
    dataset_fn: `(tf.distribute.InputContext) -> tf.data.Dataset` of
      `(images, labels)` batches of `options.batch_size` (one per clone);
      with `options.random_seed` it is also passed `seed=` (an int) for its
      shuffles and augmentation and `records_consumed=` (see TrainOptions).
    optimizer_fn: `(learning_rate) -> keras optimizer`.
    learning_rate: A float or a schedule of the global step.
    options: `TrainOptions`.
    validation_dataset_fn: `() -> tf.data.Dataset` of one ordered pass of
      `(images, labels)` with the eval preprocessing, for
      `options.eval_every_n_steps`.

  Returns:
    A `TrainResult`.

  Raises:
    NonFiniteLossError: when the loss or a gradient became NaN or infinite.
    ValueError: for `eval_every_n_steps` without a validation dataset.
  """
  if options.eval_every_n_steps and validation_dataset_fn is None:
    raise ValueError('eval_every_n_steps needs a validation_dataset_fn.')
  kwargs = dict(strategy=strategy, network_fn=network_fn, dataset_fn=dataset_fn,
                optimizer_fn=optimizer_fn, learning_rate=learning_rate,
                validation_dataset_fn=validation_dataset_fn)
  if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
    return _train_with_coordinator(options=options, **kwargs)
  if strategy.extended.should_checkpoint:
    return _train_replicated(options=options, **kwargs)
  # A multi-worker task other than the chief: it takes part in every save (a
  # save may run collectives) but its files are not kept: they go to a
  # temporary directory removed at the end, and train_dir is left alone.
  temporary = tempfile.mkdtemp(prefix='slimkit-worker-')
  try:
    result = _train_replicated(
        options=dataclasses.replace(options, train_dir=temporary), **kwargs)
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
  return dataclasses.replace(result, checkpoint=None)


def _train_replicated(*, strategy, network_fn, dataset_fn, optimizer_fn,
                      learning_rate, options, validation_dataset_fn):
  """`train` on one worker or several in sync (all but parameter servers)."""
  train_dir = options.train_dir
  os.makedirs(train_dir, exist_ok=True)
  num_clones = strategy.num_replicas_in_sync
  global_batch = options.batch_size * num_clones

  # The input's shapes tell the net its image size before the first step.
  image_spec = _seeded(dataset_fn, options.random_seed, options.batch_size)(
      tf.distribute.InputContext()).element_spec[0]
  with strategy.scope():
    # Layers take the policy when built; variables stay float32 under it.
    with precision_lib.policy_scope(options.precision):
      net = network_fn()
      _, end_points = net(
          tf.zeros([1] + list(image_spec.shape[1:]), image_spec.dtype),
          training=False)
      quantization = _fake_quantization(net, options)
    has_aux = end_points.get('AuxLogits') is not None
    model_variables = list(net.weights)
    # Freezes the variables outside the scopes and the batch norms that have
    # no variable inside them (their statistics must not move either).
    checkpoints.apply_trainable_scopes(net, options.trainable_scopes)
    train_vars = list(net.trainable_variables)
    optimizer = precision_lib.wrap_optimizer(optimizer_fn(learning_rate),
                                             options.precision)
    # Built before the first distributed step: a Mirrored step that creates
    # optimizer slots lazily fails.
    optimizer.build(train_vars)
    ema = (MovingAverage(model_variables, options.moving_average_decay)
           if options.moving_average_decay else None)
  global_step = optimizer.iterations
  if quantization is not None:
    quantization.bind_step(global_step)
  # Host-side record of the first bad step (-1: none), written in the
  # cross-replica part of the step.
  bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False)

  items = dict(model_variables={v.path: v for v in model_variables},
               # The float16 loss scale is not saved: checkpoints have one layout
               # in every precision (the scale re-adapts in a few steps).
               optimizer=precision_lib.unwrap_optimizer(optimizer),
               global_step=global_step)
  if ema is not None:
    items['ema'] = ema.averages
  checkpoint = tf.train.Checkpoint(**items)
  manager = tf.train.CheckpointManager(
      checkpoint, train_dir, max_to_keep=options.max_checkpoints_to_keep,
      checkpoint_name=CHECKPOINT_NAME)
  resumed = (_restore_newest_readable(checkpoint, manager, model_variables)
             if manager.latest_checkpoint else None)
  if manager.latest_checkpoint and resumed is None:
    raise ValueError(
        f'No checkpoint of {train_dir} is readable '
        f'({", ".join(manager.checkpoints)}); move them away to start over.')
  if resumed:
    logging.info('Resuming from %s (global step %d).',
                 resumed, int(global_step.numpy()))
    if options.checkpoint_path:
      logging.info('Ignoring --checkpoint_path: %s has a checkpoint already.',
                   train_dir)
  elif options.checkpoint_path:
    # A TF-Slim checkpoint or one of ours, matched by TF-Slim variable name.
    # restore() logs how many variables it restored, excluded and missed.
    checkpoints.restore(
        net, options.checkpoint_path,
        exclude_scopes=options.checkpoint_exclude_scopes,
        ignore_missing_vars=options.ignore_missing_vars)
    if ema is not None:
      ema.reset()

  if _num_workers(strategy) > 1:
    # Every worker starts from the chief's state: only the chief is sure to
    # see the checkpoint (train_dir may be on its local disk).
    _broadcast_from_chief(strategy, model_variables + list(
        optimizer.variables) + (list(ema.averages.values()) if ema else []))
  writer = (tf.summary.create_file_writer(train_dir)
            if strategy.extended.should_save_summary
            else tf.summary.create_noop_writer())

  # Batch-norm statistics change in the forward pass, before the loss is
  # known: a bad step puts their old values back.
  statistics = [v for v in model_variables if not v.trainable]

  def replica_step(images, labels):
    ctx = tf.distribute.get_replica_context()
    saved = [tf.identity(v.value) for v in statistics]
    # Dropout masks keyed on the step and the clone: the same in every run
    # with this seed, whichever traced step (with or without summaries) ran.
    step_seed = (seeds.fold(options.random_seed, global_step,
                            ctx.replica_id_in_sync_group)
                 if options.random_seed is not None else None)
    with tf.GradientTape() as tape:
      logits, end_points = net(images, training=True, seed=step_seed)
      clone_loss = classification_loss(logits, labels, end_points,
                                       options.label_smoothing)
      regularization = (tf.add_n([tf.cast(l, tf.float32) for l in net.losses])
                        if net.losses else tf.constant(0.0))
      # The optimizer sums gradients over clones. Scaling each clone's loss by
      # 1/num_clones makes that sum the average of the clones' gradients (as
      # TF-Slim averaged its towers); adding regularization/num_clones on each
      # clone makes the sum contain the regularization gradient exactly once.
      scaled = (clone_loss + regularization) / ctx.num_replicas_in_sync
      # Under float16 the loss is scaled up so small gradients do not vanish;
      # the optimizer unscales them and skips steps that overflowed, so only
      # the loss itself is checked then. (Elsewhere scale_loss is identity.)
      target = optimizer.scale_loss(scaled)
    grads = tape.gradient(target, train_vars)
    grads = [tf.zeros_like(v) if g is None else g
             for g, v in zip(grads, train_vars)]
    checked = [scaled] + (
        [] if precision_lib.uses_loss_scaling(options.precision) else grads)
    local_bad = tf.cast(tf.logical_not(_all_finite(checked)), tf.int32)
    ok = tf.equal(ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_bad), 0)
    # No NaN or inf reaches the weights; the loop stops at its next check.
    if ctx.num_replicas_in_sync == 1:
      # One replica: a bad step skips the update (the step still counts).
      # Cheaper than zeroing, which writes every gradient once more: 16 ms
      # of a 410 ms ResNet-50 step on 2 CPU cores.
      def update():
        optimizer.apply_gradients(zip(grads, train_vars))
        return tf.constant(True)

      def skip():
        optimizer.iterations.assign_add(1)
        return tf.constant(False)

      tf.cond(ok, update, skip)
    else:
      # Clones agree on `ok`, but an update is a cross-replica call that
      # cannot sit in a branch: a bad step applies zeros instead.
      grads = [tf.where(ok, g, tf.zeros_like(g)) for g in grads]
      optimizer.apply_gradients(zip(grads, train_vars))
    for v, old in zip(statistics, saved):
      v.assign(tf.where(ok, v.value, old))
    return dict(ok=ok, clone_loss=clone_loss, regularization=regularization,
                scaled=scaled, images=images, end_points=end_points)

  # XLA compiles what each clone computes; reading the input stays outside.
  clone_step = (tf.function(replica_step, jit_compile=True) if options.xla
                else replica_step)

  def make_step(with_summaries):
    @tf.function
    def step(iterator):
      outputs = strategy.run(clone_step, args=next(iterator))
      total = strategy.reduce(tf.distribute.ReduceOp.SUM, outputs['scaled'],
                              axis=None)
      ok = strategy.experimental_local_results(outputs['ok'])[0]
      step_done = tf.convert_to_tensor(global_step)
      bad_step.assign(tf.where(tf.logical_and(tf.logical_not(ok),
                                              bad_step < 0),
                               tf.cast(step_done, tf.int64), bad_step))
      if ema is not None:
        ema.update(step_done)
      if with_summaries:
        _write_summaries(outputs, total, step_done)
      # The clones' mean cross-entropy, for LossWatch.
      return total, strategy.reduce(tf.distribute.ReduceOp.MEAN,
                                    outputs['clone_loss'], axis=None)
    return step

  def _write_summaries(outputs, total, step):
    first = lambda x: strategy.experimental_local_results(x)[0]
    with writer.as_default(step=tf.cast(step, tf.int64)):
      tf.summary.scalar('total_loss', total)
      for i, loss in enumerate(
          strategy.experimental_local_results(outputs['clone_loss'])):
        tf.summary.scalar(f'losses/clone_{i}_loss', loss)
      tf.summary.scalar('losses/regularization_loss',
                        first(outputs['regularization']))
      tf.summary.scalar('learning_rate', optimizer.learning_rate)
      for name, value in sorted(first(outputs['end_points']).items()):
        name = _summary_name(name)
        tf.summary.histogram(f'activations/{name}', _histogram_sample(value))
        tf.summary.scalar(f'sparsity/{name}', tf.math.zero_fraction(value))
      for v in train_vars:
        tf.summary.histogram(f'variables/{_summary_name(v.path)}',
                             _histogram_sample(v.value))
      tf.summary.image('images', _image_summary(first(outputs['images']),
                                                options.num_summary_images),
                       max_outputs=options.num_summary_images)

  train_step = make_step(with_summaries=False)
  agree = _agreement(strategy, every=options.log_every_n_steps)
  summary_step = make_step(with_summaries=True)
  # tf.data's position is not in the checkpoint (TF cannot save a
  # distributed iterator): a resumed run's input replays the stream up to
  # where the run stopped (see input_pipeline.make_dataset).
  dataset = strategy.distribute_datasets_from_function(_seeded(
      dataset_fn, options.random_seed, options.batch_size,
      int(global_step.numpy())))
  iterator = iter(dataset)

  def check_finite():
    bad = int(bad_step.numpy())
    if bad >= 0:
      raise NonFiniteLossError(bad)

  def save(step):
    check_finite()
    # A second line of defence: never write non-finite weights.
    if not bool(_all_finite([v.value for v in model_variables])):
      raise NonFiniteLossError(step)
    previous = manager.latest_checkpoint
    try:
      path = manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
      # The state file still names the previous checkpoint; drop the
      # partial files so that they do not fill the disk further.
      stem = os.path.join(train_dir, f'{CHECKPOINT_NAME}-{step}')
      for leftover in (tf.io.gfile.glob(stem + '.*') +
                       tf.io.gfile.glob(stem + '_temp*')):
        if not previous or not leftover.startswith(previous + '.'):
          shutil.rmtree(leftover, ignore_errors=True)
          if os.path.exists(leftover):
            os.remove(leftover)
      reason = getattr(e, 'message', None) or str(e)
      raise CheckpointSaveError(
          f'Could not write the checkpoint of global step {step} to '
          f'{train_dir}: {reason.splitlines()[0] if reason else e}. '
          + (f'The previous checkpoint {previous} is intact: free some space '
             'or fix the permissions, then rerun the same command to resume '
             'from it.' if previous else 'No checkpoint was written.')
      ) from None
    logging.info('Saved checkpoint %s.', path)
    saved_steps.add(step)
    return path

  step = int(global_step.numpy())
  start_step = step
  max_steps = options.max_number_of_steps
  logging.info('Training %s from global step %d%s on %d clone(s), %d images '
               'per step.', net.name, step,
               f' to {max_steps}' if max_steps else '', num_clones,
               global_batch)
  last_save = last_summary = time.time()
  last_log_time, last_log_step = time.time(), step
  loss_value = None
  last_checkpoint = manager.latest_checkpoint
  first_summary_done = False
  # Saving the same step twice would rewrite a complete checkpoint in place.
  saved_steps = {step} if last_checkpoint else set()
  watch = loss_watch.LossWatch(
      net.num_classes or 1, aux_weight=AUX_LOSS_WEIGHT if has_aux else 0.0)
  validator = _Validator(net, validation_dataset_fn, options,
                         strategy.extended.should_save_summary)
  stop = _StopOnSignal()
  try:
    stop.__enter__()
    while max_steps is None or step < max_steps:
      # Several workers stop together (at an agreed step) when any of them
      # is signalled, so that they save the same step.
      if agree(step, stop.requested is not None):
        logging.warning('Stopping at global step %d on %s; rerun the same '
                        'command to resume.', step,
                        stop.requested or 'a signal to another worker')
        break
      now = time.time()
      summarize = not first_summary_done or agree(
          step, now - last_summary >= options.save_summaries_secs)
      try:
        loss, cross_entropy = (summary_step if summarize else train_step)(
            iterator)
      except (StopIteration, tf.errors.OutOfRangeError):
        logging.info('The input ran out at global step %d.', step)
        break
      step += 1
      if summarize:
        first_summary_done = True
        last_summary = now
      if step % options.log_every_n_steps == 0 or step == max_steps:
        loss_value = float(loss.numpy())
        check_finite()
        warning = watch.check(step, float(cross_entropy.numpy()))
        if warning:
          logging.warning(warning)
        now = time.time()
        sec_per_step = (now - last_log_time) / max(step - last_log_step, 1)
        images_per_sec = global_batch / max(sec_per_step, 1e-9)
        left = ''
        if max_steps:
          remaining = datetime.timedelta(
              seconds=int(sec_per_step * (max_steps - step)))
          left = f', {remaining} left'
        skipped = ''
        if options.skipped_records is not None:
          skipped_count = int(options.skipped_records.numpy())
          skipped = f', {skipped_count} corrupt records skipped'
        logging.info('global step %d: loss = %.4f (%.3f sec/step, %.1f '
                     'images/sec%s%s)', step, loss_value, sec_per_step,
                     images_per_sec, left, skipped)
        with writer.as_default(step=step):
          tf.summary.scalar('images_per_sec', images_per_sec)
          if not summarize:  # a summary step wrote it already
            tf.summary.scalar('total_loss', loss_value)
          if skipped:
            tf.summary.scalar('input/skipped_records', skipped_count)
        last_log_time, last_log_step = now, step
      if validator.due(step):
        # Its time is not training's: the next log line leaves it out.
        last_log_time += validator.run(step)
      if agree(step, time.time() - last_save >= options.save_interval_secs):
        last_checkpoint = save(step)
        last_save = time.time()
  except KeyboardInterrupt:
    logging.warning('Interrupted at global step %d; saving a checkpoint.', step)
  finally:
    stop.__exit__(None, None, None)
    writer.flush()
  check_finite()
  if step not in saved_steps:
    last_checkpoint = save(step)
  if not stop.requested and validator.enabled and step not in validator.done:
    validator.run(step)  # the last step (also of a run resumed there)
  if stop.requested:
    logging.warning('Stopped by %s at global step %d; checkpoint %s.',
                    stop.requested, step, last_checkpoint)
  writer.close()
  validator.close()
  if loss_value is None and step != start_step:
    loss_value = float(loss.numpy())
  return TrainResult(global_step=step, loss=loss_value,
                     checkpoint=last_checkpoint,
                     validation=tuple(validator.results))


class _Validator:
  """Validation during training (`TrainOptions.eval_every_n_steps`).

  Every worker evaluates the whole split on its own copy of the weights (no
  collective: a long evaluation cannot time the others out); only the one
  that writes summaries writes them, to `train_dir/validation`.
  """

  def __init__(self, net, dataset_fn, options, writes):
    self.net = net
    self.dataset_fn = dataset_fn
    self.every = options.eval_every_n_steps
    self.max_batches = options.validation_max_batches
    self.enabled = bool(self.every)
    self.results = []
    self.done = set()
    self._writer = None
    if self.enabled and writes:
      self._writer = tf.summary.create_file_writer(
          os.path.join(options.train_dir, VALIDATION_DIR))

  def due(self, step):
    return self.enabled and step % self.every == 0

  def run(self, step):
    """Evaluates at `step`, logs and writes; returns the seconds it took."""
    start = time.time()
    dataset = self.dataset_fn()
    if self.max_batches:
      dataset = dataset.take(self.max_batches)
    metrics = evaluator.evaluate_net(self.net, dataset)
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


def _seeded(dataset_fn, random_seed, batch_size, start_step=0):
  """`dataset_fn` given the run's seed and the records already consumed.

  Each step takes one batch per replica from its worker's input pipeline,
  so a run resumed at `start_step` has consumed `start_step * batch_size *
  replicas per pipeline` records of each pipeline's stream.
  """
  if random_seed is None:
    return dataset_fn

  def seeded_fn(input_context):
    per_pipeline = (input_context.num_replicas_in_sync //
                    input_context.num_input_pipelines)
    return dataset_fn(input_context, seed=random_seed,
                      records_consumed=start_step * batch_size * per_pipeline)

  return seeded_fn


def _num_workers(strategy):
  """How many workers train in sync under `strategy` (1 without a cluster)."""
  resolver = strategy.cluster_resolver
  spec = resolver.cluster_spec() if resolver is not None else None
  if not spec or not spec.jobs:
    return 1
  return sum(spec.num_tasks(job) for job in ('chief', 'worker')
             if job in spec.jobs)


def _broadcast_from_chief(strategy, variables):
  """Sets every worker's copy of `variables` to the chief's (replica 0's)."""
  variables = list(variables)

  @tf.function(autograph=False)
  def broadcast():
    def replica_fn():
      ctx = tf.distribute.get_replica_context()
      mine = tf.equal(ctx.replica_id_in_sync_group, 0)
      values = []
      for v in variables:
        # All values travel as float64 (one batched all-reduce needs one
        # dtype): exact for float32 and for steps below 2**53.
        value = tf.cast(tf.convert_to_tensor(v), tf.float64)
        values.append(tf.where(mine, value, tf.zeros_like(value)))
      return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)
    values = strategy.run(replica_fn)
    for v, value in zip(variables, values):
      v.assign(tf.cast(strategy.experimental_local_results(value)[0],
                       tf.as_dtype(v.dtype)))

  broadcast()


def _agreement(strategy, every):
  """Returns `agree(step, want) -> bool`, the same on every worker.

  Checkpoints and summaries are due by wall-clock time, which differs between
  workers; but every worker must take the same branch (a save or a summary
  step may run collectives, and collectives are matched by the order in which
  they are created). With several workers, the wishes are combined by an
  all-reduce every `every` steps (any worker's wish wins); on one worker,
  `agree` returns `want`.
  """
  if _num_workers(strategy) == 1:
    return lambda step, want: bool(want)

  @tf.function(autograph=False)
  def any_wants(want):
    def replica_fn(value):
      # identity: a copy on this replica's device, which the all-reduce needs.
      return tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, tf.identity(value))
    return strategy.experimental_local_results(
        strategy.run(replica_fn, args=(want,)))[0]

  def agree(step, want):
    if step % every:
      return False
    return bool(any_wants(tf.constant(1.0 if want else 0.0)) > 0)

  return agree


def _train_with_coordinator(*, strategy, network_fn, dataset_fn, optimizer_fn,
                            learning_rate, options, validation_dataset_fn):
  """`train` with parameter servers: this process coordinates the workers.

  Asynchronous, as TF-Slim without `--sync_replicas`: each worker reads its
  own shard, computes the gradients of its batch and applies them to the
  variables on the parameter servers without waiting for the others. Steps
  are scheduled in groups of `log_every_n_steps`; between groups this process
  logs, checks for non-finite losses and writes checkpoints and loss
  summaries to `train_dir`. The global step counts the applied steps.
  Validation runs here, between groups, once a multiple of
  `eval_every_n_steps` has passed.
  """
  train_dir = options.train_dir
  os.makedirs(train_dir, exist_ok=True)
  coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
  image_spec = dataset_fn(tf.distribute.InputContext()).element_spec[0]
  with strategy.scope():
    net = network_fn()
    net(tf.zeros([1] + list(image_spec.shape[1:]), image_spec.dtype),
        training=False)
    quantization = _fake_quantization(net, options)
    model_variables = list(net.weights)
    checkpoints.apply_trainable_scopes(net, options.trainable_scopes)
    train_vars = list(net.trainable_variables)
    optimizer = optimizer_fn(learning_rate)
    optimizer.build(train_vars)
    ema = (MovingAverage(model_variables, options.moving_average_decay)
           if options.moving_average_decay else None)
  global_step = optimizer.iterations
  if quantization is not None:
    quantization.bind_step(global_step)
  items = dict(model_variables={v.path: v for v in model_variables},
               optimizer=optimizer, global_step=global_step)
  if ema is not None:
    items['ema'] = ema.averages
  checkpoint = tf.train.Checkpoint(**items)
  manager = tf.train.CheckpointManager(
      checkpoint, train_dir, max_to_keep=options.max_checkpoints_to_keep,
      checkpoint_name=CHECKPOINT_NAME)
  if manager.latest_checkpoint:
    checkpoint.restore(
        manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info('Resuming from %s.', manager.latest_checkpoint)
  elif options.checkpoint_path:
    # restore() logs how many variables it restored, excluded and missed.
    checkpoints.restore(
        net, options.checkpoint_path,
        exclude_scopes=options.checkpoint_exclude_scopes,
        ignore_missing_vars=options.ignore_missing_vars)
    if ema is not None:
      ema.reset()

  def replica_step(images, labels):
    with tf.GradientTape() as tape:
      logits, end_points = net(images, training=True)
      loss = classification_loss(logits, labels, end_points,
                                 options.label_smoothing)
      if net.losses:
        loss += tf.add_n([tf.cast(l, tf.float32) for l in net.losses])
    grads = tape.gradient(loss, train_vars)
    grads = [tf.zeros_like(v) if g is None else g
             for g, v in zip(grads, train_vars)]
    ok = _all_finite([loss] + grads)
    # A bad step applies zeros, so no NaN reaches the parameter servers.
    optimizer.apply_gradients(
        zip([tf.where(ok, g, tf.zeros_like(g)) for g in grads], train_vars))
    return loss, ok

  @tf.function
  def worker_step(iterator):
    loss, ok = strategy.run(replica_step, args=next(iterator))
    if ema is not None:
      ema.update(global_step)
    return loss, ok

  iterator = iter(coordinator.create_per_worker_dataset(
      strategy.distribute_datasets_from_function(dataset_fn)))
  writer = tf.summary.create_file_writer(train_dir)
  step = start_step = int(global_step.numpy())
  max_steps = options.max_number_of_steps
  extended = strategy.extended  # Counts of the servers (no public API).
  logging.info('Training %s from global step %d%s on %d worker(s) and %d '
               'parameter server(s), asynchronously, %d images per worker '
               'step.',
               net.name, step, f' to {max_steps}' if max_steps else '',
               getattr(extended, '_num_workers', -1),
               getattr(extended, '_num_ps', -1),
               options.batch_size)
  last_save = time.time()
  last_time = time.time()
  loss_value = None
  last_checkpoint = manager.latest_checkpoint
  validator = _Validator(net, validation_dataset_fn, options, True)

  def save():
    path = manager.save(checkpoint_number=step)
    logging.info('Saved checkpoint %s.', path)
    return path

  try:
    while max_steps is None or step < max_steps:
      count = options.log_every_n_steps
      if max_steps is not None:
        count = min(count, max_steps - step)
      results = [coordinator.schedule(worker_step, args=(iterator,))
                 for _ in range(count)]
      coordinator.join()
      step += count
      # Concurrent updates of the step counter race; this process knows how
      # many steps ran.
      global_step.assign(step)
      fetched = [(float(loss), bool(ok))
                 for loss, ok in (r.fetch() for r in results)]
      bad = [i for i, (_, ok) in enumerate(fetched) if not ok]
      if bad:
        raise NonFiniteLossError(step - count + bad[0])
      loss_value = fetched[-1][0]
      now = time.time()
      sec_per_step = (now - last_time) / count
      logging.info('global step %d: loss = %.4f (%.3f sec/step, %.1f '
                   'images/sec)', step, loss_value, sec_per_step,
                   options.batch_size / max(sec_per_step, 1e-9))
      last_time = now
      with writer.as_default(step=step):
        tf.summary.scalar('total_loss', loss_value)
        tf.summary.scalar('learning_rate', optimizer.learning_rate)
      if validator.enabled and step // validator.every > (
          step - count) // validator.every:
        last_time += validator.run(step)
      if now - last_save >= options.save_interval_secs:
        last_checkpoint = save()
        last_save = time.time()
  except KeyboardInterrupt:
    coordinator.join()
    logging.warning('Interrupted at global step %d; saving a checkpoint.', step)
  else:
    if validator.enabled and step not in validator.done:
      validator.run(step)
  finally:
    writer.flush()
  if step != start_step or last_checkpoint is None:
    last_checkpoint = save()
  writer.close()
  validator.close()
  return TrainResult(global_step=step, loss=loss_value,
                     checkpoint=last_checkpoint,
                     validation=tuple(validator.results))
