"""Model options: listing, parsing, activations, LRN and kernel size, scripts.

The sweep of every registered net with a non-default activation (ELU
everywhere, crelu's wider inputs) is in test_nets_registry.py; this file
checks the parser, the arithmetic of each activation, crelu's channels, the
cifarnet and alexnet_v2 options against hand computations, and the wiring of
`--model_options` through the scripts.
"""

import inspect
import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import print_model
from slimkit.training import precision
from slimkit import checkpoints
from slimkit.nets import alexnet
from slimkit.nets import cifarnet
from slimkit.nets import layers
from slimkit.nets import nets_factory
from tests import script_runner
from tests import tiny_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images(size, channels=3, batch=2, seed=0):
  return tf.random.stateless_uniform([batch, size, size, channels], [seed, 1],
                                     minval=-1.0, maxval=1.0)


def _size(variables):
  return sum(math.prod(v.shape) for v in variables)


# --- Listing: options and defaults from the builders' signatures ---

def test_options_of_cifarnet_are_typed_by_their_defaults():
  options = nets_factory.network_options('cifarnet')
  assert (options['lrn'].default, options['lrn'].type) == (True, bool)
  assert (options['kernel_size'].default,
          options['kernel_size'].type) == (5, int)
  assert (options['dropout_keep_prob'].default,
          options['dropout_keep_prob'].type) == (0.5, float)
  activation = options['activation']
  assert (activation.default, activation.type) == ('relu', str)
  assert set(activation.choices) >= {'relu', 'relu6', 'elu', 'selu', 'swish',
                                     'gelu', 'tanh', 'crelu'}
  # Set by the scripts' own flags, or Python callables: not options.
  assert not set(options) & {'num_classes', 'weight_decay', 'is_training',
                             'prediction_fn'}


def test_variants_show_their_own_defaults():
  assert nets_factory.network_options(
      'mobilenet_v1_025')['depth_multiplier'].default == 0.25
  mobilenet_v2_035 = nets_factory.network_options('mobilenet_v2_035')
  assert mobilenet_v2_035['depth_multiplier'].default == 0.35
  assert mobilenet_v2_035['finegrain_classification_mode'].default is True
  assert nets_factory.network_options(
      'mobilenet_v1')['activation'].default == 'relu6'
  assert nets_factory.network_options('alexnet_v2')['lrn'].default is False
  resnet = nets_factory.network_options('resnet_v1_50')
  # Forwarded through the depth builder to the generic ResNet.
  assert resnet['output_stride'].type is int
  assert resnet['output_stride'].default is None
  assert resnet['depth_multiplier'].default == 1.0
  # What the builder sets itself, and Python-only arguments, are not listed.
  assert not set(resnet) & {'blocks', 'preactivation', 'scope'}
  assert 'scope' not in nets_factory.network_options('vgg_16')
  assert 'conv_defs' not in nets_factory.network_options('mobilenet_v2')


@pytest.mark.parametrize('name', nets_factory.list_networks())
def test_every_net_lists_activation_and_is_built_with_the_listed_defaults(
    name):
  options = nets_factory.network_options(name)
  assert 'activation' in options
  # The net records its constructor's arguments: the listed defaults are
  # the values a net built without options has.
  config = nets_factory.get_network_fn(name, 10).get_config()
  shared = set(options) & set(config)
  assert 'activation' in shared
  assert {k: config[k] for k in shared} == {
      k: options[k].default for k in shared}


# --- Parsing ---

def test_values_are_parsed_as_the_option_types():
  options = nets_factory.parse_model_options(
      'cifarnet', ' kernel_size = 3 , lrn=False,dropout_keep_prob=1,'
      'activation=elu,')
  assert options == {'kernel_size': 3, 'lrn': False, 'dropout_keep_prob': 1.0,
                     'activation': 'elu'}
  assert [type(v) for v in options.values()] == [int, bool, float, str]
  for text, value in (('true', True), ('YES', True), ('1', True),
                      ('no', False), ('0', False)):
    assert nets_factory.parse_model_options(
        'alexnet_v2', f'lrn={text}') == {'lrn': value}
  assert nets_factory.parse_model_options(
      'resnet_v1_50', 'output_stride=16,depth_multiplier=0.5') == {
          'output_stride': 16, 'depth_multiplier': 0.5}
  assert nets_factory.parse_model_options(
      'resnet_v1_50', 'output_stride=None') == {'output_stride': None}
  assert nets_factory.parse_model_options('cifarnet', '') == {}
  assert nets_factory.parse_model_options('cifarnet', None) == {}


def test_formatted_options_parse_back():
  options = nets_factory.parse_model_options(
      'cifarnet', 'activation=crelu,lrn=no,kernel_size=3,fc_stddev=1e-2')
  text = nets_factory.format_model_options(options)
  assert nets_factory.parse_model_options('cifarnet', text) == options


def test_unknown_option_names_the_valid_ones():
  with pytest.raises(ValueError) as error:
    nets_factory.parse_model_options('cifarnet', 'lrn=false,kernel_sise=3')
  message = str(error.value)
  assert "'kernel_sise'" in message and 'Did you mean kernel_size' in message
  for name in nets_factory.network_options('cifarnet'):
    assert name in message
  with pytest.raises(ValueError, match='use --weight_decay'):
    nets_factory.parse_model_options('lenet', 'weight_decay=0.1')
  # An option of another net is not one of this net.
  with pytest.raises(ValueError, match="Unknown model option 'lrn' of lenet"):
    nets_factory.parse_model_options('lenet', 'lrn=true')


@pytest.mark.parametrize('text, expected', [
    ('kernel_size=3.5',
     r"kernel_size='3.5': expected an integer \(default 5\)"),
    ('lrn=maybe', r"lrn='maybe': expected true or false \(default True\)"),
    ('dropout_keep_prob=half', r'expected a number \(default 0.5\)'),
    ('dropout_keep_prob=nan', r'expected a number'),
    ('activation=relu7',
     r"activation='relu7': unknown activation. Did you mean .*relu6.* "
     r'Valid: crelu, elu, gelu'),
    ('lrn', 'key=value pairs'),
    ('=3', 'key=value pairs'),
    ('lrn=true,lrn=false', 'lrn is given twice'),
    # Values the builder refuses are found when the options are parsed.
    ('kernel_size=0', 'kernel_size must be a positive integer; got 0'),
])
def test_bad_values_are_refused_with_what_is_expected(text, expected):
  with pytest.raises(ValueError, match=expected):
    nets_factory.parse_model_options('cifarnet', text)


def test_bad_activation_lists_the_valid_ones():
  with pytest.raises(ValueError) as error:
    nets_factory.parse_model_options('vgg_a', 'activation=softsign')
  for name in layers.ACTIVATIONS.names():
    assert name in str(error.value)
  # Python callers get the same check from the layers.
  with pytest.raises(ValueError, match='Unknown activation .softsign.'):
    layers.get_activation('softsign')


def test_builder_refusals_are_reported_with_the_options():
  with pytest.raises(ValueError, match='depth_multiplier must be > 0'):
    nets_factory.parse_model_options('mobilenet_v1', 'depth_multiplier=0')
  # String options are checked when the net is made, not when it is built.
  with pytest.raises(ValueError, match="Unknown initializer 'nonsense'"):
    nets_factory.parse_model_options('alexnet_v2', 'conv_initializer=nonsense')
  with pytest.raises(ValueError, match="padding='x'; valid: SAME, VALID"):
    nets_factory.parse_model_options('vgg_16', 'fc_conv_padding=x')
  assert nets_factory.parse_model_options(
      'alexnet_v2', 'conv_initializer=he_normal') == {
          'conv_initializer': 'he_normal'}


# --- Activations: each one's arithmetic, computed independently ---

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_ERF = np.vectorize(math.erf)

REFERENCE = {
    'relu': lambda z: np.maximum(z, 0.0),
    'relu6': lambda z: np.clip(z, 0.0, 6.0),
    'elu': lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    'selu': lambda z: SELU_SCALE * np.where(
        z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
    'swish': lambda z: z / (1.0 + np.exp(-z)),
    'gelu': lambda z: 0.5 * z * (1.0 + _ERF(z / math.sqrt(2.0))),
    'tanh': np.tanh,
    'crelu': lambda z: np.concatenate([np.maximum(z, 0.0),
                                       np.maximum(-z, 0.0)], axis=-1),
    'leaky_relu': lambda z: np.where(z > 0, z, 0.2 * z),
}


def test_every_activation_has_a_reference():
  assert sorted(REFERENCE) == layers.ACTIVATIONS.names()


@pytest.mark.parametrize('activation', sorted(REFERENCE))
def test_lenet_applies_the_activation(activation):
  net = nets_factory.get_network_fn('lenet', 10, activation=activation)
  images = _images(28, channels=1) * 3.0
  logits, end_points = net(images)
  weights = net.slim_variables()
  z = (tf.nn.conv2d(images, weights['LeNet/conv1/weights'], 1, 'SAME')
       + weights['LeNet/conv1/biases']).numpy()
  np.testing.assert_allclose(end_points['conv1'], REFERENCE[activation](z),
                             rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(logits))


def test_crelu_doubles_the_inputs_of_the_next_layers():
  default = nets_factory.get_network_fn('lenet', 10)
  net = nets_factory.get_network_fn('lenet', 10, activation='crelu')
  images = _images(28, channels=1)
  default(images)
  _, end_points = net(images)
  assert end_points['conv1'].shape == (2, 28, 28, 64)
  assert end_points['fc3'].shape == (2, 2048)
  shapes = {v.path: tuple(v.shape) for v in net.weights}
  assert shapes == {
      'LeNet/conv1/weights': (5, 5, 1, 32), 'LeNet/conv1/biases': (32,),
      'LeNet/conv2/weights': (5, 5, 64, 64), 'LeNet/conv2/biases': (64,),
      'LeNet/fc3/weights': (7 * 7 * 128, 1024), 'LeNet/fc3/biases': (1024,),
      'LeNet/fc4/weights': (2048, 10), 'LeNet/fc4/biases': (10,)}
  assert sorted(shapes) == sorted(v.path for v in default.weights)
  assert _size(default.trainable_weights) == 3274634  # TF-Slim's LeNet
  assert _size(net.trainable_weights) == (
      5 * 5 * 1 * 32 + 32 + 5 * 5 * 64 * 64 + 64 + 6272 * 1024 + 1024
      + 2048 * 10 + 10)


@pytest.mark.parametrize('activation', sorted(REFERENCE))
def test_resnet_v1_sums_keep_their_width(activation):
  # Thin ResNet v1: the unit's sum is activated by the net's activation;
  # crelu acts there as relu, so the residual stream keeps its width.
  net = nets_factory.get_network_fn('resnet_v1_50', 10, activation=activation,
                                    depth_multiplier=0.125)
  _, end_points = net(_images(32) * 3.0)
  unit = 'resnet_v1_50/block1/unit_1/bottleneck_v1'
  total = (end_points[f'{unit}/shortcut'] + end_points[f'{unit}/conv3']).numpy()
  same_width = 'relu' if activation == 'crelu' else activation
  np.testing.assert_allclose(end_points[unit], REFERENCE[same_width](total),
                             rtol=1e-5, atol=1e-5)
  assert end_points[unit].shape[-1] == 32
  width = 2 if activation == 'crelu' else 1
  assert end_points[f'{unit}/conv1'].shape[-1] == 8 * width
  assert end_points['resnet_v1_50/conv1'].shape[-1] == 64  # the stream


# --- cifarnet: lrn and kernel_size ---

def _numpy_lrn(x, depth_radius, bias, alpha, beta):
  """`x / (bias + alpha * sum of x**2 over the 2r+1 nearest channels)**beta`."""
  x = np.asarray(x, np.float64)
  squares = x ** 2
  channels = x.shape[-1]
  total = np.zeros_like(x)
  for d in range(channels):
    lo, hi = max(0, d - depth_radius), min(channels, d + depth_radius + 1)
    total[..., d] = squares[..., lo:hi].sum(axis=-1)
  return x / (bias + alpha * total) ** beta


def _cifarnet_pair(**options):
  """cifarnet with `options` and with TF-Slim's defaults, same weights."""
  images = _images(32) * 4.0
  default = nets_factory.get_network_fn('cifarnet', 10)
  net = nets_factory.get_network_fn('cifarnet', 10, **options)
  default(images)
  net(images)
  for mine, theirs in zip(net.weights, default.weights):
    mine.assign(theirs)
  return net, default, images


def _conv(x, net, scope):
  weights = net.slim_variables()
  return tf.nn.relu(tf.nn.conv2d(x, weights[f'CifarNet/{scope}/weights'], 1,
                                 'SAME') + weights[f'CifarNet/{scope}/biases'])


def test_cifarnet_lrn_is_tf_slims_norm1_norm2_and_optional():
  net, default, images = _cifarnet_pair(lrn=False)
  assert [(v.path, v.shape) for v in net.weights] == [
      (v.path, v.shape) for v in default.weights]
  _, with_lrn = default(images)
  _, without = net(images)
  pool1 = with_lrn['pool1'].numpy()
  np.testing.assert_allclose(without['pool1'], pool1, rtol=1e-6)
  # TF-Slim's norm1: depth_radius 4, bias 1, alpha 0.001 / 9, beta 0.75.
  norm1 = _numpy_lrn(pool1, 4, 1.0, 0.001 / 9.0, 0.75)
  assert np.abs(norm1 - pool1).max() > 1e-3  # the normalization matters
  np.testing.assert_allclose(with_lrn['conv2'],
                             _conv(tf.constant(norm1, tf.float32), default,
                                   'conv2'), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(without['conv2'], _conv(pool1, net, 'conv2'),
                             rtol=1e-4, atol=1e-4)
  norm2 = _numpy_lrn(with_lrn['conv2'], 4, 1.0, 0.001 / 9.0, 0.75)
  np.testing.assert_allclose(
      with_lrn['pool2'], tf.nn.max_pool2d(norm2, 2, 2, 'VALID'), rtol=1e-4,
      atol=1e-4)
  np.testing.assert_allclose(
      without['pool2'], tf.nn.max_pool2d(without['conv2'], 2, 2, 'VALID'))
  assert not np.allclose(with_lrn['Logits'], without['Logits'], atol=1e-4)


def test_cifarnet_kernel_size_3():
  net = nets_factory.get_network_fn('cifarnet', 10, kernel_size=3)
  images = _images(32) * 4.0
  _, end_points = net(images)
  shapes = {v.path: tuple(v.shape) for v in net.weights}
  assert shapes['CifarNet/conv1/weights'] == (3, 3, 3, 64)
  assert shapes['CifarNet/conv2/weights'] == (3, 3, 64, 64)
  # SAME padding: the maps keep their sizes, fc3 still reads 8 * 8 * 64.
  conv = 3 * 3 * 3 * 64 + 64 + 3 * 3 * 64 * 64 + 64
  fully_connected = 8 * 8 * 64 * 384 + 384 + 384 * 192 + 192 + 192 * 10 + 10
  assert _size(net.trainable_weights) == conv + fully_connected
  # The 5x5 net (TF-Slim's 1,756,426) has 25 - 9 more weights per
  # input-output pair of the two convs.
  assert _size(net.trainable_weights) == 1756426 - 16 * (3 * 64 + 64 * 64)
  np.testing.assert_allclose(end_points['conv1'], _conv(images, net, 'conv1'),
                             rtol=1e-5, atol=1e-5)
  assert end_points['pool2'].shape == (2, 8, 8, 64)


def test_lrn_runs_in_bfloat16():
  # TF's LRN op has no bfloat16 CPU kernel: the layer normalizes in float32.
  x = _images(4, channels=16, batch=1) * 3.0
  y = layers.local_response_norm(tf.cast(x, tf.bfloat16), depth_radius=2,
                                 bias=2.0, alpha=1e-4, beta=0.75)
  assert y.dtype == tf.bfloat16
  np.testing.assert_allclose(tf.cast(y, tf.float32),
                             _numpy_lrn(x, 2, 2.0, 1e-4, 0.75), rtol=1e-2)
  images = _images(32)
  reference = nets_factory.get_network_fn('cifarnet', 10)
  expected, _ = reference(images)
  with precision.policy_scope('mixed_bfloat16'):
    net = nets_factory.get_network_fn('cifarnet', 10)
    net(images)
  for mine, theirs in zip(net.weights, reference.weights):
    mine.assign(theirs)
  logits, end_points = net(images)
  assert end_points['conv2'].dtype == tf.bfloat16
  error = np.abs(tf.cast(logits, tf.float32).numpy() - expected.numpy())
  # bfloat16 keeps about 3 significant digits.
  assert error.max() < 0.03 * np.abs(expected.numpy()).max()


def test_cifarnet_rejects_a_bad_kernel_size():
  with pytest.raises(ValueError, match='kernel_size must be a positive'):
    cifarnet.cifarnet(10, kernel_size=0)


# --- alexnet_v2: the 2012 paper's LRN ---

def test_tf_lrn_alpha_multiplies_the_plain_sum():
  # What alexnet.paper_lrn relies on: tf.nn.lrn divides by
  # (bias + alpha * sum) ** beta over 2 * depth_radius + 1 channels, the
  # paper's formula (Caffe divides alpha by n instead).
  x = _images(4, channels=9, batch=1) * 30.0
  np.testing.assert_allclose(
      tf.nn.lrn(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75),
      _numpy_lrn(x, 2, 2.0, 1e-4, 0.75), rtol=1e-5)


def test_alexnet_lrn_follows_conv1_and_conv2():
  # 195 x 195 is the smallest input fc6's 5x5 VALID window takes.
  images = _images(195, batch=1) * 2.0
  net = nets_factory.get_network_fn('alexnet_v2', 1001, lrn=True)
  _, end_points = net(images)
  # No variables added: TF-Slim's count.
  assert _size(net.trainable_weights) == 50308009
  scope = 'alexnet_v2'
  for conv, norm, pool in (('conv1', 'norm1', 'pool1'),
                           ('conv2', 'norm2', 'pool2')):
    expected = tf.nn.lrn(end_points[f'{scope}/{conv}'], depth_radius=2,
                         bias=2.0, alpha=1e-4, beta=0.75)
    np.testing.assert_allclose(end_points[f'{scope}/{norm}'], expected,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        end_points[f'{scope}/{pool}'],
        tf.nn.max_pool2d(expected, 3, 2, 'VALID'), rtol=1e-5, atol=1e-6)
  assert f'{scope}/norm1' not in nets_factory.get_network_fn(
      'alexnet_v2', 10)(images)[1]
  assert inspect.signature(alexnet.alexnet_v2).parameters['lrn'].default is (
      False)


# --- print_model ---

def test_print_model_lists_the_options_and_builds_with_them():
  summary = print_model.summarize('cifarnet', kernel_size=3, activation='elu')
  assert summary['trainable_parameters'] == 1756426 - 16 * (3 * 64 + 64 * 64)
  # By hand, 3x3 kernels: conv1 on 32x32x3 -> 64, conv2 on 16x16x64 -> 64,
  # fc3 8*8*64 -> 384, fc4 384 -> 192, logits 192 -> 10.
  multiply_adds = (32 * 32 * 64 * 9 * 3 + 16 * 16 * 64 * 9 * 64 +
                   8 * 8 * 64 * 384 + 384 * 192 + 192 * 10)
  assert summary['multiply_adds'] == multiply_adds
  assert summary['training_flops'] == 6 * multiply_adds
  text = print_model.format_summary(summary)
  assert 'cifarnet --model_options=kernel_size=3,activation=elu:' in text
  lines = text.splitlines()
  start = lines.index('options (--model_options=key=value,...):')
  rows = {line.split()[0]: line.split()[1:] for line in lines[start + 2:]}
  assert sorted(rows) == sorted(nets_factory.network_options('cifarnet'))
  assert rows['kernel_size'] == ['5', '3', 'int']
  assert rows['lrn'] == ['True', 'bool']
  assert rows['activation'][:4] == ['relu', 'elu', 'one', 'of']
  assert 'crelu' in lines[start + 2 + list(rows).index('activation')]


# --- The scripts ---

def _run_script(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return script_runner.run([sys.executable, os.path.join(ROOT, script), *args],
                           env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=600, check=False)


@pytest.mark.parametrize('options, expected', [
    ('activaton=elu', "Unknown model option 'activaton' of cifarnet. Did you "
     'mean activation? Valid options of cifarnet: activation, conv_stddev,'),
    ('kernel_size=big', "kernel_size='big': expected an integer (default 5)"),
])
def test_train_refuses_bad_options_before_writing(tmp_path, options,
                                                  expected):
  data = tiny_records.write_dataset(tmp_path / 'data', 'cifar10',
                                    {'train': 8})
  train_dir = tmp_path / 'train'
  result = _run_script(
      'train_image_classifier.py', f'--train_dir={train_dir}',
      '--dataset_name=cifar10', f'--dataset_dir={data}',
      '--model_name=cifarnet', f'--model_options={options}',
      '--max_number_of_steps=1')
  assert result.returncode == 2, result.stderr[-2000:]
  assert f'error: --model_options={options}: ' in result.stderr
  assert expected in result.stderr
  assert not os.path.exists(train_dir)


def test_options_reach_training_the_flagfile_evaluation_and_export(tmp_path):
  data = tiny_records.write_dataset(tmp_path / 'data', 'cifar10',
                                    {'train': 16, 'test': 16})
  train_dir = tmp_path / 'train'
  options = 'kernel_size=3,lrn=false,activation=elu'
  common = ('--dataset_name=cifar10', f'--dataset_dir={data}',
            '--model_name=cifarnet', '--batch_size=8')
  train = _run_script('train_image_classifier.py', f'--train_dir={train_dir}',
                      *common, f'--model_options={options}',
                      '--max_number_of_steps=1', '--num_readers=1')
  assert train.returncode == 0, train.stderr[-3000:]
  assert ('cifarnet with --model_options=kernel_size=3,lrn=False,'
          'activation=elu' in train.stderr)
  checkpoint = str(train_dir / 'model.ckpt-1')
  keys = checkpoints.named_values(checkpoint)
  shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
  assert shapes[keys['CifarNet/conv1/weights']] == [3, 3, 3, 64]
  assert shapes[keys['CifarNet/fc3/weights']] == [8 * 8 * 64, 384]
  flagfile = (train_dir / 'flags.txt').read_text()
  assert f'--model_options={options}\n' in flagfile

  # The recorded flags rebuild the same net: the run resumes from step 1.
  resumed = _run_script('train_image_classifier.py',
                        f'--flagfile={train_dir / "flags.txt"}',
                        '--max_number_of_steps=2')
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert os.path.exists(train_dir / 'model.ckpt-2.index')

  evaluate = _run_script('eval_image_classifier.py',
                         f'--checkpoint_path={train_dir}', *common,
                         f'--eval_dir={tmp_path / "eval"}',
                         f'--model_options={options}')
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert 'global step 2' in evaluate.stdout

  export = _run_script('export_inference_graph.py', '--model_name=cifarnet',
                       '--num_classes=10', f'--checkpoint_path={train_dir}',
                       f'--model_options={options}',
                       f'--output_dir={tmp_path / "export"}')
  assert export.returncode == 0, export.stderr[-3000:]
  assert 'Restored 10 variables' in export.stdout
