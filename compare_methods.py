r"""Compares training methods: one command trains a grid and reports on it.

Every flag of train_image_classifier.py is the base of every run; `--vary`
names a training flag or a model option and its values (the grid is the
product of all `--vary`), `--seeds` repeats each configuration:

  python compare_methods.py --study_dir=/tmp/study \
      --dataset_name=digits --dataset_dir=/tmp/digits --model_name=lenet \
      --max_number_of_steps=300 --eval_every_n_steps=50 \
      --vary=optimizer=momentum,adam --vary=opt_epsilon=1.0,1e-8 \
      --seeds=0,1

  # A ready study (studies/*.flags), on your data:
  python compare_methods.py --flagfile=studies/kernels.flags \
      --dataset_dir=/tmp/cifar10 --study_dir=/tmp/kernels

Each run is an ordinary training run in `study_dir/runs/<name>/` (its
flags.txt, checkpoints, TensorBoard summaries, validation in
`validation/`). Rerunning the same command skips finished runs and resumes
interrupted ones; a failed run is reported and does not stop the others. The
study writes `results.csv`, `summary.csv`, `report.md` (means, 95%
confidence intervals, tests against the best configuration; `--alpha`,
`--min_effect`) and `plots/` after each run and at the end, and HParams
summaries for `tensorboard --logdir study_dir`;
`--report_only` rebuilds them from the run folders (also ones trained
elsewhere). See docs/studies.md.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags
from slimkit.nets import nets_factory
from slimkit.study import grid
from slimkit.study import ray_backend
from slimkit.study import runner
from slimkit.study import study_file

FLAGS = slim_flags.FLAGS
slim_flags.define_train_flags()
slim_flags.define_study_flags()
flags.adopt_module_key_flags(slim_flags)

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'train_image_classifier.py')


def _value_text(flag):
  if isinstance(flag.value, bool):  # absl writes these as --name / --noname
    return 'true' if flag.value else 'false'
  return flag.serialize()[len(f'--{flag.name}='):]


def _base_flags(training):
  """The training flags given (on the command line or in a flagfile)."""
  return {name: _value_text(flag) for name, flag in sorted(training.items())
          if flag.present and name not in grid.MANAGED_FLAGS}


_RAY_FLAGS = ('ray_address', 'gpus_per_run', 'cpus_per_run', 'max_failures',
              'early_stopping', 'grace_period_steps', 'reduction_factor',
              'workers_per_run')


def _backend_or_fail(values):
  """The `RayOptions` of --backend=ray (None for the local backend).

  Args:
    values: The parsed flags (main's values).
  """
  if values.backend == 'local':
    given = [name for name in _RAY_FLAGS if values[name].present]
    if given:
      slim_flags.fail(f'{values[given[0]].serialize()} needs '
                      '--backend=ray (Ray Tune runs the trials and their '
                      'early stopping); the local backend trains every run '
                      'to --max_number_of_steps.')
    return None
  if values.report_only:
    return None
  try:
    ray_backend.import_ray()
  except ray_backend.BackendError as e:
    slim_flags.fail(str(e))
  return ray_backend.RayOptions(
      address=values.ray_address, cpus_per_run=values.cpus_per_run,
      gpus_per_run=values.gpus_per_run, max_failures=values.max_failures,
      early_stopping=values.early_stopping,
      grace_period_steps=(values.grace_period_steps or
                          values.eval_every_n_steps),
      reduction_factor=values.reduction_factor, parallel=values.parallel,
      workers_per_run=values.workers_per_run)


def main(argv):
  # Imported once the flags are parsed and checked: --help and a bad flag
  # are answered before TensorFlow loads.
  import tensorflow as tf

  from slimkit.study import report
  from slimkit.study import results as results_lib
  if len(argv) > 1:
    slim_flags.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  training = slim_flags.training_flags(FLAGS)
  vary, replaced = grid.command_line_overrides(FLAGS.vary, sys.argv[1:])
  for name in replaced:
    logging.info('--vary=%s=... on the command line replaces the flagfile\'s '
                 '--vary of %s.', name, name)
  try:
    axes = grid.check_axes([grid.parse_vary(v) for v in vary],
                           flag_values=training, model_name=FLAGS.model_name)
    seeds = grid.parse_seeds(FLAGS.seeds)
  except grid.GridError as e:
    slim_flags.fail(str(e))
  for name in ('train_dir', 'random_seed'):
    if FLAGS[name].present:
      slim_flags.fail(f'--{name}: {grid.MANAGED_FLAGS[name]}.')
  if not FLAGS.max_number_of_steps:
    slim_flags.fail('A study needs --max_number_of_steps: every run must end '
                    'for the runs to be compared.')
  if FLAGS.dataset_name == 'synthetic':
    slim_flags.fail('A study compares validation accuracy; '
                    '--dataset_name=synthetic has no records to validate on.')
  if not FLAGS.dataset_dir:
    slim_flags.fail('You must supply the dataset directory with '
                    '--dataset_dir.')
  models = next((a.values for a in axes if a.name == 'model_name'),
                (FLAGS.model_name,))
  for model in models:  # the base options must suit every net of the grid
    try:
      nets_factory.parse_model_options(model, FLAGS.model_options)
    except ValueError as e:
      slim_flags.fail(f'--model_options={FLAGS.model_options}: {e}')

  backend = _backend_or_fail(FLAGS)
  base = _base_flags(training)
  base.pop('model_options', None)
  if not FLAGS.eval_every_n_steps:  # validate at least at the end
    base['eval_every_n_steps'] = str(FLAGS.max_number_of_steps)
  runs = grid.build_runs(axes, seeds)
  # Ray's trials run in folders of their own: they get absolute paths.
  study_dir = os.path.abspath(FLAGS.study_dir) if backend else FLAGS.study_dir
  study = runner.Study(study_dir=study_dir, script=_SCRIPT,
                       base_flags=base, model_options=FLAGS.model_options,
                       axes=axes, runs=runs,
                       max_number_of_steps=FLAGS.max_number_of_steps)
  fixed = {k: v for k, v in base.items()
           if k not in {axis.name for axis in axes}}
  if FLAGS.model_options:
    fixed['model_options'] = FLAGS.model_options
  info = report.StudyInfo(name=os.path.basename(
      os.path.normpath(FLAGS.study_dir)), axes=axes, seeds=seeds,
                          fixed_flags=fixed, alpha=FLAGS.alpha,
                          min_effect=FLAGS.min_effect)

  def write_report(run=None):
    del run
    return report.write_all(FLAGS.study_dir, info, results_lib.read_study(
        FLAGS.study_dir, runs))

  description = study_file.describe(fixed, axes, seeds)
  try:
    study_file.check(FLAGS.study_dir, description, extend=FLAGS.extend_study)
  except study_file.StudyDirError as e:
    slim_flags.fail(str(e))
  try:
    study_file.write(FLAGS.study_dir, description)
  except OSError as e:
    slim_flags.fail(f'--study_dir={FLAGS.study_dir} is not writable: {e}',
                    status=1)
  if not FLAGS.report_only and backend:
    try:
      ray_backend.run_study(study, backend, on_run_end=write_report,
                            log=lambda line: print(line, flush=True))
    except ray_backend.BackendError as e:
      slim_flags.fail(str(e), status=1)
  elif not FLAGS.report_only:
    gpus = (0 if FLAGS.clone_on_cpu else
            len(tf.config.list_physical_devices('GPU')))
    try:
      slots = runner.gpu_slots(gpus, FLAGS.num_clones, FLAGS.parallel)
    except ValueError as e:
      slim_flags.fail(str(e))
    logging.info('Study of %d runs in %s, %d at a time%s.', len(runs),
                 FLAGS.study_dir, len(slots),
                 f' (GPUs {", ".join(slots)})' if gpus else '')
    runner.run_study(study, slots=slots, on_run_end=write_report,
                     log=lambda line: print(line, flush=True))
  path = write_report()
  print(f'Report: {path}\nTensorBoard (with the HParams dashboard): '
        f'tensorboard --logdir {FLAGS.study_dir}', flush=True)


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
