"""The command-line flags of the scripts, defined once, in groups.

TF-Slim's flag names and defaults are kept so that existing commands run
unchanged. Closed choices are enums listing their valid values; numeric flags
have validators, so a bad value stops the script (exit status 2) with a message
naming the flag before anything is written. Scripts call the `define_*`
groups they need at import, read `FLAGS` only in `main()`, and hand plain
values to the library:

  from slimkit import flags as slim_flags
  slim_flags.define_dataset_flags(split_name='train')
  ...
  if __name__ == '__main__':
    app.run(main, flags_parser=slim_flags.parse_flags)

`--master` (a TF 1 session target) is accepted for old commands but does
nothing; `obsolete_flag_warnings()` says what replaces it.
"""

import sys

from absl import flags

from slimkit import seeds
from slimkit.datasets import dataset_factory
from slimkit.datasets import dataset_utils
from slimkit.datasets import input_pipeline
from slimkit.training import optimization
from slimkit.training import precision
from slimkit.export import tflite as tflite_lib
from slimkit.nets import nets_factory
from slimkit.preprocessing import preprocessing_factory
from slimkit.preprocessing import randaugment as randaugment_lib

FLAGS = flags.FLAGS

# What replaces each TF 1 flag that has no meaning on TF 2: flag -> (value
# that means "unused", explanation).
OBSOLETE = {
    'master': ('', 'TF 1 session targets are gone; clones and workers are set '
               'with --num_clones and --worker_hosts/--ps_hosts or TF_CONFIG '
               '(tf.distribute); --master is ignored.'),
}


def _register_validator(name, check, message):
  flags.register_validator(name, check, message=f'--{name} {message}')


def _preprocessing_names():
  # Styles and model names: a model name means that model's default style.
  return sorted(set(preprocessing_factory.list_preprocessing()) |
                set(nets_factory.list_networks()))


def define_model_flags(image_size_flag):
  """Defines `--model_name`, `--preprocessing_name` and the image size flag.

  Args:
    image_size_flag: 'train_image_size' or 'eval_image_size'.
  """
  flags.DEFINE_enum('model_name', 'inception_v3', nets_factory.list_networks(),
                    'The name of the architecture.')
  flags.DEFINE_enum('preprocessing_name', None, _preprocessing_names(),
                    'The preprocessing style (or a model name, meaning its '
                    'style); default: the one of --model_name.')
  flags.DEFINE_integer(image_size_flag, None,
                       'Height and width of the input images; default: the '
                       'net\'s default image size.', lower_bound=1)
  flags.DEFINE_bool('use_grayscale', False,
                    'Convert the images to grayscale (1 channel).')
  define_model_options_flag()


def define_model_options_flag():
  """Defines `--model_options`, keyword options of the net's builder."""
  flags.DEFINE_string(
      'model_options', '',
      'Options of the net, key=value pairs separated by commas, e.g. '
      'activation=elu,lrn=false; each value is parsed as the type of the '
      'option\'s default (bool, int, float or string). Training, '
      'evaluation and export must be given the same. `print_model.py '
      '--model_name=X` lists the options of X and their defaults. Default: '
      'none, TF-Slim\'s net.')


def model_options(values):
  """Parses `values.model_options` (e.g. FLAGS) for `values.model_name`.

  A bad value stops the script (exit status 2) with a message naming it and
  the valid options of the net, before anything is written.

  Args:
    values: An object with `model_name` and `model_options` attributes.

  Returns:
    A dict of keyword arguments for `nets_factory.get_network_fn`.
  """
  try:
    return nets_factory.parse_model_options(values.model_name,
                                            values.model_options)
  except ValueError as e:
    fail(f'--model_options={values.model_options}: {e}')


def define_dataset_flags(split_name='train'):
  """Defines the dataset group.

  Args:
    split_name: The default of `--dataset_split_name` ('train' for training,
      'test' for evaluation, as in TF-Slim).
  """
  flags.DEFINE_enum('dataset_name', 'imagenet',
                    dataset_factory.list_datasets(),
                    'The name of the dataset to load.')
  flags.DEFINE_string('dataset_split_name', split_name,
                      'The name of the split to read.')
  flags.DEFINE_string('dataset_dir', None,
                      'The directory holding the dataset\'s TFRecord files.')
  flags.DEFINE_integer('labels_offset', 0,
                       'Subtracted from every label; 1 drops ImageNet\'s '
                       'background class for nets trained without one.',
                       lower_bound=0)
  flags.DEFINE_integer('num_preprocessing_threads', 4,
                       'Images preprocessed in parallel.', lower_bound=1)
  flags.DEFINE_bool('skip_corrupt_records', False,
                    'Skip records that cannot be read or decoded, or whose '
                    'label is outside [0, num_classes), counting them in the '
                    'log and summaries; default: stop with an error naming '
                    'the file and record.')


def define_deployment_flags():
  """Defines clones, workers and parameter servers (TF-Slim's names)."""
  flags.DEFINE_integer('num_clones', 1, 'Model clones to deploy (replicas '
                       'on this machine, one per GPU).', lower_bound=1)
  flags.DEFINE_bool('clone_on_cpu', False,
                    'Run the clones on the CPU, split into --num_clones '
                    'logical devices.')
  flags.DEFINE_integer('worker_replicas', 1, 'Number of worker replicas; 1 '
                       'means as many as --worker_hosts or TF_CONFIG list, '
                       'another value must match them.', lower_bound=1)
  flags.DEFINE_integer('num_ps_tasks', 0, 'Number of parameter servers; 0 '
                       'keeps the variables on this worker.', lower_bound=0)
  flags.DEFINE_integer('task', 0, 'Task id of this process in its job '
                       '(--job_name).', lower_bound=0)
  flags.DEFINE_string('worker_hosts', '',
                      'Comma-separated host:port of every worker, the same '
                      'list on every host (worker 0 is the chief); fills in '
                      'TF_CONFIG. Default: TF_CONFIG from the environment, '
                      'or no cluster.')
  flags.DEFINE_string('ps_hosts', '',
                      'Comma-separated host:port of the parameter servers; '
                      'selects asynchronous training with ParameterServer'
                      'Strategy.')
  flags.DEFINE_enum('job_name', None, ['worker', 'ps', 'chief'],
                    'This process\'s job. worker: trains (multi-worker) or '
                    'serves steps (with --ps_hosts); ps: serves variables; '
                    'chief: the coordinator with --ps_hosts. Default: worker, '
                    'or chief with --ps_hosts.')
  flags.DEFINE_integer('collective_timeout_secs', 300,
                       'Multi-worker: seconds an all-reduce waits for its '
                       'peers before failing with an error (a lost worker); '
                       '0 waits forever.', lower_bound=0)
  flags.DEFINE_bool('sync_replicas', False,
                    'TF 1 SyncReplicasOptimizer. Several workers without '
                    '--ps_hosts always train synchronously (all-reduce of '
                    'every worker\'s gradients each step), so this flag is '
                    'accepted there; with --ps_hosts (asynchronous) it is '
                    'refused.')
  flags.DEFINE_integer('replicas_to_aggregate', 1,
                       'TF 1 SyncReplicasOptimizer: gradients aggregated per '
                       'update. Synchronous multi-worker training aggregates '
                       'every worker\'s, so only 1 (the default) or '
                       '--worker_replicas is accepted.', lower_bound=1)
  flags.DEFINE_string('master', '', 'TF 1 session target; ignored on TF 2.')


def define_input_flags(batch_size):
  """Defines `--batch_size` (per clone) and `--num_readers`.

  Args:
    batch_size: The default batch size (32 for training, 100 for evaluation).
  """
  flags.DEFINE_integer('batch_size', batch_size,
                       'Images per batch (per clone in training).',
                       lower_bound=1)
  flags.DEFINE_integer('num_readers', 4, 'Files read in parallel.',
                       lower_bound=1)


def _weight_decay_help():
  decoupled = optimization.optimizers_where(
      lambda e: e.decoupled_weight_decay)
  return (
      'Weight decay. With ' + ', '.join(decoupled) + ' it is the optimizer\'s '
      'decoupled decay, var -= learning_rate * weight_decay * var per step, '
      'on every trained variable but biases and batch-norm beta/gamma, and '
      'the nets\' L2 regulariser is off. Since it is multiplied by the '
      'learning rate, values are far larger than L2 coefficients: 0.05 is '
      'typical for adamw (DeiT in timm), 0.01-0.05 for lamb, 3-10x adamw\'s '
      'for lion (whose learning rate is 3-10x smaller); TF-Slim\'s default '
      '4e-05 hardly decays. With every other optimizer: TF-Slim\'s L2 '
      'regulariser of the nets\' weights, weight_decay * sum(w ** 2) / 2 '
      'per weight tensor, added to the loss.')


def define_optimizer_flags():
  """Defines `--optimizer`, its hyper-parameters and `--weight_decay`."""
  flags.DEFINE_float('weight_decay', optimization.TF_SLIM_WEIGHT_DECAY,
                     _weight_decay_help(), lower_bound=0.0)
  flags.DEFINE_enum('optimizer', 'rmsprop', optimization.list_optimizers(),
                    'The optimizer.')
  defaults = optimization.OptimizerHParams()

  def readers(name):  # The optimizers that read flag `name`, for its help.
    return ', '.join(optimization.optimizers_where(lambda e: name in e.flags))

  help_text = {
      'opt_epsilon': f'Epsilon of {readers("opt_epsilon")}. TF-Slim\'s 1.0 '
                     'suits rmsprop; with the Adam family use e.g. 1e-8 '
                     '(with 1.0 Adam crawls).',
      'adadelta_rho': 'Decay rate of adadelta.',
      'adagrad_initial_accumulator_value': 'Initial accumulator of adagrad.',
      'adam_beta1': f'Decay rate of the first moment of '
                    f'{readers("adam_beta1")}.',
      'adam_beta2': f'Decay rate of the second moment of '
                    f'{readers("adam_beta2")}.',
      'ftrl_learning_rate_power': 'Learning-rate power of ftrl.',
      'ftrl_initial_accumulator_value': 'Initial accumulator of ftrl.',
      'ftrl_l1': 'L1 regularization strength of ftrl.',
      'ftrl_l2': 'L2 regularization strength of ftrl.',
      'momentum': 'Momentum of the momentum optimizer.',
      'rmsprop_momentum': 'Momentum of rmsprop.',
      'rmsprop_decay': 'Decay of rmsprop\'s mean square.',
      'lion_beta1': 'Lion\'s interpolation between momentum and gradient '
                    'whose sign is the update.',
      'lion_beta2': 'Decay rate of lion\'s momentum.',
  }
  for name, text in help_text.items():
    flags.DEFINE_float(name, getattr(defaults, name), text)
  _register_validator('opt_epsilon', lambda v: v > 0, 'must be > 0')
  # Decay rates and momenta outside [0, 1) make the optimizer diverge or
  # misbehave silently; accumulators and penalties must not be negative.
  for name in ('momentum', 'rmsprop_momentum', 'rmsprop_decay',
               'adadelta_rho', 'adam_beta1', 'adam_beta2', 'lion_beta2'):
    _register_validator(name, lambda v: 0.0 <= v < 1.0, 'must be in [0, 1)')
  # Keras refuses lion_beta1=0: the update would be sign(gradient), SignSGD.
  _register_validator('lion_beta1', lambda v: 0.0 < v <= 1.0,
                      'must be in (0, 1]')
  for name in ('adagrad_initial_accumulator_value',
               'ftrl_initial_accumulator_value', 'ftrl_l1', 'ftrl_l2'):
    _register_validator(name, lambda v: v >= 0.0, 'must be >= 0')
  _register_validator('ftrl_learning_rate_power', lambda v: v <= 0.0,
                      'must be <= 0')


def optimizer_hparams(values):
  """Collects the optimizer flags of `values` (e.g. FLAGS) into hparams.

  Args:
    values: An object with an attribute per `OptimizerHParams` field.

  Returns:
    An `optimization.OptimizerHParams`.
  """
  return optimization.OptimizerHParams(**{
      f.name: getattr(values, f.name)
      for f in optimization.OptimizerHParams.__dataclass_fields__.values()})


def define_learning_rate_flags():
  """Defines the learning rate and its schedule."""
  flags.DEFINE_enum('learning_rate_decay_type', 'exponential',
                    optimization.list_schedules(),
                    'How the learning rate decays. exponential: times '
                    '--learning_rate_decay_factor every --num_epochs_per_decay'
                    ' epochs, in stairs; polynomial: linearly to '
                    '--end_learning_rate over --num_epochs_per_decay epochs; '
                    'cosine: half a cosine to --end_learning_rate at '
                    '--max_number_of_steps (which it needs); fixed: constant.')
  flags.DEFINE_float('learning_rate', 0.01, 'Initial learning rate.')
  flags.DEFINE_float('end_learning_rate', 0.0001,
                     'Final learning rate of the polynomial and cosine '
                     'decays.', lower_bound=0.0)
  flags.DEFINE_float('warmup_epochs', 0.0,
                     'Epochs (of the training split, at the global batch of '
                     'all clones and workers) of a linear warmup: the rate '
                     'is the schedule\'s times min(1, step / warmup_steps), '
                     'for every decay type; the schedule itself is not '
                     'shifted. 0: no warmup.', lower_bound=0.0)
  flags.DEFINE_float('label_smoothing', 0.0, 'Label smoothing.',
                     lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_float('learning_rate_decay_factor', 0.94,
                     'Learning-rate decay factor.', lower_bound=0.0)
  flags.DEFINE_float('num_epochs_per_decay', 2.0,
                     'Epochs between two learning-rate decays.')
  flags.DEFINE_float('moving_average_decay', None,
                     'Decay of the moving average of the weights; None: no '
                     'moving average.')
  _register_validator('learning_rate', lambda v: v > 0, 'must be > 0')
  _register_validator('num_epochs_per_decay', lambda v: v > 0, 'must be > 0')
  _register_validator('learning_rate_decay_factor', lambda v: v > 0,
                      'must be > 0')


def define_moving_average_flag():
  """Defines `--moving_average_decay` alone (evaluation)."""
  flags.DEFINE_float('moving_average_decay', None,
                     'Evaluate the moving averages of the weights saved with '
                     'this decay; None: the weights themselves.')


def _valid_decay(value):
  return value is None or 0.0 < value < 1.0


def define_fine_tuning_flags():
  """Defines the checkpoint a fresh run starts from and what it trains."""
  flags.DEFINE_string('checkpoint_path', None,
                      'A checkpoint (file or directory) to initialise a '
                      'fresh run from.')
  flags.DEFINE_string('checkpoint_exclude_scopes', None,
                      'Comma-separated variable scopes not to restore from '
                      '--checkpoint_path.')
  flags.DEFINE_string('trainable_scopes', None,
                      'Comma-separated variable scopes to train; default: all.')
  flags.DEFINE_bool('ignore_missing_vars', False,
                    'Skip variables that --checkpoint_path lacks.')


def define_training_flags():
  """Defines the run's directory, length, logging and saving."""
  flags.DEFINE_string('train_dir', '/tmp/tfmodel/',
                      'Where checkpoints and event logs are written.')
  flags.DEFINE_integer('max_number_of_steps', None,
                       'The global step to stop at (counted across restarts); '
                       'default: train until interrupted.', lower_bound=1)
  flags.DEFINE_integer('log_every_n_steps', 10,
                       'Steps between log lines.', lower_bound=1)
  flags.DEFINE_integer('save_summaries_secs', 600,
                       'Seconds between TensorBoard summaries.', lower_bound=0)
  flags.DEFINE_integer('save_interval_secs', 600,
                       'Seconds between checkpoints.', lower_bound=0)
  flags.DEFINE_integer('quantize_delay', -1,
                       'Quantization-aware training: from this global step '
                       'on, train with weights and activations fake-quantized '
                       'to 8 bits (activation ranges tracked as moving '
                       'averages, saved as <scope>/act_quant/min|max; batch '
                       'norm folded with its moving statistics, which then '
                       'stop moving). -1: never. The int8 TFLite export of '
                       'the checkpoint uses these ranges.', lower_bound=-1)
  flags.DEFINE_integer(
      'random_seed', None,
      'Seed of every random draw: initial weights, dropout, augmentation, '
      'shuffling. The same flags and seed give bit-identical checkpoints on '
      'the same machine and software (GPUs and --xla: see docs/training.md). '
      'Default: a seed is drawn, logged and written to flags.txt, so that '
      '--flagfile=<train_dir>/flags.txt repeats the run; a resumed run '
      'keeps the seed in its flags.txt.',
      lower_bound=0, upper_bound=seeds.MAX_SEED)


def define_performance_flags():
  """Defines `--precision`, `--xla` and the synthetic input's `--num_classes`."""
  flags.DEFINE_enum('precision', 'float32', list(precision.PRECISIONS),
                    'Compute dtype of the net: mixed_bfloat16 for CPUs with '
                    'AVX512-BF16/AMX and TPUs, mixed_float16 (with loss '
                    'scaling) for GPUs. Variables and checkpoints stay '
                    'float32.')
  flags.DEFINE_bool('xla', False,
                    'Compile the train step with XLA; for GPUs and TPUs (on '
                    'CPU it is usually much slower).')
  flags.DEFINE_integer('num_classes', None,
                       'Classes of --dataset_name=synthetic (default 1001); '
                       'other datasets know their own.', lower_bound=1)


def define_validation_flags():
  """Defines validation during training (`--eval_every_n_steps`)."""
  flags.DEFINE_integer(
      'eval_every_n_steps', None,
      'Every this many global steps, and at the last step, evaluate the '
      'current weights (eval preprocessing, batch norm in inference mode) on '
      '--validation_split_name and write eval/Accuracy, eval/Recall_5 and '
      'eval/loss to <train_dir>/validation. It does not change training. '
      'Default: no validation.', lower_bound=1)
  flags.DEFINE_string('validation_split_name', None,
                      'The split --eval_every_n_steps evaluates; default: the '
                      'dataset\'s validation split, else its test split.')
  flags.DEFINE_integer('validation_max_batches', None,
                       'Evaluate at most this many batches of --batch_size '
                       'images; default: the whole split.', lower_bound=1)


def _check_randaugment(value):
  if value is None:
    return True
  try:
    randaugment_lib.parse(value)
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


def define_augmentation_flags():
  """Defines MixUp, CutMix and RandAugment (training; off by default)."""
  flags.DEFINE_float(
      'mixup_alpha', 0.0,
      'MixUp (Zhang et al.): every training batch is blended with itself '
      'reversed, images and one-hot labels alike, with one weight per batch '
      'drawn from Beta(alpha, alpha); the loss takes the soft labels (and '
      '--label_smoothing). 0.2 is usual on ImageNet. 0: off.',
      lower_bound=0.0)
  flags.DEFINE_float(
      'cutmix_alpha', 0.0,
      'CutMix (Yun et al.): a box of the reversed batch is pasted into every '
      'training image, its share of the image drawn from Beta(alpha, alpha) '
      '(one box per batch), and the labels are mixed by the pasted area. '
      '1.0 is usual. With --mixup_alpha too, each batch gets one of the two '
      '(as timm). 0: off.', lower_bound=0.0)
  flags.DEFINE_string(
      'randaugment', None,
      'N,M: RandAugment (Cubuk et al.) of every training image, N ops drawn '
      'from the paper\'s 14 at magnitude M (0-10), after the style\'s crop '
      '(and flip; the inception style flips after it) and before its colour '
      'distortion and normalisation; e.g. '
      '2,9 (the paper\'s ImageNet ResNet-50). Default: off. Evaluation '
      'never augments.')
  flags.register_validator('randaugment', _check_randaugment)


def randaugment(values):
  """`(N, M)` of `values.randaugment` (e.g. FLAGS), or None when off."""
  if values.randaugment is None:
    return None
  return randaugment_lib.parse(values.randaugment)


def define_train_flags():
  """Defines every flag of `train_image_classifier.py`."""
  define_training_flags()
  define_validation_flags()
  define_deployment_flags()
  define_input_flags(batch_size=32)
  define_augmentation_flags()
  define_optimizer_flags()
  define_learning_rate_flags()
  define_dataset_flags(split_name='train')
  define_model_flags('train_image_size')
  define_fine_tuning_flags()
  define_performance_flags()
  _register_validator('moving_average_decay', _valid_decay,
                      'must be in (0, 1)')
  flags.register_multi_flags_validator(
      ['learning_rate_decay_type', 'max_number_of_steps'],
      _check_schedule_length)


def _check_schedule_length(values):
  decay_type = values['learning_rate_decay_type']
  if (optimization.SCHEDULES.get(decay_type).needs_total_steps and
      values['max_number_of_steps'] is None):
    raise flags.ValidationError(
        f'--learning_rate_decay_type={decay_type} decays to '
        '--end_learning_rate at the last step: it needs '
        '--max_number_of_steps, which is not set.')
  return True


# The flags of compare_methods.py beside the training flags it passes on.
STUDY_FLAGS = ('study_dir', 'vary', 'seeds', 'parallel', 'report_only',
               'alpha', 'min_effect')


def define_study_flags():
  """Defines the flags of `compare_methods.py` (besides the training ones)."""
  flags.DEFINE_string('study_dir', None,
                      'The study\'s folder: runs/<name>/ (one training run '
                      'each), results.csv, report.md, plots/.')
  flags.DEFINE_multi_string(
      'vary', [],
      'NAME=V1,V2,...: a training flag (optimizer=momentum,adam) or a model '
      'option of the net (activation=relu,elu; see print_model.py) and its '
      'values. Repeat for more axes: the grid is their product.')
  flags.DEFINE_string('seeds', '0',
                      'Comma-separated seeds; every configuration runs once '
                      'per seed (--random_seed).')
  flags.DEFINE_integer('parallel', None,
                       'Runs at a time. Default: one per GPU (per '
                       '--num_clones GPUs) on a machine with GPUs, else 1.',
                       lower_bound=1)
  flags.DEFINE_bool('report_only', False,
                    'Rebuild results.csv, report.md and the plots from the '
                    'run folders in --study_dir without training.')
  flags.DEFINE_float('alpha', 0.05,
                     'Level of the report\'s tests against the best '
                     'configuration: a Holm-adjusted p-value below it marks '
                     'a configuration `worse`, else `tied with best`.',
                     lower_bound=1e-6, upper_bound=0.5)
  flags.DEFINE_float('min_effect', 0.01,
                     'The validation-accuracy difference the report plans '
                     'seeds for: how many seeds a paired t-test needs to '
                     'detect it with 80% power at the observed spread.',
                     lower_bound=1e-6, upper_bound=1.0)
  flags.mark_flag_as_required('study_dir')


def training_flags(values):
  """`{name: flag}` of the training flags in `values` (e.g. FLAGS).

  That is the flags of this module, without compare_methods.py's own.
  """
  return {f.name: f for f in values.get_flags_for_module(__name__)
          if f.name not in STUDY_FLAGS}


def define_eval_flags():
  """Defines every flag of `eval_image_classifier.py`."""
  flags.DEFINE_integer('batch_size', 100, 'Images per batch.', lower_bound=1)
  flags.DEFINE_integer('max_num_batches', None,
                       'Evaluate at most this many batches; default: the '
                       'whole split.', lower_bound=1)
  flags.DEFINE_string('checkpoint_path', '/tmp/tfmodel/',
                      'A checkpoint, or a directory whose newest checkpoint '
                      'is evaluated (or, with --eval_interval_secs, watched).')
  flags.DEFINE_string('eval_dir', '/tmp/tfmodel/',
                      'Where the evaluation summaries are written.')
  define_dataset_flags(split_name='test')
  define_model_flags('eval_image_size')
  define_moving_average_flag()
  _register_validator('moving_average_decay', _valid_decay,
                      'must be in (0, 1)')
  flags.DEFINE_bool('quantize', False,
                    'Evaluate a checkpoint trained with --quantize_delay as '
                    'it runs quantized: weights and activations fake-'
                    'quantized to 8 bits with its learned ranges (the '
                    'simulation of its int8 TFLite export).')
  flags.DEFINE_integer('eval_interval_secs', None,
                       'Watch mode: evaluate each new checkpoint in the '
                       '--checkpoint_path directory, at most once per this '
                       'many seconds; default: evaluate once.', lower_bound=0)
  flags.DEFINE_integer('eval_timeout_secs', None,
                       'Watch mode: stop after this many seconds without a '
                       'new checkpoint; default: wait forever.', lower_bound=0)
  flags.DEFINE_integer('max_number_of_evaluations', None,
                       'Watch mode: stop after this many evaluations.',
                       lower_bound=1)
  define_tflite_model_flag('evaluate')


def define_tflite_flags():
  """Defines the TFLite export flags of `export_inference_graph.py`."""
  flags.DEFINE_enum('output_format', 'saved_model', ['saved_model', 'tflite'],
                    'saved_model: a SavedModel directory (--output_dir); '
                    'tflite: a TensorFlow Lite file (--output_file).')
  flags.DEFINE_string('output_file', None, 'The .tflite file to write '
                      '(--output_format=tflite).')
  flags.DEFINE_enum('quantize', 'none', list(tflite_lib.QUANTIZE_MODES),
                    'TFLite quantization: none (float32), float16 (weights), '
                    'dynamic (int8 weights, float activations) or int8 (full '
                    'integer, activation ranges calibrated on '
                    '--num_calibration_images of --dataset_name/--dataset_dir'
                    ', or learned by --quantize_delay training).')
  flags.DEFINE_integer('num_calibration_images', 500,
                       'Images of --dataset_split_name run through the eval '
                       'preprocessing to calibrate --quantize=int8.',
                       lower_bound=1)
  flags.DEFINE_enum('tflite_io', 'float32', list(tflite_lib.IO_TYPES),
                    'Input and output type of the --quantize=int8 model: '
                    'float32 (the same caller code as the float model) or '
                    'uint8 (integer I/O, quantized with the scale and zero '
                    'point stored in the file).')
  flags.register_multi_flags_validator(
      ['tflite_io', 'quantize'],
      lambda v: v['tflite_io'] == 'float32' or v['quantize'] == 'int8',
      message='--tflite_io=uint8 needs --quantize=int8: only a full-integer '
      'model has integer input and output.')
  flags.register_multi_flags_validator(
      ['output_format', 'quantize', 'tflite_io'],
      lambda v: v['output_format'] == 'tflite' or (
          v['quantize'] == 'none' and v['tflite_io'] == 'float32'),
      message='--quantize and --tflite_io apply to --output_format=tflite; a '
      'SavedModel stays float32.')


def define_tflite_model_flag(purpose):
  """Defines `--tflite_model` (evaluate or classify with a .tflite file)."""
  flags.DEFINE_string('tflite_model', None, f'A .tflite file written by '
                      f'export_inference_graph.py to {purpose} instead of a '
                      'checkpoint; it runs in the TFLite interpreter (LiteRT '
                      'when installed, else TensorFlow\'s).')


def split_scopes(value):
  """Splits a comma-separated scope list flag into a tuple (None -> ())."""
  if not value:
    return ()
  return tuple(s.strip() for s in value.split(',') if s.strip())


def obsolete_flag_warnings(values):
  """Returns one warning line per obsolete TF 1 flag set to a used value."""
  warnings = []
  for name, (unused, replacement) in OBSOLETE.items():
    if name in values and getattr(values, name) != unused:
      warnings.append(f'--{name}={getattr(values, name)}: {replacement}')
  return warnings


def parse_flags(argv):
  """absl's `flags_parser` that exits with status 2 on a bad flag.

  absl exits with status 1 on flag errors; status 2 is the usual one for
  usage errors (argparse's), which tells a bad command line apart from a
  failed run.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f'{argv[0]}: error: {e}\n'
                     'Pass --helpfull to see all flags.\n')
    sys.exit(2)


def fail(message, status=2):
  """Stops a script with `message` on stderr (before anything is written)."""
  sys.stderr.write(f'{sys.argv[0]}: error: {message}\n')
  sys.exit(status)


def split_or_fail(dataset_name, split_name, dataset_dir):
  """The split `dataset_name/split_name` in `dataset_dir`, with its files.

  Args:
    dataset_name: `--dataset_name`.
    split_name: `--dataset_split_name` (or another split's flag).
    dataset_dir: `--dataset_dir`.

  Returns:
    A `DatasetSplit` whose files exist; a bad name or a missing folder or
    file stops the script (status 2) naming the flag.
  """
  try:
    split = dataset_factory.get_split(dataset_name, split_name, dataset_dir)
    split.files()
  except FileNotFoundError as e:
    fail(f'--dataset_dir={dataset_dir}: {e}')
  except ValueError as e:
    fail(f'--dataset_name/--dataset_split_name: {e}')
  return split


def fail_on_input_error(split, error):
  """Stops a script with what a record-reading `error` of `split` means.

  Args:
    split: The `Split` being read.
    error: A `tf.errors.InvalidArgumentError` or `DataLossError`.

  Raises:
    The `error` itself when it is not about the records.
  """
  explained = input_pipeline.explain_input_error(split, error)
  if explained is error:
    raise error
  fail(str(explained), status=1)


def write_flagfile(path, module_name=__name__):
  """Writes the resolved flags of this module to `path`, for `--flagfile`.

  Args:
    path: The file to write (e.g. `train_dir/flags.txt`).
    module_name: The module whose flags are written.
  """
  lines = sorted(f.serialize() for f in FLAGS.get_flags_for_module(module_name)
                 if f.value is not None)
  with dataset_utils.atomic_output(path) as tmp_path:  # never half a file
    with open(tmp_path, 'w') as f:
      f.write('\n'.join(lines) + '\n')


def read_flagfile_value(path, name):
  """The value of `--name` in a flag file `write_flagfile` wrote.

  Args:
    path: The flag file (e.g. `train_dir/flags.txt`).
    name: The flag's name, without dashes.

  Returns:
    The value as written (a string), or None when the file or the flag is
    missing.
  """
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  prefix = f'--{name}='
  values = [line[len(prefix):] for line in lines if line.startswith(prefix)]
  return values[-1] if values else None
