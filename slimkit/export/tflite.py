"""TensorFlow Lite export of a trained net, and classification with the file.

A little over 600 lines, on purpose: writing a `.tflite` file and running it
share its metadata format and its input contract, which stay in one place.

`export_tflite` converts a restored net into a `.tflite` flatbuffer with
TensorFlow's converter (`tf.lite.TFLiteConverter`), in one of four variants:

* `none`: float32 weights and arithmetic.
* `float16`: float16 weights (half the file), float32 arithmetic.
* `dynamic`: int8 weights, activations quantized on the fly per batch.
* `int8`: full-integer weights and activations, the ranges of the
  activations calibrated on preprocessed images (post-training quantization),
  or taken from the fake-quantization ranges a net trained with
  `--quantize_delay` learned (quantization-aware training, `nets/layers.py`).

Every variant takes what the SavedModel's `predict_images` signature takes: a
float32 `[batch, image_size, image_size, channels]` batch that already went
through the net's eval preprocessing (TFLite has no JPEG decoder), and
returns `probabilities` `[batch, num_classes]`. The batch dimension is
dynamic. With `io_type='uint8'` the int8 model's input and output are uint8
instead, quantized with the scale and zero point stored in the file;
`TFLiteClassifier.predict` converts, so the same caller code runs every
variant.

The labels and what is needed to use the file travel inside it: a metadata
entry named `slimkit` (the flatbuffer's `Model.metadata`, where the converter
itself stores `CONVERSION_METADATA`) holds JSON with the model and
preprocessing names, the input size and channels, the class names indexed by
class id, the variant and the checkpoint's global step. `read_metadata(path)`
returns it; other TFLite runtimes ignore it.

The runtime is LiteRT (`ai_edge_litert`, the maintained TFLite interpreter;
`pip install 'slimkit[tflite]'`) when installed, otherwise the interpreter
TensorFlow 2.21 still bundles (`tf.lite.Interpreter`, deprecated in favour of
LiteRT). Without either, `MissingRuntimeError` names the extra.

Typical use (what `export_inference_graph.py --output_format=tflite` does):

  export_tflite(net, '/tmp/lenet.tflite', image_size=28, channels=1,
                quantize='int8', calibration_images=images,
                labels_to_names=labels, model_name='lenet')
  classifier = TFLiteClassifier('/tmp/lenet.tflite')
  probabilities = classifier.predict(preprocessed_batch)
"""

import dataclasses
import datetime
import json
import os
import struct
import time
import warnings

from absl import logging
import numpy as np
import tensorflow as tf

from slimkit.datasets import dataset_utils
from slimkit.export import saved_model

QUANTIZE_MODES = ('none', 'float16', 'dynamic', 'int8')
IO_TYPES = ('float32', 'uint8')
RUNTIMES = ('auto', 'litert', 'tensorflow')
EXTRA = 'tflite'

METADATA_NAME = 'slimkit'
METADATA_FORMAT = 'slimkit-tflite-1'
INPUT_NAME = 'images'
OUTPUT_NAME = 'probabilities'
# Bytes 4..8 of every TFLite flatbuffer (the schema's file_identifier).
_FILE_IDENTIFIER = b'TFL3'
# Probabilities are clipped here before the log in the evaluation loss, as
# Keras's cross-entropy on probabilities clips at its epsilon: an int8
# softmax outputs exact zeros.
LOSS_EPSILON = 1e-7


class TFLiteModelError(ValueError):
  """A file that is not a TFLite classifier this toolkit can run."""


class MissingRuntimeError(ImportError):
  """No TFLite interpreter is installed."""


def interpreter_class(runtime='auto'):
  """Returns `(Interpreter class, runtime name)`.

  Args:
    runtime: 'litert' (`ai_edge_litert`), 'tensorflow' (`tf.lite`), or
      'auto': LiteRT when installed, else TensorFlow's.

  Raises:
    MissingRuntimeError: naming the `slimkit[tflite]` extra when the
      runtime asked for is not installed.
    ValueError: for an unknown `runtime`.
  """
  if runtime not in RUNTIMES:
    raise ValueError(f'runtime={runtime!r}; valid: {", ".join(RUNTIMES)}')
  if runtime in ('auto', 'litert'):
    try:
      from ai_edge_litert import interpreter as litert
      return litert.Interpreter, 'litert'
    except ImportError:
      if runtime == 'litert':
        raise MissingRuntimeError(
            'The LiteRT runtime (ai_edge_litert) is not installed: pip install '
            f'"slimkit[{EXTRA}]" (or pip install ai-edge-litert).') from None
  cls = getattr(getattr(tf, 'lite', None), 'Interpreter', None)
  if cls is None:
    raise MissingRuntimeError(
        f'No TFLite interpreter: this TensorFlow ({tf.__version__}) has no '
        'tf.lite.Interpreter and LiteRT (ai_edge_litert) is not installed. '
        f'Install it with: pip install "slimkit[{EXTRA}]"')
  return cls, 'tensorflow'


def _new_interpreter(cls, runtime, **kwargs):
  if runtime == 'tensorflow':
    with warnings.catch_warnings():
      # "tf.lite.Interpreter is deprecated": said once in the module docs.
      warnings.simplefilter('ignore', UserWarning)
      return cls(**kwargs)
  return cls(**kwargs)


def _probabilities_function(net, image_size, channels):
  @tf.function(input_signature=[tf.TensorSpec(
      [None, image_size, image_size, channels], tf.float32, name=INPUT_NAME)])
  def probabilities(images):
    logits, _ = net(images, training=False)
    return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32))}
  return probabilities


def _frozen(function):
  # The converter keeps Keras 3 variables as resource variables (READ_VARIABLE
  # ops reading nothing) from a SavedModel or a concrete function; frozen to
  # constants first, they become the model's weights.
  from tensorflow.python.framework import convert_to_constants
  return convert_to_constants.convert_variables_to_constants_v2(
      function.get_concrete_function())


def convert(net, *, image_size, channels=3, quantize='none',
            calibration_images=None, io_type='float32', calibration_count=None):
  """Converts a built net to TFLite flatbuffer bytes returning probabilities.

  Args:
    net: A built (and restored) `Network` with logits.
    image_size: Height and width of the input.
    channels: Channels of the input.
    quantize: One of `QUANTIZE_MODES`.
    calibration_images: For `int8`: an iterable of float32 preprocessed images
      `[image_size, image_size, channels]` (or batches of them) whose
      activation ranges calibrate the quantization. A net that
      fake-quantizes itself (trained with `--quantize_delay`, `net.quantized`)
      keeps the ranges it learned; it needs calibration images only for the
      tensors outside its layers (residual sums, concatenations).
    io_type: 'float32', or 'uint8' (int8 only) for integer input and output.
    calibration_count: How many calibration images there are, if known, for
      the progress lines' time left.

  Returns:
    The `.tflite` bytes.

  Raises:
    ValueError: for an unknown `quantize` or `io_type`, uint8 I/O without
      int8, or int8 without calibration images for a net that does not
      fake-quantize, or whose tensors outside the layers need them.
  """
  if quantize not in QUANTIZE_MODES:
    raise ValueError(f'quantize={quantize!r}; valid: '
                     f'{", ".join(QUANTIZE_MODES)}')
  if io_type not in IO_TYPES:
    raise ValueError(f'io_type={io_type!r}; valid: {", ".join(IO_TYPES)}')
  if io_type != 'float32' and quantize != 'int8':
    raise ValueError(f'io_type={io_type!r} needs quantize=\'int8\' (got '
                     f'{quantize!r}): only a full-integer model has integer '
                     'input and output.')
  fake_quantized = getattr(net, 'quantized', False)
  if quantize == 'int8' and calibration_images is None and not fake_quantized:
    raise ValueError('quantize=\'int8\' needs calibration images (or a net '
                     'trained with --quantize_delay).')
  function = _frozen(_probabilities_function(net, image_size, channels))
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function], net)
  if quantize != 'none':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  if quantize == 'int8' and calibration_images is not None:
    # With FakeQuant ops in the graph (a net trained with --quantize_delay)
    # the converter keeps their ranges and calibrates only the tensors
    # without one (sums and concatenations outside the layers).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = _representative(
        calibration_images, image_size, channels, total=calibration_count)
  if io_type == 'uint8':  # with calibration or the learned ranges alone
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
  model = converter.convert()
  if quantize == 'int8' and calibration_images is None:
    # The FakeQuant ops alone: every tensor needs one of their ranges.
    floats = _inner_float_tensors(model)
    if floats:
      raise ValueError(
          f'{len(floats)} tensors of {net.name} lie outside its fake-'
          f'quantized layers and have no learned range (e.g. {floats[0]}): '
          'pass calibration images (--dataset_name and --dataset_dir) to '
          'calibrate them; the learned ranges are kept.')
  return model


def _inner_float_tensors(model):
  """Names of the float32 tensors of `model` other than its input/output."""
  cls, runtime = interpreter_class()
  interpreter = _new_interpreter(cls, runtime, model_content=model)
  edges = {d['index'] for d in interpreter.get_input_details() +
           interpreter.get_output_details()}
  return [d['name'] for d in interpreter.get_tensor_details()
          if d['dtype'] == np.float32 and d['index'] not in edges]


def _representative(images, image_size, channels, total=None,
                    log_every_secs=5.0):
  """The converter's representative dataset, logging progress as it is read.

  Calibration reads the images one at a time through the whole float model,
  which takes tens of seconds on a CPU: a line every `log_every_secs` says
  how far it is (and, given `total`, how long is left).
  """
  shape = (image_size, image_size, channels)

  def log_progress(count, start):
    seconds = time.time() - start
    left = ''
    if total and count:
      left = (', ' + str(datetime.timedelta(
          seconds=int(seconds / count * max(total - count, 0)))) + ' left')
    of = f'/{total}' if total else ''
    logging.info('int8 calibration: %d%s images%s.', count, of, left)

  def generate():
    count = 0
    start = last_log = time.time()
    logging.info('int8 calibration: running %s preprocessed images through '
                 'the float model to measure activation ranges.',
                 total or 'the')
    for image in images:
      if time.time() - last_log >= log_every_secs:
        log_progress(count, start)
        last_log = time.time()
      image = np.asarray(image, np.float32)
      batch = image if image.ndim == 4 else image[np.newaxis]
      if batch.shape[1:] != shape:
        raise ValueError(f'A calibration image has shape {batch.shape[1:]}; '
                         f'the net takes {shape}.')
      for one in batch:
        count += 1
        yield [one[np.newaxis]]
    if not count:
      raise ValueError('No calibration image: the split is empty.')
    logging.info('int8 calibration: %d images in %.1f s; quantizing.', count,
                 time.time() - start)
  return generate


def with_metadata(model, metadata):
  """Returns `model` (TFLite bytes) with a `slimkit` metadata entry of JSON.

  The entry is added to the flatbuffer's `metadata` list (pointing at a new
  buffer), the place the converter uses for its own `CONVERSION_METADATA`,
  so any TFLite runtime loads the file unchanged.

  Args:
    model: TFLite flatbuffer bytes.
    metadata: A JSON-serialisable dict.

  Returns:
    The new bytes.
  """
  from tensorflow.lite.python import schema_py_generated as schema
  from tensorflow.lite.tools import flatbuffer_utils
  obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(),
                              np.uint8)
  obj.buffers = list(obj.buffers or []) + [buffer]
  entry = schema.MetadataT()
  entry.name = METADATA_NAME
  entry.buffer = len(obj.buffers) - 1
  obj.metadata = [m for m in (obj.metadata or [])
                  if m.name.decode() != METADATA_NAME] + [entry]
  return flatbuffer_utils.convert_object_to_bytearray(obj)


def _read_bytes(model):
  if isinstance(model, (bytes, bytearray)):
    return bytes(model), '<bytes>'
  path = os.fspath(model)
  try:
    with open(path, 'rb') as f:
      return f.read(), path
  except OSError as e:
    raise FileNotFoundError(f'Cannot read the TFLite model {path!r}: '
                            f'{e.strerror or e}') from None


def _check_identifier(content, source):
  if len(content) < 8 or content[4:8] != _FILE_IDENTIFIER:
    head = content[:8]
    raise TFLiteModelError(
        f'{source} is not a TFLite model: a .tflite flatbuffer has '
        f'{_FILE_IDENTIFIER!r} at bytes 4-8, this file ({len(content)} bytes) '
        f'begins {head!r}. Export one with export_inference_graph.py '
        '--output_format=tflite.')


def read_metadata(model):
  """Returns the `slimkit` metadata dict of a TFLite file, or None.

  Args:
    model: A path or the file's bytes.

  Raises:
    FileNotFoundError: when the file cannot be read.
    TFLiteModelError: when it is not a TFLite flatbuffer, or its metadata is
      damaged.
  """
  content, source = _read_bytes(model)
  _check_identifier(content, source)
  return _parse_metadata(content, source)


def _parse_metadata(content, source):
  from tensorflow.lite.python import schema_py_generated as schema
  try:
    root = schema.Model.GetRootAs(content, 0)
    for i in range(root.MetadataLength()):
      entry = root.Metadata(i)
      if entry.Name() and entry.Name().decode() == METADATA_NAME:
        data = root.Buffers(entry.Buffer()).DataAsNumpy()
        return json.loads(bytes(data).decode('utf-8'))
  except (IndexError, ValueError, TypeError, UnicodeDecodeError,
          AttributeError, struct.error) as e:
    # flatbuffers raises these on offsets out of range (a cut-short file).
    raise TFLiteModelError(f'{source}: damaged TFLite file (cannot read its '
                           f'metadata: {type(e).__name__}: {e}).') from None
  return None


@dataclasses.dataclass(frozen=True)
class ExportedModel:
  """What `export_tflite` wrote.

  Attributes:
    path: The `.tflite` file.
    size_bytes: Its size.
    metadata: The `slimkit` metadata stored in it.
  """
  path: str
  size_bytes: int
  metadata: dict


def export_tflite(net, output_file, *, image_size, channels=3,
                  quantize='none', calibration_images=None, io_type='float32',
                  num_classes=None, labels_to_names=None, model_name=None,
                  preprocessing_name=None, global_step=None,
                  calibration_count=None):
  """Converts `net` and writes the `.tflite` file with its metadata.

  Args:
    net: A built (and restored) `Network`.
    output_file: The file to write (its directory is created).
    image_size: Height and width of the net's input.
    channels: Channels of the net's input.
    quantize: One of `QUANTIZE_MODES`.
    calibration_images: For int8, see `convert`.
    io_type: 'float32' or 'uint8' (int8 only).
    num_classes: Number of logits; defaults to `net.num_classes`.
    labels_to_names: `{id: name}` (from `labels.txt`), or None (ids as names).
    model_name: The net's registry name, stored for the record.
    preprocessing_name: The eval preprocessing the input went through
      (a style or model name); defaults to `model_name`.
    global_step: The checkpoint's global step (evaluation summaries use it).
    calibration_count: The number of calibration images, if known (progress).

  Returns:
    An `ExportedModel`.

  Raises:
    ValueError: when the net has no logits, or for bad options (`convert`).
  """
  num_classes = num_classes or net.num_classes
  if not num_classes:
    raise ValueError(
        f'{net.name} was built without logits (num_classes={num_classes!r}); '
        'export needs a classifier, e.g. --num_classes=1001.')
  model = convert(net, image_size=image_size, channels=channels,
                  quantize=quantize, calibration_images=calibration_images,
                  io_type=io_type, calibration_count=calibration_count)
  metadata = {
      'format': METADATA_FORMAT,
      'model_name': model_name,
      'preprocessing_name': preprocessing_name or model_name,
      'image_size': int(image_size),
      'channels': int(channels),
      'num_classes': int(num_classes),
      'labels': saved_model.class_names(num_classes, labels_to_names),
      'quantize': quantize,
      'io_type': io_type,
      'quantization_aware': bool(getattr(net, 'quantized', False)),
      'global_step': None if global_step is None else int(global_step),
      'input': (f'{INPUT_NAME}: float32 [batch, {image_size}, {image_size}, '
                f'{channels}] after the eval preprocessing'
                + (' (uint8, quantized)' if io_type == 'uint8' else '')),
      'output': f'{OUTPUT_NAME}: [batch, {num_classes}]',
  }
  model = with_metadata(model, metadata)
  directory = os.path.dirname(os.path.abspath(output_file))
  os.makedirs(directory, exist_ok=True)
  with dataset_utils.atomic_output(output_file) as tmp_path:  # never half
    with open(tmp_path, 'wb') as f:
      f.write(model)
  return ExportedModel(path=output_file, size_bytes=len(model),
                       metadata=metadata)


class TFLiteClassifier:
  """A checked `.tflite` classifier: preprocessed images in, probabilities out.

  Attributes:
    source: The path (or '<bytes>').
    metadata: The `slimkit` metadata, or None for a file from elsewhere.
    runtime: 'litert' or 'tensorflow'.
    image_size: `(height, width)` of the input.
    channels: Channels of the input.
    num_classes: Number of probabilities.
    class_names: Names by class id (the ids as text without metadata).
  """

  def __init__(self, model, *, runtime='auto', num_threads=None):
    """Loads and checks the model.

    Args:
      model: A `.tflite` path or its bytes.
      runtime: See `interpreter_class`.
      num_threads: Interpreter threads (None: the runtime's default).

    Raises:
      FileNotFoundError: when the file cannot be read.
      TFLiteModelError: naming the file, when it is not a TFLite flatbuffer,
        is damaged, or is not a one-input image classifier.
      MissingRuntimeError: when no interpreter is installed.
    """
    content, self.source = _read_bytes(model)
    _check_identifier(content, self.source)
    cls, self.runtime = interpreter_class(runtime)
    try:
      # The interpreter verifies the flatbuffer before anything reads it.
      self._interpreter = _new_interpreter(
          cls, self.runtime, model_content=content, num_threads=num_threads)
      self._interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      reason = str(e).strip()
      raise TFLiteModelError(
          f'{self.source} is not a loadable TFLite model (damaged, cut short, '
          f'or made for another runtime): '
          f'{reason.splitlines()[0] if reason else type(e).__name__}'
      ) from None
    self.metadata = _parse_metadata(content, self.source)
    inputs = self._interpreter.get_input_details()
    outputs = self._interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
      raise TFLiteModelError(
          f'{self.source} has {len(inputs)} input(s) and {len(outputs)} '
          'output(s); an image classifier has one of each (images -> '
          'probabilities).')
    self._input, self._output = inputs[0], outputs[0]
    shape = list(self._input['shape_signature'])
    if (len(shape) != 4 or min(shape[1:]) < 1 or
        self._input['dtype'] not in (np.float32, np.uint8, np.int8)):
      raise TFLiteModelError(
          f'{self.source} takes {self._input["dtype"].__name__} '
          f'{shape}; expected images float32 (or uint8/int8) [batch, height, '
          'width, channels].')
    out_shape = list(self._output['shape_signature'])
    if len(out_shape) != 2 or out_shape[1] < 1:
      raise TFLiteModelError(
          f'{self.source} returns a tensor of shape {out_shape}; expected '
          'probabilities [batch, num_classes].')
    self.image_size = (int(shape[1]), int(shape[2]))
    self.channels = int(shape[3])
    self.num_classes = int(out_shape[1])
    self._dynamic_batch = shape[0] == -1
    self._batch = int(self._input['shape'][0])
    labels = (self.metadata or {}).get('labels')
    self.class_names = (list(labels) if labels and
                        len(labels) == self.num_classes
                        else saved_model.class_names(self.num_classes))

  @property
  def input_dtype(self):
    return self._input['dtype']

  def _resize(self, batch):
    if batch != self._batch:
      self._interpreter.resize_tensor_input(self._input['index'],
                                            [batch, *self.image_size,
                                             self.channels])
      self._interpreter.allocate_tensors()
      self._batch = batch

  def _run(self, images):
    dtype = self._input['dtype']
    if dtype != np.float32:
      scale, zero_point = self._input['quantization']
      info = np.iinfo(dtype)
      images = np.clip(np.round(images / scale) + zero_point, info.min,
                       info.max).astype(dtype)
    self._resize(images.shape[0])
    self._interpreter.set_tensor(self._input['index'], images)
    self._interpreter.invoke()
    out = self._interpreter.get_tensor(self._output['index'])
    if out.dtype != np.float32:
      scale, zero_point = self._output['quantization']
      out = (out.astype(np.float32) - zero_point) * scale
    return np.array(out, np.float32)

  def predict(self, images):
    """Returns float32 probabilities `[batch, num_classes]`.

    Args:
      images: float32 `[batch, height, width, channels]` after the eval
        preprocessing (quantized here for an integer-input model).

    Raises:
      ValueError: when the images have another size or channel count.
    """
    images = np.asarray(images, np.float32)
    expected = (*self.image_size, self.channels)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'{self.source} takes images [batch, '
                       f'{", ".join(map(str, expected))}]; got '
                       f'{list(images.shape)}.')
    if self._dynamic_batch:
      return self._run(images)
    # A fixed batch (a file from elsewhere): one image at a time.
    return np.concatenate([self._run(images[i:i + 1])
                           for i in range(images.shape[0])], axis=0)

  def preprocess_fn(self, preprocessing_name=None):
    """The eval preprocessing the model's input went through.

    Args:
      preprocessing_name: Overrides the name stored in the metadata.

    Raises:
      TFLiteModelError: when neither is known (a file from elsewhere).
    """
    from slimkit.preprocessing import preprocessing_factory
    name = preprocessing_name or (self.metadata or {}).get(
        'preprocessing_name')
    if not name:
      raise TFLiteModelError(
          f'{self.source} has no slimkit metadata naming its preprocessing '
          '(it was not written by export_inference_graph.py); pass the '
          'preprocessing name.')
    return preprocessing_factory.get_preprocessing(name, is_training=False)


def loss_logits(probabilities):
  """Logits whose softmax cross-entropy is that of the clipped probabilities.

  `softmax(log(p)) = p / sum(p)`, so the evaluator's loss on these logits is
  `-log(p[label] / sum(p))` with `p` clipped at `LOSS_EPSILON`.

  Args:
    probabilities: A `[batch, classes]` array of a model's probabilities.

  Returns:
    float `[batch, classes]` logits.
  """
  return np.log(np.clip(probabilities, LOSS_EPSILON, 1.0))


def file_classifier(model, *, runtime='auto'):
  """`fn(bytes) -> top 5` of an exported `.tflite` model, for `classify_each`.

  Each image is decoded and run through the eval preprocessing named in the
  model's metadata, as the SavedModel's `serving_default` does.

  Args:
    model: A `.tflite` path written by `export_tflite`.
    runtime: See `interpreter_class`.

  Raises:
    As `TFLiteClassifier` and its `preprocess_fn`.
  """
  classifier = TFLiteClassifier(model, runtime=runtime)
  preprocess = classifier.preprocess_fn()
  height, width = classifier.image_size

  def classify(content):
    image = saved_model.decode_and_preprocess(
        tf.constant(content), preprocess, height, width, classifier.channels)
    probabilities = classifier.predict(image.numpy()[np.newaxis])[0]
    top = np.argsort(-probabilities, kind='stable')[:saved_model.TOP_K]
    return [(classifier.class_names[k], int(k), float(probabilities[k]))
            for k in top]

  return classify


def classify_files(model, paths, *, runtime='auto'):
  """Classifies image files with an exported `.tflite` model.

  Args:
    model: A `.tflite` path written by `export_tflite`.
    paths: Paths of JPEG or PNG files.
    runtime: See `interpreter_class`.

  Returns:
    A list, per path, of `[(name, id, probability)]` for the top 5 classes.

  Raises:
    saved_model.ImageFileError: naming the first bad image file.
  """
  return saved_model.classify_all(file_classifier(model, runtime=runtime),
                                  paths)


def tensor_types(model):
  """The set of tensor dtype names of a TFLite model (e.g. {'int8', ...})."""
  content, source = _read_bytes(model)
  _check_identifier(content, source)
  cls, runtime = interpreter_class()
  interpreter = _new_interpreter(cls, runtime, model_content=content)
  return {np.dtype(t['dtype']).name for t in interpreter.get_tensor_details()}
