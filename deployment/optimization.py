"""Optimizers and learning-rate schedules by name, with TF-Slim's semantics.

Two registries, filled from plain values so that library code never reads
flags:

  schedule = optimization.build_learning_rate(
      'exponential', learning_rate=0.01, decay_steps=optimization.decay_steps(
          num_samples=50000, num_epochs_per_decay=2.0, batch_size=32,
          num_clones=1),
      decay_factor=0.94)
  optimizer = optimization.build_optimizer('rmsprop', schedule,
                                           rmsprop_decay=0.9, ...)

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
arguments; Keras 3's Adam and Adadelta apply epsilon as TF 1 did.
"""

import dataclasses
from typing import Callable

import keras
from keras import ops

from slimkit.registry import Registry


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
    self.assign(accum, self.momentum * accum + ops.cast(gradient,
                                                        variable.dtype))
    self.assign_sub(variable, lr * accum)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum)
    return config


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
  """How to build one optimizer from TF-Slim's flag values.

  Attributes:
    name: `--optimizer` value.
    build: `build(learning_rate, hparams)` -> a Keras optimizer; `hparams` is
      the `OptimizerHParams` of the run.
    flags: The flags this optimizer reads (for help and the docs).
  """
  name: str
  build: Callable
  flags: tuple = ()


@dataclasses.dataclass(frozen=True)
class OptimizerHParams:
  """TF-Slim's optimizer flags, with their defaults."""
  opt_epsilon: float = 1.0
  adadelta_rho: float = 0.95
  adagrad_initial_accumulator_value: float = 0.1
  adam_beta1: float = 0.9
  adam_beta2: float = 0.999
  ftrl_learning_rate_power: float = -0.5
  ftrl_initial_accumulator_value: float = 0.1
  ftrl_l1: float = 0.0
  ftrl_l2: float = 0.0
  momentum: float = 0.9
  rmsprop_momentum: float = 0.9
  rmsprop_decay: float = 0.9


OPTIMIZERS = Registry('optimizer (--optimizer)')


def _register_optimizer(name, flags, build):
  OPTIMIZERS.register(name, OptimizerEntry(name, build, tuple(flags)))


_register_optimizer(
    'adadelta', ('adadelta_rho', 'opt_epsilon'),
    lambda lr, h: keras.optimizers.Adadelta(
        learning_rate=lr, rho=h.adadelta_rho, epsilon=h.opt_epsilon))
_register_optimizer(
    'adagrad', ('adagrad_initial_accumulator_value',),
    lambda lr, h: keras.optimizers.Adagrad(
        learning_rate=lr,
        initial_accumulator_value=h.adagrad_initial_accumulator_value))
_register_optimizer(
    'adam', ('adam_beta1', 'adam_beta2', 'opt_epsilon'),
    lambda lr, h: keras.optimizers.Adam(
        learning_rate=lr, beta_1=h.adam_beta1, beta_2=h.adam_beta2,
        epsilon=h.opt_epsilon))
_register_optimizer(
    'ftrl', ('ftrl_learning_rate_power', 'ftrl_initial_accumulator_value',
             'ftrl_l1', 'ftrl_l2'),
    lambda lr, h: keras.optimizers.Ftrl(
        learning_rate=lr, learning_rate_power=h.ftrl_learning_rate_power,
        initial_accumulator_value=h.ftrl_initial_accumulator_value,
        l1_regularization_strength=h.ftrl_l1,
        l2_regularization_strength=h.ftrl_l2))
_register_optimizer(
    'momentum', ('momentum',),
    lambda lr, h: TF1Momentum(learning_rate=lr, momentum=h.momentum))
_register_optimizer(
    'rmsprop', ('rmsprop_decay', 'rmsprop_momentum', 'opt_epsilon'),
    lambda lr, h: TF1RMSProp(learning_rate=lr, decay=h.rmsprop_decay,
                             momentum=h.rmsprop_momentum,
                             epsilon=h.opt_epsilon))
_register_optimizer(
    'sgd', (), lambda lr, h: keras.optimizers.SGD(learning_rate=lr))


def list_optimizers():
  """Returns the `--optimizer` names, sorted."""
  return OPTIMIZERS.names()


def build_optimizer(name, learning_rate, hparams=None):
  """Builds the optimizer `name`.

  Build it inside the strategy's scope: its variables are then mirrored.

  Args:
    name: One of `list_optimizers()`.
    learning_rate: A float or a `keras.optimizers.schedules` schedule (called
      with the optimizer's step counter, which is the global step).
    hparams: An `OptimizerHParams`; TF-Slim's defaults when None.

  Returns:
    A Keras optimizer.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  return OPTIMIZERS.get(name).build(learning_rate, hparams or OptimizerHParams())


@dataclasses.dataclass(frozen=True)
class ScheduleEntry:
  """How to build one learning-rate schedule (`--learning_rate_decay_type`)."""
  name: str
  build: Callable


SCHEDULES = Registry('learning-rate schedule (--learning_rate_decay_type)')

SCHEDULES.register('fixed', ScheduleEntry(
    'fixed', lambda lr, steps, factor, end: lr))
# TF-Slim decays in stairs: the rate changes once every `decay_steps` steps.
SCHEDULES.register('exponential', ScheduleEntry(
    'exponential', lambda lr, steps, factor, end:
    keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=steps, decay_rate=factor, staircase=True)))
# Linear (power 1) from the initial to the end rate, then constant (no cycle).
SCHEDULES.register('polynomial', ScheduleEntry(
    'polynomial', lambda lr, steps, factor, end:
    keras.optimizers.schedules.PolynomialDecay(
        lr, decay_steps=steps, end_learning_rate=end, power=1.0,
        cycle=False)))


def list_schedules():
  """Returns the `--learning_rate_decay_type` names, sorted."""
  return SCHEDULES.names()


def decay_steps(num_samples, num_epochs_per_decay, batch_size, num_clones=1,
                replicas_to_aggregate=None):
  """TF-Slim's number of steps between decays.

  One epoch of `num_samples` takes `num_samples / (batch_size * num_clones)`
  steps, since every clone reads its own `batch_size` images per step. With
  synchronous replicas each step aggregates `replicas_to_aggregate` workers.

  Args:
    num_samples: Size of the training split.
    num_epochs_per_decay: Epochs between two decays.
    batch_size: Images per clone per step.
    num_clones: Clones per worker.
    replicas_to_aggregate: With `--sync_replicas`, workers per step; else None.

  Returns:
    An int >= 1.
  """
  steps = int(num_samples * num_epochs_per_decay / (batch_size * num_clones))
  if replicas_to_aggregate:
    steps = int(steps / replicas_to_aggregate)
  return max(1, steps)


def build_learning_rate(decay_type, learning_rate, *, decay_steps=1,
                        decay_factor=0.94, end_learning_rate=0.0001):
  """Builds the learning rate of `decay_type`.

  Args:
    decay_type: One of `list_schedules()`.
    learning_rate: The initial rate.
    decay_steps: Steps between decays (see `decay_steps()`).
    decay_factor: Exponential decay factor per `decay_steps`.
    end_learning_rate: Polynomial decay's final rate.

  Returns:
    A float (fixed) or a Keras learning-rate schedule of the global step.

  Raises:
    ValueError: for an unknown type, listing the valid ones.
  """
  return SCHEDULES.get(decay_type).build(
      float(learning_rate), int(decay_steps), float(decay_factor),
      float(end_learning_rate))


def current_learning_rate(learning_rate, step):
  """Evaluates a float or a schedule at `step` (for logs and summaries)."""
  if callable(learning_rate):
    return learning_rate(step)
  return learning_rate
