"""What the optimizers and schedules read, without TensorFlow.

The flags (`slimkit.flags`) list the valid `--optimizer` and
`--learning_rate_decay_type` values, say in their help which optimizer reads
which flag, and check a command line before TensorFlow is imported; this
module gives them that from plain data. `optimization.py` pairs every entry
here with its Keras builder and refuses to load if the two tables differ.

  spec = optimizer_specs.OPTIMIZERS.get('adamw')
  spec.default_epsilon                                   # 1e-07, Keras's
  optimizer_specs.resolve('adamw', OptimizerHParams()).opt_epsilon   # 1e-07
  optimizer_specs.resolve('adam', OptimizerHParams()).opt_epsilon    # 1.0

Epsilon: TF-Slim's optimizers that read it (adadelta, adam, rmsprop) keep
TF-Slim's `--opt_epsilon=1.0`, chosen for its RMSProp. The newer ones (adamw,
lamb, nadam; not in TF-Slim) take Keras's default for that optimizer unless
`opt_epsilon` is given: with 1.0 an Adam-family update is about `lr * m` for
small gradients and training crawls. Lion has no epsilon.
"""

import dataclasses

from slimkit.registry import Registry

# TF-Slim's --weight_decay default, an L2 coefficient.
TF_SLIM_WEIGHT_DECAY = 0.00004

# TF-Slim's --opt_epsilon default, meant for its RMSProp.
TF_SLIM_EPSILON = 1.0

# The `epsilon` default of Keras 3's AdamW, Lamb and Nadam (tests compare it
# with the classes' signatures).
KERAS_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """What one optimizer reads from TF-Slim's flag values.

  Attributes:
    name: `--optimizer` value.
    flags: The flags this optimizer reads (for help and the docs).
    decoupled_weight_decay: Whether `weight_decay` is the optimizer's
      decoupled decay (and the nets' L2 regulariser is off); see
      `optimization`'s module docstring.
    adam_family: Whether the update divides by `sqrt(v) + opt_epsilon`.
    default_epsilon: Its epsilon when `opt_epsilon` is not given (None: it
      reads no epsilon).
  """
  name: str
  flags: tuple = ()
  decoupled_weight_decay: bool = False
  adam_family: bool = False
  default_epsilon: float = None


_ADAM = ('adam_beta1', 'adam_beta2', 'opt_epsilon')

OPTIMIZERS = Registry('optimizer (--optimizer)')
for _spec in (
    OptimizerSpec('adadelta', ('adadelta_rho', 'opt_epsilon'),
                  default_epsilon=TF_SLIM_EPSILON),
    OptimizerSpec('adagrad', ('adagrad_initial_accumulator_value',)),
    OptimizerSpec('adam', _ADAM, adam_family=True,
                  default_epsilon=TF_SLIM_EPSILON),
    OptimizerSpec('adamw', _ADAM + ('weight_decay',),
                  decoupled_weight_decay=True, adam_family=True,
                  default_epsilon=KERAS_EPSILON),
    OptimizerSpec('ftrl', ('ftrl_learning_rate_power',
                           'ftrl_initial_accumulator_value', 'ftrl_l1',
                           'ftrl_l2')),
    OptimizerSpec('lamb', _ADAM + ('weight_decay',),
                  decoupled_weight_decay=True, adam_family=True,
                  default_epsilon=KERAS_EPSILON),
    OptimizerSpec('lion', ('lion_beta1', 'lion_beta2', 'weight_decay'),
                  decoupled_weight_decay=True),
    OptimizerSpec('momentum', ('momentum',)),
    OptimizerSpec('nadam', _ADAM, adam_family=True,
                  default_epsilon=KERAS_EPSILON),
    OptimizerSpec('rmsprop', ('rmsprop_decay', 'rmsprop_momentum',
                              'opt_epsilon'),
                  default_epsilon=TF_SLIM_EPSILON),
    OptimizerSpec('sgd'),
):
  OPTIMIZERS.register(_spec.name, _spec)


@dataclasses.dataclass(frozen=True)
class OptimizerHParams:
  """The optimizer flags (TF-Slim's, then ours), with their defaults.

  `opt_epsilon` None means the optimizer's own default (`resolve()`).
  """
  opt_epsilon: float = None
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
  weight_decay: float = TF_SLIM_WEIGHT_DECAY
  lion_beta1: float = 0.9
  lion_beta2: float = 0.99


def list_optimizers():
  """Returns the `--optimizer` names, sorted."""
  return OPTIMIZERS.names()


def optimizers_where(predicate):
  """Returns the sorted names of the optimizers whose spec fulfils it."""
  return [n for n in OPTIMIZERS.names() if predicate(OPTIMIZERS.get(n))]


def epsilon(name, opt_epsilon=None):
  """The epsilon optimizer `name` runs with.

  Args:
    name: One of `list_optimizers()`.
    opt_epsilon: `--opt_epsilon`; None when not given.

  Returns:
    `opt_epsilon` when given, else the optimizer's default (1.0 for TF-Slim's
    adadelta, adam and rmsprop; Keras's for adamw, lamb and nadam); None for
    an optimizer without epsilon.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  spec = OPTIMIZERS.get(name)
  if 'opt_epsilon' not in spec.flags:
    return None
  return spec.default_epsilon if opt_epsilon is None else opt_epsilon


def resolve(name, hparams=None):
  """`hparams` with `opt_epsilon` resolved for optimizer `name`.

  Args:
    name: One of `list_optimizers()`.
    hparams: An `OptimizerHParams`; the defaults when None.

  Returns:
    An `OptimizerHParams` whose `opt_epsilon` is `epsilon(name, ...)`.
  """
  hparams = hparams or OptimizerHParams()
  return dataclasses.replace(
      hparams, opt_epsilon=epsilon(name, hparams.opt_epsilon))


def epsilon_defaults_text():
  """The epsilon defaults per optimizer, for help and error text."""
  groups = {}
  for name in optimizers_where(lambda s: 'opt_epsilon' in s.flags):
    groups.setdefault(OPTIMIZERS.get(name).default_epsilon, []).append(name)
  return '; '.join(f'{", ".join(names)}: {value:g}'
                   for value, names in sorted(groups.items(), reverse=True))


def net_weight_decay(name, weight_decay):
  """The L2 coefficient to build the nets with under optimizer `name`.

  Args:
    name: One of `list_optimizers()`.
    weight_decay: The `--weight_decay` value.

  Returns:
    `weight_decay` for the L2-regularised optimizers, 0.0 for those that
    decay the weights themselves (adamw, lamb, lion).

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if OPTIMIZERS.get(name).decoupled_weight_decay:
    return 0.0
  return weight_decay


def optimizer_warnings(name, hparams=None):
  """Returns a line per setting of `hparams` that is likely a mistake.

  Args:
    name: One of `list_optimizers()`.
    hparams: An `OptimizerHParams`; the defaults when None (`opt_epsilon`
      None is the optimizer's own default).

  Returns:
    A list of strings, empty when nothing looks wrong.
  """
  spec = OPTIMIZERS.get(name)
  h = resolve(name, hparams)
  warnings = []
  if spec.adam_family and h.opt_epsilon >= 1.0:
    default = ('TF-Slim\'s default, meant for rmsprop'
               if spec.default_epsilon == TF_SLIM_EPSILON else
               f'{name}\'s default is {spec.default_epsilon:g}')
    warnings.append(
        f'--optimizer={name} with --opt_epsilon={h.opt_epsilon:g} '
        f'({default}): the update lr * m / (sqrt(v) + {h.opt_epsilon:g}) is '
        'about lr * m for gradients much smaller than 1, so Adam crawls like '
        'plain SGD at the same learning rate. Adam\'s usual value is '
        '--opt_epsilon=1e-8.')
  if spec.decoupled_weight_decay and 0.0 < h.weight_decay < 1e-3:
    warnings.append(
        f'--optimizer={name} with --weight_decay={h.weight_decay:g}: that is '
        f'{name}\'s decoupled decay (var -= lr * weight_decay * var each '
        'step; the nets\' L2 regulariser is off), where a value this small '
        'hardly regularises (TF-Slim\'s 4e-05 is an L2 coefficient). Typical '
        'decoupled values: 0.05 for adamw (DeiT in timm), 0.01-0.05 for '
        'lamb, 3-10x adamw\'s for lion (with a 3-10x smaller learning '
        'rate).')
  return warnings


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """What one learning-rate schedule reads (`--learning_rate_decay_type`).

  Attributes:
    name: `--learning_rate_decay_type` value.
    flags: The flags it reads besides `--learning_rate` (for the docs).
    needs_total_steps: Whether it needs the run's length, `total_steps`
      (`--max_number_of_steps`).
  """
  name: str
  flags: tuple = ()
  needs_total_steps: bool = False


SCHEDULES = Registry('learning-rate schedule (--learning_rate_decay_type)')
for _spec in (
    ScheduleSpec('fixed'),
    ScheduleSpec('exponential', ('num_epochs_per_decay',
                                 'learning_rate_decay_factor')),
    ScheduleSpec('polynomial', ('num_epochs_per_decay', 'end_learning_rate')),
    ScheduleSpec('cosine', ('end_learning_rate', 'max_number_of_steps'),
                 needs_total_steps=True),
):
  SCHEDULES.register(_spec.name, _spec)


def list_schedules():
  """Returns the `--learning_rate_decay_type` names, sorted."""
  return SCHEDULES.names()
