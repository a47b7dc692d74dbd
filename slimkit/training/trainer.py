"""A model-agnostic training loop over a `tf.distribute` strategy.

The net, the input and the optimizer come in as builders; the trainer knows
nothing about them beyond `logits, end_points = net(images, training=True)`:

  result = trainer.train(
      strategy=deployment.strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10, ...),
      dataset_fn=lambda ctx: input_pipeline.make_dataset(...,
                                                         input_context=ctx),
      optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
      learning_rate=0.01,
      options=trainer.TrainOptions(train_dir='/tmp/run', batch_size=32))

What it does, as TF-Slim's `train_image_classifier.py` did:
* one compiled step run on every clone by `strategy.run`; softmax
  cross-entropy with label smoothing, of int labels or of the soft labels
  of MixUp and CutMix (plus 0.4 x the auxiliary head's loss, `losses.py`),
  the net's regularization losses added once, gradients summed across clones;
* a non-finite loss or gradient never reaches the weights: that step applies
  no update, is recorded, and training stops at the next check with
  `NonFiniteLossError` naming the step; no checkpoint is written after it;
* an exponential moving average of the model variables (trainable weights and
  batch-norm statistics) when `moving_average_decay` is set, saved in the
  checkpoint under `ema/`, which evaluation restores instead of the weights;
* checkpoints `model.ckpt-<step>` in `train_dir` every `save_interval_secs`
  and at the end; a restart resumes from the newest one that reads
  completely (`slimkit/resume.py`, docs/reliability.md); SIGTERM or Ctrl-C
  stops between steps with a final checkpoint (`signals.py`); a failed save
  raises `CheckpointSaveError` and leaves the previous checkpoint in place;
* TensorBoard summaries every `save_summaries_secs` (`summaries.py`); a log
  line every `log_every_n_steps` (`progress.py`), with the images/s, the
  training GFLOP/s (`slimkit.flops`: the net's forward multiply-adds per
  image, counted once at the start, x 2 x 3) and, given a peak (`peak.py`),
  the utilisation, and with a warning when the cross-entropy starts far
  above or stays at chance level (`loss_watch.py`);
* with `random_seed`, reproducible: dropout is stateless, keyed on the seed,
  the global step and the clone, and the input is seeded (see TrainOptions).

One loop serves every strategy; what differs is in two small runners of
`steps.py`: `Synchronous` (one device, clones, several workers in sync: all
start from the chief's state and agree every `log_every_n_steps` steps on
saving, summarizing and stopping, `deployment/collectives.py`; only the chief
writes to `train_dir`) and `Coordinated` (`ParameterServerStrategy`: this
process schedules asynchronous steps on the workers in groups that end at
each log line; docs/distributed.md says what parameter servers support).

Checkpoint layout (object-based, `tf.train.Checkpoint`): `model_variables/`
maps TF-Slim variable names (`LeNet/conv1/weights`) to the net's variables, so
a checkpoint can be read by name; `ema/` the same names to their averages;
`optimizer/` and `global_step`.
"""

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Optional, Sequence

from absl import logging
import tensorflow as tf

from slimkit import checkpoints
from slimkit import resume
from slimkit import runs
from slimkit.deployment import collectives
from slimkit.nets import layers
from slimkit.training import allocator
from slimkit.training import losses
from slimkit.training import precision as precision_lib
from slimkit.training import progress
from slimkit.training import signals
from slimkit.training import steps

# Public names of the training API, defined beside the code they belong to.
AUX_LOSS_WEIGHT = losses.AUX_LOSS_WEIGHT
classification_loss = losses.classification_loss
MovingAverage = losses.MovingAverage
CheckpointSaveError = resume.CheckpointSaveError

CHECKPOINT_NAME = 'model.ckpt'
# Where validation during training writes its summaries, in train_dir (a
# run's folder layout is described once, by its reader).
VALIDATION_DIR = runs.VALIDATION_DIR


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss or gradient."""

  def __init__(self, step):
    super().__init__(
        f'The loss or a gradient became NaN or infinite at global step {step}; '
        'training stopped. That step was not applied, and no checkpoint was '
        'written after it. Try a lower --learning_rate, or check the input.')
    self.step = step


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
    peak_gflops: The machine's peak GFLOP/s in the run's compute dtype
      (`peak.resolve_peak`); the log line and the `utilization` summary show
      the achieved training GFLOP/s over it. None: no utilisation.
    quantize_delay: Quantization-aware training (TF-Slim's
      `--quantize_delay`): from this global step on, the net runs with
      fake-quantized weights and activations; None (or negative): never.
      The ranges are saved with the net's variables (`.../act_quant/min`).
    steps_per_loop: Steps per call of the compiled training loop (one
      device, clones, workers in sync): the host waits once per group
      instead of once per step. A group never runs past a log line, a
      validation or the last step, so these stay at their steps; the
      time-based summaries and checkpoints, and a SIGTERM, are acted on
      between groups (`save_interval_secs` or `save_summaries_secs` 0:
      one step per group); a bad step ends its group. It does not change
      what training computes.
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
  steps_per_loop: int = 10
  peak_gflops: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a training run ended with.

  Attributes:
    global_step: The global step reached.
    loss: The last logged total loss (None without a step).
    checkpoint: The last checkpoint written.
    validation: `(step, metrics)` of each validation of this process.
    stopped_by: What stopped the run before its last step ('SIGTERM',
      'SIGINT', 'Ctrl-C'), or None when it ran to the end or its input ran
      out.
  """
  global_step: int
  loss: Optional[float]
  checkpoint: Optional[str]
  validation: tuple = ()
  stopped_by: Optional[str] = None


def _uses_parameter_servers(strategy):
  return isinstance(strategy,
                    tf.distribute.experimental.ParameterServerStrategy)


def check_options(strategy, options):
  """Raises ValueError for `options` that `strategy` cannot train with.

  `train` calls it first; a script calls it before it writes anything.

  Args:
    strategy: The run's `tf.distribute.Strategy`.
    options: `TrainOptions`.

  Raises:
    ValueError: naming the option, the strategy and why.
  """
  precision_lib.check_precision(options.precision)
  if not _uses_parameter_servers(strategy):
    return
  if options.xla:
    raise ValueError(
        '--xla with parameter servers: XLA compiles a step on one device, '
        'and the variables of ParameterServerStrategy live on the servers '
        '(TensorFlow fails with "Trying to access resource ... located in '
        'device /job:ps"). Drop --xla, or train on one machine or several '
        'workers in sync (no --ps_hosts).')


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
    CheckpointSaveError: when a checkpoint could not be written.
    checkpoints.CheckpointMismatchError: when `train_dir` holds checkpoints
      of another model or class count.
    ValueError: for `eval_every_n_steps` without a validation dataset, and
      options the strategy cannot train with (`check_options`).
  """
  if options.eval_every_n_steps and validation_dataset_fn is None:
    raise ValueError('eval_every_n_steps needs a validation_dataset_fn.')
  check_options(strategy, options)
  kwargs = dict(strategy=strategy, network_fn=network_fn, dataset_fn=dataset_fn,
                optimizer_fn=optimizer_fn, learning_rate=learning_rate,
                validation_dataset_fn=validation_dataset_fn)
  if (_uses_parameter_servers(strategy) or
      strategy.extended.should_checkpoint):
    return _train(options=options, **kwargs)
  # A multi-worker task other than the chief: it takes part in every save (a
  # save may run collectives) but its files are not kept: they go to a
  # temporary directory removed at the end, and train_dir is left alone.
  temporary = tempfile.mkdtemp(prefix='slimkit-worker-')
  try:
    result = _train(
        options=dataclasses.replace(options, train_dir=temporary), **kwargs)
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
  return dataclasses.replace(result, checkpoint=None)


@dataclasses.dataclass
class _State:
  """The training state, built once for every strategy (see `_build`)."""
  net: object
  has_aux: bool
  model_variables: list
  train_vars: list
  optimizer: object
  ema: Optional[losses.MovingAverage]
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager

  @property
  def global_step(self):
    return self.optimizer.iterations


def _build(strategy, network_fn, image_spec, optimizer_fn, learning_rate,
           options):
  """Builds the net, optimizer, averages and checkpoint in `strategy`."""
  with strategy.scope():
    # Layers take the policy when built; variables stay float32 under it.
    with precision_lib.policy_scope(options.precision):
      net = network_fn()
      _, end_points = net(
          tf.zeros([1] + list(image_spec.shape[1:]), image_spec.dtype),
          training=False)
      quantization = _fake_quantization(net, options)
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
    ema = (losses.MovingAverage(model_variables, options.moving_average_decay)
           if options.moving_average_decay else None)
  if quantization is not None:
    quantization.bind_step(optimizer.iterations)
  items = dict(model_variables={v.path: v for v in model_variables},
               # The float16 loss scale is not saved: checkpoints have one
               # layout in every precision (the scale re-adapts in a few steps).
               optimizer=precision_lib.unwrap_optimizer(optimizer),
               global_step=optimizer.iterations)
  if ema is not None:
    items['ema'] = ema.averages
  checkpoint = tf.train.Checkpoint(**items)
  manager = tf.train.CheckpointManager(
      checkpoint, options.train_dir,
      max_to_keep=options.max_checkpoints_to_keep,
      checkpoint_name=CHECKPOINT_NAME)
  return _State(net=net, has_aux=end_points.get('AuxLogits') is not None,
                model_variables=model_variables, train_vars=train_vars,
                optimizer=optimizer, ema=ema, checkpoint=checkpoint,
                manager=manager)


def _fake_quantization(net, options):
  """Adds the fake-quantization ranges to a built net (`quantize_delay`)."""
  if options.quantize_delay is None or options.quantize_delay < 0:
    return None
  logging.info('Quantization-aware training from global step %d.',
               options.quantize_delay)
  return net.enable_fake_quant(
      layers.FakeQuantization(delay=options.quantize_delay))


def _restore(state, options):
  """Resumes from `train_dir` or starts from `checkpoint_path`.

  Returns:
    The checkpoint resumed from, or None for a fresh run.
  """
  manager = state.manager
  if manager.latest_checkpoint:
    resumed = resume.restore_newest_readable(state.checkpoint, manager,
                                             state.model_variables)
    if resumed is None:
      raise ValueError(
          f'No checkpoint of {options.train_dir} is readable '
          f'({", ".join(manager.checkpoints)}); move them away to start over.')
    logging.info('Resuming from %s (global step %d).',
                 resumed, int(state.global_step.numpy()))
    if options.checkpoint_path:
      logging.info('Ignoring --checkpoint_path: %s has a checkpoint already.',
                   options.train_dir)
    return resumed
  if options.checkpoint_path:
    # A TF-Slim checkpoint or one of ours, matched by TF-Slim variable name.
    # restore() logs how many variables it restored, excluded and missed.
    checkpoints.restore(
        state.net, options.checkpoint_path,
        exclude_scopes=options.checkpoint_exclude_scopes,
        ignore_missing_vars=options.ignore_missing_vars)
    if state.ema is not None:
      state.ema.reset()
  return None


def _train(*, strategy, network_fn, dataset_fn, optimizer_fn, learning_rate,
           options, validation_dataset_fn):
  """`train` in `options.train_dir`, with either runner."""
  train_dir = options.train_dir
  os.makedirs(train_dir, exist_ok=True)
  coordinated = _uses_parameter_servers(strategy)
  # The input's shapes tell the net its image size before the first step.
  first_input = (dataset_fn if coordinated else steps.seeded(
      dataset_fn, options.random_seed, options.batch_size))(
          tf.distribute.InputContext())
  state = _build(strategy, network_fn, first_input.element_spec[0],
                 optimizer_fn, learning_rate, options)
  last_checkpoint = _restore(state, options)
  writes = coordinated or strategy.extended.should_save_summary
  writer = (tf.summary.create_file_writer(train_dir) if writes
            else tf.summary.create_noop_writer())
  if not coordinated:
    dataset_fn = _reusing(dataset_fn, first_input)
  runner = (steps.Coordinated if coordinated else steps.Synchronous)(
      strategy, state, options, dataset_fn, writer)
  # Building the runner's distributed iterator made TensorFlow pin glibc's
  # mmap threshold at 128 KiB (once per process): without this, every
  # oneDNN buffer over 128 KiB is fresh zero pages each step (allocator.py).
  allocator.restore_thresholds()
  agree = collectives.agreement(strategy, every=options.log_every_n_steps)
  step = start_step = int(state.global_step.numpy())
  max_steps = options.max_number_of_steps
  logging.info('Training %s from global step %d%s on %s.', state.net.name,
               step, f' to {max_steps}' if max_steps else '',
               runner.describe())
  log = progress.Log(
      options, runner.global_batch, step, state.net, state.has_aux, writer,
      progress.training_flops(state.net, first_input.element_spec[0]))
  validator = progress.Validator(state.net, validation_dataset_fn, options,
                                 writes)
  # Saving the same step twice would rewrite a complete checkpoint in place.
  saved_steps = {step} if last_checkpoint else set()

  def save(step):
    # Bad steps are caught after each group, before any save. A second line
    # of defence: never write non-finite weights.
    if not bool(losses.all_finite([v.value for v in state.model_variables])):
      raise NonFiniteLossError(step)
    path = resume.save(state.manager, step, CHECKPOINT_NAME)
    logging.info('Saved checkpoint %s.', path)
    saved_steps.add(step)
    return path

  def steps_done(step):
    # The steps that ran, when a group was cut short; with parameter
    # servers the runner counts them (the step variable races there).
    return step if coordinated else int(state.global_step.numpy())

  last_save = last_summary = time.time()
  summarized = False
  interrupted = None
  stop = signals.StopOnSignal()
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
      summarize = not summarized or agree(
          step, now - last_summary >= options.save_summaries_secs)
      count = runner.steps_to_run(step, max_steps)
      try:
        loss, cross_entropy = runner.run(count, summarize)
      except (StopIteration, tf.errors.OutOfRangeError):
        step = steps_done(step)  # the group's steps before the input ended
        logging.info('The input ran out at global step %d.', step)
        break
      # A bad step ended its group: stop now, naming it (one read a group).
      _check_finite(runner)
      step += count
      if start_step == 0 and step == count == 1:
        # Step 1's loss comes from the initial weights, before any update.
        log.initial(cross_entropy)
      if summarize:
        summarized, last_summary = True, now
      if step % options.log_every_n_steps == 0 or step == max_steps:
        # A summary wrote total_loss at the group's first step.
        log.line(step, loss, cross_entropy, summarize and count == 1,
                 max_steps)
      if validator.due(step, count):
        # Its time is not training's: the next log line leaves it out.
        log.last_time += validator.run(step)
      if agree(step, time.time() - last_save >= options.save_interval_secs):
        last_checkpoint = save(step)
        last_save = time.time()
  except KeyboardInterrupt:
    interrupted = 'Ctrl-C'
    runner.finish()
    step = steps_done(step)  # it may come after a group, before `step +=`
    logging.warning('Interrupted at global step %d; saving a checkpoint.', step)
  finally:
    stop.__exit__(None, None, None)
    writer.flush()
  _check_finite(runner)
  if step not in saved_steps:
    last_checkpoint = save(step)
  if not stop.requested and validator.enabled and step not in validator.done:
    validator.run(step)  # the last step (also of a run resumed there)
  if stop.requested:
    logging.warning('Stopped by %s at global step %d; checkpoint %s.',
                    stop.requested, step, last_checkpoint)
  writer.close()
  validator.close()
  if log.loss is None and step != start_step:
    log.loss = float(loss)
  return TrainResult(global_step=step, loss=log.loss,
                     checkpoint=last_checkpoint,
                     validation=tuple(validator.results),
                     stopped_by=stop.requested or interrupted)


def _reusing(dataset_fn, first_input):
  """`dataset_fn`, but a one-replica strategy's first call at the start of
  the stream gets `first_input` (that same dataset) instead of a rebuild."""
  unused = [first_input]

  def reusing_fn(input_context, **kwargs):
    if (unused and not kwargs.get('records_consumed') and
        input_context.num_input_pipelines == 1 and
        input_context.num_replicas_in_sync == 1):
      return unused.pop()
    return dataset_fn(input_context, **kwargs)

  return reusing_fn


def _check_finite(runner):
  bad = runner.first_bad_step()
  if bad is not None:
    raise NonFiniteLossError(bad)
