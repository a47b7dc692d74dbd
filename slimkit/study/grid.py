"""The grid of a study: `--vary` axes over training flags and model options.

  axes = [grid.parse_vary('optimizer=momentum,adam'),
          grid.parse_vary('opt_epsilon=1.0,1e-8')]
  grid.check_axes(axes, flag_values=FLAGS, model_name='alexnet_v2')
  runs = grid.build_runs(axes, seeds=(0, 1))   # 2 x 2 x 2 = 8 runs
  runs[0].name        # 'optimizer=momentum,opt_epsilon=1.0,seed=0'
  runs[0].argv(...)   # the training flags of that run

An axis names a flag of `train_image_classifier.py` (`optimizer`,
`learning_rate`, `model_name`, ...) or a model option of the net
(`activation`, `lrn`, `kernel_size`; see `print_model.py`), which goes into
the run's `--model_options`; or `flagfile`, whose values are flag files,
each a whole recipe (`--vary=flagfile=recipes/a.flags,recipes/b.flags`: a
run gets its file's flags over the base ones, and is named after the file).
Values are separated by commas, or by semicolons when one holds a comma
(`--vary=randaugment=0,0;2,9`). Values are checked before anything runs.
"""

import collections
import dataclasses
import difflib
import itertools
import os
import re
from typing import Optional, Tuple

from slimkit.nets import nets_factory

# Flags a study sets for each run itself, or that would break it.
MANAGED_FLAGS = {
    'train_dir': 'each run trains in study_dir/runs/<name>',
    'random_seed': 'use --seeds',
    'model_options': 'vary a model option by its own name '
                     '(--vary=activation=relu,elu)',
}
FLAGFILE = 'flagfile'  # the axis of whole recipes
# Characters kept in run folder names; others become '_'.
_NAME_UNSAFE = re.compile(r'[^A-Za-z0-9._=,+-]')


class GridError(ValueError):
  """A `--vary` or `--seeds` value that cannot make a grid."""


@dataclasses.dataclass(frozen=True)
class Axis:
  """One `--vary`: a name and its values, as text.

  Attributes:
    name: A training flag or a model option.
    values: The values, as given.
    is_model_option: Whether `name` is a model option (not a flag).
  """
  name: str
  values: Tuple[str, ...]
  is_model_option: bool = False


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid.

  Attributes:
    name: The run's folder name under `study_dir/runs`: the varied values
      and the seed (`optimizer=adam,opt_epsilon=1e-08,seed=0`).
    values: `((axis name, value), ...)` in axis order.
    seed: Its `--random_seed`.
  """
  name: str
  values: Tuple[Tuple[str, str], ...]
  seed: int

  @property
  def config(self):
    """The varied values without the seed: the runs a report row averages."""
    return self.values

  def flag_values(self, axes):
    """`{flag: value}` of the varied training flags."""
    kinds = {axis.name: axis.is_model_option for axis in axes}
    return {k: v for k, v in self.values if not kinds[k]}

  def model_option_values(self, axes):
    """`{option: value}` of the varied model options."""
    kinds = {axis.name: axis.is_model_option for axis in axes}
    return {k: v for k, v in self.values if kinds[k]}


def parse_vary(text):
  """Parses one `--vary=NAME=V1,V2,...` value into an `Axis`.

  Values are separated by commas, or by semicolons when there is one (for
  values that hold commas, such as `--model_options` or `--randaugment`).

  Args:
    text: The value of one `--vary` flag.

  Returns:
    An `Axis` (not yet checked against the training flags; see `check_axes`).

  Raises:
    GridError: for a malformed value, no values or a repeated value.
  """
  name, sep, rest = text.partition('=')
  name = name.strip().lstrip('-')
  separator = ';' if ';' in rest else ','
  values = tuple(v.strip() for v in rest.split(separator)) if sep else ()
  if not name or not values or not all(values):
    raise GridError(f'--vary={text}: expected NAME=V1,V2,... (a training '
                    'flag or a model option, then its values).')
  if len(set(values)) != len(values):
    raise GridError(f'--vary={text}: a value is given twice.')
  return Axis(name, values)


def command_line_overrides(vary_values, command_line):
  """Lets a command-line `--vary` replace a flagfile's axis of the same name.

  absl expands `--flagfile=F` in place, so `vary_values` holds the flagfile's
  `--vary` values and the command line's together. A name given both in a
  flagfile and on the command line keeps only the command line's values
  (the way any other flag given after `--flagfile` wins); a name given twice
  in the same place stays an error for `check_axes` to report.

  Args:
    vary_values: Every `--vary` value, as absl parsed them.
    command_line: The arguments typed on the command line (`sys.argv[1:]`,
      not expanded), where the command line's own `--vary` values are read.

  Returns:
    `(values, replaced)`: the `--vary` values to use, in their order, and the
    sorted names whose flagfile axis the command line replaced.
  """
  typed = [arg.split('=', 1)[1] for arg in command_line
           if arg.startswith(('--vary=', '-vary='))]
  typed_names = {_axis_name(v) for v in typed}
  from_files = list(vary_values)
  for value in typed:  # what is left came from flagfiles
    if value in from_files:
      from_files.remove(value)
  replaced = sorted({_axis_name(v) for v in from_files} & typed_names)
  keep = collections.Counter(typed)  # a typed value may equal the file's
  values = []
  for value in vary_values:
    if _axis_name(value) not in replaced:
      values.append(value)
    elif keep[value]:
      keep[value] -= 1
      values.append(value)
  return values, replaced


def _axis_name(text):
  return text.partition('=')[0].strip().lstrip('-')


def parse_seeds(text):
  """Parses `--seeds=0,1,2` into a tuple of ints.

  Raises:
    GridError: for a value that is not a non-negative int, or a repeat.
  """
  try:
    seeds = tuple(int(s) for s in text.split(',') if s.strip())
  except ValueError:
    raise GridError(f'--seeds={text}: expected ints separated by commas '
                    '(0,1,2).') from None
  if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
    raise GridError(f'--seeds={text}: expected distinct ints >= 0.')
  return seeds


def check_axes(axes, *, flag_values, model_name):
  """Resolves each axis to a flag or a model option and checks its values.

  Args:
    axes: The `Axis` list, in `--vary` order.
    flag_values: The `absl.flags.FlagValues` holding the training flags.
    model_name: The base `--model_name` (each varied one counts too).

  Returns:
    The axes, with `is_model_option` set.

  Raises:
    GridError: naming the bad name or value and the valid ones.
  """
  names = [axis.name for axis in axes]
  repeated = {n for n in names if names.count(n) > 1}
  if repeated:
    raise GridError(f'--vary names {", ".join(sorted(repeated))} twice; give '
                    'all values in one --vary (a command-line --vary replaces '
                    'a flagfile\'s axis of the same name).')
  models = [model_name]
  for axis in axes:
    if axis.name == 'model_name':
      models = list(axis.values)
  resolved = []
  for axis in axes:
    if axis.name == FLAGFILE:
      for path in axis.values:
        check_flagfile(path, flag_values)
      resolved.append(dataclasses.replace(
          axis, values=tuple(os.path.abspath(p) for p in axis.values)))
      continue
    if axis.name in MANAGED_FLAGS:
      raise GridError(f'--vary={axis.name}=...: {MANAGED_FLAGS[axis.name]}.')
    if axis.name in flag_values:
      _check_flag_values(axis, flag_values[axis.name])
      resolved.append(axis)
      continue
    for model in models:
      options = nets_factory.network_options(model)
      if axis.name not in options:
        raise GridError(_unknown_name_message(axis.name, flag_values, model,
                                              options))
      for value in axis.values:
        try:
          nets_factory.parse_model_options(model, f'{axis.name}={value}')
        except ValueError as e:
          raise GridError(f'--vary={axis.name}=...: {e}') from None
    resolved.append(dataclasses.replace(axis, is_model_option=True))
  return resolved


def read_flagfile(path):
  """`[(flag, value)]` of a flag file's `--name=value` lines.

  Raises:
    GridError: for a missing file or a line that is not a flag.
  """
  try:
    with open(path) as f:
      lines = [line.strip() for line in f]
  except OSError as e:
    raise GridError(f'--vary={FLAGFILE}=...: cannot read {path}: '
                    f'{e.strerror}.') from None
  flags = []
  for line in lines:
    if not line or line.startswith('#'):
      continue
    name, sep, value = line.lstrip('-').partition('=')
    if not line.startswith('--') or not name:
      raise GridError(f'--vary={FLAGFILE}=...: {path}: {line!r} is not a '
                      '--flag=value line.')
    flags.append((name, value if sep else 'true'))
  return flags


def check_flagfile(path, flag_values):
  """Checks that a recipe's flags are training flags with valid values."""
  for name, value in read_flagfile(path):
    if name not in flag_values or name in MANAGED_FLAGS:
      raise GridError(f'--vary={FLAGFILE}=...: {path}: --{name} is not a '
                      'training flag a recipe can set.')
    _check_flag_values(Axis(name, (value,)), flag_values[name])


def _check_flag_values(axis, flag):
  for value in axis.values:
    try:
      flag.parser.parse(value)
    except (ValueError, TypeError) as e:
      raise GridError(f'--vary={axis.name}=...: {value!r} is not a valid '
                      f'--{axis.name}: {e}') from None


def _unknown_name_message(name, flag_values, model, options):
  flags = sorted(f for f in flag_values if f not in MANAGED_FLAGS)
  close = difflib.get_close_matches(name, flags + list(options), n=3,
                                    cutoff=0.6)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  return (f'--vary={name}=...: {name!r} is neither a flag of '
          f'train_image_classifier.py nor a model option of {model}.{hint} '
          f'Model options of {model}: {", ".join(sorted(options))}. '
          'Training flags: python train_image_classifier.py --helpfull.')


def display_value(name, value):
  """How a value appears in names and reports (a recipe by its file name)."""
  if name == FLAGFILE:
    return os.path.splitext(os.path.basename(value))[0]
  return value


def run_name(values, seed):
  """The folder name of a run: `name=value,...,seed=N`, file-system safe."""
  text = ','.join([f'{k}={display_value(k, v)}' for k, v in values] +
                  [f'seed={seed}'])
  return _NAME_UNSAFE.sub('_', text)


def config_name(values):
  """A configuration's folder name: `name=value,...` ('base' for none)."""
  text = ','.join(f'{k}={display_value(k, v)}' for k, v in values)
  return _NAME_UNSAFE.sub('_', text) or 'base'


def build_runs(axes, seeds):
  """The runs of the grid: the product of the axes' values, times the seeds.

  Returns:
    A list of `Run`, configurations in `--vary` order, each with every seed.
  """
  runs = []
  for combination in itertools.product(*(axis.values for axis in axes)):
    values = tuple(zip((axis.name for axis in axes), combination))
    for seed in seeds:
      runs.append(Run(run_name(values, seed), values, seed))
  return runs


def merge_model_options(base, varied) -> Optional[str]:
  """The `--model_options` of a run: the base text with the varied options.

  Args:
    base: The study's own `--model_options` text ('' for none).
    varied: `{option: value}` of the run.

  Returns:
    The merged text (varied values win), or None when empty.
  """
  merged = {}
  for item in (base or '').split(','):
    key, sep, value = item.partition('=')
    if sep and key.strip():
      merged[key.strip()] = value.strip()
  merged.update(varied)
  return ','.join(f'{k}={v}' for k, v in merged.items()) or None
