"""AlexNet preprocessing: crop or pad to the output size, standardize.

What `--preprocessing_name=alexnet` (alexnet_v2's default) means here: the
same in training and evaluation, `resize_with_crop_or_pad` to the output size
followed by per-image standardization (zero mean, unit variance).
"""

from slimkit.preprocessing import image_ops


def preprocess_image(image, output_height, output_width, is_training=False,
                     use_grayscale=False):
  """Preprocesses one image for AlexNet.

  Args:
    image: uint8 or float `[height, width, channels]`.
    output_height: Height of the result.
    output_width: Width of the result.
    is_training: Unused: this style has no augmentation.
    use_grayscale: Convert RGB to 1 channel.

  Returns:
    float32 `[output_height, output_width, channels]`, per-image standardized.
  """
  del is_training  # No augmentation in this style.
  image = image_ops.to_float(image)
  if use_grayscale:
    image = image_ops.to_grayscale(image)
  image = image_ops.crop_or_pad(image, output_height, output_width)
  return image_ops.standardize(image)
