"""The net's flags: `--model_name` (an enum in every script), its options,
preprocessing and input size; and `print_model.py`'s."""

from slimkit.flags import choices
from slimkit.flags import core


def define_model_name_flag(help_text='The name of the architecture.'):
  """Defines `--model_name`, an enum of the registered nets."""
  core.DEFINE_enum('model_name', 'inception_v3', choices.model_names(),
                   help_text)


def define_preprocessing_name_flag():
  """Defines `--preprocessing_name` (a style, or a model name)."""
  core.DEFINE_enum('preprocessing_name', None, choices.preprocessing_names(),
                   'The preprocessing style (or a model name, meaning its '
                   'style); default: the one of --model_name.')


def define_model_flags(image_size_flag):
  """Defines `--model_name`, `--preprocessing_name` and the image size flag.

  Args:
    image_size_flag: 'train_image_size' or 'eval_image_size'.
  """
  define_model_name_flag()
  define_preprocessing_name_flag()
  core.DEFINE_integer(image_size_flag, None,
                      'Height and width of the input images; default: the '
                      'net\'s default image size.', lower_bound=1)
  core.DEFINE_bool('use_grayscale', False,
                   'Convert the images to grayscale (1 channel).')
  define_model_options_flag()


def define_model_options_flag():
  """Defines `--model_options`, keyword options of the net's builder."""
  core.DEFINE_string(
      'model_options', '',
      'Options of the net, key=value pairs separated by commas, e.g. '
      'activation=elu,lrn=false; each value is parsed as the type of the '
      'option\'s default (bool, int, float or string). Training, '
      'evaluation and export must be given the same. `print_model.py '
      '--model_name=X` lists the options of X and their defaults. Default: '
      'none, TF-Slim\'s net.')


def define_print_model_flags():
  """Defines every flag of `print_model.py`."""
  define_model_name_flag('The registered name of the net to summarize.')
  core.DEFINE_integer(
      'num_classes', None,
      'Number of classes of the logits layer; 0 for the pre-logits features. '
      'Defaults to 10 for nets made for 10-class datasets (cifarnet, lenet) '
      'and to 1001 (ImageNet with a background class) for the others.',
      lower_bound=0)
  core.DEFINE_integer('image_size', None,
                      'Height and width of the input; defaults to the net\'s '
                      'default_image_size.', lower_bound=1)
  core.DEFINE_integer('channels', None,
                      'Channels of the input images; defaults to 1 for nets '
                      'with LeNet preprocessing (grayscale digits), else 3.',
                      lower_bound=1)
  define_model_options_flag()
