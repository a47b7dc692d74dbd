"""LeNet preprocessing: crop or pad to the output size, scale to [-1, 1).

Training and evaluation are the same, as in TF-Slim: `(pixel - 128) / 128`
after `resize_with_crop_or_pad`.
"""

from slimkit.preprocessing import image_ops

_OFFSET = 128.0
_SCALE = 128.0


def preprocess_image(image, output_height, output_width, is_training=False,
                     use_grayscale=False):
  """Preprocesses one image for LeNet.

  Args:
    image: uint8 (or float in [0, 255]) `[height, width, channels]`.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Unused: LeNet has no augmentation.
    use_grayscale: Convert RGB to 1 channel.

  Returns:
    float32 `[output_height, output_width, channels]` in [-1, 1).
  """
  del is_training  # The same in both modes, as in TF-Slim.
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  # TF-Slim passes (width, height) here, which only works for square outputs;
  # the intended order is used.
  image = image_ops.crop_or_pad(image, output_height, output_width)
  return (image - _OFFSET) / _SCALE
