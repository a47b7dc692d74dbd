"""Optimizers and learning-rate schedules: TF-Slim's semantics, by name."""

import inspect
import json
import math
import os
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from slimkit.training import losses
from slimkit.training import optimization
from slimkit.nets import nets_factory
from tests import script_runner
from tests import tiny_nets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(optimizer, grads, initial=(1.0, -2.0)):
  """Applies each gradient in turn to one variable; returns its values."""
  var = tf.Variable(np.array(initial, np.float32))
  values = []
  for g in grads:
    optimizer.apply_gradients([(tf.constant(g, tf.float32), var)])
    values.append(var.numpy().copy())
  return values


def test_rmsprop_is_tf1s_with_ones_initialised_mean_square():
  lr, decay, momentum, eps = 0.1, 0.9, 0.9, 1.0
  grads = [np.array([0.5, -1.5]), np.array([2.0, 0.25]),
           np.array([-1.0, 1.0])]
  got = _run(optimization.build_optimizer(
      'rmsprop', lr, optimization.OptimizerHParams(
          rmsprop_decay=decay, rmsprop_momentum=momentum, opt_epsilon=eps)),
      grads)
  # TF 1's ApplyRMSProp by hand.
  var = np.array([1.0, -2.0])
  ms, mom = np.ones(2), np.zeros(2)
  for g, value in zip(grads, got):
    ms = decay * ms + (1 - decay) * g ** 2
    mom = momentum * mom + lr * g / np.sqrt(ms + eps)
    var = var - mom
    np.testing.assert_allclose(value, var, rtol=1e-5)
  # Keras' RMSprop (zeros, sqrt(ms) + eps) takes other steps.
  keras_values = _run(tf.keras.optimizers.RMSprop(
      lr, rho=decay, momentum=momentum, epsilon=eps), grads)
  assert not np.allclose(keras_values[-1], got[-1], rtol=1e-3)


def test_momentum_accumulates_raw_gradients_as_tf1():
  schedule = lambda step: 0.1 if int(step) < 2 else 0.01  # noqa: E731
  opt = optimization.build_optimizer(
      'momentum', tf.keras.optimizers.schedules.PiecewiseConstantDecay(
          [1], [0.1, 0.01]),
      optimization.OptimizerHParams(momentum=0.9))
  grads = [np.array([1.0, -1.0]), np.array([0.5, 2.0]), np.array([1.0, 1.0])]
  got = _run(opt, grads)
  var, accum = np.array([1.0, -2.0]), np.zeros(2)
  for step, (g, value) in enumerate(zip(grads, got)):
    accum = 0.9 * accum + g
    var = var - schedule(step) * accum
    np.testing.assert_allclose(value, var, rtol=1e-5)


@pytest.mark.parametrize('name', optimization.list_optimizers())
def test_every_optimizer_takes_a_finite_step_downhill(name):
  opt = optimization.build_optimizer(name, 0.1)
  var = tf.Variable([1.0, -2.0])
  before = float(tf.reduce_sum(var ** 2))
  for _ in range(3):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(var ** 2)
    opt.apply_gradients([(tape.gradient(loss, var), var)])
  after = float(tf.reduce_sum(var ** 2))
  assert np.isfinite(after) and after < before


def test_optimizer_flags_reach_the_optimizer():
  h = optimization.OptimizerHParams(adam_beta1=0.5, adam_beta2=0.75,
                                    opt_epsilon=0.25, ftrl_l1=0.3,
                                    adadelta_rho=0.8)
  adam = optimization.build_optimizer('adam', 0.1, h)
  assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.5, 0.75, 0.25)
  assert optimization.build_optimizer('ftrl', 0.1,
                                      h).l1_regularization_strength == 0.3
  assert optimization.build_optimizer('adadelta', 0.1, h).rho == 0.8
  h = optimization.OptimizerHParams(lion_beta1=0.7, lion_beta2=0.8,
                                    weight_decay=0.25)
  lion = optimization.build_optimizer('lion', 0.1, h)
  assert (lion.beta_1, lion.beta_2, lion.weight_decay) == (0.7, 0.8, 0.25)
  assert optimization.build_optimizer('adamw', 0.1, h).weight_decay == 0.25
  # Not decoupled: the nets' L2 regulariser decays, the optimizer does not.
  assert optimization.build_optimizer('nadam', 0.1, h).weight_decay is None
  assert optimization.build_optimizer('momentum', 0.1, h).weight_decay is None


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(ValueError, match='rmsprop.*Valid names:.*sgd'):
    optimization.build_optimizer('rmsprp', 0.1)
  with pytest.raises(ValueError, match='exponential'):
    optimization.build_learning_rate('expo', 0.1)


def test_decay_steps_follow_tf_slim():
  # An epoch of 50000 images at 32 per clone on 4 clones is 390.6 steps.
  assert optimization.decay_steps(50000, 2.0, 32, 4) == int(50000 * 2 / 128)
  assert optimization.decay_steps(50000, 2.0, 32, 4, 2) == int(
      int(50000 * 2 / 128) / 2)
  assert optimization.decay_steps(10, 0.1, 32) == 1


@pytest.mark.parametrize('decay_type', optimization.list_schedules())
def test_schedules(decay_type):
  lr = optimization.build_learning_rate(
      decay_type, 0.1, decay_steps=10, decay_factor=0.5,
      end_learning_rate=0.01, total_steps=20)
  rate = lambda step: float(optimization.current_learning_rate(  # noqa: E731
      lr, tf.constant(step, tf.int64)))
  assert rate(0) == pytest.approx(0.1)
  if decay_type == 'fixed':
    assert rate(1000) == pytest.approx(0.1)
  elif decay_type == 'exponential':
    # Stairs: constant within a period, times 0.5 per period.
    assert rate(9) == pytest.approx(0.1)
    assert rate(10) == pytest.approx(0.05)
    assert rate(25) == pytest.approx(0.025)
  elif decay_type == 'cosine':
    # Over total_steps (20), not decay_steps; then constant.
    assert rate(5) == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi / 4))
                                    / 2)
    assert rate(10) == pytest.approx(0.055)
    assert rate(20) == pytest.approx(0.01)
    assert rate(100) == pytest.approx(0.01)
  else:
    assert rate(5) == pytest.approx(0.055)
    assert rate(10) == pytest.approx(0.01)
    assert rate(100) == pytest.approx(0.01)  # no cycle


@pytest.mark.parametrize('decay_type', optimization.list_schedules())
@pytest.mark.parametrize('warmup_steps', [0, 2])
def test_each_schedule_drives_an_optimizer_step(decay_type, warmup_steps):
  lr = optimization.build_learning_rate(decay_type, 0.1, decay_steps=1,
                                        decay_factor=0.5, total_steps=4,
                                        warmup_steps=warmup_steps)
  values = _run(optimization.build_optimizer('sgd', lr),
                [np.array([1.0, 1.0])] * 2)
  first_step = 1.0 - values[0][0]
  second_step = values[0][0] - values[1][0]
  # With warmup the first step (global step 0) has rate 0.
  assert first_step == pytest.approx(0.0 if warmup_steps else 0.1)
  assert second_step == pytest.approx(float(
      optimization.current_learning_rate(lr, tf.constant(1, tf.int64))),
                                        rel=1e-3)


# --- Cosine and warmup. ---


def _rate(lr, step):
  return float(optimization.current_learning_rate(
      lr, tf.constant(step, tf.int64)))


def test_warmup_epochs_follow_tf_slims_epochs():
  # 64 images at 4 per clone: an epoch is 16 steps on one clone, 8 on two.
  assert optimization.warmup_steps(64, 0.5, 4) == 8
  assert optimization.warmup_steps(64, 0.5, 4, num_clones=2) == 4
  assert optimization.warmup_steps(64, 0.5, 4, 2, replicas_to_aggregate=2) == 2
  assert optimization.warmup_steps(64, 0.0, 4) == 0
  assert optimization.warmup_steps(64, 0.01, 4) == 1  # a warmup is >= 1 step


@pytest.mark.parametrize('num_clones', [1, 2])
def test_cosine_with_warmup_is_the_closed_form(num_clones):
  lr0, end, total = 0.2, 0.002, 40
  # 1.5 epochs of 64 images at 4 per clone: 24 steps, 12 on two clones.
  warmup = optimization.warmup_steps(64, 1.5, 4, num_clones)
  assert warmup == 24 // num_clones
  lr = optimization.build_learning_rate('cosine', lr0, end_learning_rate=end,
                                        total_steps=total,
                                        warmup_steps=warmup)
  for t in (0, 1, warmup - 1, warmup, warmup + 1, 30, total - 1, total,
            total + 7):
    cosine = end + (lr0 - end) * (1 + math.cos(math.pi * min(t, total) /
                                               total)) / 2
    # Keras computes in float32: equal up to its rounding of the peak rate.
    assert _rate(lr, t) == pytest.approx(cosine * min(1.0, t / warmup),
                                         rel=1e-6, abs=1e-7 * lr0), t


@pytest.mark.parametrize('decay_type', optimization.list_schedules())
def test_warmup_ramps_every_schedule_from_zero_without_shifting_it(
    decay_type):
  kwargs = dict(decay_steps=3, decay_factor=0.5, end_learning_rate=0.01,
                total_steps=20)
  plain = optimization.build_learning_rate(decay_type, 0.1, **kwargs)
  warm = optimization.build_learning_rate(decay_type, 0.1, warmup_steps=8,
                                          **kwargs)
  for t in range(25):
    assert _rate(warm, t) == pytest.approx(_rate(plain, t) * min(1.0, t / 8),
                                           rel=1e-6, abs=1e-12), t
  # The schedule survives Keras' serialization (an optimizer's config).
  again = keras.optimizers.schedules.deserialize(
      keras.optimizers.schedules.serialize(warm))
  assert [_rate(again, t) for t in range(25)] == [_rate(warm, t)
                                                  for t in range(25)]
  assert optimization.build_optimizer('adamw', warm).get_config()


def test_cosine_needs_the_run_length():
  with pytest.raises(ValueError, match='total_steps.*max_number_of_steps'):
    optimization.build_learning_rate('cosine', 0.1)


# --- The optimizers of today: adamw, lamb, lion, nadam. ---

# Hyper-parameters away from every default, so a flag that does not reach the
# optimizer shows.
HPARAMS = optimization.OptimizerHParams(
    adam_beta1=0.8, adam_beta2=0.95, opt_epsilon=1e-6, weight_decay=0.3,
    lion_beta1=0.85, lion_beta2=0.97)
# What each should be: Keras' own optimizer with the values of HPARAMS.
KERAS_OPTIMIZERS = {
    'adamw': lambda lr: keras.optimizers.AdamW(
        learning_rate=lr, weight_decay=0.3, beta_1=0.8, beta_2=0.95,
        epsilon=1e-6),
    'lamb': lambda lr: keras.optimizers.Lamb(
        learning_rate=lr, weight_decay=0.3, beta_1=0.8, beta_2=0.95,
        epsilon=1e-6),
    'lion': lambda lr: keras.optimizers.Lion(
        learning_rate=lr, weight_decay=0.3, beta_1=0.85, beta_2=0.97),
    'nadam': lambda lr: keras.optimizers.Nadam(
        learning_rate=lr, beta_1=0.8, beta_2=0.95, epsilon=1e-6),
}
DECOUPLED = ('adamw', 'lamb', 'lion')


def _not_decayed(path):
  return path.endswith(('/biases', '/BatchNorm/beta', '/BatchNorm/gamma'))


def test_the_decoupled_optimizers_are_registered_as_such():
  assert optimization.optimizers_where(
      lambda e: e.decoupled_weight_decay) == list(DECOUPLED)
  net = tiny_nets.net_with_every_kind_of_variable()
  assert sorted(v.path for v in net.trainable_variables) == [
      'Tiny/Conv2d_1_depthwise/BatchNorm/beta',
      'Tiny/Conv2d_1_depthwise/BatchNorm/gamma',
      'Tiny/Conv2d_1_depthwise/depthwise_weights',
      'Tiny/conv1/BatchNorm/beta', 'Tiny/conv1/BatchNorm/gamma',
      'Tiny/conv1/weights', 'Tiny/logits/biases', 'Tiny/logits/weights']


@pytest.mark.parametrize('name', sorted(KERAS_OPTIMIZERS))
def test_new_optimizers_update_as_keras_own(name):
  ours_net = tiny_nets.net_with_every_kind_of_variable()
  keras_net = tiny_nets.net_with_every_kind_of_variable()
  ours = optimization.build_optimizer(name, 0.01, HPARAMS)
  reference = KERAS_OPTIMIZERS[name](0.01)
  if name in DECOUPLED:
    # By variable, from the TF-Slim paths: independent of our name pattern.
    reference.exclude_from_weight_decay(var_list=[
        v for v in keras_net.trainable_variables if _not_decayed(v.path)])
  rng = np.random.RandomState(1)
  for _ in range(3):
    grads = [rng.normal(size=v.shape).astype(np.float32)
             for v in ours_net.trainable_variables]
    ours.apply_gradients(zip([tf.constant(g) for g in grads],
                             ours_net.trainable_variables))
    reference.apply_gradients(zip([tf.constant(g) for g in grads],
                                  keras_net.trainable_variables))
  start = tiny_nets.net_with_every_kind_of_variable()
  for a, b, v0 in zip(ours_net.trainable_variables,
                      keras_net.trainable_variables, start.trainable_variables):
    assert not np.allclose(a.numpy(), v0.numpy())  # it moved
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7,
                               err_msg=a.path)


# Every optimizer but ftrl, which recomputes the weights from its
# accumulators (zero at the start) on every step.
@pytest.mark.parametrize('name', [n for n in optimization.list_optimizers()
                                  if n != 'ftrl'])
def test_only_decoupled_decay_moves_weights_on_zero_gradients(name):
  net = tiny_nets.net_with_every_kind_of_variable()
  before = {v.path: v.numpy() for v in net.trainable_variables}
  lr = 0.1
  optimization.build_optimizer(name, lr, HPARAMS).apply_gradients(
      [(tf.zeros_like(v), v) for v in net.trainable_variables])
  for v in net.trainable_variables:
    if name in DECOUPLED and not _not_decayed(v.path):
      np.testing.assert_allclose(v.numpy(), before[v.path] * (1 - lr * 0.3),
                                 rtol=1e-6, err_msg=v.path)
    else:
      np.testing.assert_array_equal(v.numpy(), before[v.path], v.path)


@pytest.mark.parametrize('name', optimization.list_optimizers())
def test_the_nets_l2_regulariser_is_off_only_with_decoupled_decay(name):
  weight_decay = 0.01
  net = nets_factory.get_network_fn(
      'lenet', 10, weight_decay=optimization.net_weight_decay(
          name, weight_decay), is_training=True)
  net(tf.zeros([1, 28, 28, 1]))
  if name in DECOUPLED:
    assert not net.losses
  else:
    # TF-Slim's l2_regularizer on the weights (not the biases).
    expected = sum(weight_decay * float(tf.nn.l2_loss(v))
                   for v in net.trainable_variables
                   if v.path.endswith('/weights'))
    assert float(tf.add_n(net.losses)) == pytest.approx(expected, rel=1e-5)


# In a fresh process: the CPU is split into two logical devices before
# TensorFlow starts. Under MirroredStrategy each replica's copy of a variable
# is decayed on its own and seen under its own name ('Tiny/biases:0',
# 'Tiny/biases/replica_1:0'): every copy must get the same treatment.
_MIRRORED_DECAY = textwrap.dedent(r'''
  import json
  import numpy as np
  import tensorflow as tf
  from slimkit.deployment import model_deploy
  from slimkit.training import optimization
  from tests import tiny_nets

  strategy = model_deploy.make_strategy(
      model_deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True))
  report = {}
  for name in ('adamw', 'lamb', 'lion'):
    with strategy.scope():
      net = tiny_nets.net_with_every_kind_of_variable()
      for v in net.trainable_variables:
        v.assign(tf.fill(v.shape, 2.0))
      opt = optimization.build_optimizer(
          name, 0.1, optimization.OptimizerHParams(weight_decay=0.3))
      opt.build(net.trainable_variables)

    @tf.function
    def step():
      strategy.run(lambda: opt.apply_gradients(
          [(tf.zeros_like(v), v) for v in net.trainable_variables]))

    step()
    report[name] = {
        v.path: [sorted(set(np.asarray(c).ravel().tolist()))
                 for c in strategy.experimental_local_results(v.value)]
        for v in net.trainable_variables}
  print(json.dumps(report))
''')


def test_decoupled_decay_skips_the_same_variables_on_every_clone():
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  result = script_runner.run(
      [sys.executable, '-c', _MIRRORED_DECAY], env=env, cwd=ROOT,
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  for name in DECOUPLED:
    assert len(report[name]) == 8
    for path, replicas in report[name].items():
      expected = 2.0 if _not_decayed(path) else np.float32(2.0 * (1 - 0.03))
      assert len(replicas) == 2
      for values in replicas:
        assert values == [pytest.approx(float(expected), rel=1e-6)], (name,
                                                                      path)


def test_optimizer_warnings():
  tf_slim = optimization.OptimizerHParams(opt_epsilon=1.0)
  defaults = optimization.OptimizerHParams()
  good = optimization.OptimizerHParams(opt_epsilon=1e-8, weight_decay=0.05)
  for name in ('adam', 'adamw', 'lamb', 'nadam'):
    assert any('crawls' in w and '--opt_epsilon=1e-8' in w
               for w in optimization.optimizer_warnings(name, tf_slim)), name
  # Without --opt_epsilon, adam keeps TF-Slim's 1.0 (and the warning); the
  # newer ones take Keras's epsilon and do not crawl.
  assert any('crawls' in w
             for w in optimization.optimizer_warnings('adam', defaults))
  for name in ('adamw', 'lamb', 'nadam'):
    assert not any('crawls' in w for w in optimization.optimizer_warnings(
        name, defaults)), name
  for name in DECOUPLED:
    assert any('--weight_decay=4e-05' in w and '0.05' in w
               for w in optimization.optimizer_warnings(name, tf_slim)), name
  for name in optimization.list_optimizers():
    assert not optimization.optimizer_warnings(name, good), name
  # TF-Slim's own recipe warns about nothing.
  for name in ('rmsprop', 'momentum', 'sgd', 'adadelta'):
    assert not optimization.optimizer_warnings(name, tf_slim), name
    assert not optimization.optimizer_warnings(name, defaults), name
  # Lion has no epsilon: only the decay warning above, no crawl.
  lion = optimization.optimizer_warnings('lion', tf_slim)
  assert len(lion) == 1 and '--weight_decay=4e-05' in lion[0]


# --- --opt_epsilon's default: the optimizer's own. ---

# TF-Slim's train_image_classifier.py: DEFINE_float('opt_epsilon', 1.0, ...).
TF_SLIM_OPT_EPSILON = 1.0
KERAS_CLASSES = {'adamw': keras.optimizers.AdamW,
                 'lamb': keras.optimizers.Lamb,
                 'nadam': keras.optimizers.Nadam}


def _keras_default_epsilon(keras_class):
  return inspect.signature(keras_class).parameters['epsilon'].default


@pytest.mark.parametrize('name', sorted(KERAS_CLASSES))
def test_the_newer_adam_family_defaults_to_keras_epsilon(name):
  expected = _keras_default_epsilon(KERAS_CLASSES[name])
  built = optimization.build_optimizer(name, 0.01,
                                       optimization.OptimizerHParams())
  assert built.epsilon == expected
  assert optimization.build_optimizer(name, 0.01).epsilon == expected


@pytest.mark.parametrize('name', ['adadelta', 'adam', 'rmsprop'])
def test_tf_slim_optimizers_keep_tf_slim_epsilon(name):
  built = optimization.build_optimizer(name, 0.01,
                                       optimization.OptimizerHParams())
  assert built.epsilon == TF_SLIM_OPT_EPSILON


def test_an_explicit_opt_epsilon_wins_for_every_optimizer():
  readers = optimization.optimizers_where(lambda e: 'opt_epsilon' in e.flags)
  assert readers == ['adadelta', 'adam', 'adamw', 'lamb', 'nadam', 'rmsprop']
  for value in (0.125, 1.0):
    h = optimization.OptimizerHParams(opt_epsilon=value)
    for name in readers:
      assert optimization.build_optimizer(name, 0.01, h).epsilon == value, (
          name, value)
  # Lion has no epsilon: a given value changes nothing.
  lion = optimization.build_optimizer(
      'lion', 0.01, optimization.OptimizerHParams(opt_epsilon=0.125))
  assert not hasattr(lion, 'epsilon') or lion.epsilon != 0.125


def test_momentum_is_tf1s_arithmetic_bit_for_bit_in_float32():
  # The update runs on TF's fused ResourceApplyMomentum; numpy's float32
  # operations, one at a time, are the reference.
  rng = np.random.RandomState(3)
  start = rng.normal(size=[64, 33]).astype(np.float32)
  grads = [rng.normal(size=start.shape).astype(np.float32) for _ in range(3)]
  opt = optimization.build_optimizer(
      'momentum', 0.05, optimization.OptimizerHParams(momentum=0.9))
  var = tf.Variable(start)
  opt.build([var])
  var_np, accum = start.copy(), np.zeros_like(start)
  for g in grads:
    opt.apply_gradients([(tf.constant(g), var)])
    accum = np.float32(0.9) * accum + g
    var_np = var_np - np.float32(0.05) * accum
    np.testing.assert_array_equal(var.numpy(), var_np)


def test_sgd_is_tf1s_arithmetic_bit_for_bit_in_float32():
  # The update runs on TF's fused ResourceApplyGradientDescent; numpy's
  # float32 operations and Keras' own SGD are the references.
  rng = np.random.RandomState(4)
  start = rng.normal(size=[64, 33]).astype(np.float32)
  grads = [rng.normal(size=start.shape).astype(np.float32) for _ in range(3)]
  opt = optimization.build_optimizer('sgd', 0.05)
  var, keras_var = tf.Variable(start), tf.Variable(start)
  keras_opt = keras.optimizers.SGD(0.05)
  var_np = start.copy()
  for g in grads:
    opt.apply_gradients([(tf.constant(g), var)])
    keras_opt.apply_gradients([(tf.constant(g), keras_var)])
    var_np = var_np - np.float32(0.05) * g
    np.testing.assert_array_equal(var.numpy(), var_np)
    np.testing.assert_array_equal(var.numpy(), keras_var.numpy())
  assert int(opt.iterations.numpy()) == len(grads)


@pytest.mark.parametrize('values, finite', [
    ([[1.0, -2.0], [3.0]], True),
    ([[3e38, 3e38], [3e38]], True),  # the sum overflows; the values do not
    ([[1.0, float('inf')], [3.0]], False),
    ([[1.0, 2.0], [float('nan')]], False),
    ([[float('inf'), -float('inf')], [0.0]], False),
])
def test_all_finite_is_the_elementwise_test(values, finite):
  tensors = [tf.constant(v, tf.float32) for v in values]
  assert bool(losses.all_finite(tensors)) is finite
  assert bool(tf.function(losses.all_finite)(tensors)) is finite
  assert bool(losses.all_finite([tf.cast(t, tf.bfloat16)
                                 for t in tensors])) is finite
