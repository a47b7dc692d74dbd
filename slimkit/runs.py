"""A training run's folder, read back: its settings and its results.

`train_image_classifier.py` writes everything a later tool needs into its
`--train_dir`: the resolved flags (`flags.txt`), checkpoints
`model.ckpt-<step>`, TensorBoard events of the training (`total_loss`,
`images_per_sec`, ...) and, with `--eval_every_n_steps`, of the validation
(`validation/`, `eval/Accuracy`, `eval/Recall_5`, `eval/loss`). This module
is the one public reader of that folder, for the scripts and the study:

  settings = runs.read_settings('/tmp/train/model.ckpt-1000')  # or the dir
  settings.model_name, settings.num_classes, settings.image_size

  resolved = runs.resolve('/tmp/train', values, given, runs.EVAL_FLAGS)
  resolved.values['model_name']; resolved.conflict_line()

  results = runs.read_results('/tmp/train')
  results.global_step, results.validation[-1].metrics['Accuracy']

A tool is told what the user typed (`given`), takes the run's value for
every other setting, and reports every typed value that differs from the
run's in one line, as timm's `args.yaml` and torchvision's saved `args` let
their tools do. A checkpoint without `flags.txt` beside it (a published
TF-Slim `.ckpt`) has no settings: the tools' flags alone decide, as in
TF-Slim.

Reading settings imports no TensorFlow (scripts check their flags before
paying for it); the class count and the results import it when asked.
"""

import dataclasses
import glob
import os
import re
from typing import Optional, Tuple

from slimkit.nets import nets_factory

FLAGS_FILE = 'flags.txt'
# Where the trainer writes its validation events.
VALIDATION_DIR = 'validation'
CHECKPOINT_STATE_FILE = 'checkpoint'

# The flag of each setting, per tool. `image_size` is `--train_image_size`
# in the run.
EVAL_FLAGS = {
    'model_name': 'model_name',
    'model_options': 'model_options',
    'dataset_name': 'dataset_name',
    'dataset_dir': 'dataset_dir',
    'labels_offset': 'labels_offset',
    'image_size': 'eval_image_size',
    'preprocessing_name': 'preprocessing_name',
    'use_grayscale': 'use_grayscale',
    'moving_average_decay': 'moving_average_decay',
    'quantize': 'quantize',
}
EXPORT_FLAGS = {
    'model_name': 'model_name',
    'model_options': 'model_options',
    'dataset_name': 'dataset_name',
    'dataset_dir': 'dataset_dir',
    'labels_offset': 'labels_offset',
    'num_classes': 'num_classes',
    'image_size': 'image_size',
    'preprocessing_name': 'preprocessing_name',
    'moving_average_decay': 'moving_average_decay',
}
# The data's location is not a property of the trained net: another
# --dataset_dir than the run's is no conflict (the data moved).
_NOT_CONFLICTS = ('dataset_dir',)


def find_train_dir(checkpoint_path):
  """The run folder of a checkpoint: the one holding `flags.txt`, or None.

  Args:
    checkpoint_path: A train dir, a checkpoint prefix in it
      (`<train_dir>/model.ckpt-1000`) or one of the checkpoint's files.

  Returns:
    The folder, or None for a checkpoint that is not in a run's folder
    (a published TF-Slim `.ckpt`).
  """
  if not checkpoint_path:
    return None
  path = os.path.abspath(os.fspath(checkpoint_path))
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  if os.path.isfile(os.path.join(folder, FLAGS_FILE)):
    return folder
  return None


def read_flags(path):
  """`{name: value text}` of a flag file written by `flags.write_flagfile`.

  Booleans (`--name`, `--noname`) read as 'true' and 'false'; a flag
  written twice keeps its last value.

  Args:
    path: The flag file (`<train_dir>/flags.txt`).

  Raises:
    OSError: when the file cannot be read.
  """
  values = {}
  with open(path) as f:
    for line in f.read().splitlines():
      line = line.strip()
      if not line.startswith('--'):
        continue
      name, sep, value = line[2:].partition('=')
      if sep:
        values[name] = value
      elif name.startswith('no'):
        values[name[2:]] = 'false'
      else:
        values[name] = 'true'
  return values


def _optional(text, convert):
  return None if text in (None, '', 'None') else convert(text)


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """What a run was trained with, as eval, export and classify need it.

  Attributes:
    train_dir: The run's folder.
    model_name: `--model_name`.
    model_options: `--model_options` ('' for none).
    dataset_name: `--dataset_name`.
    dataset_dir: `--dataset_dir` (where the data was at training time).
    labels_offset: `--labels_offset`.
    image_size: `--train_image_size` (None: the net's default).
    preprocessing_name: `--preprocessing_name` (None: the net's).
    use_grayscale: `--use_grayscale`.
    moving_average_decay: `--moving_average_decay` (None: no averages).
    quantize_delay: `--quantize_delay` (-1: never fake-quantized).
    synthetic_num_classes: `--num_classes` of `--dataset_name=synthetic`.
  """
  train_dir: str
  model_name: str
  model_options: str = ''
  dataset_name: str = 'imagenet'
  dataset_dir: Optional[str] = None
  labels_offset: int = 0
  image_size: Optional[int] = None
  preprocessing_name: Optional[str] = None
  use_grayscale: bool = False
  moving_average_decay: Optional[float] = None
  quantize_delay: int = -1
  synthetic_num_classes: Optional[int] = None

  @property
  def num_classes(self):
    """The logits of the run's net: its dataset's classes - labels_offset."""
    return dataset_num_classes(self.dataset_name, self.dataset_dir,
                               self.synthetic_num_classes) - self.labels_offset

  def quantized_at(self, step):
    """Whether the checkpoint of global step `step` trained fake-quantized."""
    return 0 <= self.quantize_delay <= step


def read_settings(checkpoint_path):
  """The `RunSettings` of the run a checkpoint belongs to.

  Args:
    checkpoint_path: A train dir, or a checkpoint (prefix or file) in one.

  Returns:
    The settings, or None when no `flags.txt` is beside the checkpoint.

  Raises:
    ValueError: naming the file, when `flags.txt` lacks `--model_name` or
      holds a value of the wrong type.
  """
  train_dir = find_train_dir(checkpoint_path)
  if train_dir is None:
    return None
  path = os.path.join(train_dir, FLAGS_FILE)
  values = read_flags(path)
  if 'model_name' not in values:
    raise ValueError(f'{path} has no --model_name: it was not written by '
                     'train_image_classifier.py.')
  try:
    return RunSettings(
        train_dir=train_dir,
        model_name=values['model_name'],
        model_options=values.get('model_options', ''),
        dataset_name=values.get('dataset_name', 'imagenet'),
        dataset_dir=values.get('dataset_dir') or None,
        labels_offset=int(values.get('labels_offset', 0)),
        image_size=_optional(values.get('train_image_size'), int),
        preprocessing_name=values.get('preprocessing_name') or None,
        use_grayscale=values.get('use_grayscale') == 'true',
        moving_average_decay=_optional(values.get('moving_average_decay'),
                                       float),
        quantize_delay=int(values.get('quantize_delay', -1)),
        synthetic_num_classes=_optional(values.get('num_classes'), int))
  except ValueError as e:
    raise ValueError(f'{path}: {e}') from None


def dataset_num_classes(dataset_name, dataset_dir=None, synthetic=None):
  """The classes of a dataset (with its background class, as TF-Slim counts).

  The folder is read where the count depends on it (a custom dataset's
  `dataset.json`); the built-in datasets know theirs without it.

  Args:
    dataset_name: A registered dataset.
    dataset_dir: Its folder, or None.
    synthetic: `--num_classes` of the synthetic dataset (None: its default).

  Raises:
    ValueError: for an unknown dataset (listing the valid ones), or one whose
      count needs a folder that is not given.
    FileNotFoundError: naming the folder that lacks the description.
  """
  from slimkit.datasets import dataset_factory
  module = dataset_factory.DATASETS.get(dataset_name).load()
  if dataset_name == 'synthetic' and synthetic:
    return int(synthetic)
  fixed = getattr(module, 'NUM_CLASSES', None)
  if fixed is not None and (dataset_dir is None or
                            not os.path.isdir(dataset_dir)):
    return int(fixed)
  split_name = sorted(getattr(module, 'SPLITS_TO_SIZES', {'train': 0}))[-1]
  return dataset_factory.get_split(dataset_name, split_name,
                                   dataset_dir).num_classes


@dataclasses.dataclass(frozen=True)
class Resolved:
  """The settings a tool uses: typed flags first, then the run's.

  Attributes:
    values: `{setting: value}` for every setting of the tool.
    run: The run's `RunSettings`, or None (no `flags.txt`).
    conflicts: `((flag, given value, run's value), ...)` of the typed flags
      that differ from the run.
    taken: `((flag, value), ...)` of the untyped flags the run changed.
  """
  values: dict
  run: Optional[RunSettings]
  conflicts: Tuple[Tuple[str, object, object], ...] = ()
  taken: Tuple[str, ...] = ()

  def num_classes(self):
    """`num_classes` when given, else the dataset's classes - labels_offset.

    The dataset is the resolved one (the run's unless typed), so a run's
    export gets the class count it trained with, and a published checkpoint
    exported with `--dataset_name` that dataset's, as TF-Slim's export did.

    Raises:
      ValueError, FileNotFoundError: as `dataset_num_classes`.
    """
    if self.values.get('num_classes'):
      return self.values['num_classes']
    name = self.values['dataset_name']
    synthetic = (self.run.synthetic_num_classes
                 if self.run and self.run.dataset_name == name else None)
    return dataset_num_classes(name, self.values.get('dataset_dir'),
                               synthetic) - self.values['labels_offset']

  def conflict_line(self):
    """One line naming every conflict, or None when there is none."""
    if not self.conflicts:
      return None
    listed = ', '.join(f'--{flag}={_text(given)} (run: {_text(run)})'
                       for flag, given, run in self.conflicts)
    return (f'Given flags differ from the run in {self.run.train_dir} '
            f'({FLAGS_FILE}); the given ones are used: {listed}')

  def taken_line(self):
    """One line saying which settings came from the run, or None."""
    if not self.taken:
      return None
    listed = ' '.join(f'--{flag}={_text(value)}'
                      for flag, value in self.taken)
    return f'From {os.path.join(self.run.train_dir, FLAGS_FILE)}: {listed}'


def _text(value):
  if value is None:
    return 'default'
  if value == '':
    return "''"
  if isinstance(value, bool):
    return str(value).lower()
  return str(value)


def _run_value(run, setting, step):
  if setting == 'image_size':
    return run.image_size
  if setting == 'quantize':
    return run.quantized_at(step)
  if setting == 'num_classes':
    return run.num_classes
  return getattr(run, setting)


def _same(setting, given, run_value, model_name, run_model_name):
  """Whether a typed value means what the run's means.

  An image size or preprocessing left to the net's default means the
  default of the run's net for the run, of the tool's net for the tool.
  """
  if given == run_value:
    return True
  try:
    if setting == 'image_size':
      return ((given or nets_factory.get_entry(model_name).default_image_size)
              == (run_value or
                  nets_factory.get_entry(run_model_name).default_image_size))
    if setting == 'preprocessing_name':
      return (_style(given or model_name) ==
              _style(run_value or run_model_name))
    if setting == 'model_options':
      return (nets_factory.parse_model_options(model_name, given) ==
              nets_factory.parse_model_options(model_name, run_value))
  except ValueError:
    return False  # the tool reports the bad value itself
  return False


def _style(name):
  if name in nets_factory.list_networks():
    return nets_factory.get_entry(name).preprocessing_name
  return name


def resolve(checkpoint_path, values, given, flag_names, *, step=None):
  """Merges a tool's flags with the settings of the checkpoint's run.

  Args:
    checkpoint_path: The tool's `--checkpoint_path`.
    values: `{setting: the flag's value}` (defaults included).
    given: The settings whose flag the user typed (absl's
      `FLAGS[name].present`, read by the script).
    flag_names: `{setting: the tool's flag}`, e.g. `EVAL_FLAGS`.
    step: The checkpoint's global step (for `quantize`; default: read).

  Returns:
    A `Resolved`. Without a run, `values` as given.

  Raises:
    ValueError: when the run's `flags.txt` cannot be read.
  """
  run = read_settings(checkpoint_path)
  if run is None:
    return Resolved(values=dict(values), run=None)
  if 'quantize' in flag_names and step is None:
    step = checkpoint_step(checkpoint_path)
  merged, conflicts, taken = dict(values), [], []
  model_name = (values['model_name'] if 'model_name' in given
                else run.model_name)
  for setting, flag in flag_names.items():
    if setting == 'num_classes' and 'num_classes' not in given:
      continue  # `Resolved.num_classes()` counts the resolved dataset's
    run_value = _run_value(run, setting, step)
    if setting in given:
      if (setting not in _NOT_CONFLICTS and
          not _same(setting, values[setting], run_value, model_name,
                    run.model_name)):
        conflicts.append((flag, values[setting], run_value))
    else:
      merged[setting] = run_value
      if run_value != values.get(setting):
        taken.append((flag, run_value))
  return Resolved(values=merged, run=run, conflicts=tuple(conflicts),
                  taken=tuple(taken))


def newest_checkpoint(train_dir):
  """The newest checkpoint prefix of a folder (its `checkpoint` file), or None.

  Read as text, without TensorFlow, so that a live run's folder can be
  polled cheaply.
  """
  try:
    with open(os.path.join(train_dir, CHECKPOINT_STATE_FILE)) as f:
      found = re.search(r'^model_checkpoint_path: "(.*)"$', f.read(),
                        re.MULTILINE)
  except OSError:
    return None
  if not found:
    return None
  path = found.group(1)
  return path if os.path.isabs(path) else os.path.join(train_dir, path)


def checkpoint_step(checkpoint_path):
  """The global step of a checkpoint (ours or TF-Slim's), 0 without one.

  Args:
    checkpoint_path: A checkpoint prefix, or a folder (its newest one).

  Returns:
    The saved `global_step`; for a checkpoint that has none, 0. A checkpoint
    pruned or cut short while a live run is read gives the step in its name
    (`model.ckpt-<step>`, how TF-Slim and our trainer name them).
  """
  import tensorflow as tf
  path = os.fspath(checkpoint_path)
  prefix = newest_checkpoint(path) if os.path.isdir(path) else path
  if prefix is None:
    return 0
  try:
    reader = tf.train.load_checkpoint(prefix)
    for key in ('global_step/.ATTRIBUTES/VARIABLE_VALUE', 'global_step'):
      if reader.has_tensor(key):
        return int(reader.get_tensor(key))
    return 0
  except (tf.errors.OpError, ValueError, IndexError):
    named = re.search(r'-(\d+)$', prefix)
    return int(named.group(1)) if named else 0


# Results.

@dataclasses.dataclass(frozen=True)
class Scalar:
  """One value of a summary: its global step, value and wall time."""
  step: int
  value: float
  wall_time: float


@dataclasses.dataclass(frozen=True)
class ValidationPoint:
  """One validation during training.

  Attributes:
    step: The global step validated.
    wall_time: When it was written (seconds since the epoch).
    metrics: `{'Accuracy': ..., 'Recall_5': ..., 'loss': ...}` (those
      written).
  """
  step: int
  wall_time: float
  metrics: dict


@dataclasses.dataclass(frozen=True)
class RunResults:
  """What a run's folder says it achieved.

  Attributes:
    train_dir: The folder.
    global_step: The newest checkpoint's step (0 without one).
    validation: The `ValidationPoint`s by step (empty without
      `--eval_every_n_steps`).
    losses: `Scalar`s of `total_loss` (cross-entropy plus regularization),
      one per logged step.
    images_per_sec: `Scalar`s of the training speed, one per log line (the
      first includes tracing).
    parameters: Trainable parameters of the newest checkpoint's net (None
      without a checkpoint).
    start_time: Wall time of the first event (None without events).
    end_time: Wall time of the last event.
  """
  train_dir: str
  global_step: int
  validation: Tuple[ValidationPoint, ...]
  losses: Tuple[Scalar, ...]
  images_per_sec: Tuple[Scalar, ...]
  parameters: Optional[int]
  start_time: Optional[float]
  end_time: Optional[float]

  @property
  def final_metrics(self):
    """The metrics of the last validation (None without one)."""
    return self.validation[-1].metrics if self.validation else None

  @property
  def final_loss(self):
    """The last logged total loss (None without one)."""
    return self.losses[-1].value if self.losses else None


def scalars(directory, tag):
  """The `Scalar`s of `tag` in the event files of `directory`, by step.

  Subfolders are not read. A step written twice (a resumed run) keeps the
  last value; a file cut short by a kill counts up to where it ends.
  """
  return _read_events(directory, (tag,)).get(tag, [])


def _read_events(directory, tags):
  import tensorflow as tf
  found = {tag: {} for tag in tags}
  for path in sorted(glob.glob(os.path.join(directory, 'events.out.*'))):
    try:
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
          if value.tag not in found:
            continue
          number = (float(tf.make_ndarray(value.tensor))
                    if value.HasField('tensor') else value.simple_value)
          found[value.tag][event.step] = Scalar(event.step, number,
                                                event.wall_time)
    except tf.errors.DataLossError:
      pass  # a file cut short by a kill: what was read counts
  return {tag: [by_step[s] for s in sorted(by_step)]
          for tag, by_step in found.items()}


def count_parameters(train_dir):
  """Trainable parameters of the newest checkpoint's net (None without)."""
  import numpy as np
  import tensorflow as tf
  from slimkit import checkpoints
  from slimkit.nets import layers
  # Batch-norm statistics and fake-quant ranges are variables, not
  # parameters.
  not_parameters = ('/moving_mean', '/moving_variance') + (
      layers.QUANT_RANGE_SUFFIXES)
  checkpoint = tf.train.latest_checkpoint(train_dir)
  if checkpoint is None:
    return None
  shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
  return int(sum(np.prod(shapes[key], dtype=np.int64)
                 for name, key in checkpoints.named_values(checkpoint).items()
                 if not name.endswith(not_parameters)))


def read_results(train_dir):
  """Reads a run's folder into `RunResults` (a live run's too).

  Args:
    train_dir: The run's `--train_dir`.
  """
  metrics = ('Accuracy', 'Recall_5', 'loss')
  validation = _read_events(os.path.join(train_dir, VALIDATION_DIR),
                            [f'eval/{m}' for m in metrics])
  points = {}
  for name in metrics:
    for scalar in validation[f'eval/{name}']:
      point = points.setdefault(scalar.step, (scalar.wall_time, {}))
      point[1][name] = scalar.value
  training = _read_events(train_dir, ('total_loss', 'images_per_sec'))
  times = [s.wall_time for tag in (validation, training)
           for series in tag.values() for s in series]
  return RunResults(
      train_dir=train_dir,
      global_step=checkpoint_step(train_dir),
      validation=tuple(ValidationPoint(step, wall_time, values)
                       for step, (wall_time, values) in sorted(
                           points.items())),
      losses=tuple(training['total_loss']),
      images_per_sec=tuple(training['images_per_sec']),
      parameters=count_parameters(train_dir),
      start_time=min(times) if times else None,
      end_time=max(times) if times else None)
