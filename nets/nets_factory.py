"""The nets registry: every architecture by name, in one table.

Typical use:

  network = nets_factory.get_network_fn('inception_v3', num_classes=1001,
                                        weight_decay=4e-5, is_training=True)
  logits, end_points = network(images)   # images: [batch, 299, 299, 3]
"""

import dataclasses
import importlib

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


def get_network_fn(name, num_classes, weight_decay=0.0, is_training=False,
                   **options):
  """Builds the net `name` (its variables are created on the first call).

  Args:
    name: A registered name (see `list_networks()`).
    num_classes: Number of logits; 0 or None returns pre-logits features.
    weight_decay: TF-Slim's L2 weight decay on the net's weights
      (`weight_decay * sum(w ** 2) / 2` per tensor, in `net.losses`).
    is_training: Default mode of the net's calls (dropout, batch norm).
    **options: Net-specific keyword options where TF-Slim has them
      (`dropout_keep_prob`, `spatial_squeeze`, `global_pool`,
      `depth_multiplier`, `create_aux_logits`, `output_stride`, ...).

  Returns:
    A `nets.network.Network`; `logits, end_points = net(images)`. It has
    `default_image_size`.

  Raises:
    ValueError: for an unknown name (with close matches and all valid names).
  """
  entry = get_entry(name)
  return entry.builder(num_classes=num_classes, weight_decay=weight_decay,
                       is_training=is_training, **options)
