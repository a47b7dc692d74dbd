"""A training run's own checkpoints in `train_dir`: resume and save.

`checkpoints.py` reads checkpoints into a net by TF-Slim name (TF-Slim's and
ours); this module keeps the trainer's `tf.train.CheckpointManager` safe:

* `restore_newest_readable`: a restart resumes from the newest checkpoint
  that reads completely, skipping one cut short (killed while writing, disk
  full); a checkpoint of another model or class count is refused with the
  variables that differ (`checkpoints.CheckpointMismatchError`).
* `save`: a failed write (disk full, no permission) raises
  `CheckpointSaveError`, removes its partial files and leaves the previous
  checkpoint in place.
"""

import os
import shutil

from absl import logging
import tensorflow as tf

from slimkit import checkpoints


class CheckpointSaveError(OSError):
  """A checkpoint could not be written (disk full, no permission)."""


def restore_newest_readable(checkpoint, manager, model_variables):
  """Restores the newest checkpoint of `manager` that reads completely.

  A checkpoint cut short (killed while writing, disk full) is skipped with a
  warning and the one before it is used.

  Args:
    checkpoint: The run's `tf.train.Checkpoint`.
    manager: Its `tf.train.CheckpointManager` over `train_dir`.
    model_variables: The net's variables, to name those that differ.

  Returns:
    The restored checkpoint prefix, or None when none is readable.

  Raises:
    checkpoints.CheckpointMismatchError: when a readable checkpoint holds
      other variables (another model or class count), listing them, or
      cannot be resumed (another optimizer's slots).
  """
  for path in reversed(manager.checkpoints):
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
      return path
    except (AssertionError, ValueError) as e:
      mismatched = mismatched_variables(path, model_variables)
      if mismatched:
        raise checkpoints.CheckpointMismatchError(
            f'{manager.directory} holds checkpoints of another model or '
            f'class count ({path}); {len(mismatched)} variable(s) do not '
            'match:\n  ' + '\n  '.join(mismatched[:20]) +
            '\nUse a new --train_dir (and --checkpoint_path to start from '
            'that checkpoint).') from None
      # Readable but not ours to resume (e.g. another --optimizer's
      # slots): an older checkpoint would not match either.
      raise checkpoints.CheckpointMismatchError(
          f'Cannot resume from {path}: {str(e).splitlines()[0]}. Rerun with '
          'the flags the run was started with (see flags.txt there), or use '
          'a new --train_dir.') from None
    except (tf.errors.OpError, OSError, IndexError) as e:
      # IndexError: the reader's error for a data file cut short.
      logging.warning('Checkpoint %s is unreadable (%s); trying the previous '
                      'checkpoint.', path, type(e).__name__)
  return None


def mismatched_variables(path, model_variables):
  """Lines naming the variables that differ between the net and `path`."""
  try:
    stored = {}
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    for name, key in checkpoints.named_values(path).items():
      stored[name] = tuple(shapes[key])
  except (tf.errors.OpError, OSError, IndexError):
    return []
  lines = []
  ours = {v.path: tuple(v.shape) for v in model_variables}
  for name, shape in sorted(ours.items()):
    if name not in stored:
      lines.append(f'{name} {shape}: not in the checkpoint')
    elif stored[name] != shape:
      lines.append(f'{name}: shape {shape} here, {stored[name]} in the '
                   'checkpoint')
  lines.extend(f'{name} {shape}: in the checkpoint only'
               for name, shape in sorted(stored.items()) if name not in ours)
  return lines


def save(manager, step, checkpoint_name):
  """Writes checkpoint `step` of `manager`; returns its prefix.

  Args:
    manager: The run's `tf.train.CheckpointManager`.
    step: The global step, the checkpoint's number.
    checkpoint_name: The manager's file name (`model.ckpt`).

  Raises:
    CheckpointSaveError: when the write failed; its partial files are
      removed, and the state file still names the previous checkpoint.
  """
  previous = manager.latest_checkpoint
  try:
    return manager.save(checkpoint_number=step)
  except (tf.errors.OpError, OSError) as e:
    # The state file still names the previous checkpoint; drop the
    # partial files so that they do not fill the disk further.
    stem = os.path.join(manager.directory, f'{checkpoint_name}-{step}')
    for leftover in (tf.io.gfile.glob(stem + '.*') +
                     tf.io.gfile.glob(stem + '_temp*')):
      if not previous or not leftover.startswith(previous + '.'):
        shutil.rmtree(leftover, ignore_errors=True)
        if os.path.exists(leftover):
          os.remove(leftover)
    reason = getattr(e, 'message', None) or str(e)
    raise CheckpointSaveError(
        f'Could not write the checkpoint of global step {step} to '
        f'{manager.directory}: {reason.splitlines()[0] if reason else e}. '
        + (f'The previous checkpoint {previous} is intact: free some space '
           'or fix the permissions, then rerun the same command to resume '
           'from it.' if previous else 'No checkpoint was written.')
    ) from None
