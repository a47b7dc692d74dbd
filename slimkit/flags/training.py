"""Training's flags: the run, its deployment, optimizer, learning rate,
validation and performance; and the study's (`compare_methods.py`)."""

from absl import flags

from slimkit.flags import choices
from slimkit.flags import core
from slimkit.flags import data
from slimkit.flags import model
from slimkit.training import optimizer_specs


def define_deployment_flags():
  """Defines clones, workers and parameter servers (TF-Slim's names)."""
  core.DEFINE_integer('num_clones', 1, 'Model clones to deploy (replicas '
                      'on this machine, one per GPU).', lower_bound=1)
  core.DEFINE_bool('clone_on_cpu', False,
                   'Run the clones on the CPU, split into --num_clones '
                   'logical devices.')
  core.DEFINE_integer('worker_replicas', 1, 'Number of worker replicas; 1 '
                      'means as many as --worker_hosts or TF_CONFIG list, '
                      'another value must match them.', lower_bound=1)
  core.DEFINE_integer('num_ps_tasks', 0, 'Number of parameter servers; 0 '
                      'keeps the variables on this worker.', lower_bound=0)
  core.DEFINE_integer('task', 0, 'Task id of this process in its job '
                      '(--job_name).', lower_bound=0)
  core.DEFINE_string('worker_hosts', '',
                     'Comma-separated host:port of every worker, the same '
                     'list on every host (worker 0 is the chief); fills in '
                     'TF_CONFIG. Default: TF_CONFIG from the environment, '
                     'or no cluster.')
  core.DEFINE_string('ps_hosts', '',
                     'Comma-separated host:port of the parameter servers; '
                     'selects asynchronous training with ParameterServer'
                     'Strategy.')
  core.DEFINE_enum('job_name', None, ['worker', 'ps', 'chief'],
                   'This process\'s job. worker: trains (multi-worker) or '
                   'serves steps (with --ps_hosts); ps: serves variables; '
                   'chief: the coordinator with --ps_hosts. Default: worker, '
                   'or chief with --ps_hosts.')
  core.DEFINE_integer('collective_timeout_secs', 300,
                      'Multi-worker: seconds an all-reduce waits for its '
                      'peers before failing with an error (a lost worker); '
                      '0 waits forever.', lower_bound=0)
  core.DEFINE_bool('sync_replicas', False,
                   'TF 1 SyncReplicasOptimizer. Several workers without '
                   '--ps_hosts always train synchronously (all-reduce of '
                   'every worker\'s gradients each step), so this flag is '
                   'accepted there; with --ps_hosts (asynchronous) it is '
                   'refused.')
  core.DEFINE_integer('replicas_to_aggregate', 1,
                      'TF 1 SyncReplicasOptimizer: gradients aggregated per '
                      'update. Synchronous multi-worker training aggregates '
                      'every worker\'s, so only 1 (the default) or '
                      '--worker_replicas is accepted.', lower_bound=1)
  core.DEFINE_string('master', '', 'TF 1 session target; ignored on TF 2.')


def _weight_decay_help():
  decoupled = optimizer_specs.optimizers_where(
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
  core.DEFINE_float('weight_decay', optimizer_specs.TF_SLIM_WEIGHT_DECAY,
                    _weight_decay_help(), lower_bound=0.0)
  core.DEFINE_enum('optimizer', 'rmsprop', optimizer_specs.list_optimizers(),
                   'The optimizer.')
  defaults = optimizer_specs.OptimizerHParams()

  def readers(name):  # The optimizers that read flag `name`, for its help.
    return ', '.join(
        optimizer_specs.optimizers_where(lambda e: name in e.flags))

  help_text = {
      'opt_epsilon': f'Epsilon of {readers("opt_epsilon")}. Default: the '
                     'optimizer\'s own: '
                     f'{optimizer_specs.epsilon_defaults_text()} (TF-Slim\'s '
                     'for its optimizers, Keras\'s for the newer ones); '
                     'flags.txt records the value used. With 1.0 the Adam '
                     'family crawls: with adam give e.g. 1e-8.',
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
    core.DEFINE_float(name, getattr(defaults, name), text)
  core.register_validator('opt_epsilon', lambda v: v is None or v > 0,
                          'must be > 0')
  # Decay rates and momenta outside [0, 1) make the optimizer diverge or
  # misbehave silently; accumulators and penalties must not be negative.
  for name in ('momentum', 'rmsprop_momentum', 'rmsprop_decay',
               'adadelta_rho', 'adam_beta1', 'adam_beta2', 'lion_beta2'):
    core.register_validator(name, lambda v: 0.0 <= v < 1.0, 'must be in [0, 1)')
  # Keras refuses lion_beta1=0: the update would be sign(gradient), SignSGD.
  core.register_validator('lion_beta1', lambda v: 0.0 < v <= 1.0,
                          'must be in (0, 1]')
  for name in ('adagrad_initial_accumulator_value',
               'ftrl_initial_accumulator_value', 'ftrl_l1', 'ftrl_l2'):
    core.register_validator(name, lambda v: v >= 0.0, 'must be >= 0')
  core.register_validator('ftrl_learning_rate_power', lambda v: v <= 0.0,
                          'must be <= 0')


def define_learning_rate_flags():
  """Defines the learning rate and its schedule."""
  core.DEFINE_enum('learning_rate_decay_type', 'exponential',
                   optimizer_specs.list_schedules(),
                   'How the learning rate decays. exponential: times '
                   '--learning_rate_decay_factor every --num_epochs_per_decay'
                   ' epochs, in stairs; polynomial: linearly to '
                   '--end_learning_rate over --num_epochs_per_decay epochs; '
                   'cosine: half a cosine to --end_learning_rate at '
                   '--max_number_of_steps (which it needs); fixed: constant.')
  core.DEFINE_float('learning_rate', 0.01, 'Initial learning rate.')
  core.DEFINE_float('end_learning_rate', 0.0001,
                    'Final learning rate of the polynomial and cosine '
                    'decays.', lower_bound=0.0)
  core.DEFINE_float('warmup_epochs', 0.0,
                    'Epochs (of the training split, at the global batch of '
                    'all clones and workers) of a linear warmup: the rate '
                    'is the schedule\'s times min(1, step / warmup_steps), '
                    'for every decay type; the schedule itself is not '
                    'shifted. 0: no warmup.', lower_bound=0.0)
  core.DEFINE_float('label_smoothing', 0.0, 'Label smoothing.',
                    lower_bound=0.0, upper_bound=1.0)
  core.DEFINE_float('learning_rate_decay_factor', 0.94,
                    'Learning-rate decay factor.', lower_bound=0.0)
  core.DEFINE_float('num_epochs_per_decay', 2.0,
                    'Epochs between two learning-rate decays.')
  core.DEFINE_float('moving_average_decay', None,
                    'Decay of the moving average of the weights; None: no '
                    'moving average.')
  core.register_validator('learning_rate', lambda v: v > 0, 'must be > 0')
  core.register_validator('num_epochs_per_decay', lambda v: v > 0,
                          'must be > 0')
  core.register_validator('learning_rate_decay_factor', lambda v: v > 0,
                          'must be > 0')


def define_moving_average_flag():
  """Defines `--moving_average_decay` alone (evaluation)."""
  core.DEFINE_float('moving_average_decay', None,
                    'Evaluate the moving averages of the weights saved with '
                    'this decay; 0: the weights themselves. Default: the '
                    'run\'s (its flags.txt), else the weights.')


def valid_decay(value):
  """Whether a moving-average decay is None (off) or in (0, 1)."""
  return value is None or 0.0 < value < 1.0


def define_fine_tuning_flags():
  """Defines the checkpoint a fresh run starts from and what it trains."""
  core.DEFINE_string('checkpoint_path', None,
                     'A checkpoint (file or directory) to initialise a '
                     'fresh run from.')
  core.DEFINE_string('checkpoint_exclude_scopes', None,
                     'Comma-separated variable scopes not to restore from '
                     '--checkpoint_path.')
  core.DEFINE_string('trainable_scopes', None,
                     'Comma-separated variable scopes to train; default: all.')
  core.DEFINE_bool('ignore_missing_vars', False,
                   'Skip variables that --checkpoint_path lacks.')


def define_training_flags():
  """Defines the run's directory, length, logging and saving."""
  core.DEFINE_string('train_dir', '/tmp/tfmodel/',
                     'Where checkpoints and event logs are written.')
  core.DEFINE_integer('max_number_of_steps', None,
                      'The global step to stop at (counted across restarts); '
                      'default: train until interrupted.', lower_bound=1)
  core.DEFINE_integer('log_every_n_steps', 10,
                      'Steps between log lines.', lower_bound=1)
  core.DEFINE_integer('save_summaries_secs', 600,
                      'Seconds between TensorBoard summaries.', lower_bound=0)
  core.DEFINE_integer('save_interval_secs', 600,
                      'Seconds between checkpoints.', lower_bound=0)
  core.DEFINE_integer('quantize_delay', -1,
                      'Quantization-aware training: from this global step '
                      'on, train with weights and activations fake-quantized '
                      'to 8 bits (activation ranges tracked as moving '
                      'averages, saved as <scope>/act_quant/min|max; batch '
                      'norm folded with its moving statistics, which then '
                      'stop moving). -1: never. The int8 TFLite export of '
                      'the checkpoint uses these ranges.', lower_bound=-1)
  core.DEFINE_integer(
      'random_seed', None,
      'Seed of every random draw: initial weights, dropout, augmentation, '
      'shuffling. The same flags and seed give bit-identical checkpoints on '
      'the same machine and software (GPUs and --xla: see docs/training.md). '
      'Default: a seed is drawn, logged and written to flags.txt, so that '
      '--flagfile=<train_dir>/flags.txt repeats the run; a resumed run '
      'keeps the seed in its flags.txt.',
      lower_bound=0, upper_bound=choices.MAX_SEED)


def define_performance_flags():
  """Defines `--precision`, `--xla`, `--steps_per_loop`, synthetic input's
  `--num_classes` and the peak the utilisation is measured against."""
  core.DEFINE_enum('precision', 'float32', list(choices.PRECISIONS),
                   'Compute dtype of the net: mixed_bfloat16 for CPUs with '
                   'AVX512-BF16/AMX and TPUs, mixed_float16 (with loss '
                   'scaling) for GPUs. Variables and checkpoints stay '
                   'float32.')
  core.DEFINE_bool('xla', False,
                   'Compile the train step with XLA; for GPUs and TPUs (on '
                   'CPU it is usually much slower).')
  core.DEFINE_integer('steps_per_loop', 10,
                      'Training steps per call of the compiled loop: the '
                      'host waits once per group of steps instead of once '
                      'per step (small nets train faster). A group ends at '
                      'each log line, validation and the last step; '
                      'summaries, checkpoints and a SIGTERM are acted on '
                      'between groups (--save_interval_secs=0 or '
                      '--save_summaries_secs=0 still act at every step: one '
                      'step per group), and a step with a '
                      'NaN or inf ends its group. It does not change what '
                      'training computes. Parameter servers run their own '
                      'groups.',
                      lower_bound=1)
  core.DEFINE_integer('num_classes', None,
                      'Classes of --dataset_name=synthetic (default 1001); '
                      'other datasets know their own.', lower_bound=1)
  core.DEFINE_float('peak_gflops', None,
                    'Peak GFLOP/s of this machine in the compute dtype of '
                    '--precision: the log line and TensorBoard then show the '
                    'utilisation, training GFLOP/s (forward multiply-adds x '
                    '2 x 3 per image, print_model.py) over this peak. '
                    'Default: the peak --measure_peak cached for this '
                    'machine and dtype, if any.', lower_bound=0.0)
  core.DEFINE_bool('measure_peak', False,
                   'Without a cached peak for this machine and dtype, time '
                   'a 2048x2048 matmul at the start (about a second on 2 '
                   'CPU cores) and cache it under ~/.cache/slimkit '
                   '($SLIMKIT_CACHE_DIR, $XDG_CACHE_HOME): later runs show '
                   'the utilisation without measuring. Measure on a quiet '
                   'machine (a loaded one gives a low peak).')


def define_validation_flags():
  """Defines validation during training (`--eval_every_n_steps`)."""
  core.DEFINE_integer(
      'eval_every_n_steps', None,
      'Every this many global steps, and at the last step, evaluate the '
      'current weights (eval preprocessing, batch norm in inference mode) on '
      '--validation_split_name and write eval/Accuracy, eval/Recall_5 and '
      'eval/loss to <train_dir>/validation. It does not change training. '
      'Default: no validation.', lower_bound=1)
  core.DEFINE_string('validation_split_name', None,
                     'The split --eval_every_n_steps evaluates; default: the '
                     'dataset\'s validation split, else its test split.')
  core.DEFINE_integer('validation_max_batches', None,
                      'Evaluate at most this many batches of --batch_size '
                      'images; default: the whole split.', lower_bound=1)


def define_train_flags():
  """Defines every flag of `train_image_classifier.py`."""
  define_training_flags()
  define_validation_flags()
  define_deployment_flags()
  data.define_input_flags(batch_size=32)
  data.define_augmentation_flags()
  define_optimizer_flags()
  define_learning_rate_flags()
  data.define_dataset_flags(split_name='train')
  model.define_model_flags('train_image_size')
  define_fine_tuning_flags()
  define_performance_flags()
  core.register_validator('moving_average_decay', valid_decay,
                          'must be in (0, 1)')
  flags.register_multi_flags_validator(
      ['learning_rate_decay_type', 'max_number_of_steps'],
      _check_schedule_length)


def _check_schedule_length(values):
  decay_type = values['learning_rate_decay_type']
  if (optimizer_specs.SCHEDULES.get(decay_type).needs_total_steps and
      values['max_number_of_steps'] is None):
    raise flags.ValidationError(
        f'--learning_rate_decay_type={decay_type} decays to '
        '--end_learning_rate at the last step: it needs '
        '--max_number_of_steps, which is not set.')
  return True


# The flags of compare_methods.py beside the training flags it passes on.
STUDY_FLAGS = ('study_dir', 'vary', 'seeds', 'parallel', 'report_only',
               'extend_study', 'backend', 'ray_address', 'gpus_per_run',
               'cpus_per_run', 'max_failures', 'early_stopping',
               'grace_period_steps', 'reduction_factor', 'workers_per_run',
               'alpha', 'min_effect')


def define_study_flags():
  """Defines the flags of `compare_methods.py` (besides the training ones)."""
  core.DEFINE_string('study_dir', None,
                     'The study\'s folder: runs/<name>/ (one training run '
                     'each), results.csv, report.md, plots/.')
  core.DEFINE_multi_string(
      'vary', [],
      'NAME=V1,V2,...: a training flag (optimizer=momentum,adam) or a model '
      'option of the net (activation=relu,elu; see print_model.py) and its '
      'values. Repeat for more axes: the grid is their product.')
  core.DEFINE_string('seeds', '0',
                     'Comma-separated seeds; every configuration runs once '
                     'per seed (--random_seed).')
  core.DEFINE_integer('parallel', None,
                      'Runs at a time. Default: one per GPU (per '
                      '--num_clones GPUs) on a machine with GPUs, else 1.',
                      lower_bound=1)
  core.DEFINE_bool('report_only', False,
                   'Rebuild results.csv, report.md and the plots from the '
                   'run folders in --study_dir without training.')
  core.DEFINE_bool('extend_study', False,
                   'Add seeds or values of an existing --vary axis to the '
                   'study in --study_dir (its runs stay valid). Without it '
                   'a --study_dir that holds a different study is refused.')
  core.DEFINE_float('alpha', 0.05,
                    'Level of the report\'s tests against the best '
                    'configuration: a Holm-adjusted p-value below it marks '
                    'a configuration `worse`, else `tied with best`.',
                    lower_bound=1e-6, upper_bound=0.5)
  core.DEFINE_float('min_effect', 0.01,
                    'The validation-accuracy difference the report plans '
                    'seeds for: how many seeds a paired t-test needs to '
                    'detect it with 80% power at the observed spread.',
                    lower_bound=1e-6, upper_bound=1.0)
  core.DEFINE_enum('backend', 'local', ['local', 'ray'],
                   'local: the runs as processes of this machine; ray: each '
                   'run a Ray Tune trial on a Ray cluster (pip install '
                   '"slimkit[ray]"; see docs/studies.md).')
  core.DEFINE_string('ray_address', None,
                     '--backend=ray: the cluster to join (e.g. auto, '
                     'ray://head:10001, head:6379). Default: join the Ray of '
                     'this machine if one runs, else start one.')
  core.DEFINE_float('gpus_per_run', 0,
                    '--backend=ray: GPUs each run reserves (fractions share '
                    'a GPU).', lower_bound=0)
  core.DEFINE_float('cpus_per_run', 1,
                    '--backend=ray: CPUs each run reserves.', lower_bound=0)
  core.DEFINE_integer('max_failures', 2,
                      '--backend=ray: times a run whose node died is '
                      'started again (it resumes from its last checkpoint).',
                      lower_bound=0)
  core.DEFINE_enum('early_stopping', 'none', ['none', 'asha', 'median'],
                   '--backend=ray: stop hopeless runs on their validation '
                   'accuracy, by global step: asha (Ray Tune\'s '
                   'ASHAScheduler) or median (MedianStoppingRule).')
  core.DEFINE_integer('grace_period_steps', None,
                      '--early_stopping: steps every run trains before it '
                      'can be stopped. Default: --eval_every_n_steps.',
                      lower_bound=1)
  core.DEFINE_integer('reduction_factor', 4,
                      '--early_stopping=asha: each rung keeps the best '
                      '1/reduction_factor of the runs.', lower_bound=2)
  core.DEFINE_integer('workers_per_run', 1,
                      '--backend=ray: workers of each run (multi-worker '
                      'training placed by Ray Train, TF_CONFIG).',
                      lower_bound=1)
  flags.mark_flag_as_required('study_dir')


def training_flags(values):
  """`{name: flag}` of the training flags in `values` (e.g. FLAGS).

  That is the flags of this module, without compare_methods.py's own.
  """
  return {f.name: f for f in values.get_flags_for_module(core.MODULE)
          if f.name not in STUDY_FLAGS}


