"""Restoring TF-Slim's (TF 1, name-based) checkpoints and ours into our nets.

Each test writes its checkpoint itself: TF 1 checkpoints with `tf.compat.v1`
variables named as TF-Slim names them (random weights, non-trivial batch-norm
statistics) saved by `tf.compat.v1.train.Saver`, and object-based ones with
`tf.train.Checkpoint` and our trainer. Restored nets are compared with
reference forward passes written here in plain TensorFlow ops from the
checkpoint's values.
"""

import functools
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit import checkpoints
from slimkit.nets import layers
from slimkit.nets import nets_factory
from slimkit.nets.network import Network
from tests.tf1_checkpoints import build
from tests.tf1_checkpoints import random_value
from tests.tf1_checkpoints import random_values
from tests.tf1_checkpoints import write_tf1_checkpoint


def images(size, channels=3, batch=2, seed=1):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(-1, 1, (batch, size, size, channels)),
                     tf.float32)


def assert_values(net, values, names=None):
  variables = net.slim_variables()
  for name in names or values:
    np.testing.assert_array_equal(variables[name].numpy(), values[name],
                                  err_msg=name)


def assert_close(ours, ref):
  ours, ref = np.asarray(ours), np.asarray(ref)
  scale = max(1.0, float(np.abs(ref).max()))
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * scale)


# -- Plain-TF reference layers ------------------------------------------------

def ref_conv(x, v, scope, stride=1, padding='SAME', activation=tf.nn.relu,
             epsilon=None):
  """conv (+ biases or batch norm) (+ activation), from checkpoint values."""
  y = tf.nn.conv2d(x, v[scope + '/weights'], stride, padding)
  return _ref_finish(y, v, scope, activation, epsilon)


def ref_depthwise(x, v, scope, stride=1, activation=tf.nn.relu6, epsilon=1e-3):
  y = tf.nn.depthwise_conv2d(x, v[scope + '/depthwise_weights'],
                             [1, stride, stride, 1], 'SAME')
  return _ref_finish(y, v, scope, activation, epsilon)


def ref_fc(x, v, scope, activation=tf.nn.relu):
  return _ref_finish(tf.matmul(x, v[scope + '/weights']), v, scope, activation,
                     None)


def ref_batch_norm(x, v, scope, epsilon):
  gamma = v.get(scope + '/gamma', 1.0)
  beta = v.get(scope + '/beta', 0.0)
  return (x - v[scope + '/moving_mean']) / np.sqrt(
      v[scope + '/moving_variance'] + epsilon) * gamma + beta


def _ref_finish(y, v, scope, activation, epsilon):
  if scope + '/biases' in v:
    y = y + v[scope + '/biases']
  else:
    y = ref_batch_norm(y, v, scope + '/BatchNorm', epsilon)
  return activation(y) if activation else y


def ref_lenet(x, v):
  """TF-Slim's LeNet: conv1 5x5x32, pool, conv2 5x5x64, pool, fc3, fc4."""
  net = ref_conv(x, v, 'LeNet/conv1')
  net = tf.nn.max_pool2d(net, 2, 2, 'VALID')
  net = ref_conv(net, v, 'LeNet/conv2')
  net = tf.nn.max_pool2d(net, 2, 2, 'VALID')
  net = tf.reshape(net, [net.shape[0], -1])
  net = ref_fc(net, v, 'LeNet/fc3')
  return ref_fc(net, v, 'LeNet/fc4', activation=None)


def ref_cifarnet(x, v):
  """TF-Slim's CifarNet: conv, pool, lrn, conv, lrn, pool, fc3, fc4, logits."""
  def lrn(t):
    return tf.nn.lrn(t, 4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)
  net = ref_conv(x, v, 'CifarNet/conv1')
  net = lrn(tf.nn.max_pool2d(net, 2, 2, 'VALID'))
  net = lrn(ref_conv(net, v, 'CifarNet/conv2'))
  net = tf.nn.max_pool2d(net, 2, 2, 'VALID')
  net = tf.reshape(net, [net.shape[0], -1])
  net = ref_fc(ref_fc(net, v, 'CifarNet/fc3'), v, 'CifarNet/fc4')
  return ref_fc(net, v, 'CifarNet/logits', activation=None)


# -- Exact restore of lenet and cifarnet ---------------------------------------

@pytest.mark.parametrize('name,size,channels,reference', [
    ('lenet', 28, 1, ref_lenet),
    ('cifarnet', 32, 3, ref_cifarnet),
])
def test_tf1_checkpoint_gives_tf_slim_logits(tmp_path, name, size, channels,
                                             reference):
  values = random_values(build(name, size=size, channels=channels))
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  net = build(name, size=size, channels=channels)

  report = checkpoints.restore(net, prefix)

  assert report.checkpoint_format == checkpoints.NAME_BASED
  assert set(report.restored) == set(values)
  assert report.excluded == () and report.missing == ()
  assert_values(net, values)
  x = images(size, channels)
  logits, _ = net(x, training=False)
  assert_close(logits, reference(x, values))


def test_a_directory_means_its_newest_checkpoint(tmp_path):
  net = build('lenet', channels=1)
  checkpoint = tf.train.Checkpoint(model=net)
  manager = tf.train.CheckpointManager(checkpoint, tmp_path, max_to_keep=3,
                                       checkpoint_name='model.ckpt')
  manager.save(checkpoint_number=1)
  newest = {n: v.numpy() + 1.0 for n, v in net.slim_variables().items()}
  for n, v in net.slim_variables().items():
    v.assign(newest[n])
  manager.save(checkpoint_number=2)

  fresh = build('lenet', channels=1)
  report = checkpoints.restore(fresh, str(tmp_path))

  assert report.checkpoint_path.endswith('model.ckpt-2')
  assert report.checkpoint_format == checkpoints.OBJECT_BASED
  assert_values(fresh, newest)
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    checkpoints.restore(fresh, str(tmp_path / 'nothing_here'))


def test_a_checkpoint_file_name_is_accepted(tmp_path):
  values = random_values(build('lenet', channels=1))
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  net = build('lenet', channels=1)
  checkpoints.restore(net, prefix + '.index')
  assert_values(net, values)


# -- Exclude scopes, mismatches, missing variables ----------------------------

def test_exclude_scopes_keep_initial_values_and_fit_new_classes(tmp_path):
  values = random_values(build('lenet', num_classes=10, channels=1))
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  net = build('lenet', num_classes=5, channels=1)
  initial = {n: v.numpy() for n, v in net.slim_variables().items()}

  report = checkpoints.restore(net, prefix, exclude_scopes=' LeNet/fc4 ,')

  assert report.excluded == ('LeNet/fc4/weights', 'LeNet/fc4/biases')
  assert len(report.restored) == 6 and report.missing == ()
  assert 'excluded 2' in report.summary()
  assert_values(net, values, [n for n in values if not n.startswith(
      'LeNet/fc4')])
  assert_values(net, initial, report.excluded)


def test_exclude_scopes_are_name_prefixes_as_in_tf_slim(tmp_path):
  values = random_values(build('lenet', channels=1))
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  report = checkpoints.restore(build('lenet', channels=1), prefix,
                               exclude_scopes=['LeNet/fc'])
  assert set(report.excluded) == {n for n in values if '/fc' in n}


def test_shape_mismatch_names_variable_shapes_and_flag(tmp_path):
  values = random_values(build('cifarnet', num_classes=10))
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  net = build('cifarnet', num_classes=5)
  before = {n: v.numpy() for n, v in net.slim_variables().items()}

  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    checkpoints.restore(net, prefix)

  message = str(error.value)
  assert ('CifarNet/logits/weights: checkpoint [192, 10], net [192, 5]'
          in message)
  assert 'CifarNet/logits/biases: checkpoint [10], net [5]' in message
  assert '--checkpoint_exclude_scopes=CifarNet/logits' in message
  # A failed restore assigns nothing.
  assert_values(net, before)


def test_missing_variables_are_named_unless_ignored(tmp_path):
  values = random_values(build('lenet', channels=1))
  del values['LeNet/fc3/biases']
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  net = build('lenet', channels=1)

  with pytest.raises(checkpoints.MissingVariablesError,
                     match=r'LeNet/fc3/biases.*--ignore_missing_vars'):
    checkpoints.restore(net, prefix)

  report = checkpoints.restore(net, prefix, ignore_missing_vars=True)
  assert report.missing == ('LeNet/fc3/biases',)
  assert 'missing 1' in report.summary()
  assert_values(net, values)


def test_restore_needs_built_net(tmp_path):
  net = nets_factory.get_network_fn('lenet', 10)
  with pytest.raises(ValueError, match='no variables yet'):
    checkpoints.restore(net, tmp_path)


# -- Moving averages ----------------------------------------------------------

def test_moving_average_reads_shadow_variables(tmp_path):
  values = random_values(build('lenet', channels=1))
  shadows = {f'{n}/ExponentialMovingAverage': v * 0.5 + 1.0
             for n, v in values.items() if n != 'LeNet/fc4/biases'}
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt',
                                {**values, **shadows})
  net = build('lenet', channels=1)

  report = checkpoints.restore(net, prefix, use_moving_average=True)

  assert len(report.averaged) == 7 and len(report.restored) == 8
  for name, v in net.slim_variables().items():
    expected = (values[name] if name == 'LeNet/fc4/biases'
                else shadows[f'{name}/ExponentialMovingAverage'])
    np.testing.assert_array_equal(v.numpy(), expected, err_msg=name)
  # Without the flag the raw weights are read.
  checkpoints.restore(net, prefix)
  assert_values(net, values)


def test_trainer_checkpoint_and_its_moving_averages(tmp_path):
  trainer = pytest.importorskip('slimkit.training.trainer')
  rng = np.random.default_rng(0)
  data = (rng.uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32),
          rng.integers(0, 10, 8).astype(np.int64))
  trainer.train(
      strategy=tf.distribute.get_strategy(),
      network_fn=lambda: nets_factory.get_network_fn('lenet', 10,
                                                     is_training=True),
      dataset_fn=lambda ctx: tf.data.Dataset.from_tensor_slices(data).batch(
          2, drop_remainder=True).repeat(),
      optimizer_fn=keras.optimizers.SGD,
      learning_rate=0.1,
      options=trainer.TrainOptions(train_dir=str(tmp_path), batch_size=2,
                                   max_number_of_steps=3,
                                   moving_average_decay=0.5))
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path))
  net = build('lenet', channels=1)

  report = checkpoints.restore(net, tmp_path)
  assert report.checkpoint_format == checkpoints.OBJECT_BASED
  assert len(report.restored) == 8 and report.averaged == ()
  raw = {n: v.numpy() for n, v in net.slim_variables().items()}
  keys, ema_keys = checkpoints.checkpoint_keys(net, reader)
  assert all(k.startswith('model_variables/') for k in keys.values())
  assert all(k.startswith('ema/') for k in ema_keys.values())
  for name, key in keys.items():
    np.testing.assert_array_equal(raw[name], reader.get_tensor(key))

  report = checkpoints.restore(net, tmp_path, use_moving_average=True)
  assert len(report.averaged) == 8
  for name, v in net.slim_variables().items():
    np.testing.assert_array_equal(v.numpy(),
                                  reader.get_tensor(ema_keys[name]))
  assert any(not np.array_equal(raw[n], v.numpy())
             for n, v in net.slim_variables().items())

  # The trainer's format honours exclusion and shape checks the same way.
  other = build('lenet', num_classes=3, channels=1)
  with pytest.raises(checkpoints.CheckpointMismatchError, match='LeNet/fc4'):
    checkpoints.restore(other, tmp_path)
  report = checkpoints.restore(other, tmp_path, exclude_scopes='LeNet/fc4')
  assert len(report.excluded) == 2


def test_net_saved_as_an_object_is_matched_through_the_object_graph(tmp_path):
  saved = build('cifarnet')
  for name, v in saved.slim_variables().items():
    v.assign(random_value(name, tuple(v.shape), np.random.default_rng(3)))
  path = tf.train.Checkpoint(model=saved).write(str(tmp_path / 'model.ckpt'))
  net = build('cifarnet', num_classes=4)

  report = checkpoints.restore(net, path, exclude_scopes='CifarNet/logits')

  assert len(report.restored) == 8 and len(report.excluded) == 2
  expected = {n: v.numpy() for n, v in saved.slim_variables().items()}
  assert_values(net, expected, report.restored)
  with pytest.raises(checkpoints.CheckpointError, match="'model'"):
    checkpoints.restore(net, path, object_root='net')


def test_initial_checkpoint_is_ignored_once_train_dir_has_one(tmp_path):
  assert checkpoints.initial_checkpoint(tmp_path / 'new', 'x.ckpt') == 'x.ckpt'
  assert checkpoints.initial_checkpoint(tmp_path, None) is None
  net = build('lenet', channels=1)
  tf.train.CheckpointManager(tf.train.Checkpoint(model=net), tmp_path,
                             max_to_keep=1).save()
  assert checkpoints.initial_checkpoint(tmp_path, 'x.ckpt') is None


def test_input_channels_follow_the_checkpoint(tmp_path):
  values = random_values(build('lenet', channels=1))
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  assert checkpoints.input_channels(build('lenet', channels=3), prefix) == 1


# -- Trainable scopes ---------------------------------------------------------

class _TinyBatchNormNet(Network):
  """conv1 (BN) -> conv2 (BN) -> pool -> logits: the smallest net with BN."""

  def __init__(self):
    super().__init__(scope='Tiny', num_classes=3, config={})
    conv = layers.bind(layers.Conv2D, normalizer=functools.partial(
        layers.batch_norm, scale=True, decay=0.5))
    self.conv1 = conv(4, 3, name='conv1')
    self.conv2 = conv(4, 3, name='conv2')
    self.logits = layers.FullyConnected(3, activation=None, name='logits')

  def forward(self, images, training):
    net = self.conv2(self.conv1(images, training=training), training=training)
    return self.logits(layers.global_avg_pool(net, keepdims=False),
                       training=training), {}


def _train_steps(net, steps=3, size=8):
  optimizer = keras.optimizers.SGD(0.5)
  rng = np.random.default_rng(0)
  for _ in range(steps):
    x = tf.constant(rng.normal(2.0, 3.0, (4, size, size, 3)), tf.float32)
    y = tf.constant(rng.integers(0, 3, 4))
    with tf.GradientTape() as tape:
      logits, _ = net(x, training=True)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(grads, net.trainable_variables))


def _tiny_net():
  net = _TinyBatchNormNet()
  net(tf.zeros([1, 8, 8, 3]))
  return net


def test_trainable_scopes_freeze_weights_and_batch_norm_statistics():
  net = _tiny_net()
  before = {n: v.numpy() for n, v in net.slim_variables().items()}

  report = checkpoints.apply_trainable_scopes(net, 'Tiny/conv2,Tiny/logits')
  _train_steps(net)

  assert set(report.frozen) == {'Tiny/conv1/weights',
                                'Tiny/conv1/BatchNorm/gamma',
                                'Tiny/conv1/BatchNorm/beta'}
  assert report.frozen_batch_norms == ('Tiny/conv1/BatchNorm',)
  assert {v.path for v in net.trainable_variables} == set(report.trainable)
  after = {n: v.numpy() for n, v in net.slim_variables().items()}
  for name in before:
    changed = not np.array_equal(before[name], after[name])
    assert changed == (not name.startswith('Tiny/conv1')), name


def test_without_trainable_scopes_everything_moves():
  # The control of the test above: the same steps move conv1 and its
  # statistics when nothing is frozen.
  net = _tiny_net()
  before = {n: v.numpy() for n, v in net.slim_variables().items()}
  report = checkpoints.apply_trainable_scopes(net, None)
  _train_steps(net)
  assert report.frozen == ()
  for name, v in net.slim_variables().items():
    assert not np.array_equal(before[name], v.numpy()), name


def test_trainable_scopes_that_select_nothing_are_an_error():
  with pytest.raises(ValueError, match=r'Tiny/Logits.*Tiny/conv1'):
    checkpoints.apply_trainable_scopes(_tiny_net(), 'Tiny/Logits')


# -- Deep nets: names, shapes and a layer-by-layer check ----------------------

def _net_available(name):
  try:
    module = nets_factory.get_entry(name).module
    importlib.import_module(f'slimkit.nets.{module}')
    return True
  except ImportError:
    return False


def _restore_random(tmp_path, name, size, **options):
  net = build(name, size=size, **options)
  # The net's own initial values differ from these: restoring must replace
  # every one of them.
  values = random_values(net, seed=7)
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', values)
  report = checkpoints.restore(net, prefix)
  assert set(report.restored) == set(values)
  assert_values(net, values)
  return net, values


def _check_mobilenet_v1(net, v, x):
  _, ep = net(x, training=False)
  s = 'MobilenetV1/'
  assert_close(ep['Conv2d_0'], ref_conv(x, v, s + 'Conv2d_0', 2,
                                        activation=tf.nn.relu6, epsilon=1e-3))
  for i, stride in ((1, 1), (2, 2), (3, 1)):
    dw = ref_depthwise(ep[f'Conv2d_{i - 1}_pointwise' if i > 1 else 'Conv2d_0'],
                       v, s + f'Conv2d_{i}_depthwise', stride)
    assert_close(ep[f'Conv2d_{i}_depthwise'], dw)
    assert_close(ep[f'Conv2d_{i}_pointwise'], ref_conv(
        ep[f'Conv2d_{i}_depthwise'], v, s + f'Conv2d_{i}_pointwise',
        activation=tf.nn.relu6, epsilon=1e-3))


def _check_resnet_v1(net, v, x):
  _, ep = net(x, training=False)
  s = 'resnet_v1_50/'
  # conv2d_same: explicit padding for the strided 7x7, then VALID.
  padded = tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]])
  conv1 = ref_conv(padded, v, s + 'conv1', 2, 'VALID', epsilon=1e-5)
  assert_close(ep[s + 'conv1'], conv1)
  pool1 = tf.nn.max_pool2d(ep[s + 'conv1'], 3, 2, 'SAME')
  unit = s + 'block1/unit_1/bottleneck_v1/'
  shortcut = ref_conv(pool1, v, unit + 'shortcut', activation=None,
                      epsilon=1e-5)
  residual = ref_conv(pool1, v, unit + 'conv1', epsilon=1e-5)
  residual = ref_conv(residual, v, unit + 'conv2', epsilon=1e-5)
  residual = ref_conv(residual, v, unit + 'conv3', activation=None,
                      epsilon=1e-5)
  assert_close(ep[unit[:-1]], tf.nn.relu(shortcut + residual))


def _check_inception_v3(net, v, x):
  _, ep = net(x, training=False)
  s = 'InceptionV3/'
  assert s + 'Conv2d_1a_3x3/BatchNorm/gamma' not in v  # BN without scale.
  conv = ref_conv(x, v, s + 'Conv2d_1a_3x3', 2, 'VALID', epsilon=1e-3)
  assert_close(ep['Conv2d_1a_3x3'], conv)
  assert_close(ep['Conv2d_2a_3x3'], ref_conv(
      ep['Conv2d_1a_3x3'], v, s + 'Conv2d_2a_3x3', 1, 'VALID', epsilon=1e-3))


# name, size, variable count and names from docs/tf_slim_reference.md, check.
_DEEP = [
    ('mobilenet_v1_025', 64, 137,
     ['MobilenetV1/Conv2d_1_depthwise/depthwise_weights'], _check_mobilenet_v1),
    ('resnet_v1_50', 64, 267,
     ['resnet_v1_50/block1/unit_1/bottleneck_v1/shortcut/BatchNorm/'
      'moving_mean'],
     _check_resnet_v1),
    ('inception_v3', 107, 388,
     ['InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/weights'],
     _check_inception_v3),
]


@pytest.mark.parametrize('name,size,count,names,check', _DEEP,
                         ids=[row[0] for row in _DEEP])
def test_deep_net_restores_tf_slim_names_layer_by_layer(tmp_path, name, size,
                                                       count, names, check):
  if not _net_available(name):
    pytest.skip(f'{name} is not in nets/ yet')
  net, values = _restore_random(tmp_path, name, size)
  assert len(values) == count
  for known in names:
    assert known in values
  check(net, values, images(size))


@pytest.mark.slow
@pytest.mark.parametrize('name', nets_factory.list_networks())
def test_every_registered_net_round_trips_a_tf1_checkpoint(tmp_path, name):
  if not _net_available(name):
    pytest.skip(f'{name} is not in nets/ yet')
  entry = nets_factory.get_entry(name)
  channels = 1 if name == 'lenet' else 3
  net, values = _restore_random(tmp_path, name, entry.default_image_size,
                                channels=channels)
  x = images(entry.default_image_size, channels, batch=1)
  logits, _ = net(x, training=False)
  assert np.isfinite(logits.numpy()).all()
