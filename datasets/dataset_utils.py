"""Helpers shared by the dataset converters and readers.

- Feature helpers and `image_to_tfexample`, which writes TF-Slim's record schema
  (see `datasets/split.py`), so files from TF-Slim's converters and ours are
  interchangeable.
- `write_label_file` / `read_label_file`: `labels.txt`, one `id:name` a line.
- `atomic_output`: the one way converters create an output file. Data is
  written to a hidden temporary name in the same directory and renamed to the
  final name only when complete, so a file under its final name is always
  finished, and a killed conversion leaves nothing that looks like output.
  `write_tfrecord` wraps it for a whole TFRecord file.
- `png_records`: uint8 image arrays to serialized PNG examples (cifar10,
  cifar100, mnist, digits).
- `make_split`: the common body of every dataset module's `get_split`.

Typical use:

  with dataset_utils.atomic_output(path) as tmp_path:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for png, label in examples:
        writer.write(dataset_utils.image_to_tfexample(
            png, b'png', 28, 28, label).SerializeToString())
"""

import contextlib
import glob
import os
import uuid

from absl import logging
import numpy as np
import tensorflow as tf

from slimkit.datasets import split as split_lib

LABELS_FILENAME = 'labels.txt'

# Temporary names start with '.', so no glob of a split ('train-*',
# 'flowers_train_*.tfrecord', '*.tfrecord') ever matches one, and end with the
# writer's pid, so a later run can tell a dead writer's leftovers from a live
# writer's file.
_TMP_MARKER = '.tmp-'


def _as_list(values):
  # One value or a sequence (list, tuple, numpy array); str and bytes are one
  # value each.
  if isinstance(values, (str, bytes, bytearray)) or not hasattr(
      values, '__iter__'):
    return [values]
  return list(values)


def int64_feature(values):
  """Returns an int64 `tf.train.Feature` of one int or a sequence of ints."""
  return tf.train.Feature(int64_list=tf.train.Int64List(
      value=[int(v) for v in _as_list(values)]))


def float_feature(values):
  """Returns a float `tf.train.Feature` of one float or a sequence of floats."""
  return tf.train.Feature(float_list=tf.train.FloatList(
      value=[float(v) for v in _as_list(values)]))


def bytes_feature(values):
  """Returns a bytes `tf.train.Feature` of one value or a sequence of values.

  `str` values are encoded as UTF-8.
  """
  values = [v.encode('utf-8') if isinstance(v, str) else bytes(v)
            for v in _as_list(values)]
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def image_to_tfexample(image_data, image_format, height, width, class_id):
  """Builds the `tf.train.Example` of one classified image, in TF-Slim's schema.

  Args:
    image_data: The encoded image (PNG or JPEG bytes).
    image_format: b'png', b'jpeg' or b'JPEG' (str is accepted too).
    height: Image height in pixels.
    width: Image width in pixels.
    class_id: Integer class id.

  Returns:
    A `tf.train.Example` with `image/encoded`, `image/format`,
    `image/class/label`, `image/height` and `image/width`.
  """
  return tf.train.Example(features=tf.train.Features(feature={
      'image/encoded': bytes_feature(image_data),
      'image/format': bytes_feature(image_format),
      'image/class/label': int64_feature(class_id),
      'image/height': int64_feature(height),
      'image/width': int64_feature(width),
  }))


def _tmp_prefix(path):
  directory, name = os.path.split(os.path.abspath(path))
  return os.path.join(directory, f'.{name}{_TMP_MARKER}')


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Exists, owned by someone else.
    return True
  return True


def remove_stale_temporaries(path):
  """Deletes temporary files of `path` left by writers that no longer run.

  Temporaries of a live process (a conversion running in parallel) are kept.

  Args:
    path: The final output path whose temporaries to look for.

  Returns:
    The list of deleted paths.
  """
  removed = []
  prefix = _tmp_prefix(path)
  for tmp in glob.glob(glob.escape(prefix) + '*'):
    pid_text = tmp[len(prefix):].split('-', 1)[0]
    if pid_text.isdigit() and _pid_alive(int(pid_text)):
      continue
    try:
      os.remove(tmp)
      removed.append(tmp)
    except FileNotFoundError:
      pass
  return removed


def _fsync_path(path, directory=False):
  # Best effort: some filesystems refuse fsync on directories.
  flags = os.O_RDONLY | (getattr(os, 'O_DIRECTORY', 0) if directory else 0)
  try:
    fd = os.open(path, flags)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_output(path):
  """Context manager for writing `path` all at once or not at all.

  Yields a temporary path in the same directory (hidden: `.<name>.tmp-<pid>-
  <random>`). When the block ends without an exception the temporary file is
  fsynced and renamed to `path` with `os.replace` (atomic on POSIX and Windows
  within one filesystem), replacing any previous `path`. When the block raises
  (including KeyboardInterrupt), the temporary file is deleted and `path` is
  left as it was. Stale temporaries of dead writers are removed first.

  The block must close whatever it wrote to the temporary path (for example
  leave a `tf.io.TFRecordWriter`'s `with` block) before it ends.

  Args:
    path: The final output path (a local file; its directory must exist).

  Yields:
    The temporary path to write to.

  Raises:
    FileNotFoundError: if the block wrote nothing to the temporary path.
  """
  remove_stale_temporaries(path)
  tmp_path = f'{_tmp_prefix(path)}{os.getpid()}-{uuid.uuid4().hex[:8]}'
  try:
    yield tmp_path
    if not os.path.exists(tmp_path):
      raise FileNotFoundError(
          f'Nothing was written to the temporary file {tmp_path!r} of '
          f'{path!r}.')
    _fsync_path(tmp_path)
    os.replace(tmp_path, path)
    _fsync_path(os.path.dirname(os.path.abspath(path)), directory=True)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp_path)
    raise


def write_tfrecord(path, serialized_examples):
  """Writes serialized examples to the TFRecord file `path` atomically.

  Args:
    path: The output file.
    serialized_examples: An iterable of serialized `tf.train.Example`s.

  Returns:
    The number of records written.
  """
  count = 0
  with atomic_output(path) as tmp_path:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for record in serialized_examples:
        writer.write(record)
        count += 1
  return count


def write_label_file(labels_to_class_names, dataset_dir,
                     filename=LABELS_FILENAME):
  """Writes `labels.txt` (one `id:name` a line, sorted by id) atomically.

  Args:
    labels_to_class_names: A dict from integer label to class name.
    dataset_dir: The directory to write the file in.
    filename: The file name.

  Returns:
    The path written.
  """
  path = os.path.join(dataset_dir, filename)
  with atomic_output(path) as tmp_path:
    with open(tmp_path, 'w', encoding='utf-8') as f:
      for label in sorted(labels_to_class_names):
        f.write(f'{label}:{labels_to_class_names[label]}\n')
  return path


def has_labels(dataset_dir, filename=LABELS_FILENAME):
  """Returns whether `dataset_dir` holds a labels file."""
  return os.path.isfile(os.path.join(dataset_dir, filename))


def read_label_file(dataset_dir, filename=LABELS_FILENAME):
  """Reads `labels.txt` into a dict from integer label to class name.

  Only the first ':' separates the id, so names may contain ':' and ','
  (TF-Slim's ImageNet file has lines like `1:tench, Tinca tinca`).

  Args:
    dataset_dir: The directory holding the file.
    filename: The file name.

  Returns:
    A dict `{label: name}`.

  Raises:
    ValueError: naming the file and line, for a line that is not `id:name`.
  """
  path = os.path.join(dataset_dir, filename)
  labels_to_names = {}
  with open(path, encoding='utf-8') as f:
    for line_number, line in enumerate(f, start=1):
      line = line.rstrip('\r\n')
      if not line.strip():
        continue
      label, sep, name = line.partition(':')
      if not sep or not label.strip().lstrip('-').isdigit():
        raise ValueError(
            f'{path}:{line_number}: expected "id:name", got {line!r}.')
      labels_to_names[int(label)] = name
  return labels_to_names


def png_records(images, labels, log_every=10000, name='images',
                extra_int64_features=None):
  """Yields serialized TF-Slim examples of uint8 images encoded as PNG.

  Args:
    images: uint8 array `[num_images, height, width, channels]`.
    labels: Integer class ids, one per image.
    log_every: Log progress every this many images (0: never).
    name: What the images are, for the log.
    extra_int64_features: Optional `{feature_key: ints, one per image}` added
      to each record beside the schema's keys (CIFAR-100's
      `image/class/coarse_label`).

  Yields:
    Serialized `tf.train.Example`s in TF-Slim's schema.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'Expected uint8 images [N, H, W, C], got {images.dtype} '
                     f'{images.shape}.')
  if len(images) != len(labels):
    raise ValueError(f'{len(images)} images but {len(labels)} labels.')
  extra = dict(extra_int64_features or {})
  for key, values in extra.items():
    if len(values) != len(images):
      raise ValueError(f'{len(images)} images but {len(values)} values of '
                       f'{key!r}.')
  _, height, width, _ = images.shape
  for i, (image, label) in enumerate(zip(images, labels)):
    # Eager encode_png per image measured faster than a tf.data map on CPU.
    png = tf.io.encode_png(image).numpy()
    example = image_to_tfexample(png, b'png', height, width, int(label))
    for key, values in extra.items():
      example.features.feature[key].CopyFrom(int64_feature(values[i]))
    yield example.SerializeToString()
    if log_every and (i + 1) % log_every == 0:
      logging.info('Converted %d/%d %s.', i + 1, len(images), name)


def make_split(dataset_name, split_name, dataset_dir, file_pattern,
               default_file_pattern, splits_to_sizes, num_classes, **options):
  """Builds a `DatasetSplit` the way every dataset module's `get_split` does.

  Args:
    dataset_name: The registry name ('cifar10').
    split_name: The split ('train').
    dataset_dir: The directory of the TFRecord files and `labels.txt`. May be
      None only when `file_pattern` is an absolute path.
    file_pattern: A glob overriding `default_file_pattern`, or None. Either may
      contain '%s' for the split name; a relative one is relative to
      `dataset_dir`.
    default_file_pattern: The dataset's own pattern ('cifar10_%s.tfrecord').
    splits_to_sizes: `{split_name: num_samples}`.
    num_classes: Number of classes.
    **options: Further `DatasetSplit` fields (`channels`, `has_bboxes`,
      `items_to_descriptions`).

  Returns:
    A `slimkit.datasets.split.DatasetSplit`; `labels_to_names` comes from
    `dataset_dir/labels.txt` when it exists.

  Raises:
    ValueError: for an unknown split (listing the valid ones) or a missing
      dataset_dir.
    FileNotFoundError: when dataset_dir does not exist.
  """
  if split_name not in splits_to_sizes:
    raise ValueError(
        f'Unknown split {split_name!r} of dataset {dataset_name!r}. Valid '
        f'splits: {", ".join(sorted(splits_to_sizes))}.')
  pattern = file_pattern or default_file_pattern
  if '%s' in pattern:
    pattern = pattern % split_name
  if not dataset_dir:
    if not os.path.isabs(pattern):
      raise ValueError(
          f'No dataset_dir given for {dataset_name!r} (set --dataset_dir to '
          'the folder of its TFRecord files).')
  elif not os.path.isdir(dataset_dir):
    raise FileNotFoundError(
        f'dataset_dir {dataset_dir!r} of {dataset_name!r} does not exist. '
        f'Create it with: python download_and_convert_data.py '
        f'--dataset_name={dataset_name} --dataset_dir={dataset_dir}')
  else:
    pattern = os.path.join(dataset_dir, pattern)
  labels_to_names = None
  if dataset_dir and has_labels(dataset_dir):
    labels_to_names = read_label_file(dataset_dir)
  return split_lib.DatasetSplit(
      dataset_name=dataset_name,
      split_name=split_name,
      file_pattern=pattern,
      num_samples=splits_to_sizes[split_name],
      num_classes=num_classes,
      labels_to_names=labels_to_names,
      **options)
