"""Optimizers and learning-rate schedules by name, with TF-Slim's semantics.

Two registries, filled from plain values so that library code never reads
flags:

  schedule = optimization.build_learning_rate(
      'exponential', learning_rate=0.01, decay_steps=optimization.decay_steps(
          num_samples=50000, num_epochs_per_decay=2.0, batch_size=32,
          num_clones=1),
      decay_factor=0.94)
  optimizer = optimization.build_optimizer(
      'rmsprop', schedule, optimization.OptimizerHParams(rmsprop_decay=0.9))

TF-Slim ran on TF 1's optimizers. Two of them differ from Keras' optimizers of
the same name in ways that change training, so they are reimplemented here:

* RMSProp (TF-Slim's default, with `opt_epsilon=1.0`): TF 1 starts the mean
  square at ones and divides by `sqrt(ms + epsilon)`; Keras starts at zeros and
  divides by `sqrt(ms) + epsilon`. With epsilon 1.0 the step sizes differ by
  large factors.
* Momentum: TF 1 accumulates gradients (`accum = m * accum + g`, then
  `var -= lr * accum`), so a change of learning rate acts on the whole
  accumulator at once; Keras accumulates `lr * g`.

The others (adadelta, adagrad, adam, ftrl, sgd) are Keras' with TF-Slim's
arguments; Keras 3's Adam and Adadelta apply epsilon as TF 1 did. The newer
ones (adamw, lamb, lion, nadam; not in TF-Slim) are Keras' own, with TF-Slim's
flag names where the meaning is the same: `adam_beta1`, `adam_beta2` and
`opt_epsilon` (the term added to Adam's `sqrt(v)`: "epsilon hat" for adam and
adamw, added after the bias correction for nadam and lamb) for the Adam
family; Lion has its own `lion_beta1`, `lion_beta2` and no epsilon.

Epsilon defaults (`optimizer_specs.epsilon`; `OptimizerHParams.opt_epsilon`
None): TF-Slim's optimizers (adadelta, adam, rmsprop) keep TF-Slim's
`opt_epsilon=1.0`; adamw, lamb and nadam take Keras's own default (1e-7).
With 1.0 an Adam-family update is about `lr * m` for gradients much smaller
than 1, so Adam crawls like plain SGD: `optimizer_warnings()` says so when
it is given (or is adam's TF-Slim default) and suggests 1e-8.

Weight decay (`weight_decay`; the one place this convention is written down):

* adamw, lamb, lion (`OptimizerEntry.decoupled_weight_decay`): `weight_decay`
  is the optimizer's decoupled decay, applied by Keras before each update as
  `var -= learning_rate(step) * weight_decay * var` to every trained variable
  except biases and batch-norm offsets and scales (TF-Slim's `.../biases`,
  `.../BatchNorm/beta`, `.../BatchNorm/gamma`; excluded by Keras'
  `exclude_from_weight_decay` on the variable's own name, `biases`, `beta`,
  `gamma`). The nets' L2 regulariser is then off (`net_weight_decay()` is 0),
  so the loss has no regularization term. Depthwise weights are decayed too
  (as in timm), although TF-Slim's MobileNets leave them out of their L2.
  Because Keras multiplies by the learning rate, the same number means much
  less than as an L2 coefficient: TF-Slim's 4e-5 shrinks the weights by a
  factor `1 - lr * 4e-5` per step, next to nothing. Typical decoupled values
  are 0.05 for AdamW (DeiT's recipe, trained with timm; Keras' default is
  0.004),
  0.01-0.05 for LAMB, and for Lion 3-10x AdamW's with a 3-10x smaller
  learning rate (the Lion paper). `optimizer_warnings()` warns below 1e-3.
* every other optimizer: TF-Slim's L2 regulariser in the nets,
  `weight_decay * sum(w ** 2) / 2` per weight tensor, added to the loss;
  the optimizer itself does not decay.
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf
from keras import ops

from slimkit.registry import Registry
from slimkit.training import optimizer_specs
# The TensorFlow-free part, re-exported: flags and the study read it there.
from slimkit.training.optimizer_specs import (  # noqa: F401
    OptimizerHParams, TF_SLIM_WEIGHT_DECAY, list_optimizers, list_schedules,
    net_weight_decay, optimizer_warnings, optimizers_where)


class TF1RMSProp(keras.optimizers.Optimizer):
  """TF 1's `RMSPropOptimizer` (uncentered), as TF-Slim trained with it.

  Per variable, with gradient g:
    ms  = decay * ms + (1 - decay) * g**2          (ms starts at ones)
    mom = momentum * mom + lr * g / sqrt(ms + epsilon)
    var = var - mom
  """

  def __init__(self, learning_rate=0.01, decay=0.9, momentum=0.0, epsilon=1e-10,
               name='RMSProp', **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.decay = decay
    self.momentum = momentum
    self.epsilon = epsilon

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    # TF 1 initialises the mean square to ones, not zeros: the first steps are
    # then small instead of ~lr / sqrt(1 - decay) * sign(g).
    self._ms = [self.add_variable_from_reference(v, 'rms', initializer='ones')
                for v in var_list]
    self._mom = [self.add_variable_from_reference(v, 'momentum')
                 for v in var_list]

  def update_step(self, gradient, variable, learning_rate):
    lr = ops.cast(learning_rate, variable.dtype)
    g = ops.cast(gradient, variable.dtype)
    index = self._get_variable_index(variable)
    ms, mom = self._ms[index], self._mom[index]
    self.assign(ms, self.decay * ms + (1.0 - self.decay) * ops.square(g))
    self.assign(mom, self.momentum * mom + lr * g / ops.sqrt(ms + self.epsilon))
    self.assign_sub(variable, mom)

  def get_config(self):
    config = super().get_config()
    config.update(decay=self.decay, momentum=self.momentum,
                  epsilon=self.epsilon)
    return config


def _is_resource(variable):
  """Whether `variable` is a TF resource variable (the fused kernels' input)."""
  return isinstance(variable, tf.Variable) and hasattr(variable, 'handle')


class TF1Momentum(keras.optimizers.Optimizer):
  """TF 1's `MomentumOptimizer` (no Nesterov): accumulates raw gradients.

  Per variable: accum = momentum * accum + g;  var = var - lr * accum.
  """

  def __init__(self, learning_rate=0.01, momentum=0.9, name='Momentum',
               **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.momentum = momentum

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self._accum = [self.add_variable_from_reference(v, 'momentum')
                   for v in var_list]

  def update_step(self, gradient, variable, learning_rate):
    lr = ops.cast(learning_rate, variable.dtype)
    accum = self._accum[self._get_variable_index(variable)]
    gradient = ops.cast(gradient, variable.dtype)
    if _is_resource(variable) and _is_resource(accum.value) and isinstance(
        gradient, tf.Tensor):
      # TF 1's own kernel, the one MomentumOptimizer ran: the same two lines
      # in one pass over var, accum and grad instead of five ops that each
      # read or write the whole tensor (ResNet-50: 25M parameters, about 70
      # of 1100 ms of op time per step on 2 CPU cores).
      tf.raw_ops.ResourceApplyMomentum(
          var=variable.handle, accum=accum.value.handle, lr=lr,
          grad=gradient, momentum=tf.cast(self.momentum, variable.dtype),
          use_locking=False, use_nesterov=False)
      return
    self.assign(accum, self.momentum * accum + gradient)
    self.assign_sub(variable, lr * accum)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum)
    return config


class TF1GradientDescent(keras.optimizers.Optimizer):
  """TF 1's `GradientDescentOptimizer`: var = var - lr * g.

  Keras' `SGD` without momentum computes the same, in two ops.
  """

  def __init__(self, learning_rate=0.01, name='sgd', **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)

  def update_step(self, gradient, variable, learning_rate):
    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    if _is_resource(variable) and isinstance(gradient, tf.Tensor):
      # TF 1's own kernel, the one GradientDescentOptimizer ran: one pass
      # over var and grad instead of a Mul that writes lr * g and an
      # AssignSub that reads it back (lenet: 1.3 of 38 ms of op time per
      # step on 2 CPU cores).
      tf.raw_ops.ResourceApplyGradientDescent(
          var=variable.handle, alpha=lr, delta=gradient, use_locking=False)
      return
    self.assign_sub(variable, lr * gradient)


@dataclasses.dataclass(frozen=True)
class OptimizerEntry(optimizer_specs.OptimizerSpec):
  """An `optimizer_specs.OptimizerSpec` with its builder.

  Attributes:
    build: `build(learning_rate, hparams)` -> a Keras optimizer; `hparams` is
      the `OptimizerHParams` of the run, its `opt_epsilon` resolved.
  """
  build: Callable = None


OPTIMIZERS = Registry('optimizer (--optimizer)')

# The variables decoupled weight decay leaves alone, by their own name (the
# last part of the TF-Slim name: .../biases, .../BatchNorm/beta and gamma).
# Keras matches the pattern against `variable.name`, which is 'biases' for a
# Keras variable and 'LeNet/biases:0' for the tf.Variable the TensorFlow
# backend decays ('LeNet/biases/replica_1:0' for a mirrored copy; Keras
# caches the answer per variable, but the pattern matches every copy).
NO_DECAY_NAMES = ('biases', 'beta', 'gamma')
_NO_DECAY_PATTERN = (r'(^|/)(' + '|'.join(NO_DECAY_NAMES) +
                     r')(/replica_\d+)?(:\d+)?$')


def _register_optimizer(name, build):
  # What it reads comes from the TensorFlow-free table.
  spec = optimizer_specs.OPTIMIZERS.get(name)
  OPTIMIZERS.register(name, OptimizerEntry(
      **{f.name: getattr(spec, f.name)
         for f in dataclasses.fields(optimizer_specs.OptimizerSpec)},
      build=build))


def _decoupled(optimizer):
  optimizer.exclude_from_weight_decay(var_names=[_NO_DECAY_PATTERN])
  return optimizer


_register_optimizer(
    'adadelta', lambda lr, h: keras.optimizers.Adadelta(
        learning_rate=lr, rho=h.adadelta_rho, epsilon=h.opt_epsilon))
_register_optimizer(
    'adagrad', lambda lr, h: keras.optimizers.Adagrad(
        learning_rate=lr,
        initial_accumulator_value=h.adagrad_initial_accumulator_value))
_register_optimizer(
    'adam', lambda lr, h: keras.optimizers.Adam(
        learning_rate=lr, beta_1=h.adam_beta1, beta_2=h.adam_beta2,
        epsilon=h.opt_epsilon))
_register_optimizer(
    'adamw', lambda lr, h: _decoupled(keras.optimizers.AdamW(
        learning_rate=lr, weight_decay=h.weight_decay, beta_1=h.adam_beta1,
        beta_2=h.adam_beta2, epsilon=h.opt_epsilon)))
_register_optimizer(
    'ftrl', lambda lr, h: keras.optimizers.Ftrl(
        learning_rate=lr, learning_rate_power=h.ftrl_learning_rate_power,
        initial_accumulator_value=h.ftrl_initial_accumulator_value,
        l1_regularization_strength=h.ftrl_l1,
        l2_regularization_strength=h.ftrl_l2))
# Keras' LAMB: Adam's direction scaled per variable by the trust ratio
# ||var|| / ||update||; the decoupled decay is applied before, outside it.
_register_optimizer(
    'lamb', lambda lr, h: _decoupled(keras.optimizers.Lamb(
        learning_rate=lr, weight_decay=h.weight_decay, beta_1=h.adam_beta1,
        beta_2=h.adam_beta2, epsilon=h.opt_epsilon)))
_register_optimizer(
    'lion', lambda lr, h: _decoupled(keras.optimizers.Lion(
        learning_rate=lr, weight_decay=h.weight_decay, beta_1=h.lion_beta1,
        beta_2=h.lion_beta2)))
_register_optimizer(
    'momentum', lambda lr, h: TF1Momentum(learning_rate=lr,
                                          momentum=h.momentum))
_register_optimizer(
    'nadam', lambda lr, h: keras.optimizers.Nadam(
        learning_rate=lr, beta_1=h.adam_beta1, beta_2=h.adam_beta2,
        epsilon=h.opt_epsilon))
_register_optimizer(
    'rmsprop', lambda lr, h: TF1RMSProp(
        learning_rate=lr, decay=h.rmsprop_decay, momentum=h.rmsprop_momentum,
        epsilon=h.opt_epsilon))
_register_optimizer(
    'sgd', lambda lr, h: TF1GradientDescent(learning_rate=lr))
if OPTIMIZERS.names() != optimizer_specs.list_optimizers():
  raise ImportError('optimizer_specs.OPTIMIZERS and the builders here differ: '
                    f'{optimizer_specs.list_optimizers()} vs '
                    f'{OPTIMIZERS.names()}')


def build_optimizer(name, learning_rate, hparams=None):
  """Builds the optimizer `name`.

  Build it inside the strategy's scope: its variables are then mirrored.

  Args:
    name: One of `list_optimizers()`.
    learning_rate: A float or a `keras.optimizers.schedules` schedule (called
      with the optimizer's step counter, which is the global step).
    hparams: An `OptimizerHParams`; the defaults when None. Its
      `opt_epsilon` None means the optimizer's own default
      (`optimizer_specs.epsilon`).

  Returns:
    A Keras optimizer.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  return OPTIMIZERS.get(name).build(
      learning_rate, optimizer_specs.resolve(name, hparams))


@dataclasses.dataclass(frozen=True)
class ScheduleEntry(optimizer_specs.ScheduleSpec):
  """An `optimizer_specs.ScheduleSpec` with its builder.

  Attributes:
    build: `build(learning_rate, decay_steps=, decay_factor=,
      end_learning_rate=, total_steps=)` -> a float or a Keras schedule of the
      global step.
  """
  build: Callable = None


def _register_schedule(name, build):
  spec = optimizer_specs.SCHEDULES.get(name)
  SCHEDULES.register(name, ScheduleEntry(
      name, spec.flags, spec.needs_total_steps, build=build))


SCHEDULES = Registry('learning-rate schedule (--learning_rate_decay_type)')

_register_schedule('fixed', lambda lr, **_: lr)
# TF-Slim decays in stairs: the rate changes once every `decay_steps` steps.
_register_schedule(
    'exponential', lambda lr, decay_steps, decay_factor, **_:
    keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=decay_steps, decay_rate=decay_factor, staircase=True))
# Linear (power 1) from the initial to the end rate, then constant (no cycle).
_register_schedule(
    'polynomial', lambda lr, decay_steps, end_learning_rate, **_:
    keras.optimizers.schedules.PolynomialDecay(
        lr, decay_steps=decay_steps, end_learning_rate=end_learning_rate,
        power=1.0, cycle=False))
# Half a cosine over the whole run, from the initial rate at step 0 to the end
# rate at `total_steps`, then constant. Keras' `alpha` is the end rate as a
# fraction of the initial one. (Keras' own warmup_steps is not used: it would
# start the cosine after the warmup; see `LinearWarmup`.)
_register_schedule(
    'cosine', lambda lr, end_learning_rate, total_steps, **_:
    keras.optimizers.schedules.CosineDecay(
        lr, decay_steps=total_steps, alpha=end_learning_rate / lr))
if SCHEDULES.names() != optimizer_specs.list_schedules():
  raise ImportError('optimizer_specs.SCHEDULES and the builders here differ.')


@keras.saving.register_keras_serializable(package='slimkit')
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """A linear ramp from 0 to another schedule's value over its first steps.

    lr(t) = schedule(t) * min(1, t / warmup_steps)

  where t is the global step (the optimizer's step counter) and `schedule`
  runs on the same t as without warmup: it is not shifted, so a cosine still
  spans the whole run and reaches its end rate at the last step, and TF-Slim's
  exponential stairs fall at the same steps. This is timm's default
  (`CosineLRScheduler(warmup_prefix=False)`, the cosine over all epochs),
  except that timm ramps to the peak rate and then jumps to the schedule's
  value, where this ramp ends on it: the two differ during warmup by the
  factor `schedule(t) / schedule(0)` (0.992 at the end of 5 warmup epochs of a
  90-epoch cosine). Keras' `CosineDecay(warmup_steps=...)` instead starts the
  cosine after the warmup (as timm's `warmup_prefix=True`).

  The first step (t = 0) has rate 0: it updates only the optimizer's moments.
  """

  def __init__(self, schedule, warmup_steps):
    """Wraps `schedule`.

    Args:
      schedule: A float or a Keras `LearningRateSchedule`.
      warmup_steps: Steps of the ramp, >= 1.

    Raises:
      ValueError: when `warmup_steps` < 1.
    """
    if int(warmup_steps) < 1:
      raise ValueError(f'warmup_steps={warmup_steps}: must be >= 1.')
    self.schedule = schedule
    self.warmup_steps = int(warmup_steps)

  def __call__(self, step):
    value = self.schedule(step) if callable(self.schedule) else self.schedule
    ramp = ops.minimum(1.0, ops.cast(step, 'float32') / self.warmup_steps)
    return ops.cast(value, 'float32') * ramp

  def get_config(self):
    schedule = self.schedule
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
      schedule = keras.optimizers.schedules.serialize(schedule)
    return dict(schedule=schedule, warmup_steps=self.warmup_steps)

  @classmethod
  def from_config(cls, config):
    schedule = config['schedule']
    if isinstance(schedule, dict):
      schedule = keras.optimizers.schedules.deserialize(schedule)
    return cls(schedule, config['warmup_steps'])


def epochs_to_steps(num_samples, epochs, batch_size, num_clones=1,
                    replicas_to_aggregate=None):
  """TF-Slim's steps in `epochs` epochs, rounded down.

  One epoch of `num_samples` takes `num_samples / (batch_size * num_clones)`
  steps, since every clone reads its own `batch_size` images per step. With
  synchronous replicas each step aggregates `replicas_to_aggregate` workers.

  Args:
    num_samples: Size of the training split.
    epochs: A number of epochs (a float).
    batch_size: Images per clone per step.
    num_clones: Clones per worker.
    replicas_to_aggregate: With `--sync_replicas`, or several synchronous
      workers, the workers per step; else None.

  Returns:
    An int >= 0.
  """
  steps = int(num_samples * epochs / (batch_size * num_clones))
  if replicas_to_aggregate:
    steps = int(steps / replicas_to_aggregate)
  return steps


def decay_steps(num_samples, num_epochs_per_decay, batch_size, num_clones=1,
                replicas_to_aggregate=None):
  """TF-Slim's number of steps between decays: `epochs_to_steps()`, >= 1.

  Args:
    num_samples: Size of the training split.
    num_epochs_per_decay: Epochs between two decays.
    batch_size: Images per clone per step.
    num_clones: Clones per worker.
    replicas_to_aggregate: Workers per step (see `epochs_to_steps()`).

  Returns:
    An int >= 1.
  """
  return max(1, epochs_to_steps(num_samples, num_epochs_per_decay, batch_size,
                                num_clones, replicas_to_aggregate))


def warmup_steps(num_samples, warmup_epochs, batch_size, num_clones=1,
                 replicas_to_aggregate=None):
  """The steps of `warmup_epochs` (`--warmup_epochs`), as `decay_steps()`.

  Args:
    num_samples: Size of the training split.
    warmup_epochs: Epochs of the warmup; 0 for none.
    batch_size: Images per clone per step.
    num_clones: Clones per worker.
    replicas_to_aggregate: Workers per step (see `epochs_to_steps()`).

  Returns:
    0 when `warmup_epochs` is 0, else an int >= 1.
  """
  if not warmup_epochs:
    return 0
  return max(1, epochs_to_steps(num_samples, warmup_epochs, batch_size,
                                num_clones, replicas_to_aggregate))


def build_learning_rate(decay_type, learning_rate, *, decay_steps=1,
                        decay_factor=0.94, end_learning_rate=0.0001,
                        total_steps=None, warmup_steps=0):
  """Builds the learning rate of `decay_type`, with an optional warmup.

  Closed forms, with t the global step, lr0 `learning_rate`, D `decay_steps`,
  T `total_steps`, W `warmup_steps`, end `end_learning_rate`:

    fixed:        s(t) = lr0
    exponential:  s(t) = lr0 * decay_factor ** floor(t / D)
    polynomial:   s(t) = end + (lr0 - end) * (1 - min(t, D) / D)
    cosine:       s(t) = end + (lr0 - end) * (1 + cos(pi * min(t, T) / T)) / 2
    with warmup:  lr(t) = s(t) * min(1, t / W)        (see `LinearWarmup`)

  Args:
    decay_type: One of `list_schedules()`.
    learning_rate: The initial (peak) rate, > 0.
    decay_steps: Steps between decays (see `decay_steps()`).
    decay_factor: Exponential decay factor per `decay_steps`.
    end_learning_rate: The polynomial and cosine decays' final rate.
    total_steps: The run's last global step (`--max_number_of_steps`); the
      cosine needs it.
    warmup_steps: Steps of the linear warmup (see `warmup_steps()`); 0: none.

  Returns:
    A float (fixed without warmup) or a Keras learning-rate schedule of the
    global step.

  Raises:
    ValueError: for an unknown type, listing the valid ones, or a schedule
      that needs `total_steps` without it.
  """
  entry = SCHEDULES.get(decay_type)
  if entry.needs_total_steps and not total_steps:
    raise ValueError(
        f'The {decay_type} learning rate decays to end_learning_rate at the '
        'last step of the run: it needs total_steps (--max_number_of_steps); '
        f'received {total_steps!r}.')
  schedule = entry.build(
      float(learning_rate), decay_steps=int(decay_steps),
      decay_factor=float(decay_factor),
      end_learning_rate=float(end_learning_rate),
      total_steps=int(total_steps) if total_steps else None)
  if warmup_steps:
    schedule = LinearWarmup(schedule, warmup_steps)
  return schedule


def current_learning_rate(learning_rate, step):
  """Evaluates a float or a schedule at `step` (for logs and summaries).

  Args:
    learning_rate: A float, or a schedule called with the step.
    step: The global step (an int or a scalar tensor).

  Returns:
    The rate at `step` (a float, or a tensor for a schedule).
  """
  if callable(learning_rate):
    return learning_rate(step)
  return learning_rate
