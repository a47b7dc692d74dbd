"""Preprocessing styles by name: `get_preprocessing(name, is_training)`.

Typical use:

  preprocess = preprocessing_factory.get_preprocessing('inception_v3',
                                                       is_training=True)
  image = preprocess(image, 299, 299, bbox=boxes)  # float32 [299, 299, 3]

  # RandAugment on top of the style's training augmentation (N=2, M=9):
  preprocess = preprocessing_factory.get_preprocessing(
      'resnet_v1_50', is_training=True, randaugment=(2, 9))

`name` is a style (`inception`, `vgg`, `cifarnet`, `lenet`, `alexnet`) or a
model name; a model's style is its `preprocessing_name` in the nets registry,
the one table of per-model metadata.
"""

import dataclasses
import difflib
import inspect
from typing import Callable, Optional

import tensorflow as tf

from slimkit.nets import nets_factory
from slimkit.preprocessing import alexnet_preprocessing
from slimkit.preprocessing import cifarnet_preprocessing
from slimkit.preprocessing import inception_preprocessing
from slimkit.preprocessing import lenet_preprocessing
from slimkit.preprocessing import randaugment as randaugment_lib
from slimkit.preprocessing import vgg_preprocessing
from slimkit.registry import Registry


@dataclasses.dataclass(frozen=True)
class PreprocessingStyle:
  """One preprocessing style.

  Attributes:
    name: The style name (`--preprocessing_name`).
    preprocess_image: `(image, output_height, output_width, is_training=False,
      **options)` of the style's module.
    preprocess_encoded: Optional `(encoded, output_height, output_width,
      is_training=False, channels=3, **options)` that decodes and preprocesses
      in one step (faster, e.g. by decoding only a JPEG's crop window).
    augments: Whether training draws random numbers without RandAugment
      (lenet and alexnet train as they evaluate: their images need no seed
      unless RandAugment is on).
  """
  name: str
  preprocess_image: Callable
  preprocess_encoded: Optional[Callable] = None
  augments: bool = True

  @property
  def accepts_bbox(self):
    """Whether the style uses the records' bounding boxes (`bbox=`)."""
    return 'bbox' in inspect.signature(self.preprocess_image).parameters

  @property
  def accepts_seed(self):
    """Whether the style takes a `seed=` that makes its random draws
    stateless (lenet and alexnet draw only with RandAugment)."""
    return 'seed' in inspect.signature(self.preprocess_image).parameters


STYLES = Registry('preprocessing style (--preprocessing_name)')
for _style in (
    PreprocessingStyle('inception', inception_preprocessing.preprocess_image,
                       inception_preprocessing.preprocess_encoded),
    PreprocessingStyle('vgg', vgg_preprocessing.preprocess_image,
                       vgg_preprocessing.preprocess_encoded),
    PreprocessingStyle('cifarnet', cifarnet_preprocessing.preprocess_image),
    PreprocessingStyle('lenet', lenet_preprocessing.preprocess_image,
                       augments=False),
    PreprocessingStyle('alexnet', alexnet_preprocessing.preprocess_image,
                       augments=False),
):
  STYLES.register(_style.name, _style)


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """The function `get_preprocessing` returns, bound to a mode.

  Call it as `preprocessor(image, output_height, output_width, **options)`.
  The input pipeline uses `from_encoded` to let a style decode for itself.

  Attributes:
    style: The `PreprocessingStyle`.
    is_training: Training (augmenting) or evaluation mode.
    use_grayscale: Convert RGB images to 1 channel.
    randaugment: Training: `(N, M)` of RandAugment, or None.
  """
  style: PreprocessingStyle
  is_training: bool = False
  use_grayscale: bool = False
  randaugment: Optional[tuple] = None

  @property
  def accepts_bbox(self):
    return self.style.accepts_bbox

  @property
  def accepts_seed(self):
    # A style that draws nothing gets no seed: the pipeline then folds none.
    return self.style.accepts_seed and (self.style.augments or
                                        self.randaugment is not None)

  def _options(self, options):
    options = dict(options)
    # The pipeline may ask for grayscale too; converting is idempotent.
    options['use_grayscale'] = (options.pop('use_grayscale', False)
                                or self.use_grayscale)
    if not self.accepts_bbox:
      options.pop('bbox', None)
    if not self.accepts_seed:  # nothing random to seed
      options.pop('seed', None)
    if self.randaugment is not None:
      options['randaugment'] = self.randaugment
    return options

  def __call__(self, image, output_height, output_width, **options):
    """Preprocesses one decoded image `[height, width, channels]`.

    Args:
      image: uint8 or float `[height, width, channels]` (1 or 3 channels).
      output_height: Height of the result.
      output_width: Width of the result.
      **options: Style options (`bbox`, `fast_mode`, `resize_side_min`,
        `padding`, ...; `bbox` is dropped for styles without boxes). `seed`
        (an int `[2]` tensor) makes training's random draws stateless.

    Returns:
      float32 `[output_height, output_width, channels]`.
    """
    return self.style.preprocess_image(image, output_height, output_width,
                                       is_training=self.is_training,
                                       **self._options(options))

  def from_encoded(self, encoded, output_height, output_width, channels=3,
                   **options):
    """Decodes the PNG/JPEG bytes `encoded` and preprocesses the image."""
    options = self._options(options)
    if self.style.preprocess_encoded is not None:
      return self.style.preprocess_encoded(
          encoded, output_height, output_width, is_training=self.is_training,
          channels=channels, **options)
    image = tf.io.decode_image(encoded, channels=channels,
                               expand_animations=False)
    return self.style.preprocess_image(image, output_height, output_width,
                                       is_training=self.is_training, **options)


def list_preprocessing():
  """Returns the style names, sorted."""
  return STYLES.names()


def resolve_style(name):
  """Returns the style name of a style or model name.

  Raises:
    ValueError: naming `name`, listing the styles and the model names.
  """
  if name in STYLES:
    return name
  if name in nets_factory.NETWORKS:
    return nets_factory.get_entry(name).preprocessing_name
  known = list_preprocessing() + nets_factory.list_networks()
  close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  raise ValueError(
      f'Unknown preprocessing {name!r}.{hint} Valid styles: '
      f'{", ".join(list_preprocessing())}; or a model name: '
      f'{", ".join(nets_factory.list_networks())}.')


def get_preprocessing(name, is_training=False, use_grayscale=False,
                      randaugment=None):
  """Returns `fn(image, output_height, output_width, **options)`.

  Args:
    name: A style (see `list_preprocessing()`) or a model name, which uses the
      model's default style.
    is_training: Augment (training) or not (evaluation).
    use_grayscale: Convert RGB images to 1 channel.
    randaugment: Training only: `(N, M)`, RandAugment's ops per image and
      magnitude (0-10; see `randaugment.py`), applied by the style to the
      [0, 255] image after its crop and flip, before its colour distortion
      and normalisation. None: the style's own augmentation only.

  Returns:
    A `Preprocessor`; calling it returns float32
    `[output_height, output_width, channels]`.

  Raises:
    ValueError: for an unknown name, listing the valid ones; for a bad
      `randaugment`, or one given for evaluation.
  """
  style = STYLES.get(resolve_style(name))
  if randaugment is not None:
    if not is_training:
      raise ValueError(f'randaugment={randaugment!r} is a training '
                       'augmentation; evaluation never augments.')
    try:
      randaugment = randaugment_lib.check(*randaugment)
    except TypeError:
      raise ValueError(f'randaugment must be (N, M), got '
                       f'{randaugment!r}') from None
  return Preprocessor(style, is_training=bool(is_training),
                      use_grayscale=bool(use_grayscale),
                      randaugment=randaugment)
