"""LeNet preprocessing: crop or pad to the output size, scale to [-1, 1).

Training and evaluation are the same, as in TF-Slim: `(pixel - 128) / 128`
after `resize_with_crop_or_pad`. Training with `randaugment=(N, M)` applies
RandAugment before the scaling.
"""

from slimkit import seeds
from slimkit.preprocessing import image_ops
from slimkit.preprocessing import randaugment as randaugment_lib

_OFFSET = 128.0
_SCALE = 128.0


def preprocess_image(image, output_height, output_width, is_training=False,
                     use_grayscale=False, randaugment=None, seed=None):
  """Preprocesses one image for LeNet.

  Args:
    image: uint8 (or float in [0, 255]) `[height, width, channels]`.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Training: the same as evaluation (LeNet has no
      augmentation), unless `randaugment` is given.
    use_grayscale: Convert RGB to 1 channel.
    randaugment: Training: `(N, M)` of RandAugment (`randaugment.py`),
      applied before the scaling; None: none (TF-Slim's).
    seed: An int `[2]` seed tensor making RandAugment's draws stateless;
      None uses TF's stateful random ops.

  Returns:
    float32 `[output_height, output_width, channels]` in [-1, 1).
  """
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  # TF-Slim passes (width, height) here, which only works for square outputs;
  # the intended order is used.
  image = image_ops.crop_or_pad(image, output_height, output_width)
  if is_training and randaugment:
    image = randaugment_lib.distort(image, *randaugment,
                                    draws=seeds.Draws(seed))
  return (image - _OFFSET) / _SCALE
