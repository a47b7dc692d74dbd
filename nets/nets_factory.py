"""The nets registry: every architecture by name, in one table.

Typical use:

  network = nets_factory.get_network_fn('inception_v3', num_classes=1001,
                                        weight_decay=4e-5, is_training=True)
  logits, end_points = network(images)   # images: [batch, 299, 299, 3]

Model options (`--model_options=activation=elu,lrn=false`) are keyword
arguments of a net's builder, typed by their defaults:

  nets_factory.network_options('cifarnet')['kernel_size'].default   # 5
  options = nets_factory.parse_model_options('cifarnet', 'kernel_size=3')
  network = nets_factory.get_network_fn('cifarnet', 10, **options)
"""

import dataclasses
import difflib
import importlib
import inspect
import math
import typing

from slimkit.registry import Registry


@dataclasses.dataclass(frozen=True)
class NetEntry:
  """Everything the toolkit knows about one registered net.

  Attributes:
    name: The registry name (`--model_name`).
    module: Module in `nets/` holding the builder (one module per family).
    function: Name of the builder in that module. A builder takes
      `(num_classes, *, weight_decay, is_training, **options)` and returns a
      `nets.network.Network`.
    default_image_size: Height and width the net was designed for.
    preprocessing_name: Default preprocessing style (`--preprocessing_name`).
    background_class: Whether TF-Slim's ImageNet checkpoints of this net have a
      background class at index 0 (1001 classes); those without need
      `--labels_offset=1` on ImageNet records.
  """
  name: str
  module: str
  function: str
  default_image_size: int
  preprocessing_name: str
  background_class: bool = True

  @property
  def builder(self):
    # Imported on first use so that a script pays only for the family it runs.
    module = importlib.import_module(f'slimkit.nets.{self.module}')
    return getattr(module, self.function)


NETWORKS = Registry('network (--model_name)')

_TABLE = (
    # name, module, builder, default size, preprocessing, background class
    ('alexnet_v2', 'alexnet', 'alexnet_v2', 224, 'alexnet', True),
    ('cifarnet', 'cifarnet', 'cifarnet', 32, 'cifarnet', False),
    ('lenet', 'lenet', 'lenet', 28, 'lenet', False),
    ('vgg_a', 'vgg', 'vgg_a', 224, 'vgg', False),
    ('vgg_16', 'vgg', 'vgg_16', 224, 'vgg', False),
    ('vgg_19', 'vgg', 'vgg_19', 224, 'vgg', False),
    ('inception_v1', 'inception_v1', 'inception_v1', 224, 'inception', True),
    ('inception_v2', 'inception_v2', 'inception_v2', 224, 'inception', True),
    ('inception_v3', 'inception_v3', 'inception_v3', 299, 'inception', True),
    ('inception_v4', 'inception_v4', 'inception_v4', 299, 'inception', True),
    ('inception_resnet_v2', 'inception_resnet_v2', 'inception_resnet_v2', 299,
     'inception', True),
    ('mobilenet_v1', 'mobilenet_v1', 'mobilenet_v1', 224, 'inception', True),
    ('mobilenet_v1_075', 'mobilenet_v1', 'mobilenet_v1_075', 224, 'inception',
     True),
    ('mobilenet_v1_050', 'mobilenet_v1', 'mobilenet_v1_050', 224, 'inception',
     True),
    ('mobilenet_v1_025', 'mobilenet_v1', 'mobilenet_v1_025', 224, 'inception',
     True),
    ('mobilenet_v2', 'mobilenet_v2', 'mobilenet_v2', 224, 'inception', True),
    ('mobilenet_v2_140', 'mobilenet_v2', 'mobilenet_v2_140', 224, 'inception',
     True),
    ('mobilenet_v2_035', 'mobilenet_v2', 'mobilenet_v2_035', 224, 'inception',
     True),
    ('resnet_v1_50', 'resnet_v1', 'resnet_v1_50', 224, 'vgg', False),
    ('resnet_v1_101', 'resnet_v1', 'resnet_v1_101', 224, 'vgg', False),
    ('resnet_v1_152', 'resnet_v1', 'resnet_v1_152', 224, 'vgg', False),
    ('resnet_v1_200', 'resnet_v1', 'resnet_v1_200', 224, 'vgg', False),
    ('resnet_v2_50', 'resnet_v2', 'resnet_v2_50', 224, 'vgg', True),
    ('resnet_v2_101', 'resnet_v2', 'resnet_v2_101', 224, 'vgg', True),
    ('resnet_v2_152', 'resnet_v2', 'resnet_v2_152', 224, 'vgg', True),
    ('resnet_v2_200', 'resnet_v2', 'resnet_v2_200', 224, 'vgg', True),
)

for _row in _TABLE:
  NETWORKS.register(_row[0], NetEntry(*_row))


def list_networks():
  """Returns the registered net names, sorted."""
  return NETWORKS.names()


def get_entry(name):
  """Returns the `NetEntry` of `name`; an unknown name lists close matches."""
  return NETWORKS.get(name)


def names_with_scope(scope):
  """The registered nets whose variables live under `scope` (`LeNet`).

  Width variants share their family's scope (`MobilenetV1` holds every
  `mobilenet_v1_*`). Only nets whose name spells the scope are built, to
  confirm it: this runs on error paths, and building all nets takes seconds.

  Args:
    scope: The first component of a checkpoint's variable names.

  Returns:
    The sorted registry names, empty when no registered net has that scope.
  """
  spelled = scope.replace('_', '').lower()
  candidates = [n for n in list_networks()
                if n.replace('_', '').lower().startswith(spelled)]
  return sorted(n for n in candidates
                if get_network_fn(n, num_classes=1).name == scope)


def get_network_fn(name, num_classes, weight_decay=0.0, is_training=False,
                   **options):
  """Builds the net `name` (its variables are created on the first call).

  Args:
    name: A registered name (see `list_networks()`).
    num_classes: Number of logits; 0 or None returns pre-logits features.
    weight_decay: TF-Slim's L2 weight decay on the net's weights
      (`weight_decay * sum(w ** 2) / 2` per tensor, in `net.losses`).
    is_training: Default mode of the net's calls (dropout, batch norm).
    **options: Net-specific keyword options: TF-Slim's
      (`dropout_keep_prob`, `spatial_squeeze`, `global_pool`,
      `depth_multiplier`, `create_aux_logits`, `output_stride`, ...) and
      ours (`activation` for every net, `lrn` and `kernel_size` for
      cifarnet, `lrn` for alexnet_v2). `network_options(name)` lists those
      settable from the command line.

  Returns:
    A `nets.network.Network`; `logits, end_points = net(images)`. It has
    `default_image_size`.

  Raises:
    ValueError: for an unknown name (with close matches and all valid names).
  """
  entry = get_entry(name)
  return entry.builder(num_classes=num_classes, weight_decay=weight_decay,
                       is_training=is_training, **options)


# Builder arguments that are not model options: the scripts set them from
# their own flags and data (--weight_decay, the dataset's classes, training or
# evaluation), or they take Python callables (prediction_fn).
_NOT_OPTIONS = {
    'num_classes': 'the dataset sets the number of classes',
    'weight_decay': 'use --weight_decay',
    'is_training': 'the script sets the mode',
    'prediction_fn': 'a Python callable, not a command-line value',
}
_OPTION_TYPES = (bool, int, float, str)
_TRUE = ('true', 'yes', '1')
_FALSE = ('false', 'no', '0')


@dataclasses.dataclass(frozen=True)
class ModelOption:
  """One keyword option of a net's builder settable from the command line.

  Attributes:
    name: The keyword (`activation`).
    default: Its default in the builder's signature (TF-Slim's value).
    type: bool, int, float or str: how a command-line value is parsed.
    choices: The valid values of a closed choice (`activation`), or ().
    per_layer: Whether it also takes one int per layer separated by '/'
      (`kernel_size=5/3`), parsed to a tuple: the builder's annotation
      allows a tuple (`int | tuple[int, ...]`). '/' fits inside
      `--model_options` (comma-separated) and `--vary` values.
  """
  name: str
  default: typing.Any
  type: type
  choices: tuple = ()
  per_layer: bool = False

  def parse(self, text):
    """Returns `text` as a value of this option.

    Bools accept true/false, yes/no, 1/0 (any case); an option whose default
    is None also accepts `none`.

    Raises:
      ValueError: naming the option, the value and what is expected.
    """
    value = text.strip()
    if self.default is None and value.lower() == 'none':
      return None
    expected = {bool: 'true or false', int: 'an integer',
                float: 'a number', str: 'a string'}[self.type]
    error = ValueError(
        f'Model option {self.name}={text!r}: expected {expected} (default '
        f'{self.default!r})' + (', or one per layer separated by / (5/3)'
                                if self.per_layer else '') + '.')
    if self.per_layer and '/' in value:
      try:
        return tuple(int(v) for v in value.split('/'))
      except ValueError:
        raise error from None
    if self.type is bool:
      if value.lower() not in _TRUE + _FALSE:
        raise error
      return value.lower() in _TRUE
    if self.type is int:
      try:
        return int(value)
      except ValueError:
        raise error from None
    if self.type is float:
      try:
        number = float(value)
      except ValueError:
        raise error from None
      if not math.isfinite(number):
        raise error
      return number
    if self.choices and value not in self.choices:
      close = difflib.get_close_matches(value, self.choices, n=3, cutoff=0.6)
      hint = f' Did you mean {", ".join(close)}?' if close else ''
      raise ValueError(f'Model option {self.name}={text!r}: unknown '
                       f'{self.name}.{hint} Valid: {", ".join(self.choices)}.')
    return value


def _option_type(parameter):
  """bool, int, float or str from a parameter's default, else None.

  A None default takes its type from the annotation (`int | None`); an
  unannotated None default (`conv_defs`, `scope`) is a Python-only argument.
  """
  if parameter.default is None:
    candidates = [t for t in typing.get_args(parameter.annotation)
                  if t in _OPTION_TYPES]
    return candidates[0] if len(candidates) == 1 else None
  # `type(...) is`, not isinstance: a bool default is not an int option.
  return next((t for t in _OPTION_TYPES if type(parameter.default) is t),
              None)


def _per_layer(parameter, kind):
  """Whether an int option's annotation also allows a tuple of ints."""
  return kind is int and any(
      typing.get_origin(t) is tuple or t is tuple
      for t in typing.get_args(parameter.annotation))


def _choices(name):
  if name == 'activation':
    # Imported here: the layers pull in Keras, which listing nets does not
    # need.
    from slimkit.nets import layers
    return tuple(layers.ACTIVATIONS.names())
  return ()


def network_options(name):
  """Lists the model options of net `name`, from its builder's signature.

  Every keyword argument with a bool, int, float or str default (or an
  `int | None`-style annotation) is an option, except those the scripts set
  themselves (`num_classes`, `weight_decay`, `is_training`) and Python-only
  ones (`prediction_fn`, list or callable arguments).

  Args:
    name: A registered net name.

  Returns:
    A dict `{option name: ModelOption}` in the builder's order.

  Raises:
    ValueError: for an unknown net name.
  """
  options = {}
  signature = inspect.signature(get_entry(name).builder)
  for parameter in signature.parameters.values():
    if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD,
                              parameter.KEYWORD_ONLY):
      continue
    kind = _option_type(parameter)
    if parameter.name in _NOT_OPTIONS or kind is None:
      continue
    options[parameter.name] = ModelOption(parameter.name, parameter.default,
                                          kind, _choices(parameter.name),
                                          _per_layer(parameter, kind))
  return options


def parse_model_options(name, text):
  """Parses and checks a `--model_options` value for net `name`.

  Args:
    name: A registered net name.
    text: `key=value` pairs separated by commas (`activation=elu,lrn=false`);
      None or empty for none.

  Returns:
    A dict of typed values, to pass to `get_network_fn(name, ..., **options)`.

  Raises:
    ValueError: for a malformed pair, an unknown or repeated key (listing the
      net's options), a value of the wrong type or outside a closed choice,
      or a value the builder refuses (it is constructed once to check, which
      creates no variables).
  """
  valid = network_options(name)
  options = {}
  for item in (text or '').split(','):
    if not item.strip():
      continue
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or not key:
      raise ValueError(f'--model_options takes key=value pairs separated by '
                       f'commas; got {item!r} in {text!r}.')
    if key not in valid:
      raise ValueError(unknown_option_message(name, key))
    if key in options:
      raise ValueError(f'Model option {key} is given twice in {text!r}.')
    options[key] = valid[key].parse(value)
  if options:
    try:
      get_network_fn(name, num_classes=1, **options)
    except (ValueError, TypeError) as e:
      raise ValueError(f'Model options {format_model_options(options)} of '
                       f'{name}: {e}') from None
  return options


def unknown_option_message(name, key):
  """The error for an unknown option `key` of net `name`, listing the valid."""
  valid = network_options(name)
  reason = (f' ({_NOT_OPTIONS[key]})' if key in _NOT_OPTIONS else '')
  close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  return (f'Unknown model option {key!r} of {name}{reason}.{hint} Valid '
          f'options of {name}: {", ".join(sorted(valid))}.')


def format_model_options(options):
  """The `--model_options` text of a dict of option values (its inverse)."""
  text = lambda v: ('/'.join(map(str, v)) if isinstance(v, (tuple, list))
                    else v)
  return ','.join(f'{key}={text(value)}' for key, value in options.items())
