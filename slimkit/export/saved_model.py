"""Exports a trained net as a SavedModel that classifies encoded images.

TF-Slim's `export_inference_graph.py` wrote a frozen GraphDef taking a float
batch. Its successor here writes a SavedModel with two signatures:

* `serving_default`: `images` = a `[batch]` string tensor of encoded JPEG or
  PNG files; each is decoded, run through the net's eval preprocessing, and
  classified.
* `predict_images`: `images` = a float32 `[batch, size, size, channels]` batch
  already preprocessed (what the net itself takes).

Both return `probabilities` `[batch, num_classes]`, `top_5_ids` (int32) and
`top_5_names` (strings from the labels file, or the ids as text without one).

Typical use (what `export_inference_graph.py` does):

  net = nets_factory.get_network_fn('inception_v3', num_classes=1001)
  net(tf.zeros([1, 299, 299, 3]))
  checkpoints.restore(net, 'inception_v3.ckpt')
  preprocess = preprocessing_factory.get_preprocessing('inception_v3',
                                                       is_training=False)
  export.export_saved_model(net, preprocess, '/tmp/inception_v3_export',
                            image_size=299, labels_to_names=labels)

and to classify:

  classifier = tf.saved_model.load('/tmp/inception_v3_export')
  out = classifier.signatures['serving_default'](images=tf.constant([jpeg]))
"""

import dataclasses
import os
import re
from typing import Optional

import tensorflow as tf

SERVING_SIGNATURE = 'serving_default'
PREDICT_SIGNATURE = 'predict_images'
TOP_K = 5


def class_names(num_classes, labels_to_names=None):
  """Returns a list of `num_classes` names, the id as text where none is known.

  Args:
    num_classes: Number of logits of the net.
    labels_to_names: `{id: name}` (from `labels.txt`), or None.

  Returns:
    A list of strings indexed by class id.
  """
  labels_to_names = labels_to_names or {}
  return [str(labels_to_names.get(i, i)) for i in range(num_classes)]


class ClassifierModule(tf.Module):
  """A net, its eval preprocessing and its class names, as serving functions.

  Attributes:
    net: The `Network` (called in inference mode).
    image_size: Height and width the preprocessing produces.
    channels: Channels the net takes (1 for LeNet, 3 otherwise).
  """

  def __init__(self, net, preprocess_fn, *, image_size, channels=3,
               num_classes, labels_to_names=None):
    """Creates the module.

    Args:
      net: A built `Network` with `num_classes` logits.
      preprocess_fn: `fn(image, output_height, output_width)` taking one
        decoded uint8 `[height, width, channels]` image and returning a float32
        `[image_size, image_size, channels]` image (the net's eval
        preprocessing from `preprocessing_factory`).
      image_size: Height and width of the net's input.
      channels: Channels of the net's input.
      num_classes: Number of logits.
      labels_to_names: `{id: name}` for `top_5_names`, or None.
    """
    super().__init__(name='classifier')
    self.net = net
    self.image_size = int(image_size)
    self.channels = int(channels)
    self._preprocess_fn = preprocess_fn
    self._top_k = min(TOP_K, int(num_classes))
    self.class_names = tf.constant(class_names(num_classes, labels_to_names))
    self.serve_encoded = tf.function(
        self._serve_encoded,
        input_signature=[tf.TensorSpec([None], tf.string, name='images')])
    self.predict_images = tf.function(
        self._predict_images,
        input_signature=[tf.TensorSpec(
            [None, self.image_size, self.image_size, self.channels],
            tf.float32, name='images')])

  def _predict_images(self, images):
    logits, _ = self.net(images, training=False)
    probabilities = tf.nn.softmax(logits)
    top = tf.math.top_k(probabilities, k=self._top_k)
    return {
        'probabilities': probabilities,
        'top_5_ids': top.indices,
        'top_5_names': tf.gather(self.class_names, top.indices),
    }

  def _serve_encoded(self, images):
    return self._predict_images(self.decode_and_preprocess(images))

  def decode_and_preprocess(self, images):
    """Decodes encoded JPEG/PNG strings and runs the eval preprocessing.

    Args:
      images: A `[batch]` string tensor of encoded images.

    Returns:
      A float32 `[batch, image_size, image_size, channels]` tensor.
    """
    return tf.map_fn(
        lambda encoded: decode_and_preprocess(
            encoded, self._preprocess_fn, self.image_size, self.image_size,
            self.channels),
        images, fn_output_signature=tf.TensorSpec(
            [self.image_size, self.image_size, self.channels], tf.float32))


def decode_and_preprocess(encoded, preprocess_fn, height, width, channels):
  """Decodes one encoded JPEG/PNG/GIF/BMP and runs the eval preprocessing.

  Args:
    encoded: A scalar string tensor, the file's bytes.
    preprocess_fn: `fn(image, height, width)` (the net's eval preprocessing).
    height: Output height.
    width: Output width.
    channels: Channels to decode to (1 or 3).

  Returns:
    A float32 `[height, width, channels]` tensor.
  """
  # expand_animations=False gives a GIF's first frame a static rank of 3.
  image = tf.io.decode_image(encoded, channels=channels,
                             expand_animations=False)
  image = tf.cast(preprocess_fn(image, height, width), tf.float32)
  return tf.ensure_shape(image, [height, width, channels])


def export_saved_model(net, preprocess_fn, output_dir, *, image_size,
                       channels=3, num_classes=None, labels_to_names=None):
  """Writes `net` as a SavedModel with the two serving signatures.

  Args:
    net: A built (and restored) `Network`.
    preprocess_fn: The net's eval preprocessing, `fn(image, height, width)`.
    output_dir: Directory to write the SavedModel to.
    image_size: Height and width of the net's input.
    channels: Channels of the net's input.
    num_classes: Number of logits; defaults to `net.num_classes`.
    labels_to_names: `{id: name}` for `top_5_names`, or None.

  Returns:
    The `ClassifierModule` that was saved.

  Raises:
    ValueError: when the net has no logits (`num_classes` 0 or None).
  """
  num_classes = num_classes or net.num_classes
  if not num_classes:
    raise ValueError(
        f'{net.name} was built without logits (num_classes={num_classes!r}); '
        'export needs a classifier, e.g. --num_classes=1001.')
  module = ClassifierModule(net, preprocess_fn, image_size=image_size,
                            channels=channels, num_classes=num_classes,
                            labels_to_names=labels_to_names)
  tf.saved_model.save(module, output_dir, signatures={
      SERVING_SIGNATURE: module.serve_encoded,
      PREDICT_SIGNATURE: module.predict_images,
  })
  return module


class ImageFileError(ValueError):
  """An image file that cannot be read or decoded; the message names it."""


def _reason(error):
  # TF's first line, without its '[Op:DecodeImage]' suffix.
  message = (getattr(error, 'message', None) or str(error)).strip()
  first = message.splitlines()[0] if message else type(error).__name__
  first = re.sub(r'^\{\{function_node [^}]*\}\}\s*', '', first)
  return first.split(' [Op:')[0].rstrip(' .')


def read_image(path):
  """The bytes of an image file TensorFlow can decode.

  Args:
    path: An image file (JPEG, PNG, GIF, BMP, and what else TensorFlow's
      `decode_image` reads).

  Returns:
    The file's bytes.

  Raises:
    ImageFileError: naming the file and why, when it is missing, a folder,
      unreadable, or not a decodable image.
  """
  if not tf.io.gfile.exists(path):
    raise ImageFileError(f'{path}: no such file')
  if tf.io.gfile.isdir(path):
    raise ImageFileError(f'{path}: a directory, not an image file')
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      content = f.read()
  except (OSError, tf.errors.OpError) as e:
    raise ImageFileError(f'{path}: cannot be read ({_reason(e)})') from None
  try:
    tf.io.decode_image(content, expand_animations=False)
  except tf.errors.OpError as e:
    raise ImageFileError(
        f'{path}: not an image file ({_reason(e)})') from None
  return content


@dataclasses.dataclass(frozen=True)
class Classified:
  """The outcome for one image file.

  Attributes:
    path: The file.
    top: `((name, id, probability), ...)` of the top classes (empty when it
      failed).
    error: Why it failed (the `ImageFileError` message), or None.
  """
  path: str
  top: tuple = ()
  error: Optional[str] = None


def classify_each(classify_encoded, paths):
  """Classifies image files one by one; a bad file does not stop the rest.

  Args:
    classify_encoded: `fn(bytes) -> [(name, id, probability)]` of one
      encoded image (`saved_model_classifier`, `tflite.file_classifier`,
      `module_classifier`).
    paths: The image files.

  Yields:
    A `Classified` per path, in order.
  """
  for path in paths:
    try:
      content = read_image(path)
      try:
        top = classify_encoded(content)
      except tf.errors.InvalidArgumentError as e:
        raise ImageFileError(f'{path}: {_reason(e)}') from None
      yield Classified(path=path, top=tuple(top))
    except ImageFileError as e:
      yield Classified(path=path, error=str(e))


def _top(out):
  ids = out['top_5_ids'].numpy()[0]
  names = out['top_5_names'].numpy()[0]
  probabilities = out['probabilities'].numpy()[0]
  return [(names[k].decode('utf-8'), int(ids[k]), float(probabilities[ids[k]]))
          for k in range(len(ids))]


def saved_model_classifier(saved_model_dir):
  """`fn(bytes) -> top 5` of an exported SavedModel's `serving_default`."""
  # The closure keeps the loaded object, which owns the variables, alive.
  loaded = tf.saved_model.load(saved_model_dir)
  serve = loaded.signatures[SERVING_SIGNATURE]
  return lambda content: _top(serve(images=tf.constant([content])))


def module_classifier(module):
  """`fn(bytes) -> top 5` of a `ClassifierModule` in memory (no export)."""
  return lambda content: _top(module.serve_encoded(tf.constant([content])))


def classify_files(saved_model_dir, paths):
  """Classifies image files with an exported SavedModel.

  Args:
    saved_model_dir: A directory written by `export_saved_model`.
    paths: Paths of JPEG or PNG files.

  Returns:
    A list, per path, of `[(name, id, probability)]` for the top 5 classes.

  Raises:
    ImageFileError: naming the first file that is missing or not an image
      (`classify_each` goes on past bad files).
  """
  return classify_all(saved_model_classifier(saved_model_dir), paths)


def classify_all(classify_encoded, paths):
  """`classify_each`'s top classes as lists; the first bad file raises.

  Raises:
    ImageFileError: naming the first file that is missing or not an image.
  """
  results = []
  for item in classify_each(classify_encoded, paths):
    if item.error:
      raise ImageFileError(item.error)
    results.append(list(item.top))
  return results


def restored_net(model_name, checkpoint_path, *, num_classes, image_size,
                 model_options=None, channels=None, use_moving_average=False,
                 fake_quant=None):
  """A net for inference with a checkpoint's weights, as export builds it.

  Args:
    model_name: The registered net.
    checkpoint_path: A checkpoint prefix or a directory (its newest).
    num_classes: Logits of the net.
    image_size: Height and width of its input.
    model_options: `--model_options` of the net, parsed (a dict).
    channels: Input channels; None follows the checkpoint's first layer
      (LeNet on MNIST takes grayscale images), else 3.
    use_moving_average: Restore the moving averages of the weights.
    fake_quant: A `layers.FakeQuantization` to enable before restoring (a
      net trained with --quantize_delay), or None.

  Returns:
    `(net, channels, report)`: the restored `Network`, its input channels
    and the `checkpoints.RestoreReport`.

  Raises:
    checkpoints.CheckpointError: when the checkpoint does not fit the net.
  """
  from slimkit import checkpoints
  from slimkit.nets import nets_factory

  def build(depth):
    net = nets_factory.get_network_fn(model_name, num_classes=num_classes,
                                      is_training=False,
                                      **(model_options or {}))
    net(tf.zeros([1, image_size, image_size, depth]))
    return net

  net = build(channels or 3)
  if channels is None:
    stored = checkpoints.input_channels(net, checkpoint_path)
    channels = 3
    if stored is not None and stored != 3:
      channels = stored
      net = build(channels)
  if fake_quant is not None:
    net.enable_fake_quant(fake_quant)
  try:
    report = checkpoints.restore(net, checkpoint_path,
                                 use_moving_average=use_moving_average)
  except checkpoints.CheckpointError:
    other = checkpoints.other_net_message(net, checkpoint_path)
    if other:  # say which net it is, not how to skip its variables
      raise checkpoints.CheckpointError(other) from None
    raise
  return net, channels, report


def run_labels(dataset_dir, labels_offset=0):
  """`{net class: name}` from a dataset's labels.txt, or None without one.

  The dataset's label k is the net's class k - labels_offset.
  """
  from slimkit.datasets import dataset_utils
  if not dataset_dir or not os.path.isfile(
      os.path.join(dataset_dir, dataset_utils.LABELS_FILENAME)):
    return None
  return {k - labels_offset: name for k, name in
          dataset_utils.read_label_file(dataset_dir).items()}
