"""What the workers of one synchronous run agree on, by collectives.

Several workers (`MultiWorkerMirroredStrategy`) must take the same branches
in the same order: a collective is matched by the order in which the workers
create it, so a save or a summary step that one worker runs and another skips
hangs both. These helpers make decisions and state the same everywhere; on
one worker (or with one process coordinating parameter servers) they do
nothing but return what they are given.
"""

import tensorflow as tf


def num_workers(strategy):
  """How many workers train in sync under `strategy` (1 without a cluster)."""
  resolver = strategy.cluster_resolver
  spec = resolver.cluster_spec() if resolver is not None else None
  if not spec or not spec.jobs:
    return 1
  return sum(spec.num_tasks(job) for job in ('chief', 'worker')
             if job in spec.jobs)


def broadcast_from_chief(strategy, variables):
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


def agreement(strategy, every):
  """Returns `agree(step, want) -> bool`, the same on every worker.

  Checkpoints and summaries are due by wall-clock time, which differs between
  workers; but every worker must take the same branch. With several workers,
  the wishes are combined by an all-reduce every `every` steps (any worker's
  wish wins); on one worker, `agree` returns `want`.

  Args:
    strategy: The run's `tf.distribute.Strategy`.
    every: Steps between agreements (other steps: False).

  Returns:
    A function `(step, want) -> bool`.
  """
  if num_workers(strategy) == 1 or isinstance(
      strategy, tf.distribute.experimental.ParameterServerStrategy):
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
