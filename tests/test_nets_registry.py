"""One sweep over every registered net (`nets_factory.list_networks()`).

For each net: parameter and variable counts at the default size pinned to
TF-Slim's (the table in docs/tf_slim_reference.md), TF-Slim's end-point
names and shapes, a forward pass and a finite gradient for every trainable
variable at a small size, a `get_config`/`from_config` rebuild, pre-logits
features with `num_classes=0`, unique, scoped variable names, and the
`activation` option (ELU reaching every activated layer; crelu's wider inputs
under the same names). A tiny-data training run per family checks that each
architecture learns.

Default-size builds only trace the net (`get_concrete_function`), so no big
forward pass runs; the module-scoped fixtures build each net once and are
released before the next net's tests run.
"""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

import print_model
from slimkit.nets import nets_factory


@dataclasses.dataclass(frozen=True)
class Spec:
  """What TF-Slim's version of a net looks like, and how to test it small.

  Attributes:
    trainable: Trainable parameters at `classes` (docs/tf_slim_reference.md).
    variables: All variables, batch-norm statistics included.
    end_points: TF-Slim end-point names and their shapes at batch 1 and the
      default image size.
    features: Depth of the pre-logits features (`num_classes=0`).
    small_size: Smallest input size the tests run a forward pass at.
    small_options: Builder options that size needs (TF-Slim's own options).
    classes: Classes of the counted logits layer.
    channels: Input channels.
    learning_rate: Adam's rate in the tiny-data run (lower for the large
      nets without batch norm).
    tiny_steps: Steps of the tiny-data run.
  """
  trainable: int
  variables: int
  end_points: dict
  features: int
  small_size: int = 32
  small_options: dict = dataclasses.field(default_factory=dict)
  classes: int = 1001
  channels: int = 3
  learning_rate: float = 1e-3
  tiny_steps: int = 12


def _vgg(scope, trainable, variables, tiny_steps=12):
  return Spec(trainable, variables, {
      f'{scope}/conv1/conv1_1': [1, 224, 224, 64],
      f'{scope}/pool5': [1, 7, 7, 512],
      f'{scope}/fc7': [1, 1, 1, 4096],
      f'{scope}/fc8': [1, 1001],
  }, features=4096, small_options={'fc_conv_padding': 'SAME'},
              learning_rate=1e-4, tiny_steps=tiny_steps)


def _mobilenet_v1(trainable, multiplier):
  depth = int(1024 * multiplier)
  return Spec(trainable, 137, {
      'Conv2d_0': [1, 112, 112, max(int(32 * multiplier), 8)],
      'Conv2d_1_depthwise': [1, 112, 112, max(int(32 * multiplier), 8)],
      'Conv2d_13_pointwise': [1, 7, 7, depth],
      'AvgPool_1a': [1, 1, 1, depth],
      'Logits': [1, 1001],
      'Predictions': [1, 1001],
  }, features=depth)


def _mobilenet_v2(trainable, first, expanded, last):
  return Spec(trainable, 262, {
      'layer_1': [1, 112, 112, first],
      'layer_3/expansion_output': [1, 112, 112, expanded],
      'layer_3/depthwise_output': [1, 56, 56, expanded],
      'layer_19': [1, 7, 7, last],
      'global_pool': [1, 1, 1, last],
      'Logits': [1, 1001],
      'Predictions': [1, 1001],
  }, features=last)


def _resnet(scope, trainable, variables):
  return Spec(trainable, variables, {
      f'{scope}/block1': [1, 28, 28, 256],
      f'{scope}/block3': [1, 7, 7, 1024],
      f'{scope}/block4': [1, 7, 7, 2048],
      'global_pool': [1, 1, 1, 2048],
      f'{scope}/logits': [1, 1, 1, 1001],
      'predictions': [1, 1001],
  }, features=2048)


_NO_AUX = {'create_aux_logits': False}

SPECS = {
    'alexnet_v2': Spec(50308009, 16, {
        'alexnet_v2/conv1': [1, 54, 54, 64],
        'alexnet_v2/pool5': [1, 5, 5, 256],
        'alexnet_v2/fc7': [1, 1, 1, 4096],
        'alexnet_v2/fc8': [1, 1001],
    }, features=4096, small_size=195, learning_rate=1e-4),
    'cifarnet': Spec(1756426, 10, {
        'conv1': [1, 32, 32, 64],
        'pool2': [1, 8, 8, 64],
        'fc4': [1, 192],
        'Logits': [1, 10],
        'Predictions': [1, 10],
    }, features=192, classes=10),
    'lenet': Spec(3274634, 8, {
        'conv1': [1, 28, 28, 32],
        'pool2': [1, 7, 7, 64],
        'fc3': [1, 1024],
        'Logits': [1, 10],
        'Predictions': [1, 10],
    }, features=1024, small_size=28, classes=10, channels=1),
    'vgg_a': _vgg('vgg_a', 132867433, 22),
    'vgg_16': _vgg('vgg_16', 138361641, 32),
    # 19 layers without batch norm: its loss starts to move after about 11
    # steps at this rate (2.30 -> 2.18 at step 10, 1.39 at step 20).
    'vgg_19': _vgg('vgg_19', 143671337, 38, tiny_steps=20),
    'inception_v1': Spec(6618649, 230, {
        'Conv2d_1a_7x7': [1, 112, 112, 64],
        'Mixed_3b': [1, 28, 28, 256],
        'Mixed_5c': [1, 7, 7, 1024],
        'Logits': [1, 1001],
        'Predictions': [1, 1001],
    }, features=1024, small_size=64, small_options={'global_pool': True}),
    'inception_v2': Spec(11179361, 277, {
        'Conv2d_1a_7x7': [1, 112, 112, 64],
        'Mixed_3b': [1, 28, 28, 256],
        'Mixed_5c': [1, 7, 7, 1024],
        'Logits': [1, 1001],
        'Predictions': [1, 1001],
    }, features=1024, small_size=64, small_options={'global_pool': True}),
    'inception_v3': Spec(27145970, 388, {
        'Conv2d_1a_3x3': [1, 149, 149, 32],
        'Mixed_5b': [1, 35, 35, 256],
        'Mixed_6e': [1, 17, 17, 768],
        'Mixed_7c': [1, 8, 8, 2048],
        'AuxLogits': [1, 1001],
        'Logits': [1, 1001],
        'Predictions': [1, 1001],
    }, features=2048, small_size=107),  # the aux head's 5x5 pool needs 107
    'inception_v4': Spec(46009106, 608, {
        'Conv2d_1a_3x3': [1, 149, 149, 32],
        'Mixed_5e': [1, 35, 35, 384],
        'Mixed_6h': [1, 17, 17, 1024],
        'Mixed_7d': [1, 8, 8, 1536],
        'AuxLogits': [1, 1001],
        'PreLogitsFlatten': [1, 1536],
        'Logits': [1, 1001],
        'Predictions': [1, 1001],
    }, features=1536, small_size=75, small_options=_NO_AUX),
    'inception_resnet_v2': Spec(59182258, 908, {
        'Conv2d_1a_3x3': [1, 149, 149, 32],
        'Mixed_5b': [1, 35, 35, 320],
        'Mixed_6a': [1, 17, 17, 1088],
        'Conv2d_7b_1x1': [1, 8, 8, 1536],
        'AuxLogits': [1, 1001],
        'PreLogitsFlatten': [1, 1536],
        'Logits': [1, 1001],
        'Predictions': [1, 1001],
    }, features=1536, small_size=75, small_options=_NO_AUX),
    'mobilenet_v1': _mobilenet_v1(4233001, 1.0),
    'mobilenet_v1_075': _mobilenet_v1(2586329, 0.75),
    'mobilenet_v1_050': _mobilenet_v1(1332105, 0.50),
    'mobilenet_v1_025': _mobilenet_v1(470329, 0.25),
    'mobilenet_v2': _mobilenet_v2(3506153, 32, 96, 1280),
    'mobilenet_v2_140': _mobilenet_v2(6110569, 48, 144, 1792),
    'mobilenet_v2_035': _mobilenet_v2(1678409, 16, 48, 1280),
    'resnet_v1_50': _resnet('resnet_v1_50', 25559081, 267),
    'resnet_v1_101': _resnet('resnet_v1_101', 44551209, 522),
    'resnet_v1_152': _resnet('resnet_v1_152', 60194857, 777),
    'resnet_v1_200': _resnet('resnet_v1_200', 64675881, 1017),
    'resnet_v2_50': _resnet('resnet_v2_50', 25570409, 272),
    'resnet_v2_101': _resnet('resnet_v2_101', 44579945, 544),
    'resnet_v2_152': _resnet('resnet_v2_152', 60238953, 816),
    'resnet_v2_200': _resnet('resnet_v2_200', 64728169, 1072),
}

NAMES = nets_factory.list_networks()
SMALL_BATCH = 2
SMALL_CLASSES = 10


def _size(variables):
  return sum(math.prod(v.shape) for v in variables)


def _images(size, channels, batch=SMALL_BATCH, seed=0):
  return tf.random.stateless_uniform([batch, size, size, channels], [seed, 1],
                                     minval=-1.0, maxval=1.0)


def _loss(logits, end_points, labels):
  """Cross-entropy of the logits plus the auxiliary head's, if any."""
  loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels, tf.reshape(logits, [tf.shape(logits)[0], -1])))
  if 'AuxLogits' in end_points:
    aux = end_points['AuxLogits']
    loss += 0.4 * tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels, tf.reshape(aux, [tf.shape(aux)[0], -1])))
  return loss


def _signature(net):
  return [(v.path, tuple(v.shape)) for v in net.weights]


def test_every_registered_net_has_a_spec():
  assert sorted(SPECS) == NAMES


@pytest.fixture(scope='module', params=NAMES)
def name(request):
  return request.param


@pytest.fixture(scope='module')
def default_build(name, request):
  """The net with TF-Slim's class count, traced once at its default size."""
  _skip_deep_unless_slow(request, name)
  spec = SPECS[name]
  net = nets_factory.get_network_fn(name, spec.classes)
  size = nets_factory.get_entry(name).default_image_size
  concrete = tf.function(net).get_concrete_function(
      tf.TensorSpec([1, size, size, spec.channels], tf.float32))
  logits, end_points = concrete.structured_outputs
  shapes = {k: v.shape.as_list() for k, v in end_points.items()}
  yield net, logits.shape.as_list(), shapes


@pytest.fixture(scope='module')
def small_build(name, request):
  """A 10-class net after one forward and backward pass at a small size."""
  _skip_deep_unless_slow(request, name)
  spec = SPECS[name]
  net = nets_factory.get_network_fn(name, SMALL_CLASSES, is_training=True,
                                    **spec.small_options)
  images = _images(spec.small_size, spec.channels)
  labels = tf.constant([1, 7])
  with tf.GradientTape() as tape:
    logits, end_points = net(images)
    loss = _loss(logits, end_points, labels)
  grads = tape.gradient(loss, net.trainable_variables)
  yield net, logits, loss, grads


def test_default_size_counts(name, default_build):
  net, logits_shape, _ = default_build
  spec = SPECS[name]
  assert net.default_image_size == nets_factory.get_entry(
      name).default_image_size
  assert _size(net.trainable_weights) == spec.trainable
  assert len(net.weights) == spec.variables
  assert logits_shape == [1, spec.classes]


def test_default_size_end_points(name, default_build):
  _, _, shapes = default_build
  expected = SPECS[name].end_points
  missing = sorted(set(expected) - set(shapes))
  assert not missing, f'{name} lacks end points {missing}; has {list(shapes)}'
  assert {k: shapes[k] for k in expected} == expected


def test_variable_names_unique_and_scoped(default_build):
  net, _, _ = default_build
  paths = [v.path for v in net.weights]
  assert len(set(paths)) == len(paths)
  assert all(p.startswith(net.name + '/') for p in paths), paths[:5]
  # One checkpoint key per variable, as TF-Slim's name-based checkpoints.
  assert len(net.slim_variables()) == len(paths)


def test_small_forward_gradients_finite(name, small_build):
  net, logits, loss, grads = small_build
  assert logits.shape == (SMALL_BATCH, SMALL_CLASSES)
  assert np.isfinite(loss.numpy())
  missing = [v.path for v, g in zip(net.trainable_variables, grads)
             if g is None]
  assert not missing, f'no gradient for {missing[:5]}'
  bad = [v.path for v, g in zip(net.trainable_variables, grads)
         if not tf.reduce_all(tf.math.is_finite(g))]
  assert not bad, f'non-finite gradient for {bad[:5]}'
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


# The deeper ResNets share resnet_v*_50's builder (only the spec table's
# block counts differ): their builds, counts and end points are left to the
# full run (`python -m pytest -m ''`) to keep the default sweep within its
# CPU budget.
_DEEP = ('resnet_v1_101', 'resnet_v1_152', 'resnet_v1_200', 'resnet_v2_101',
         'resnet_v2_152', 'resnet_v2_200')


def _skip_deep_unless_slow(request, name):
  if name in _DEEP and 'not slow' in (request.config.getoption('-m') or ''):
    pytest.skip(f'{name} rebuilds run only when slow tests are selected')


def test_config_round_trip(name, small_build, request):
  _skip_deep_unless_slow(request, name)
  net = small_build[0]
  spec = SPECS[name]
  rebuilt = type(net).from_config(net.get_config())
  rebuilt(_images(spec.small_size, spec.channels, batch=1), training=False)
  assert _signature(rebuilt) == _signature(net)
  assert rebuilt.get_config() == net.get_config()


# The activation sweep's default run covers every family once (each of its
# own activation code paths); the variants sharing a builder (depths, widths)
# and the costliest builds (inception_v4, inception_resnet_v2; VGG with crelu,
# whose fc6 becomes 7x7x1024x4096; inception_v3's ELU trace, the same layers
# as v1's) run with the slow tests.
_FAMILIES = ('lenet', 'cifarnet', 'alexnet_v2', 'inception_v1', 'inception_v2',
             'mobilenet_v1_025', 'mobilenet_v2_035', 'resnet_v1_50',
             'resnet_v2_50')
_ELU_DEFAULT = _FAMILIES + ('vgg_a',)
_CRELU_DEFAULT = _FAMILIES + ('inception_v3',)  # Split and the aux head


def _skip_unless_slow(request, name, default):
  if name not in default and 'not slow' in (
      request.config.getoption('-m') or ''):
    pytest.skip(f'{name} runs only when slow tests are selected')


def _op_types(net, spec):
  concrete = tf.function(net).get_concrete_function(
      tf.TensorSpec([1, spec.small_size, spec.small_size, spec.channels],
                    tf.float32))
  return {op.type for op in concrete.graph.get_operations()}


def test_activation_option_reaches_every_activated_layer(name, small_build,
                                                         request):
  # ELU is no net's default. No ReLU may be left hard-coded anywhere
  # (residual sums, pre-activations, separable convs, ...), and an
  # element-wise activation leaves every variable as it was.
  _skip_unless_slow(request, name, _ELU_DEFAULT)
  spec = SPECS[name]
  net = nets_factory.get_network_fn(name, SMALL_CLASSES, activation='elu',
                                    **spec.small_options)
  ops = _op_types(net, spec)
  assert 'Elu' in ops
  assert not ops & {'Relu', 'Relu6'}, sorted(ops & {'Relu', 'Relu6'})
  assert _signature(net) == _signature(small_build[0])


def test_crelu_widens_inputs_and_keeps_variable_names(name, small_build,
                                                      request):
  _skip_unless_slow(request, name, _CRELU_DEFAULT)
  spec = SPECS[name]
  net = nets_factory.get_network_fn(name, SMALL_CLASSES, is_training=True,
                                    activation='crelu', **spec.small_options)
  with tf.GradientTape() as tape:
    logits, end_points = net(_images(spec.small_size, spec.channels))
    loss = _loss(logits, end_points, tf.constant([1, 7]))
  grads = tape.gradient(loss, net.trainable_variables)
  assert logits.shape == (SMALL_BATCH, SMALL_CLASSES)
  assert np.isfinite(loss.numpy())
  assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g)))
             for g in grads)
  default = small_build[0]
  assert [v.path for v in net.weights] == [v.path for v in default.weights]
  # Kernels keep their spatial size; channel counts grow by 1, 2 or 4 (crelu
  # after crelu, as MobileNet v2's expand and depthwise convs).
  for mine, theirs in zip(net.weights, default.weights):
    assert len(mine.shape) == len(theirs.shape), mine.path
    if len(mine.shape) == 4:
      assert mine.shape[:2] == theirs.shape[:2], mine.path
    assert all(m in (t, 2 * t, 4 * t)
               for m, t in zip(mine.shape, theirs.shape)), (
                   mine.path, mine.shape, theirs.shape)
  assert _size(net.trainable_weights) > _size(default.trainable_weights)


def test_num_classes_zero_returns_features(name, request):
  _skip_deep_unless_slow(request, name)
  spec = SPECS[name]
  net = nets_factory.get_network_fn(name, 0, **spec.small_options)
  features, end_points = net(_images(spec.small_size, spec.channels),
                             training=False)
  shape = features.shape.as_list()
  assert shape[0] == SMALL_BATCH
  assert shape[-1] == spec.features
  assert math.prod(shape[1:-1]) == 1, shape  # pooled
  assert 'Predictions' not in end_points and 'predictions' not in end_points
  assert _size(net.trainable_weights) < spec.trainable  # no logits layer


def test_unknown_name_lists_close_matches():
  with pytest.raises(ValueError) as error:
    nets_factory.get_network_fn('mobilenet_v3', 10)
  message = str(error.value)
  assert "'mobilenet_v3'" in message
  close = message.split('Did you mean')[1].split('?')[0]
  assert 'mobilenet_v2' in close and 'mobilenet_v1' in close
  assert 'resnet_v1_50' in message  # the valid names are listed


# One net per family learns in the default run; the others are slow.
# alexnet_v2 and vgg_a (20-30 s each in the default run; their layers are
# cifarnet's kinds: convolutions, max pooling, dropout, fully connected
# layers) learn with the slow tests.
_LEARNS = ('lenet', 'cifarnet', 'inception_v1',
           'mobilenet_v1_025', 'mobilenet_v2_035', 'resnet_v1_50',
           'resnet_v2_50')


def _tiny_data(size, channels):
  """Four images of four classes: a class colour under uniform noise."""
  colours = tf.constant([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0],
                         [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])[:, :channels]
  noise = tf.random.stateless_uniform([4, size, size, channels], [3, 1],
                                      minval=-1.0, maxval=1.0)
  return 0.5 * colours[:, None, None, :] + 0.5 * noise, tf.range(4)


@pytest.mark.parametrize('net_name', [
    n if n in _LEARNS else pytest.param(n, marks=pytest.mark.slow)
    for n in NAMES])
def test_learns_on_tiny_data(net_name):
  spec = SPECS[net_name]
  tf.keras.utils.set_random_seed(0)
  # Without dropout the loss of a fixed batch falls steadily (ResNets have
  # no dropout option in TF-Slim).
  options = dict(spec.small_options)
  if not net_name.startswith('resnet_'):
    options['dropout_keep_prob'] = 1.0
  net = nets_factory.get_network_fn(net_name, SMALL_CLASSES, is_training=True,
                                    **options)
  images, labels = _tiny_data(spec.small_size, spec.channels)
  optimizer = tf.keras.optimizers.Adam(learning_rate=spec.learning_rate)
  losses = []
  # Eager steps: cheaper than tracing a train step for a few steps.
  for _ in range(spec.tiny_steps):
    with tf.GradientTape() as tape:
      logits, end_points = net(images)
      loss = _loss(logits, end_points, labels)
    grads = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(grads, net.trainable_variables))
    losses.append(float(loss))
  assert all(np.isfinite(losses)), losses
  assert np.mean(losses[-2:]) < 0.7 * losses[0], losses


def test_print_model_counts_mobilenet_v1():
  summary = print_model.summarize('mobilenet_v1')
  assert summary['num_classes'] == 1001
  assert summary['trainable_parameters'] == SPECS['mobilenet_v1'].trainable
  assert summary['num_variables'] == 137
  # TF-Slim's table for MobilenetV1 at 224: 567,716,352 multiply-adds in the
  # body, plus the 1x1x1024x1001 logits.
  assert summary['multiply_adds'] == 567716352 + 1024 * 1001
  assert dict(summary['end_points'])['Conv2d_13_pointwise'] == [1, 7, 7, 1024]
  assert summary['training_flops'] == 6 * summary['multiply_adds']
  text = print_model.format_summary(summary)
  assert '4,233,001' in text and 'Conv2d_13_pointwise' in text
  assert (f"training FLOPs: {6 * (567716352 + 1024 * 1001):,} (3.41 G per "
          'image: multiply-adds x 2 FLOPs x 3 passes') in text


def test_print_model_defaults_for_small_nets():
  summary = print_model.summarize('lenet')
  assert (summary['num_classes'], summary['image_size'],
          summary['channels']) == (10, 28, 1)
  assert summary['trainable_parameters'] == SPECS['lenet'].trainable
  # By hand: conv1 5x5x1 -> 32 and conv2 5x5x32 -> 64 'SAME' on 28x28 and
  # 14x14 outputs, fc3 7*7*64 -> 1024, fc4 1024 -> 10.
  multiply_adds = (28 * 28 * 32 * 5 * 5 * 1 + 14 * 14 * 64 * 5 * 5 * 32 +
                   7 * 7 * 64 * 1024 + 1024 * 10)
  assert summary['multiply_adds'] == multiply_adds
  assert summary['training_flops'] == 2 * 3 * multiply_adds
  assert f'training FLOPs: {6 * multiply_adds:,} (0.08 G per image' in (
      print_model.format_summary(summary))
