"""The training step of one clone, and how each strategy runs it.

`replica_step_fn` is the step every strategy shares: forward, loss,
gradients, an update that no NaN or inf reaches. Two runners run it:

* `Synchronous`: one device, clones (`MirroredStrategy`) or several workers
  in sync (`MultiWorkerMirroredStrategy`), up to `steps_per_loop` steps per
  call of one compiled loop (a group ends where a log line or a validation
  is due); a summary writes TensorBoard summaries at the group's first
  step, a compiled step of its own.
* `Coordinated`: `ParameterServerStrategy`; this process schedules
  asynchronous steps on the workers, in groups that end at a log line.

Both answer `run(count, summarize) -> (total loss, cross-entropy)`,
`steps_to_run`, `first_bad_step`, `describe` and `finish`, so that the loop
in `trainer.py` is the same for every strategy.
"""

from absl import logging
import tensorflow as tf

from slimkit import seeds
from slimkit.deployment import collectives
from slimkit.training import losses
from slimkit.training import precision as precision_lib
from slimkit.training import summaries


def replica_step_fn(state, options, skip_bad_steps):
  """Returns the step of one clone: loss, gradients, a guarded update."""
  net, optimizer, train_vars = state.net, state.optimizer, state.train_vars
  # Batch-norm statistics change in the forward pass, before the loss is
  # known: a bad step puts their old values back.
  statistics = [v for v in state.model_variables if not v.trainable]

  def replica_step(images, labels):
    ctx = tf.distribute.get_replica_context()
    saved = [tf.identity(v.value) for v in statistics]
    # Dropout masks keyed on the step and the clone: the same in every run
    # with this seed, whichever traced step (with or without summaries) ran.
    step_seed = (seeds.fold(options.random_seed, state.global_step,
                            ctx.replica_id_in_sync_group)
                 if options.random_seed is not None else None)
    with tf.GradientTape() as tape:
      logits, end_points = net(images, training=True, seed=step_seed)
      clone_loss = losses.classification_loss(logits, labels, end_points,
                                              options.label_smoothing)
      regularization = losses.regularization_loss(net)
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
    ok = losses.all_finite(checked)
    if ctx.num_replicas_in_sync > 1:
      ok = tf.equal(ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(
          tf.logical_not(ok), tf.int32)), 0)
    # No NaN or inf reaches the weights; the loop stops at its next check.
    if skip_bad_steps:
      # A bad step skips the update (the step still counts). Cheaper than
      # zeroing, which writes every gradient once more: 16 ms of a 410 ms
      # ResNet-50 step on 2 CPU cores.
      tf.cond(ok, lambda: _apply(optimizer, grads, train_vars),
              lambda: _count_only(optimizer))
    else:
      # An update across clones (or onto parameter servers) cannot sit in a
      # branch: a bad step applies zeros instead.
      grads = [tf.where(ok, g, tf.zeros_like(g)) for g in grads]
      optimizer.apply_gradients(zip(grads, train_vars))
    for v, old in zip(statistics, saved):
      v.assign(tf.where(ok, v.value, old))
    return dict(ok=ok, clone_loss=clone_loss, regularization=regularization,
                scaled=scaled, images=images, end_points=end_points)

  # XLA compiles what each clone computes; reading the input stays outside.
  return (tf.function(replica_step, jit_compile=True) if options.xla
          else replica_step)


def _apply(optimizer, grads, variables):
  optimizer.apply_gradients(zip(grads, variables))
  return tf.constant(True)


def _count_only(optimizer):
  optimizer.iterations.assign_add(1)
  return tf.constant(False)


class Synchronous:
  """Runs groups of steps on one worker or several in sync.

  One `tf.function` runs `count` steps in a loop (a tensor: one trace for
  every group length), so that the host waits once per group instead of
  once per step; a summary step is a function of its own. Each step is the same
  computation as alone (the same ops on the same values), so a run's
  weights do not depend on how its steps were grouped.
  """

  def __init__(self, strategy, state, options, dataset_fn, writer):
    self.strategy, self.state, self.options = strategy, state, options
    self.writer = writer
    self.global_batch = options.batch_size * strategy.num_replicas_in_sync
    # Host-side record of the first bad step (-1: none), written in the
    # cross-replica part of the step.
    self.bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
    if collectives.num_workers(strategy) > 1:
      # Every worker starts from the chief's state: only the chief is sure to
      # see the checkpoint (train_dir may be on its local disk).
      collectives.broadcast_from_chief(strategy, state.model_variables + list(
          state.optimizer.variables) + (list(state.ema.averages.values())
                                        if state.ema else []))
    self.clone_step = replica_step_fn(
        state, options, skip_bad_steps=strategy.num_replicas_in_sync == 1)
    self.summary_step, self.steps = self._make_steps()
    # tf.data's position is not in the checkpoint (TF cannot save a
    # distributed iterator): a resumed run's input replays the stream up to
    # where the run stopped (see input_pipeline.make_dataset).
    self.iterator = iter(strategy.distribute_datasets_from_function(seeded(
        dataset_fn, options.random_seed, options.batch_size,
        int(state.global_step.numpy()))))

  def describe(self):
    return (f'{self.strategy.num_replicas_in_sync} clone(s), '
            f'{self.global_batch} images per step')

  def steps_to_run(self, step, max_steps):
    """Steps of the next group: up to the next log line or validation.

    A fresh run's first step runs alone (its loss, from the initial weights,
    is noted), and so does every step when summaries or a checkpoint are due
    after each (`save_summaries_secs` or `save_interval_secs` 0). Several
    workers run groups of the same lengths, and every multiple of
    `log_every_n_steps` (where they agree on saving and stopping) ends a
    group.
    """
    if step == 0 or min(self.options.save_interval_secs,
                        self.options.save_summaries_secs) <= 0:
      return 1
    return group_length(step, max_steps, self.options.steps_per_loop,
                        (self.options.log_every_n_steps,
                         self.options.eval_every_n_steps))

  def _step(self, iterator, summarize):
    """One step, traced; returns (total loss, cross-entropy)."""
    strategy, state = self.strategy, self.state
    first = lambda x: strategy.experimental_local_results(x)[0]
    outputs = strategy.run(self.clone_step, args=next(iterator))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, outputs['scaled'],
                            axis=None)
    ok = first(outputs['ok'])
    step_done = tf.convert_to_tensor(state.global_step)
    self.bad_step.assign(tf.where(
        tf.logical_and(tf.logical_not(ok), self.bad_step < 0),
        tf.cast(step_done, tf.int64), self.bad_step))
    if state.ema is not None:
      state.ema.update(step_done)
    if summarize:
      summaries.write_step(
          self.writer, step_done, total_loss=total,
          clone_losses=strategy.experimental_local_results(
              outputs['clone_loss']),
          regularization=first(outputs['regularization']),
          learning_rate=state.optimizer.learning_rate,
          end_points=first(outputs['end_points']),
          variables=state.train_vars, images=first(outputs['images']),
          num_images=self.options.num_summary_images)
    # The clones' mean cross-entropy, for LossWatch.
    return (tf.cast(total, tf.float32), tf.cast(strategy.reduce(
        tf.distribute.ReduceOp.MEAN, outputs['clone_loss'], axis=None),
                                                 tf.float32))

  def _make_steps(self):
    """(one step with summaries, a loop of `count` steps without)."""
    # Two functions, not a summary branch in the loop: a branch's inputs
    # (end points only summaries read, such as the softmax) would be
    # computed at every step. No AutoGraph: the steps have no Python
    # control flow on tensors, and converting their code took a second or
    # two of every start.
    summary_step = tf.function(lambda iterator: self._step(iterator, True),
                               autograph=False)

    @tf.function(autograph=False)
    def steps(iterator, count):
      def body(i, total, cross_entropy):
        del total, cross_entropy  # the last step's are returned
        return (i + 1, *self._step(iterator, False))
      zero = tf.constant(0.0, tf.float32)
      # One iteration at a time: each step reads the weights the previous
      # one wrote. A bad step ends the group: the loop raises before any
      # later step moves the weights (as it did with one step per call).
      _, total, cross_entropy = tf.while_loop(
          lambda i, *_: tf.logical_and(i < count, self.bad_step < 0), body,
          (tf.constant(0), zero, zero), parallel_iterations=1)
      return total, cross_entropy

    return summary_step, steps

  def run(self, count, summarize):
    """Runs `count` steps; returns the last one's (total loss,
    cross-entropy) tensors. `summarize` writes summaries at the first."""
    if summarize:
      result = self.summary_step(self.iterator)
      count -= 1
    if count:
      result = self.steps(self.iterator, tf.constant(count, tf.int32))
    return result

  def first_bad_step(self):
    bad = int(self.bad_step.numpy())
    return bad if bad >= 0 else None

  def finish(self):
    pass


def group_length(step, max_steps, limit, every):
  """Steps from `step` up to at most `limit` (None: no limit), `max_steps`
  and the next multiple of each of `every` (None entries ignored)."""
  count = float('inf') if limit is None else max(1, limit)
  for n in every:
    if n:
      count = min(count, n - step % n)
  return count if max_steps is None else min(count, max_steps - step)


class Coordinated:
  """Schedules asynchronous steps on the workers of parameter servers.

  As TF-Slim without `--sync_replicas`: each worker reads its own input,
  computes the gradients of its batch and applies them to the variables on
  the servers without waiting for the others. Steps run in groups that end
  at each log line; this process counts them (concurrent increments of the
  step variable race), and writes the summaries that need no worker's
  tensors: the losses and the learning rate.
  """

  def __init__(self, strategy, state, options, dataset_fn, writer):
    self.strategy, self.state, self.options = strategy, state, options
    self.writer = writer
    self.global_batch = options.batch_size
    self.coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    self.bad = None
    self.step = int(state.global_step.numpy())
    clone_step = replica_step_fn(state, options, skip_bad_steps=False)

    @tf.function
    def worker_step(iterator):
      outputs = strategy.run(clone_step, args=next(iterator))
      if state.ema is not None:
        state.ema.update(state.global_step)
      return (outputs['scaled'], outputs['clone_loss'],
              outputs['regularization'], outputs['ok'])

    self.worker_step = worker_step
    # Unseeded: every worker would read the same seeded stream (the dataset
    # function is traced once, here, for all of them).
    self.iterator = iter(self.coordinator.create_per_worker_dataset(
        strategy.distribute_datasets_from_function(dataset_fn)))
    if options.random_seed is not None:
      logging.warning(
          'With parameter servers --random_seed seeds the initial weights '
          'and the dropout; the workers\' input order and the order in '
          'which the servers apply their asynchronous updates are not '
          'reproducible.')

  def describe(self):
    extended = self.strategy.extended  # Counts of the servers (no public API).
    return (f'{getattr(extended, "_num_workers", -1)} worker(s) and '
            f'{getattr(extended, "_num_ps", -1)} parameter server(s), '
            f'asynchronously, {self.options.batch_size} images per worker '
            'step')

  def steps_to_run(self, step, max_steps):
    return group_length(step, max_steps, None,
                        (self.options.log_every_n_steps,))

  def run(self, count, summarize):
    """Runs `count` steps on the workers; returns the last one's losses."""
    results = [self.coordinator.schedule(self.worker_step,
                                         args=(self.iterator,))
               for _ in range(count)]
    self.coordinator.join()
    first, self.step = self.step, self.step + count
    # Concurrent increments of the step variable race; this process knows
    # how many steps ran.
    self.state.global_step.assign(self.step)
    fetched = [[float(x) for x in r.fetch()] for r in results]
    bad = [i for i, values in enumerate(fetched) if not values[3]]
    if bad and self.bad is None:
      self.bad = first + bad[0] + 1  # numbered as the synchronous steps are
    total, clone_loss, regularization, _ = fetched[-1]
    if summarize:
      with self.writer.as_default(step=self.step):
        tf.summary.scalar('total_loss', total)
        tf.summary.scalar('losses/clone_0_loss', clone_loss)
        tf.summary.scalar('losses/regularization_loss', regularization)
        tf.summary.scalar('learning_rate', self.state.optimizer.learning_rate)
    return total, clone_loss

  def first_bad_step(self):
    return self.bad

  def finish(self):
    self.coordinator.join()


def seeded(dataset_fn, random_seed, batch_size, start_step=0):
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
