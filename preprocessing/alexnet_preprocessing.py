"""AlexNet preprocessing: crop or pad to the output size, standardize.

What `--preprocessing_name=alexnet` (alexnet_v2's default) means here: the
same in training and evaluation, `resize_with_crop_or_pad` to the output size
followed by per-image standardization (zero mean, unit variance). Training
with `randaugment=(N, M)` applies RandAugment before the standardization.
"""

from slimkit import seeds
from slimkit.preprocessing import image_ops
from slimkit.preprocessing import randaugment as randaugment_lib


def preprocess_image(image, output_height, output_width, is_training=False,
                     use_grayscale=False, randaugment=None, seed=None):
  """Preprocesses one image for AlexNet.

  Args:
    image: uint8 or float `[height, width, channels]` (RandAugment expects
      the [0, 255] scale).
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Training: the same as evaluation (this style has no
      augmentation), unless `randaugment` is given.
    use_grayscale: Convert RGB to 1 channel.
    randaugment: Training: `(N, M)` of RandAugment (`randaugment.py`),
      applied before the standardization; None: none.
    seed: An int `[2]` seed tensor making RandAugment's draws stateless;
      None uses TF's stateful random ops.

  Returns:
    float32 `[output_height, output_width, channels]`, per-image standardized.
  """
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  image = image_ops.crop_or_pad(image, output_height, output_width)
  if is_training and randaugment:
    image = randaugment_lib.distort(image, *randaugment,
                                    draws=seeds.Draws(seed))
  return image_ops.standardize(image)
