r"""Prints a net's parameters, variables, FLOPs, end points and options.

The net is built by tracing it once at batch 1 (no forward computation runs),
so even the largest nets are summarized in seconds. Beside the forward
multiply-adds per image it prints the training FLOPs per image, multiply-adds
x 2 (FLOPs per multiply-add) x 3 (forward, and the backward pass's two
gradients), the convention of `slimkit.flops` that the training log's GFLOP/s
and utilisation use. The options are the
keyword options of the net's builder that `--model_options` of the train,
eval and export scripts can set, with their defaults.

Usage:

  python print_model.py --model_name=mobilenet_v1
  python print_model.py --model_name=resnet_v1_50 --num_classes=10 \
      --image_size=96
  python print_model.py --model_name=cifarnet --model_options=kernel_size=3
"""

import inspect
import math

from absl import app
from absl import flags

from slimkit import flags as slim_flags
from slimkit import flops
from slimkit.nets import nets_factory

FLAGS = slim_flags.FLAGS
slim_flags.define_print_model_flags()
flags.adopt_module_key_flags(slim_flags)

_IMAGENET_CLASSES = 1001


def default_num_classes(model_name):
  """Returns the class count TF-Slim's parameter table uses for `model_name`.

  Nets whose builder defaults to fewer than 1000 classes (cifarnet, lenet)
  were made for 10-class datasets; the others count ImageNet's 1001.

  Raises:
    ValueError: for an unknown name (with close matches).
  """
  entry = nets_factory.get_entry(model_name)
  default = inspect.signature(entry.builder).parameters.get('num_classes')
  if default is not None and isinstance(default.default, int) and (
      0 < default.default < 1000):
    return default.default
  return _IMAGENET_CLASSES


def default_channels(model_name):
  """Returns 1 for nets fed grayscale digits (LeNet preprocessing), else 3."""
  entry = nets_factory.get_entry(model_name)
  return 1 if entry.preprocessing_name == 'lenet' else 3


def summarize(model_name, num_classes=None, image_size=None, channels=None,
              **options):
  """Builds `model_name` by tracing and describes it.

  Args:
    model_name: A registered net name.
    num_classes: Classes of the logits; None for `default_num_classes`.
    image_size: Input height and width; None for the net's default.
    channels: Input channels; None for `default_channels`.
    **options: Passed to the net's builder.

  Returns:
    A dict with `model_name`, `num_classes`, `image_size`,
    `channels`, `trainable_parameters`, `total_parameters` (including batch-norm
    statistics), `num_variables`, `num_trainable_variables`,
    `multiply_adds` (forward, per image), `training_flops` (per image,
    `flops.training_flops_per_image`), `end_points` (a list of
    `(name, shape)` pairs in the net's order), `options` (the given ones) and
    `valid_options` (`nets_factory.network_options`).

  Raises:
    ValueError: for an unknown name (with close matches).
  """
  # Imported here: --help and a bad flag are answered before TensorFlow loads.
  import tensorflow as tf

  entry = nets_factory.get_entry(model_name)
  if num_classes is None:
    num_classes = default_num_classes(model_name)
  if image_size is None:
    image_size = entry.default_image_size
  if channels is None:
    channels = default_channels(model_name)
  net = nets_factory.get_network_fn(model_name, num_classes, **options)
  concrete = tf.function(net).get_concrete_function(
      tf.TensorSpec([1, image_size, image_size, channels], tf.float32))
  _, end_points = concrete.structured_outputs

  def size(variables):
    return sum(math.prod(v.shape) for v in variables)

  multiply_adds = flops.count_multiply_adds(concrete.graph)
  return {
      'model_name': model_name,
      'num_classes': num_classes,
      'image_size': image_size,
      'channels': channels,
      'trainable_parameters': size(net.trainable_weights),
      'total_parameters': size(net.weights),
      'num_variables': len(net.weights),
      'num_trainable_variables': len(net.trainable_weights),
      'multiply_adds': multiply_adds,
      'training_flops': flops.training_flops_per_image(multiply_adds),
      'end_points': [(k, v.shape.as_list()) for k, v in end_points.items()],
      'options': dict(options),
      'valid_options': nets_factory.network_options(model_name),
  }


def format_summary(summary):
  """Returns the text `print_model.py` prints for a `summarize` result."""
  given = summary.get('options')
  name = summary['model_name']
  if given:
    name += f' --model_options={nets_factory.format_model_options(given)}'
  lines = [
      f"{name}: {summary['num_classes']} classes, "
      f"{summary['image_size']}x{summary['image_size']}x{summary['channels']} "
      'input',
      f"trainable parameters: {summary['trainable_parameters']:,}",
      f"all parameters: {summary['total_parameters']:,} "
      '(with batch-norm statistics)',
      f"variables: {summary['num_variables']} "
      f"({summary['num_trainable_variables']} trainable)",
      f"multiply-adds: {summary['multiply_adds']:,} "
      f"({summary['multiply_adds'] / 1e9:.2f} G per image, forward)",
      f"training FLOPs: {summary['training_flops']:,} "
      f"({summary['training_flops'] / 1e9:.2f} G per image: multiply-adds "
      f'x {flops.FLOPS_PER_MULTIPLY_ADD} FLOPs x {flops.TRAINING_PASSES} '
      'passes, forward and backward)',
      'end points:',
  ]
  width = max((len(k) for k, _ in summary['end_points']), default=0)
  lines += [f'  {k:<{width}}  {shape}' for k, shape in summary['end_points']]
  lines += format_options(summary.get('valid_options', {}), given or {})
  return '\n'.join(lines)


def format_options(valid, given=None):
  """Lines listing a net's model options, defaults and types.

  Args:
    valid: `nets_factory.network_options(name)`.
    given: Option values in use, marked where they differ from the default.

  Returns:
    A list of lines (none when the net has no options).
  """
  if not valid:
    return []
  given = given or {}
  header = ('option', 'default') + (('given',) if given else ()) + ('type',)
  rows = [header] + [
      (name, str(option.default))
      + ((str(given.get(name, '')),) if given else ())
      + (f'one of {", ".join(option.choices)}' if option.choices
         else option.type.__name__,)
      for name, option in valid.items()]
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ['options (--model_options=key=value,...):']
  lines += ['  ' + '  '.join(f'{cell:<{w}}' for cell, w in zip(row, widths))
            .rstrip() for row in rows]
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  options = slim_flags.model_options(FLAGS)
  print(format_summary(summarize(FLAGS.model_name, FLAGS.num_classes,
                                 FLAGS.image_size, FLAGS.channels,
                                 **options)))


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
