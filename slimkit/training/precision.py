"""Training precision: float32, or Keras mixed precision with float32 variables.

  with precision.policy_scope('mixed_bfloat16'):
    net = network_fn()          # computes in bfloat16, owns float32 variables
  optimizer = precision.wrap_optimizer(optimizer, 'mixed_bfloat16')

* `float32`: everything in float32 (the default, TF-Slim's behaviour).
* `mixed_bfloat16`: activations and matmuls/convolutions in bfloat16, variables
  in float32. Fast on CPUs with AVX512-BF16 or AMX and on TPUs; bfloat16 has
  float32's range, so no loss scaling is needed.
* `mixed_float16`: activations in float16 for GPUs with tensor cores; the
  loss is scaled dynamically (`keras.optimizers.LossScaleOptimizer`) so small
  gradients do not underflow.

Under both mixed policies the variables, the batch-norm statistics (Keras'
batch norm computes in float32), the logits fed to the loss and the loss stay
float32, so checkpoints are float32 and interchangeable between precisions.
"""

import contextlib

import keras

PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')


def check_precision(precision):
  """Returns `precision` if valid.

  Raises:
    ValueError: for an unknown precision, listing the valid ones.
  """
  if precision not in PRECISIONS:
    raise ValueError(f'Unknown precision {precision!r}; valid: '
                     f'{", ".join(PRECISIONS)}.')
  return precision


@contextlib.contextmanager
def policy_scope(precision):
  """Makes Keras layers created inside compute in `precision`'s dtype.

  A layer takes the global policy when it is constructed, so the policy is set
  only while the net is built and restored afterwards: nothing else in the
  process changes.

  Args:
    precision: One of `PRECISIONS`.

  Yields:
    The `keras.DTypePolicy` in force.
  """
  check_precision(precision)
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(precision)
  try:
    yield keras.mixed_precision.global_policy()
  finally:
    keras.mixed_precision.set_global_policy(previous)


def uses_loss_scaling(precision):
  """Whether `precision` needs dynamic loss scaling (float16)."""
  return check_precision(precision) == 'mixed_float16'


def wrap_optimizer(optimizer, precision):
  """Wraps `optimizer` in a `LossScaleOptimizer` where `precision` needs one.

  The wrapper's `scale_loss(loss)` multiplies the loss before the gradient;
  its `apply_gradients` unscales, and skips a step whose gradients overflowed
  (halving the scale) instead of applying it.
  """
  if uses_loss_scaling(precision):
    return keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def unwrap_optimizer(optimizer):
  """The optimizer that owns the slots (inside a `LossScaleOptimizer`)."""
  return getattr(optimizer, 'inner_optimizer', optimizer)
