"""`study.json`: what a study folder holds, so that no other study takes it.

A study folder belongs to one study: its fixed flags, its `--vary` axes and
its seeds. Rerunning the same study resumes it. A different one is refused
before anything is written, naming what differs, because its runs, report
and HParams experiment would mix with the old ones and overwrite the old
report. Growing a study is allowed only where every existing run stays what
it was (`--extend_study`): more seeds, or more values on an existing axis,
with the same fixed flags and the same axes in the same order (run folder
names depend on the axes, not on their other values).
"""

import json
import os

STUDY_FILE = 'study.json'


class StudyDirError(ValueError):
  """The study folder holds another study, or is not a study's folder."""


def describe(fixed_flags, axes, seeds):
  """The study's identity as `study.json` stores it.

  Args:
    fixed_flags: `{flag: value text}` common to every run.
    axes: The checked `grid.Axis` list.
    seeds: The seeds, in order.

  Returns:
    A JSON-serialisable dict.
  """
  return {'fixed_flags': dict(fixed_flags), 'seeds': list(seeds),
          'vary': [[axis.name, list(axis.values)] for axis in axes]}


def read(study_dir):
  """Reads `study_dir/study.json`, or returns None when there is none."""
  path = os.path.join(study_dir, STUDY_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise StudyDirError(f'--study_dir={study_dir}: cannot read {path}: {e}. '
                        'Use another --study_dir.') from None


def differences(old, new):
  """Lists how study `new` differs from study `old`, one phrase each.

  Args:
    old: The `describe` dict in the folder.
    new: The `describe` dict asked for.

  Returns:
    `(changes, growth)`: phrases for what makes the old runs another study,
    and phrases for what only adds runs (more seeds or axis values).
  """
  changes, growth = [], []
  old_fixed, new_fixed = old.get('fixed_flags', {}), new['fixed_flags']
  for name in sorted(set(old_fixed) | set(new_fixed)):
    if old_fixed.get(name) != new_fixed.get(name):
      changes.append(f'--{name} is {_shown(old_fixed.get(name))} there, '
                     f'{_shown(new_fixed.get(name))} here')
  old_axes = [(name, list(values)) for name, values in old.get('vary', [])]
  new_axes = [(name, list(values)) for name, values in new['vary']]
  if [n for n, _ in old_axes] != [n for n, _ in new_axes]:
    changes.append(f'--vary axes are {_axes(old_axes)} there, '
                   f'{_axes(new_axes)} here')
  else:
    for (name, old_values), (_, new_values) in zip(old_axes, new_axes):
      if old_values == new_values:
        continue
      text = (f'--vary={name}={",".join(old_values)} there, '
              f'{",".join(new_values)} here')
      (growth if set(old_values) <= set(new_values) else changes).append(text)
  old_seeds, new_seeds = old.get('seeds', []), new['seeds']
  if old_seeds != new_seeds:
    text = (f'--seeds={",".join(map(str, old_seeds))} there, '
            f'{",".join(map(str, new_seeds))} here')
    (growth if set(old_seeds) <= set(new_seeds) else changes).append(text)
  return changes, growth


def check(study_dir, new, *, extend=False):
  """Refuses a folder that holds another study; returns quietly otherwise.

  Args:
    study_dir: The `--study_dir`.
    new: The `describe` dict of the study asked for.
    extend: Whether `--extend_study` allows adding seeds or axis values.

  Raises:
    StudyDirError: naming what differs and what to do.
  """
  old = read(study_dir)
  if old is None:
    if os.path.isdir(study_dir) and os.listdir(study_dir):
      raise StudyDirError(
          f'--study_dir={study_dir} is not empty and holds no {STUDY_FILE}: '
          'it is not a study\'s folder. Use an empty or new folder.')
    return
  changes, growth = differences(old, new)
  if changes:
    raise StudyDirError(
        f'--study_dir={study_dir} holds another study ({"; ".join(changes)}'
        f'{"; " if growth else ""}{"; ".join(growth)}). Nothing was written: '
        'use another --study_dir, or the same flags to resume it.')
  if growth and not extend:
    raise StudyDirError(
        f'--study_dir={study_dir} holds this study with fewer runs '
        f'({"; ".join(growth)}). Nothing was written: add --extend_study to '
        'add the new runs beside the existing ones, which stay valid.')


def write(study_dir, new):
  """Writes `study.json` whole (a crash leaves the old file or the new one).

  Raises:
    OSError: when the folder is not writable.
  """
  os.makedirs(study_dir, exist_ok=True)
  path = os.path.join(study_dir, STUDY_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(new, f, indent=1)
  os.replace(path + '.tmp', path)


def _shown(value):
  return 'not set' if value is None else repr(value)


def _axes(axes):
  return ', '.join(name for name, _ in axes) or 'none'
