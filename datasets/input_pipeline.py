"""The tf.data input of training and evaluation: records to batches.

Longer than most modules, on purpose: reading, checking, seeding, resuming
and batching are one pipeline whose order matters (what is drawn where
decides exact resume), kept in one file to be read top to bottom.

Typical use (one pipeline per worker under a `tf.distribute` strategy):

  preprocess = preprocessing_factory.get_preprocessing('inception_v3', True)
  dataset = strategy.distribute_datasets_from_function(
      lambda ctx: input_pipeline.make_dataset(
          split, preprocess, batch_size=ctx.get_per_replica_batch_size(64),
          is_training=True, image_size=299, input_context=ctx))

Training reads the split's files in parallel (`num_readers` at a time, in a
shuffled order each epoch), shuffles records, repeats, parses and checks them
in groups of 64 (vectorised ops: cheaper than per record for small images),
decodes and preprocesses in parallel, and batches dropping the remainder
(images up to 64x64 without boxes are batched first: one map per batch
checks, decodes and preprocesses it, the same pixels for less of tf.data's
work per image);
with `mixup_alpha` or `cutmix_alpha` it then mixes each batch, whose labels
become soft (`preprocessing/mixing.py`). Evaluation reads
every record exactly once, in file then record order, and keeps the last
partial batch.

Channels: images are decoded with `split.channels` (1 for MNIST and digits,
whose 1-channel images go to the net as they are, as in TF-Slim: the first
conv is built for one input channel). `use_grayscale` converts RGB to 1
channel. `output_channels(split, use_grayscale)` is what the net receives.

Bad data: an image that is not PNG, JPEG, GIF or BMP data fails the batch with
an error naming the file and record index. Other decode failures (a truncated
image, an unreadable file) are TensorFlow's errors without a location; pass
them to `explain_input_error(split, error)`, which finds the bad records.
`skip_corrupt=True` drops undecodable records instead.

A label outside `[0, num_classes)` fails the same way, naming the file and
record; an image whose header declares more than `MAX_IMAGE_PIXELS` pixels
(a decompression bomb) is refused before it is decoded. With
`skip_corrupt=True` such records, and the unreadable rest of a file cut short
or with a flipped byte, are dropped; `skip_counter` (an int64 `tf.Variable`)
counts them as they are dropped.
"""

import inspect
import operator
import re

from absl import logging
import tensorflow as tf

from slimkit import seeds
from slimkit.datasets import image_coding
from slimkit.datasets import split as split_lib
from slimkit.preprocessing import mixing

_AUTOTUNE = tf.data.AUTOTUNE
# An in-graph check's message; `explain_input_error` reads the location back.
_BAD_IMAGE_RE = re.compile(r'Undecodable image in record (\d+) of (.+?)\]')
_BAD_LABEL_RE = re.compile(
    r'Label out of range in record (\d+) of (.+?)\].*?label.*?(-?\d+)',
    re.DOTALL)
_TOO_LARGE_RE = re.compile(r'Image too large in record (\d+) of (.+?)\]')
# Images declaring more pixels than this are refused before decoding.
MAX_IMAGE_PIXELS = image_coding.MAX_IMAGE_PIXELS


class CorruptRecordError(ValueError):
  """Records that cannot be parsed or decoded.

  Attributes:
    records: `[(file, record_index, reason)]`.
  """

  def __init__(self, message, records=()):
    super().__init__(message)
    self.records = list(records)


def output_channels(split, use_grayscale=False):
  """Returns the channel count of the images `make_dataset` yields."""
  return 1 if use_grayscale else split.channels


def _image_size(image_size):
  if isinstance(image_size, int):
    return image_size, image_size
  try:
    height, width = image_size
    return int(height), int(width)
  except (TypeError, ValueError):
    raise ValueError(f'image_size must be an int or (height, width), got '
                     f'{image_size!r}') from None


def _as_written(fn):
  """`fn` for a tf.data transformation, traced as written: no AutoGraph.

  tf.data converts its functions with AutoGraph, and with them every
  function of ours they call (parsing, checks, preprocessing): two seconds
  of every start on 2 cores, for nothing: the pipeline and the styles branch
  on tensors with `tf.cond` only (a Python `if` on a tensor fails when
  traced; it never silently means something else). The pixels are the same
  (tests/test_input_autograph.py).
  """
  return tf.autograph.experimental.do_not_convert(fn)


def _converted(fn):
  """`fn` left to tf.data, which converts it with AutoGraph."""
  return fn


def _image_map_wrapper(preprocess_fn):
  """How the functions that call `preprocess_fn` are traced.

  The styles (`preprocessing_factory`'s `Preprocessor`) are written to be
  traced as they are; a caller's own function may branch on tensors in
  Python, so tf.data converts it with AutoGraph, as it always did.
  """
  # Imported here: the styles' registry imports the nets'.
  from slimkit.preprocessing import preprocessing_factory  # pylint: disable=g-import-not-at-top
  if isinstance(preprocess_fn, preprocessing_factory.Preprocessor):
    return _as_written
  return _converted


# A record's position travels as one int64: file id * _FILE_STRIDE + index.
# (Enumerating is nearly free; zipping in the file name costs about 20 us
# per record, a third of decoding a CIFAR-10 image.)
_FILE_STRIDE = 1 << 40


def _reader(files):
  """Returns fn(file_id) -> dataset of (position, serialized record)."""
  names = tf.constant(files)

  def read(file_id):
    return tf.data.TFRecordDataset(tf.gather(names, file_id)).enumerate(
        start=file_id * _FILE_STRIDE)

  return _as_written(read)


def _location(files, position):
  """(file name, record index) tensors of an encoded position."""
  return (tf.gather(tf.constant(files), position // _FILE_STRIDE),
          position % _FILE_STRIDE)


def _records(files, *, is_training, num_readers, input_context, seed,
             num_epochs, shuffle_buffer_size, deterministic, read=None):
  """The (position, record) stream of this input pipeline."""
  num_pipelines, pipeline_id = 1, 0
  if input_context is not None:
    num_pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
  if num_epochs is None:
    repeats = -1 if is_training else 1
  else:
    repeats = num_epochs
  read = read or _reader(files)
  files_ds = tf.data.Dataset.range(len(files))

  if num_pipelines > 1 and len(files) < num_pipelines:
    # Too few files for every pipeline to own one: each reads them all and
    # keeps every num_pipelines-th record. Reading in order before sharding
    # makes the shards a partition.
    records = files_ds.flat_map(read).shard(num_pipelines, pipeline_id)
    records = records.repeat(repeats)
  else:
    if num_pipelines > 1:
      files_ds = files_ds.shard(num_pipelines, pipeline_id)
    if is_training:
      files_ds = files_ds.shuffle(len(files), seed=seed,
                                  reshuffle_each_iteration=True)
    files_ds = files_ds.repeat(repeats)
    if is_training:
      records = files_ds.interleave(
          read, cycle_length=num_readers, block_length=1,
          num_parallel_calls=num_readers, deterministic=deterministic)
    else:
      # File then record order: evaluation results can be traced to records.
      records = files_ds.flat_map(read)

  if is_training:
    records = records.shuffle(shuffle_buffer_size, seed=seed,
                              reshuffle_each_iteration=True)
  return records


# The first two bytes of JPEG, PNG, GIF and BMP files.
_IMAGE_MAGIC = (b'\xff\xd8', b'\x89P', b'GI', b'BM')


def _is_image_data(encoded):
  """Whether `encoded` starts like a JPEG, PNG, GIF or BMP file."""
  return tf.reduce_any(tf.equal(tf.strings.substr(encoded, 0, 2),
                                _IMAGE_MAGIC))


def _header_pixels(encoded):
  """Pixels a PNG or JPEG header declares (0 for other formats), undecoded."""
  head = tf.strings.substr(encoded, 0, 2)

  def png():
    dims = tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8,
                            fixed_length=8)
    dims = tf.cast(dims, tf.int64)
    width = dims[0] * 2 ** 24 + dims[1] * 2 ** 16 + dims[2] * 2 ** 8 + dims[3]
    height = dims[4] * 2 ** 24 + dims[5] * 2 ** 16 + dims[6] * 2 ** 8 + dims[7]
    return width * height

  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded, output_type=tf.int64)
    return shape[0] * shape[1]

  return tf.case([(tf.equal(head, b'\x89P'), png),
                  (tf.equal(head, b'\xff\xd8'), jpeg)],
                 default=lambda: tf.constant(0, tf.int64))


def _checked_pixels(encoded, files, position):
  """`encoded`, or an error naming the record when it is over the limit."""
  pixels = _header_pixels(encoded)

  def fail():
    filename, index = _location(files, position)
    message = tf.strings.join(['Image too large in record ',
                               tf.strings.as_string(index), ' of ', filename])
    check = tf.debugging.Assert(
        False, [message, 'declares', pixels, 'pixels, over the limit of',
                MAX_IMAGE_PIXELS])
    with tf.control_dependencies([check]):
      return tf.identity(encoded)

  return tf.cond(pixels <= MAX_IMAGE_PIXELS, lambda: encoded, fail)


def _checked_label(label, num_classes, files, position):
  """`label`, or an error naming the record when it is out of range."""

  def fail():
    filename, index = _location(files, position)
    message = tf.strings.join(['Label out of range in record ',
                               tf.strings.as_string(index), ' of ', filename])
    check = tf.debugging.Assert(
        False, [message, 'label', label, 'is not in [0,', num_classes, ')'])
    with tf.control_dependencies([check]):
      return tf.identity(label)

  ok = tf.logical_and(label >= 0, label < num_classes)
  return tf.cond(ok, lambda: label, fail)


def _checked_encoded(encoded, image_format, files, position):
  """`encoded`, or an error naming the record when it is no image data."""

  def fail():
    # Built only on failure: the message costs string ops per record.
    filename, index = _location(files, position)
    message = tf.strings.join(['Undecodable image in record ',
                               tf.strings.as_string(index), ' of ', filename])
    check = tf.debugging.Assert(
        False, [message, 'is not PNG, JPEG, GIF or BMP data; image/format is',
                image_format])
    with tf.control_dependencies([check]):
      return tf.identity(encoded)

  return tf.cond(_is_image_data(encoded), lambda: encoded, fail)


def _accepts(preprocess_fn, option):
  """Whether `preprocess_fn` takes the keyword `option` ('bbox', 'seed')."""
  accepts = getattr(preprocess_fn, f'accepts_{option}', None)
  if accepts is not None:
    return accepts
  try:
    return option in inspect.signature(preprocess_fn).parameters
  except (TypeError, ValueError):
    return False


def _image_fn(split, preprocess_fn, *, height, width, use_grayscale):
  """Returns fn(encoded, bbox, seed=None) -> the preprocessed float32 image.

  `bbox` is the record's float32 `[num_boxes, 4]` (ignored unless the split
  has boxes and the style takes them); `seed` an int `[2]` seed of the
  image's random draws (ignored by a style that takes none).
  """
  channels = output_channels(split, use_grayscale)
  pass_bbox = split.has_bboxes and _accepts(preprocess_fn, 'bbox')
  pass_seed = _accepts(preprocess_fn, 'seed')
  # A style that decodes for itself (JPEG crop-window decoding) does so here.
  from_encoded = getattr(preprocess_fn, 'from_encoded', None)

  def image_fn(encoded, bbox, seed=None):
    options = {'bbox': bbox} if pass_bbox else {}
    if pass_seed and seed is not None:
      options['seed'] = seed
    if from_encoded is not None:
      image = from_encoded(encoded, height, width, channels=split.channels,
                           use_grayscale=use_grayscale, **options)
    else:
      image = tf.io.decode_image(encoded, channels=split.channels,
                                 expand_animations=False)
      if use_grayscale and split.channels == 3:
        image = tf.image.rgb_to_grayscale(image)
      image = preprocess_fn(image, height, width, **options)
    return tf.ensure_shape(tf.cast(image, tf.float32),
                           [height, width, channels])

  return image_fn


def _batch_first(split, height, width):
  """Whether small images are batched before they are decoded.

  tf.data's per-element map costs about 20-50 us per image of its own (a
  function call, buffers, threads), as much again as decoding and
  preprocessing a 28x28 MNIST digit. A map per batch, which checks the
  batch's records as one group and then decodes and preprocesses its images
  one by one in `tf.map_fn`, pays it once per batch: at batch 128, lenet's
  training input fell from 81 to 53 us of CPU per image, cifarnet's from
  118 to 87 (`bench/input_pipeline.py`). Images with boxes keep the
  per-image map (a group's boxes are padded to the group's own count, which
  batches cannot mix).
  """
  return not split.has_bboxes and height * width <= _BATCH_FIRST_PIXELS


def _batch_fn(check, image_fn, seed_of, image_spec):
  """The map of a batch of `(index, (position, record))`: checks the records
  as one group, then decodes and preprocesses each image in turn."""

  def batch_fn(indices, records):
    positions, serialized = records
    checked = check(positions, serialized)
    images = tf.map_fn(
        lambda args: image_fn(args[1], None, seed_of(args[0])),
        (indices, checked['encoded']), fn_output_signature=image_spec)
    return images, checked['label']

  return batch_fn


def _num_classes(split, labels_offset):
  return split.num_classes - labels_offset if split.num_classes else None


def _checked_record(encoded, image_format, label, num_classes, files,
                    position):
  """`(encoded, label)` of one record, or an error naming it and its fault."""
  encoded = _checked_encoded(encoded, image_format, files, position)
  encoded = _checked_pixels(encoded, files, position)
  if num_classes is not None:
    label = _checked_label(label, num_classes, files, position)
  return encoded, label


def _example_fn(split, image_fn, files, *, labels_offset, element_seed):
  """Returns the map function (index, position, record) -> (image, label).

  Checks and decodes one record at a time (the `skip_corrupt` path, where a
  failure must stay within its record). `index` is the record's place in
  the stream, which `element_seed` (or None) turns into its draws' seed.
  """
  num_classes = _num_classes(split, labels_offset)

  def example_fn(index, position, serialized):
    parsed = split.parse(serialized)
    encoded, label = _checked_record(
        parsed['encoded'], parsed['format'],
        tf.cast(parsed['label'], tf.int64) - labels_offset, num_classes,
        files, position)
    seed = element_seed(index) if element_seed else None
    return image_fn(encoded, parsed.get('bbox'), seed), label

  return example_fn


# Records checked together: the checks' ops run once per group instead of
# once per record.
_CHECK_GROUP = 64
# Images up to this size (the net's input) are batched before decoding.
_BATCH_FIRST_PIXELS = 64 * 64


def _group_checker(split, files, *, labels_offset):
  """Returns check(positions, serialized): parses and checks a group.

  On 32x32 PNGs the per-record checks (format, header pixel count, label
  range, each branching to build its message) cost tf.data about as much as
  decoding; on a group of 64 their cost all but disappears. A group holding
  a bad record runs the per-record checks, in record order, so its errors
  are exactly the per-record path's.

  `check` returns a dict of vectors: `encoded`, `label` and, when the split
  has boxes, `bbox` and `num_boxes` (see `_group_boxes`; `_record_boxes`
  takes a record's own), parsed here too.
  """
  num_classes = _num_classes(split, labels_offset)
  spec = split.feature_spec()

  def check_one(args):
    encoded, image_format, label, position = args
    return _checked_record(encoded, image_format, label, num_classes, files,
                           position)

  def check(positions, serialized):
    parsed = tf.io.parse_example(serialized, spec)
    encoded = parsed['image/encoded']
    formats = parsed['image/format']
    labels = parsed['image/class/label'] - labels_offset
    head = tf.strings.substr(encoded, 0, 2)
    is_image = tf.reduce_any(
        tf.equal(head[:, tf.newaxis], tf.constant(_IMAGE_MAGIC)), axis=1)
    fast = tf.logical_and(is_image,
                          _png_pixels(encoded, head) <= MAX_IMAGE_PIXELS)
    if num_classes is not None:
      fast = tf.logical_and(fast, tf.logical_and(labels >= 0,
                                                 labels < num_classes))

    def one_by_one():
      return tf.map_fn(check_one, (encoded, formats, labels, positions),
                       fn_output_signature=(tf.string, tf.int64))

    # JPEG headers are read only when the rest passed: a broken one fails
    # without naming its record, which must not pre-empt the ordered
    # checks of the records before it.
    fast = tf.cond(
        tf.reduce_all(fast),
        lambda: tf.reduce_all(_jpeg_pixels(encoded, head) <= MAX_IMAGE_PIXELS),
        lambda: tf.constant(False))
    encoded, labels = tf.cond(fast, lambda: (encoded, labels), one_by_one)
    checked = {'encoded': encoded, 'label': labels}
    if split.has_bboxes:
      checked['bbox'], checked['num_boxes'] = _group_boxes(parsed)
    return checked

  return check


def _checked_groups(records, split, files, *, labels_offset,
                    num_parallel_calls, deterministic):
  """One dict per record (see `_group_checker`), checked in groups."""
  check = _group_checker(split, files, labels_offset=labels_offset)
  return records.batch(_CHECK_GROUP).map(
      _as_written(check), num_parallel_calls=num_parallel_calls,
      deterministic=deterministic).unbatch()


def _group_boxes(parsed):
  """The boxes of a parsed group: float32 `[group, max boxes, 4]` and counts.

  Dense and padded, with room for at least one box: ragged tensors would
  add dozens of ops to the pipeline's function (its start-up shows on a
  short evaluation), and unbatching an empty `[group, 0, 4]` crashes
  TF 2.21. `num_boxes` says how many rows of each record's are real.
  """
  coords = [parsed[f'image/object/bbox/{k}']
            for k in ('ymin', 'xmin', 'ymax', 'xmax')]
  width = tf.maximum(coords[0].dense_shape[1], 1)
  shape = tf.stack([coords[0].dense_shape[0], width])
  boxes = tf.stack([tf.sparse.to_dense(tf.sparse.reset_shape(c, shape))
                    for c in coords], axis=2)
  num_boxes = tf.math.bincount(tf.cast(coords[0].indices[:, 0], tf.int32),
                               minlength=tf.cast(shape[0], tf.int32),
                               dtype=tf.int64)
  return boxes, num_boxes


def _jpeg_pixels(encoded, head):
  """Pixels the JPEG headers of a vector of records declare (0 if not JPEG).

  `extract_jpeg_shape` reads one header per op: a `map_fn` runs it over the
  group's JPEGs. Groups without a JPEG (CIFAR's) skip it. (The 64 reads
  written out as ops instead made the pipeline's start-up 0.25 s of CPU
  longer, which a short evaluation notices.)
  """
  is_jpeg = tf.equal(head, _IMAGE_MAGIC[0])

  def read():
    jpegs = tf.where(is_jpeg)[:, 0]
    pixels = tf.map_fn(
        lambda data: tf.reduce_prod(tf.image.extract_jpeg_shape(
            data, output_type=tf.int64)[:2]),
        tf.gather(encoded, jpegs), fn_output_signature=tf.int64)
    return tf.scatter_nd(jpegs[:, tf.newaxis], pixels,
                         tf.shape(encoded, out_type=tf.int64))

  return tf.cond(tf.reduce_any(is_jpeg), read,
                 lambda: tf.zeros(tf.shape(encoded), tf.int64))


def _record_boxes(record):
  """One record's float32 `[num_boxes, 4]` from `_group_boxes`, or None."""
  if 'bbox' not in record:
    return None
  return record['bbox'][:record['num_boxes']]


def _png_pixels(encoded, head):
  """Pixels the headers of a vector of records declare if PNG, else 0."""
  # Width and height are big-endian uint32s at bytes 16-23 (padded, so that
  # a short record reads as 0 pixels and fails at decoding instead).
  header = tf.strings.join([tf.strings.substr(encoded, 0, 24), b'\0' * 24])
  dims = tf.cast(tf.io.decode_raw(tf.strings.substr(header, 16, 8), tf.uint8,
                                  fixed_length=8), tf.int64)
  powers = tf.constant([2 ** 24, 2 ** 16, 2 ** 8, 1], tf.int64)
  width = tf.reduce_sum(dims[:, :4] * powers, axis=1)
  height = tf.reduce_sum(dims[:, 4:] * powers, axis=1)
  return tf.where(tf.equal(head, b'\x89P'), width * height,
                  tf.zeros_like(width))


def _skip_bad_records(records, example_fn, files, *, num_parallel_calls,
                      deterministic, counter, shape, start=0,
                      wrap=_as_written):
  """Maps `example_fn` over records, dropping (and counting) failures.

  Each record is mapped in its own one-element dataset whose errors are
  ignored, followed by a placeholder flagged bad: taking the first element
  gives the example, or the placeholder when the record failed. `wrap`
  (`_image_map_wrapper`) says how the functions around `example_fn` are
  traced.
  """
  placeholder = (tf.zeros(shape, tf.float32), tf.constant(-1, tf.int64),
                 tf.constant(True))

  def flag_good(image, label):
    return image, label, tf.constant(False)

  def one(index, record):
    good = tf.data.Dataset.from_tensors((index,) + tuple(record)).map(
        wrap(example_fn)).ignore_errors().map(_as_written(flag_good))
    return good.concatenate(
        tf.data.Dataset.from_tensors(placeholder)).take(1)

  dataset = records.enumerate(start=start).interleave(
      wrap(one), cycle_length=num_parallel_calls or _AUTOTUNE,
      num_parallel_calls=num_parallel_calls or _AUTOTUNE,
      deterministic=deterministic)

  def count(image, label, bad):
    if counter is None:
      return image, label, bad
    with tf.control_dependencies([counter.assign_add(tf.cast(bad, tf.int64))]):
      return tf.identity(image), label, bad

  def is_good(image, label, bad):
    del image, label
    return tf.logical_not(bad)

  def unflag(image, label, bad):
    del bad
    return image, label

  return dataset.map(_as_written(count)).filter(_as_written(is_good)).map(
      _as_written(unflag))


def _skipping_reader(files, counter):
  """Like `_reader`, but a file that cannot be read to its end is cut short.

  TFRecord framing cannot resync after a bad record, so the rest of such a
  file is lost; comparing the bytes read with the file size tells that it
  happened (counted as one skipped record: how many followed is unknown).
  """
  names = tf.constant(files)
  sizes = tf.constant([tf.io.gfile.stat(f).length for f in files], tf.int64)
  end = (tf.constant(-1, tf.int64), tf.constant(b''))

  def read(file_id):
    records = tf.data.TFRecordDataset(tf.gather(names, file_id)).enumerate(
        start=file_id * _FILE_STRIDE).ignore_errors()
    records = records.concatenate(tf.data.Dataset.from_tensors(end))

    def track(consumed, element):
      position, serialized = element
      # A record takes 16 bytes of framing besides its data.
      consumed += tf.where(position >= 0,
                           16 + tf.cast(tf.strings.length(serialized),
                                        tf.int64), 0)
      return consumed, (position, serialized, consumed)

    def keep(position, serialized, consumed):
      is_end = position < 0
      if counter is not None:
        cut = tf.logical_and(is_end,
                             tf.not_equal(consumed, sizes[file_id]))
        with tf.control_dependencies(
            [counter.assign_add(tf.cast(cut, tf.int64))]):
          return tf.logical_not(is_end)
      return tf.logical_not(is_end)

    def drop_consumed(position, serialized, consumed):
      del consumed
      return position, serialized

    return records.scan(tf.constant(0, tf.int64), _as_written(track)).filter(
        _as_written(keep)).map(_as_written(drop_consumed))

  return _as_written(read)


def make_dataset(split, preprocess_fn, *, batch_size, is_training, image_size,
                 num_readers=4, num_preprocessing_threads=4, labels_offset=0,
                 use_grayscale=False, input_context=None,
                 shuffle_buffer_size=None, seed=None, num_epochs=None,
                 prefetch=True, skip_corrupt=False, skip_counter=None,
                 records_consumed=0, mixup_alpha=0.0, cutmix_alpha=0.0):
  """Builds the batched input of one input pipeline.

  Args:
    split: The `DatasetSplit` to read.
    preprocess_fn: `fn(image, height, width, **options)` from
      `preprocessing_factory.get_preprocessing` (which also decodes JPEG crops
      directly), or any function of a decoded uint8 image returning
      `[height, width, channels]`. It gets `bbox=` (float `[num_boxes, 4]`)
      when the split has boxes and the function takes them.
    batch_size: Images per batch of this pipeline (under a strategy, the
      per-pipeline batch: `input_context.get_per_replica_batch_size(global)`).
    is_training: Training (shuffle, repeat, augment, drop the last partial
      batch) or evaluation (one ordered pass, every record once).
    image_size: Output size: an int or (height, width).
    num_readers: Files read in parallel in training.
    num_preprocessing_threads: Images decoded and preprocessed in parallel
      (batches of them for images up to 64x64, see `_batch_first`); 0 or
      None lets tf.data tune it (AUTOTUNE).
    labels_offset: Subtracted from every label (1 drops ImageNet's
      background class for nets trained without it).
    use_grayscale: Convert RGB images to 1 channel.
    input_context: The `tf.distribute.InputContext` of this pipeline: with
      at least as many files as pipelines each pipeline reads its own files,
      otherwise its own records.
    shuffle_buffer_size: Records in the shuffle buffer in training (default
      max(1000, 10 * batch_size)).
    seed: An int: training reads in a reproducible order (the file and
      record shuffles use it) and every image's augmentation draws are
      stateless, keyed on it, the pipeline and the image's index in the
      pipeline's stream, so they do not depend on the parallelism. None:
      TF's stateful draws and a nondeterministic element order.
    num_epochs: Passes over the data; None means forever in training and once
      in evaluation.
    prefetch: Prefetch batches (AUTOTUNE) so input overlaps the train step.
    skip_counter: With `skip_corrupt`, an int64 `tf.Variable` incremented
      for each dropped record (and each file cut short), for the log.
    skip_corrupt: Drop records that fail to parse, decode or preprocess
      instead of failing.
    records_consumed: Training with a seed, resumed: how many records of
      this pipeline's stream the run consumed before it stopped. The stream
      is replayed and those records are skipped before they are decoded, so
      that the rest (order and augmentation) is exactly the stream of an
      uninterrupted run; when that would read more than
      `MAX_REPLAY_BYTES`, or with `skip_corrupt` (whose drops make the count
      inexact), the pipeline reads the stream of a seed derived from `seed`
      and `records_consumed` instead, logged, and reproducible too.
    mixup_alpha: Training: MixUp of every batch with `lam ~ Beta(alpha,
      alpha)` (`preprocessing/mixing.py`); 0: off.
    cutmix_alpha: Training: CutMix likewise; with both, each batch gets one
      of the two. With a seed, a batch's draws are keyed on the seed, the
      pipeline and the batch's index in the stream (which a resumed stream
      continues at `records_consumed // batch_size`).

  Returns:
    A `tf.data.Dataset` of `(images float32 [batch, height, width, channels],
    labels int64 [batch])`; with MixUp or CutMix the labels are the mixed
    one-hot rows, float32 `[batch, num_classes]`.

  Raises:
    FileNotFoundError: naming the file pattern, when no file matches it.
    ValueError: for a bad batch size, reader count or image size; for
      mixing in evaluation, a negative alpha, or a split without a class
      count.
  """
  height, width = _image_size(image_size)
  try:
    valid = operator.index(batch_size) >= 1  # ints and numpy ints
  except TypeError:
    valid = False
  if not valid:
    raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
  batch_size = operator.index(batch_size)
  if num_readers < 1:
    raise ValueError(f'num_readers must be at least 1, got {num_readers!r}')
  mixer = None
  mixup_alpha = mixing.check_alpha('mixup_alpha', mixup_alpha)
  cutmix_alpha = mixing.check_alpha('cutmix_alpha', cutmix_alpha)
  if mixup_alpha or cutmix_alpha:
    if not is_training:
      raise ValueError(f'mixup_alpha={mixup_alpha!r} and cutmix_alpha='
                       f'{cutmix_alpha!r}: mixing is a training '
                       'augmentation; evaluation never mixes.')
    mixer = mixing.BatchMixer(_num_classes(split, labels_offset),
                              mixup_alpha=mixup_alpha,
                              cutmix_alpha=cutmix_alpha)
  # A preprocessor made with use_grayscale converts too; the channel count
  # must follow it.
  use_grayscale = bool(use_grayscale or
                       getattr(preprocess_fn, 'use_grayscale', False))
  files = split.files()
  deterministic = (not is_training) or seed is not None
  if shuffle_buffer_size is None:
    shuffle_buffer_size = max(1000, 10 * batch_size)
  replay = 0
  if is_training and seed is not None and records_consumed:
    seed, replay = _resume_plan(split, files, seed, records_consumed,
                                skip_corrupt)
  element_seed = batch_seed = None
  if is_training and seed is not None:
    pipeline = input_context.input_pipeline_id if input_context else 0
    element_seed = lambda index: seeds.fold(int(seed), pipeline, index)
    # Apart from every element's seed (indices are >= 0).
    batch_seed = lambda index: seeds.fold(int(seed), pipeline, -1, index)
  records = _records(files, is_training=is_training, num_readers=num_readers,
                     input_context=input_context, seed=seed,
                     num_epochs=num_epochs,
                     shuffle_buffer_size=shuffle_buffer_size,
                     deterministic=deterministic,
                     read=(_skipping_reader(files, skip_counter)
                           if skip_corrupt else None))
  if replay:
    records = records.skip(replay)
  image_fn = _image_fn(split, preprocess_fn, height=height, width=width,
                       use_grayscale=use_grayscale)
  if skip_corrupt:
    dataset = _skip_bad_records(
        records, _example_fn(split, image_fn, files,
                             labels_offset=labels_offset,
                             element_seed=element_seed), files,
        num_parallel_calls=num_preprocessing_threads,
        deterministic=deterministic, counter=skip_counter,
        shape=[height, width, output_channels(split, use_grayscale)],
        start=replay, wrap=_image_map_wrapper(preprocess_fn)).batch(
            batch_size, drop_remainder=is_training)
  else:
    wrap = _image_map_wrapper(preprocess_fn)
    seed_of = element_seed or (lambda index: None)
    if _batch_first(split, height, width):
      dataset = records.enumerate(start=replay).batch(
          batch_size, drop_remainder=is_training).map(
              wrap(_batch_fn(_group_checker(split, files,
                                            labels_offset=labels_offset),
                             image_fn, seed_of, tf.TensorSpec(
                                 [height, width,
                                  output_channels(split, use_grayscale)],
                                 tf.float32))),
              num_parallel_calls=num_preprocessing_threads or _AUTOTUNE,
              deterministic=deterministic)
    else:
      checked = _checked_groups(
          records, split, files, labels_offset=labels_offset,
          num_parallel_calls=_AUTOTUNE, deterministic=deterministic)
      dataset = checked.enumerate(start=replay).map(
          wrap(lambda index, record: (
              image_fn(record['encoded'], _record_boxes(record),
                       seed_of(index)),
              record['label'])),
          num_parallel_calls=num_preprocessing_threads or _AUTOTUNE,
          deterministic=deterministic).batch(batch_size,
                                             drop_remainder=is_training)
  if mixer is not None:
    dataset = dataset.enumerate(start=replay // batch_size).map(
        _as_written(lambda index, batch: mixer(
            *batch, seed=batch_seed(index) if batch_seed else None)),
        num_parallel_calls=_AUTOTUNE, deterministic=deterministic)
  if prefetch:
    dataset = dataset.prefetch(_AUTOTUNE)
  if input_context is not None:
    # This function shards already; a strategy must not shard again.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    dataset = dataset.with_options(options)
  return dataset


# Replaying more than this to resume a stream exactly costs more than it is
# worth (minutes of reading); a resumed run then reads a new stream instead.
MAX_REPLAY_BYTES = 16 << 30


def _resume_plan(split, files, seed, records_consumed, skip_corrupt):
  """(seed, records to replay) of a training stream resumed after
  `records_consumed` records; see `make_dataset`."""
  size = sum(tf.io.gfile.stat(f).length for f in files)
  replay_bytes = records_consumed * size / max(split.num_samples or 1, 1)
  if not skip_corrupt and replay_bytes <= MAX_REPLAY_BYTES:
    logging.info('Resuming the input stream after %d records (reading '
                 'through them again, about %.1f GB, without decoding).',
                 records_consumed, replay_bytes / 1e9)
    return seed, records_consumed
  why = ('--skip_corrupt_records drops an unknown number of them'
         if skip_corrupt else
         f'replaying them would read about {replay_bytes / 1e9:.0f} GB')
  logging.info('Resuming after %d records with a new input stream (%s); '
               'it is the same whenever the run resumes at this step.',
               records_consumed, why)
  return seeds.derive(seed, records_consumed), 0


def _as_files_and_split(split_or_files, channels):
  if isinstance(split_or_files, split_lib.DatasetSplit):
    return split_or_files.files(), split_or_files
  files = ([split_or_files] if isinstance(split_or_files, str)
           else list(split_or_files))
  described = split_lib.DatasetSplit(
      dataset_name='files', split_name='', file_pattern='', num_samples=0,
      num_classes=0, channels=channels or 3)
  return files, described


def _clean(message):
  """The gist of a TensorFlow error message, without graph node details."""
  message = re.sub(r'\{\{[^}]*\}\}', '', message)
  message = re.split(r'\[\[|\[Op:', message)[0]
  return ' '.join(message.split())


def _count_records(filename):
  """Returns (readable record count, reading error or None)."""
  count = 0
  try:
    for _ in tf.data.TFRecordDataset(filename):
      count += 1
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
          tf.errors.OutOfRangeError) as e:
    return count, (f'{type(e).__name__}: unreadable record '
                   f'({_clean(e.message)})')
  return count, None


def _record_reason(split, serialized):
  """Why one record fails (decoding it eagerly), or None if it decodes."""
  try:
    parsed = split.parse(serialized)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    return f'not a tf.train.Example of this schema ({e})'
  if int(parsed['label']) < 0:
    return 'no image/class/label'
  encoded = parsed['encoded']
  if not bool(_is_image_data(encoded)):
    return (f'image/encoded is not PNG, JPEG, GIF or BMP data '
            f'({len(encoded.numpy())} bytes, image/format '
            f'{parsed["format"].numpy()!r})')
  try:
    tf.io.decode_image(encoded, channels=split.channels,
                       expand_animations=False)
  except tf.errors.OpError as e:
    return f'undecodable image ({_clean(e.message)})'
  return None


def find_corrupt_records(split_or_files, channels=None):
  """Scans records for ones that cannot be parsed or decoded.

  Decoding runs in parallel with tf.data; only the failing records are
  decoded again, eagerly, to say why.

  Args:
    split_or_files: A `DatasetSplit`, a file name or a list of file names.
    channels: Channels to decode when files are given (default 3).

  Returns:
    A list of `(file, record_index, reason)`, in file and record order.

  Raises:
    FileNotFoundError: naming the pattern of a split without files.
  """
  files, split = _as_files_and_split(split_or_files, channels)
  found = []
  for filename in files:
    count, read_error = _count_records(filename)

    def decodes(index, serialized):
      parsed = split.parse(serialized)
      image = tf.io.decode_image(parsed['encoded'], channels=split.channels,
                                 expand_animations=False)
      check = tf.debugging.assert_non_negative(parsed['label'])
      with tf.control_dependencies([check]):
        return index, tf.shape(image)[0]

    good = set()
    records = tf.data.TFRecordDataset(filename).take(count).enumerate()
    for index, _ in records.map(_as_written(decodes),
                                num_parallel_calls=_AUTOTUNE,
                                deterministic=False).ignore_errors():
      good.add(int(index))
    if len(good) < count:
      for index, serialized in tf.data.TFRecordDataset(filename).take(
          count).enumerate():
        if int(index) not in good:
          reason = _record_reason(split, serialized) or 'failed to decode'
          found.append((filename, int(index), reason))
    if read_error:
      found.append((filename, count, read_error))
  return found


def explain_input_error(split, error, max_listed=10):
  """Turns a decode failure during iteration into an error naming records.

  Scripts call it as
  `except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
  raise input_pipeline.explain_input_error(split, e) from e`.

  Args:
    split: The `DatasetSplit` that was being read.
    error: The `tf.errors.OpError` raised while iterating.
    max_listed: How many bad records the message lists at most.

  Returns:
    A `CorruptRecordError` naming the file(s) and record index(es), or the
    original error when it is not about the data (nothing is found corrupt).
  """
  message = getattr(error, 'message', str(error))
  match = _BAD_LABEL_RE.search(message)
  if match:
    index, filename = int(match.group(1)), match.group(2).strip()
    label = int(match.group(3))
    reason = (f'label {label} (after --labels_offset) is outside [0, '
              f'{split.num_classes})')
    return CorruptRecordError(
        f'Record {index} of {filename}: {reason}. Check --dataset_name and '
        '--labels_offset, or pass --skip_corrupt_records to drop such '
        'records.', [(filename, index, reason)])
  match = _TOO_LARGE_RE.search(message)
  if match:
    index, filename = int(match.group(1)), match.group(2).strip()
    reason = (f'the image header declares more than {MAX_IMAGE_PIXELS} '
              'pixels (a decompression bomb?)')
    return CorruptRecordError(
        f'Record {index} of {filename}: {reason}; refused without decoding. '
        'Pass --skip_corrupt_records to drop such records.',
        [(filename, index, reason)])
  match = _BAD_IMAGE_RE.search(message)
  if match:
    index, filename = int(match.group(1)), match.group(2).strip()
    return CorruptRecordError(
        f'Record {index} of {filename} holds no decodable image (not PNG, '
        f'JPEG, GIF or BMP data). Rewrite the file with '
        f'download_and_convert_data.py, or pass --skip_corrupt_records '
        f'(skip_corrupt) to drop such '
        f'records.', [(filename, index, 'not PNG, JPEG, GIF or BMP data')])
  records = find_corrupt_records(split)
  if not records:
    return error
  listed = '\n'.join(f'  {f} record {i}: {reason}'
                     for f, i, reason in records[:max_listed])
  more = (f'\n  ... and {len(records) - max_listed} more'
          if len(records) > max_listed else '')
  return CorruptRecordError(
      f'{len(records)} corrupt record(s) in the {split.dataset_name} '
      f'{split.split_name!r} split ({_clean(message)}):\n'
      f'{listed}{more}', records)
