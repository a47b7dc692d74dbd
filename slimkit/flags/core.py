"""Parsing, failing and flag files: what every script shares.

Every flag of the toolkit is registered as a flag of the module
`slimkit.flags` (`MODULE`), whichever file of the package defines it, so that
`--helpfull` lists them together, `write_flagfile` writes them and a script's
`flags.adopt_module_key_flags(slim_flags)` shows them in its `--help`.
"""

import functools
import sys

from absl import flags

FLAGS = flags.FLAGS

# The module every flag of the package is registered for.
MODULE = 'slimkit.flags'

DEFINE_bool = functools.partial(flags.DEFINE_bool, module_name=MODULE)
DEFINE_enum = functools.partial(flags.DEFINE_enum, module_name=MODULE)
DEFINE_float = functools.partial(flags.DEFINE_float, module_name=MODULE)
DEFINE_integer = functools.partial(flags.DEFINE_integer, module_name=MODULE)
DEFINE_multi_string = functools.partial(flags.DEFINE_multi_string,
                                        module_name=MODULE)
DEFINE_string = functools.partial(flags.DEFINE_string, module_name=MODULE)

# What replaces each TF 1 flag that has no meaning on TF 2: flag -> (value
# that means "unused", explanation).
OBSOLETE = {
    'master': ('', 'TF 1 session targets are gone; clones and workers are set '
               'with --num_clones and --worker_hosts/--ps_hosts or TF_CONFIG '
               '(tf.distribute); --master is ignored.'),
}


def register_validator(name, check, message):
  """absl's `register_validator`, its message prefixed with `--name`."""
  flags.register_validator(name, check, message=f'--{name} {message}')


def split_scopes(value):
  """Splits a comma-separated scope list flag into a tuple (None -> ())."""
  if not value:
    return ()
  return tuple(s.strip() for s in value.split(',') if s.strip())


def obsolete_flag_warnings(values):
  """Returns one warning line per obsolete TF 1 flag set to a used value."""
  warnings = []
  for name, (unused, replacement) in OBSOLETE.items():
    if name in values and getattr(values, name) != unused:
      warnings.append(f'--{name}={getattr(values, name)}: {replacement}')
  return warnings


_HELP_FLAGS = ('-?', '-h', '--help', '--helpshort', '--helpfull',
               '--helpxml')


def parse_flags(argv):
  """absl's `flags_parser` that exits with status 2 on a bad flag.

  absl exits with status 1 on flag errors; status 2 is the usual one for
  usage errors (argparse's), which tells a bad command line apart from a
  failed run. `--help` and its kin exit with status 0, as argparse's do.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    # absl prefixes a flagfile's error with 'ERROR:: '; one 'error:' is enough.
    message = str(e).removeprefix('ERROR:: ')
    sys.stderr.write(f'{argv[0]}: error: {message}\n'
                     'Pass --helpfull to see all flags.\n')
    sys.exit(2)
  except SystemExit as e:
    # absl's help flags print the help and exit with status 1; asking for
    # help is not an error.
    if e.code == 1 and any(arg.split('=')[0] in _HELP_FLAGS
                           for arg in argv[1:]):
      sys.exit(0)
    raise


def fail(message, status=2):
  """Stops a script with `message` on stderr (before anything is written)."""
  sys.stderr.write(f'{sys.argv[0]}: error: {message}\n')
  sys.exit(status)


def write_flagfile(path, module_name=MODULE):
  """Writes the resolved flags of `module_name` to `path`, for `--flagfile`.

  Args:
    path: The file to write (e.g. `train_dir/flags.txt`).
    module_name: The module whose flags are written (every flag of this
      package by default).
  """
  # Imported here: it imports TensorFlow, which parsing never needs.
  from slimkit.datasets import dataset_utils
  lines = sorted(f.serialize() for f in FLAGS.get_flags_for_module(module_name)
                 if f.value is not None)
  with dataset_utils.atomic_output(path) as tmp_path:  # never half a file
    with open(tmp_path, 'w') as f:
      f.write('\n'.join(lines) + '\n')


def read_flagfile_value(path, name):
  """The value of `--name` in a flag file `write_flagfile` wrote.

  Args:
    path: The flag file (e.g. `train_dir/flags.txt`).
    name: The flag's name, without dashes.

  Returns:
    The value as written (a string), or None when the file or the flag is
    missing.
  """
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  prefix = f'--{name}='
  values = [line[len(prefix):] for line in lines if line.startswith(prefix)]
  return values[-1] if values else None
