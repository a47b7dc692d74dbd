"""Restores TF-Slim's checkpoints and ours into a net, with TF-Slim's options.

Two formats hold the weights users own:

* name-based (TensorFlow 1's `tf.train.Saver`): the published TF-Slim
  checkpoints (`inception_v3.ckpt`, `resnet_v1_50.ckpt`, ...) and every
  checkpoint TF-Slim's training wrote. A key is the variable's name,
  `InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/weights`; an exponential moving
  average is stored beside it as `<name>/ExponentialMovingAverage`.
* object-based (`tf.train.Checkpoint`): what our trainer writes, with the
  net's variables in a dict by TF-Slim name (`model_variables/...`) and their
  averages in another (`ema/...`). A net saved as an object
  (`tf.train.Checkpoint(model=net)`, keys like
  `model/conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE`) is matched by walking the
  object graph stored in the checkpoint beside the net's own attributes, as
  `tf.train.Checkpoint.restore` matches it.

Our nets name every variable as TF-Slim does (`net.slim_variables()`), so both
formats come down to one table `{TF-Slim name: checkpoint key}`; exclusion,
shape checks and the missing-variable report then work the same for both.

Typical use, as `train_image_classifier.py --checkpoint_path=...` does:

  net = nets_factory.get_network_fn('inception_v3', num_classes=5)
  net(tf.zeros([1, 299, 299, 3]))          # creates the variables
  report = checkpoints.restore(
      net, 'inception_v3.ckpt',
      exclude_scopes='InceptionV3/Logits,InceptionV3/AuxLogits')
  print(report.summary())
  checkpoints.apply_trainable_scopes(
      net, 'InceptionV3/Logits,InceptionV3/AuxLogits')
"""

import collections
import dataclasses
import os
import re
from typing import Tuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import trackable_object_graph_pb2

from slimkit.nets import layers as slim_layers

# The key under which tf.train.Checkpoint stores its object graph; only
# object-based checkpoints have it.
OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
# The attribute name tf.train.Checkpoint gives a variable's value.
_VARIABLE_VALUE = 'VARIABLE_VALUE'
# tf.train.ExponentialMovingAverage names a shadow variable `<name>/<this>`.
EMA_SUFFIX = 'ExponentialMovingAverage'

# The trainer's checkpoint layout: `{TF-Slim name: variable}` dicts.
VARIABLES_GROUP = 'model_variables'
EMA_GROUP = 'ema'

NAME_BASED = 'name-based (TF-Slim / tf.train.Saver)'
OBJECT_BASED = 'object-based (tf.train.Checkpoint)'


class CheckpointError(ValueError):
  """A checkpoint does not fit the net it is restored into."""


class CheckpointMismatchError(CheckpointError):
  """Variables whose shapes differ between the net and the checkpoint."""


class MissingVariablesError(CheckpointError):
  """Variables of the net that the checkpoint does not have."""


@dataclasses.dataclass(frozen=True)
class RestoreReport:
  """What `restore` did, by TF-Slim variable name.

  Attributes:
    checkpoint_path: The checkpoint read (a directory resolved to its newest).
    checkpoint_format: `NAME_BASED` or `OBJECT_BASED`.
    restored: Variables assigned from the checkpoint.
    excluded: Variables under an exclude scope, left at their initial values.
    missing: Variables the checkpoint lacks, left at their initial values
      (only with `ignore_missing_vars`; otherwise `restore` raises).
    averaged: The subset of `restored` read from moving-average shadows.
    fresh_ranges: Fake-quantization ranges (`.../act_quant/min`, ...) of a
      quantization-aware net that the checkpoint lacks (a float or TF-Slim
      checkpoint): never an error; training tracks them from its first step.
  """
  checkpoint_path: str
  checkpoint_format: str
  restored: Tuple[str, ...] = ()
  excluded: Tuple[str, ...] = ()
  missing: Tuple[str, ...] = ()
  averaged: Tuple[str, ...] = ()
  fresh_ranges: Tuple[str, ...] = ()

  def summary(self):
    """Returns a one-paragraph account for the training or evaluation log."""
    lines = [f'Restored {len(self.restored)} variables from '
             f'{self.checkpoint_path} ({self.checkpoint_format}); '
             f'excluded {len(self.excluded)}, missing {len(self.missing)}.']
    if self.averaged:
      lines.append(f'{len(self.averaged)} of them from their moving averages '
                   f'(<name>/{EMA_SUFFIX}).')
    if self.excluded:
      lines.append('Excluded: ' + _abbreviate(self.excluded))
    if self.missing:
      lines.append('Missing (left at their initial values): ' +
                   _abbreviate(self.missing))
    if self.fresh_ranges:
      lines.append(f'{len(self.fresh_ranges)} quantization ranges are not in '
                   'the checkpoint; they are tracked from the first training '
                   'step.')
    return '\n'.join(lines)


def parse_scopes(scopes):
  """Parses a scope list flag (`'InceptionV3/Logits,InceptionV3/AuxLogits'`).

  Args:
    scopes: None, a comma-separated string, or an iterable of strings.

  Returns:
    A tuple of non-empty, stripped scope prefixes.
  """
  if not scopes:
    return ()
  if isinstance(scopes, str):
    scopes = scopes.split(',')
  return tuple(s.strip() for s in scopes if s and s.strip())


def in_scopes(name, scopes):
  """Whether variable `name` lies under one of `scopes`.

  A scope is a plain name prefix, as TF-Slim matched it, so
  `InceptionV3/Mixed_7` covers `Mixed_7a`, `Mixed_7b` and `Mixed_7c`.
  """
  return any(name.startswith(scope) for scope in scopes)


def _unescape(key):
  return re.sub(r'\.(.)', lambda m: '/' if m.group(1) == 'S' else m.group(1),
                key)


def named_values(checkpoint, group='model_variables'):
  """Lists `{TF-Slim name: checkpoint key}` of one group of our checkpoint.

  Args:
    checkpoint: A checkpoint file prefix.
    group: 'model_variables' or 'ema'.

  Returns:
    A dict from variable names to the keys `tf.train.load_checkpoint` reads.
  """
  suffix = '/.ATTRIBUTES/VARIABLE_VALUE'
  names = {}
  for key, _ in tf.train.list_variables(checkpoint):
    if key.startswith(group + '/') and key.endswith(suffix):
      names[_unescape(key[len(group) + 1:-len(suffix)])] = key
  return names


def resolve_checkpoint(checkpoint_path):
  """Returns the checkpoint prefix `checkpoint_path` designates.

  Args:
    checkpoint_path: A checkpoint prefix (`model.ckpt`, `model.ckpt-1000`),
      one of its files (`model.ckpt.index`, `model.ckpt.data-00000-of-00001`),
      or a directory, which means its newest checkpoint.

  Returns:
    The checkpoint prefix.

  Raises:
    FileNotFoundError: naming the path, when it designates no checkpoint.
  """
  path = os.fspath(checkpoint_path)
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(
          f'No checkpoint in directory {path!r} (it has no `checkpoint` file '
          'naming one); pass a checkpoint prefix such as '
          f'{os.path.join(path, "model.ckpt-1000")!r}.')
    return latest
  for suffix in ('.index', '.meta'):
    if path.endswith(suffix):
      path = path[:-len(suffix)]
  if '.data-' in os.path.basename(path):
    path = path[:path.rindex('.data-')]
  if not (tf.io.gfile.exists(path + '.index') or tf.io.gfile.exists(path)):
    raise FileNotFoundError(
        f'No checkpoint at {checkpoint_path!r}: expected {path + ".index"!r} '
        'and its data files, or a directory holding checkpoints.')
  return path


def checkpoint_format(reader):
  """Returns `OBJECT_BASED` or `NAME_BASED` for a `tf.train.load_checkpoint`."""
  if OBJECT_GRAPH_KEY in reader.get_variable_to_shape_map():
    return OBJECT_BASED
  return NAME_BASED


def checkpoint_keys(model, reader, object_root='model'):
  """Maps the net's TF-Slim variable names to the checkpoint's keys.

  Args:
    model: A built `Network` (its variables exist).
    reader: `tf.train.load_checkpoint(...)` of the checkpoint.
    object_root: In an object-based checkpoint written as
      `tf.train.Checkpoint(model=net, ...)`, the name of the net. (The
      trainer's own layout, `tf.train.Checkpoint(model_variables={name: v},
      ema={name: average}, ...)`, is recognised without it.)

  Returns:
    `(keys, ema_keys)`: `{name: key}` for the variables the checkpoint has,
    and `{name: key}` of their moving averages where it has them.

  Raises:
    CheckpointError: for an object-based checkpoint holding neither layout.
  """
  names = model.slim_variables()
  if checkpoint_format(reader) == NAME_BASED:
    stored = reader.get_variable_to_shape_map()
    keys = {name: name for name in names if name in stored}
    shadows = {name: f'{name}/{EMA_SUFFIX}' for name in names}
    ema_keys = {n: k for n, k in shadows.items() if k in stored}
    return keys, ema_keys
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
  root = {c.local_name: c.node_id for c in graph.nodes[0].children}
  ema_keys = {}
  if EMA_GROUP in root:
    ema_keys = _named_group_keys(graph, root[EMA_GROUP], names)
  if VARIABLES_GROUP in root:
    return _named_group_keys(graph, root[VARIABLES_GROUP], names), ema_keys
  if object_root in root:
    by_variable = _walk_object_graph(graph, root[object_root], model)
    keys = {name: by_variable[id(v)] for name, v in names.items()
            if id(v) in by_variable}
    return keys, ema_keys
  raise CheckpointError(
      'The object-based checkpoint holds neither the trainer\'s '
      f'{VARIABLES_GROUP!r} nor a net saved as {object_root!r}; its root has '
      f'{sorted(root)}.')


def restore(model, checkpoint_path, *, exclude_scopes=(),
            ignore_missing_vars=False, use_moving_average=False,
            object_root='model'):
  """Assigns the net's variables from a TF-Slim checkpoint or one of ours.

  Nothing is assigned unless every checked variable fits, so a failed restore
  leaves the net as it was.

  Args:
    model: A built `Network` (call it on a batch first to create variables).
    checkpoint_path: A checkpoint prefix or file, or a directory (its newest
      checkpoint), name-based or object-based.
    exclude_scopes: Scope prefixes (a comma-separated string or a list) whose
      variables keep their initial values (`--checkpoint_exclude_scopes`).
    ignore_missing_vars: Leave variables the checkpoint lacks at their
      initial values instead of raising (`--ignore_missing_vars`).
    use_moving_average: Read `<name>/ExponentialMovingAverage` shadows where
      the checkpoint has them (`--moving_average_decay` in evaluation).
    object_root: For object-based checkpoints, the name the net was saved
      under in `tf.train.Checkpoint`.

  Returns:
    A `RestoreReport`.

  Raises:
    FileNotFoundError: when `checkpoint_path` designates no checkpoint.
    CheckpointMismatchError: naming each variable whose shape differs, both
      shapes and the `--checkpoint_exclude_scopes` that would exclude it.
    MissingVariablesError: naming the variables the checkpoint lacks, unless
      `ignore_missing_vars`.
    ValueError: when the net has no variables yet.
  """
  variables = model.slim_variables()
  if not variables:
    raise ValueError(
        f'{model.name} has no variables yet: call it on a batch of images '
        '(e.g. net(tf.zeros([1, size, size, 3]))) before restoring.')
  path = resolve_checkpoint(checkpoint_path)
  reader = tf.train.load_checkpoint(path)
  fmt = checkpoint_format(reader)
  keys, ema_keys = checkpoint_keys(model, reader, object_root)
  shapes = reader.get_variable_to_shape_map()
  exclude_scopes = parse_scopes(exclude_scopes)

  excluded, missing, mismatched, plan, averaged = [], [], [], [], []
  fresh = []
  for name, variable in variables.items():
    if in_scopes(name, exclude_scopes):
      excluded.append(name)
      continue
    key = keys.get(name)
    if use_moving_average and name in ema_keys:
      key = ema_keys[name]
      averaged.append(name)
    if key is None and slim_layers.is_quant_range(name):
      # Fine-tuning a float checkpoint with --quantize_delay: the ranges
      # start from the data, not from the checkpoint.
      fresh.append(name)
      continue
    if key is None:
      missing.append(name)
      continue
    stored_shape = tuple(shapes[key])
    if stored_shape != tuple(variable.shape):
      mismatched.append((name, stored_shape, tuple(variable.shape)))
      continue
    plan.append((name, variable, key))

  if mismatched:
    raise CheckpointMismatchError(_mismatch_message(path, mismatched))
  if missing and not ignore_missing_vars:
    raise MissingVariablesError(
        f'{len(missing)} variables of {model.name} are not in {path!r}: '
        f'{_abbreviate(missing)}. Pass --ignore_missing_vars to leave them at '
        'their initial values, or --checkpoint_exclude_scopes='
        f'{",".join(_suggested_scopes(missing))} to exclude them.')
  for _, variable, key in plan:
    variable.assign(np.asarray(reader.get_tensor(key), dtype=variable.dtype))
  report = RestoreReport(
      checkpoint_path=path, checkpoint_format=fmt,
      restored=tuple(name for name, _, _ in plan), excluded=tuple(excluded),
      missing=tuple(missing), averaged=tuple(averaged),
      fresh_ranges=tuple(fresh))
  logging.info('%s', report.summary())
  return report


def stored_scopes(checkpoint_path):
  """The top-level scopes of a checkpoint's model variables (`{'LeNet'}`)."""
  path = resolve_checkpoint(checkpoint_path)
  names = list(named_values(path)) or [
      name for name, _ in tf.train.list_variables(path)
      if not name.startswith(('global_step', 'optimizer', '_CHECKPOINTABLE'))]
  return {name.split('/')[0] for name in names if '/' in name}


def other_net_message(model, checkpoint_path):
  """Says which net a checkpoint holds when it is not `model`'s.

  A checkpoint of another net fails to restore with every variable missing;
  the remedies for fine-tuning (excluding scopes, ignoring missing
  variables) would then evaluate or export an untrained net. Its variable
  scopes name the net it holds.

  Args:
    model: The built net that did not restore.
    checkpoint_path: The checkpoint.

  Returns:
    A message naming the checkpoint's net and the `--model_name` to pass,
    or None when the checkpoint holds `model`'s scope (the nets agree, and
    the variables differ for another reason).
  """
  scopes = stored_scopes(checkpoint_path)
  if not scopes or model.name in scopes:
    return None
  from slimkit.nets import nets_factory  # the registry builds nets: on demand
  found = [(scope, nets_factory.names_with_scope(scope))
           for scope in sorted(scopes)]
  held = '; '.join(f'{scope}/ ({" or ".join(names) or "not a registered net"})'
                   for scope, names in found)
  names = [name for _, names in found for name in names]
  advice = (f' Pass --model_name={names[0]}' +
            (f' (or {", ".join(names[1:])}: the same scope, other widths)'
             if len(names) > 1 else '') + '.' if names else '')
  return (f'{checkpoint_path} holds another net: its variables are under '
          f'{held}, the net built is {model.name}/.{advice}')


def has_quant_ranges(checkpoint_path):
  """Whether a checkpoint holds fake-quantization ranges (trained with QAT)."""
  path = resolve_checkpoint(checkpoint_path)
  reader = tf.train.load_checkpoint(path)
  if checkpoint_format(reader) == NAME_BASED:
    names = reader.get_variable_to_shape_map()
  else:
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    names = [child.local_name for node in graph.nodes
             for child in node.children]
  return any(slim_layers.is_quant_range(name) for name in names)


def input_channels(model, checkpoint_path, object_root='model'):
  """Returns the input channels the checkpoint's first conv layer takes.

  Lets a script build LeNet for MNIST's grayscale images (1 channel) or a
  colour net (3) to fit the checkpoint without a flag.

  Args:
    model: A built `Network` (any number of input channels).
    checkpoint_path: A checkpoint prefix, file or directory.
    object_root: For object-based checkpoints, the name of the saved net.

  Returns:
    The channels, or None when the checkpoint lacks the first conv's weights.
  """
  reader = tf.train.load_checkpoint(resolve_checkpoint(checkpoint_path))
  keys, _ = checkpoint_keys(model, reader, object_root)
  shapes = reader.get_variable_to_shape_map()
  for name, variable in model.slim_variables().items():
    if len(variable.shape) == 4:  # Variables are listed in creation order.
      return shapes[keys[name]][2] if name in keys else None
  return None


def initial_checkpoint(train_dir, checkpoint_path):
  """Returns the checkpoint a training run initialises from, as TF-Slim does.

  A run resumes from the newest checkpoint in `train_dir` when there is one;
  `--checkpoint_path` only initialises a fresh run.

  Args:
    train_dir: The run's directory (may not exist yet).
    checkpoint_path: The `--checkpoint_path` flag (None for none).

  Returns:
    `checkpoint_path`, or None when `train_dir` already has a checkpoint (the
    caller resumes from that) or no `checkpoint_path` was given.
  """
  if not checkpoint_path:
    return None
  if train_dir and tf.io.gfile.isdir(train_dir) and tf.train.latest_checkpoint(
      train_dir):
    logging.info('Ignoring --checkpoint_path=%s because a checkpoint already '
                 'exists in %s; resuming from it.', checkpoint_path, train_dir)
    return None
  return checkpoint_path


@dataclasses.dataclass(frozen=True)
class FreezeReport:
  """What `apply_trainable_scopes` did, by TF-Slim variable name.

  Attributes:
    trainable: Variables left trainable.
    frozen: Variables made non-trainable (BN statistics are never trainable
      and are not listed).
    frozen_batch_norms: Batch-norm layers switched to inference mode.
  """
  trainable: Tuple[str, ...]
  frozen: Tuple[str, ...]
  frozen_batch_norms: Tuple[str, ...]

  def summary(self):
    return (f'Training {len(self.trainable)} variables; froze '
            f'{len(self.frozen)} and {len(self.frozen_batch_norms)} batch-norm '
            'layers (statistics fixed).')


def apply_trainable_scopes(model, trainable_scopes):
  """Trains only the variables under `trainable_scopes` (`--trainable_scopes`).

  The other weights become non-trainable, so they are left out of
  `model.trainable_variables` (and out of the optimizer). Batch-norm layers
  with no variable under a trainable scope are set `trainable = False`, which
  runs Keras' BatchNormalization in inference mode: frozen layers normalise
  with their restored statistics and do not update them. (TF-Slim kept
  updating every layer's statistics; freezing them is what fine-tuning a
  frozen feature extractor needs.) Call before the first training step.

  Args:
    model: A built `Network`.
    trainable_scopes: Scope prefixes (a comma-separated string or a list); None
      or empty leaves every variable trainable.

  Returns:
    A `FreezeReport`.

  Raises:
    ValueError: when no variable lies under `trainable_scopes`, listing the
      net's top-level scopes.
  """
  scopes = parse_scopes(trainable_scopes)
  variables = model.slim_variables()
  candidates = {name: v for name, v in variables.items() if v.trainable}
  if not scopes:
    return FreezeReport(trainable=tuple(candidates), frozen=(),
                        frozen_batch_norms=())
  trainable = [name for name in candidates if in_scopes(name, scopes)]
  if not trainable:
    raise ValueError(
        f'No trainable variable of {model.name} lies under --trainable_scopes='
        f'{",".join(scopes)}. Its scopes are: '
        f'{", ".join(_suggested_scopes(variables))}.')
  frozen = [name for name in candidates if name not in trainable]
  for name in frozen:
    candidates[name].trainable = False
  frozen_norms = []
  for layer in _batch_norm_layers(model):
    names = [v.path for v in layer.weights]
    if names and not any(in_scopes(n, scopes) for n in names):
      layer.trainable = False
      frozen_norms.append(os.path.dirname(names[0]))
  report = FreezeReport(trainable=tuple(trainable), frozen=tuple(frozen),
                        frozen_batch_norms=tuple(frozen_norms))
  logging.info('%s', report.summary())
  return report


def _batch_norm_layers(model):
  # Keras 3 has no public recursive listing of nested layers.
  nested = model._flatten_layers(include_self=False)
  return [layer for layer in nested
          if isinstance(layer, keras.layers.BatchNormalization)]


def _variable_key(node):
  for attribute in node.attributes:
    if attribute.name == _VARIABLE_VALUE:
      return attribute.checkpoint_key
  return None


def _named_group_keys(graph, node_id, names):
  """Keys of a `{TF-Slim name: variable}` dict saved in a checkpoint."""
  keys = {}
  for child in graph.nodes[node_id].children:
    key = _variable_key(graph.nodes[child.node_id])
    if child.local_name in names and key is not None:
      keys[child.local_name] = key
  return keys


def _walk_object_graph(graph, node_id, model):
  """`{id(variable): key}`, walking the stored graph beside the net's objects.

  This is how `tf.train.Checkpoint.restore` matches objects: by the names of
  the edges from the root (`conv1` -> `kernel`), not by variable names.
  """
  keys = {}
  seen = set()
  queue = collections.deque([(model, node_id)])
  while queue:
    obj, node_id = queue.popleft()
    if id(obj) in seen:
      continue
    seen.add(id(obj))
    node = graph.nodes[node_id]
    key = _variable_key(node)
    if key is not None:
      keys[id(obj)] = key
    stored = {c.local_name: c.node_id for c in node.children}
    for name, child in tf.train.TrackableView(obj).children(obj).items():
      if name in stored:
        queue.append((child, stored[name]))
  return keys


def _suggested_scopes(names):
  """The two leading components of each name (`InceptionV3/Logits`), unique."""
  scopes = []
  for name in names:
    scope = '/'.join(name.split('/')[:2])
    if scope not in scopes:
      scopes.append(scope)
  return scopes


def _mismatch_message(path, mismatched):
  lines = [f'{len(mismatched)} variables have a different shape in {path!r} '
           'than in the net:']
  for name, stored, ours in mismatched:
    lines.append(f'  {name}: checkpoint {list(stored)}, net {list(ours)}')
  scopes = _suggested_scopes(name for name, _, _ in mismatched)
  lines.append('To leave them at their initial values (e.g. a new number of '
               'classes), pass --checkpoint_exclude_scopes=' + ','.join(scopes))
  return '\n'.join(lines)


def _abbreviate(names, limit=10):
  names = list(names)
  shown = ', '.join(names[:limit])
  return shown + (f' ... ({len(names) - limit} more)' if len(names) > limit
                  else '')
