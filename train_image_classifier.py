r"""Trains an image classifier on a dataset of TFRecords, with TF-Slim's flags.

Usage (TF-Slim's commands run unchanged):

  python3 train_image_classifier.py --train_dir=/tmp/train \
      --dataset_name=imagenet --dataset_split_name=train \
      --dataset_dir=/data/imagenet --model_name=inception_v3

  # Four clones on four GPUs (or, with --clone_on_cpu, on the CPU):
  python3 train_image_classifier.py --num_clones=4 --batch_size=12 ...

  # Another activation and no LRN (print_model.py lists a net's options):
  python3 train_image_classifier.py --model_name=cifarnet \
      --model_options=activation=elu,lrn=false ...

  # Today's augmentation on top of TF-Slim's (off by default):
  python3 train_image_classifier.py --mixup_alpha=0.2 --cutmix_alpha=1.0 \
      --randaugment=2,9 --label_smoothing=0.1 ...

  # Two machines, synchronous (the same command on each, --task=0 and 1):
  python3 train_image_classifier.py --worker_hosts=h0:2222,h1:2222 --task=0 ...

  # Parameter servers (asynchronous): see docs/distributed.md.

`--batch_size` is per clone. Checkpoints `model.ckpt-<step>` and TensorBoard
summaries go to `--train_dir`, with the resolved flags in `flags.txt` (rerun
with `--flagfile=<train_dir>/flags.txt`). A restarted run resumes from the
newest checkpoint; `--max_number_of_steps` counts the global step.
"""

import dataclasses
import os

from absl import app
from absl import flags
from absl import logging

from slimkit import flags as slim_flags

FLAGS = slim_flags.FLAGS
slim_flags.define_train_flags()
flags.adopt_module_key_flags(slim_flags)


def main(argv):
  # Imported once the flags are parsed and checked: --help and a bad flag
  # are answered before TensorFlow loads.
  import tensorflow as tf

  from slimkit import checkpoints
  from slimkit import seeds
  from slimkit.datasets import dataset_factory
  from slimkit.datasets import input_pipeline
  from slimkit.datasets import synthetic
  from slimkit.deployment import cluster as cluster_lib
  from slimkit.deployment import model_deploy
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory
  from slimkit.training import optimization
  from slimkit.training import optimizer_specs
  from slimkit.training import peak
  from slimkit.training import trainer

  if len(argv) > 1:
    slim_flags.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  for warning in slim_flags.obsolete_flag_warnings(FLAGS):
    logging.warning(warning)
  try:
    cluster = cluster_lib.resolve(
        worker_hosts=FLAGS.worker_hosts, ps_hosts=FLAGS.ps_hosts,
        job_name=FLAGS.job_name, task=FLAGS.task,
        worker_replicas=FLAGS.worker_replicas, num_ps_tasks=FLAGS.num_ps_tasks)
  except cluster_lib.ClusterError as e:
    slim_flags.fail(str(e))
  if FLAGS.sync_replicas and cluster.mode == cluster_lib.PARAMETER_SERVER:
    slim_flags.fail(
        '--sync_replicas with parameter servers: ParameterServerStrategy '
        'trains asynchronously. For synchronous training drop --ps_hosts and '
        '--num_ps_tasks: several workers then all-reduce their gradients '
        'every step (MultiWorkerMirroredStrategy).')
  if FLAGS.sync_replicas and FLAGS.replicas_to_aggregate not in (
      1, cluster.num_workers):
    slim_flags.fail(
        f'--replicas_to_aggregate={FLAGS.replicas_to_aggregate}: synchronous '
        f'training aggregates all {cluster.num_workers} worker(s) every step '
        f'(no backup workers); use 1 or {cluster.num_workers}.')
  if cluster.serves_only:
    # A ps or worker task of a parameter-server cluster: the coordinator
    # (--job_name=chief) sends it the work, reading of the data included.
    logging.info('Serving as %s until killed.', cluster.describe())
    cluster.serve()
    return
  if not FLAGS.dataset_dir and FLAGS.dataset_name != 'synthetic':
    slim_flags.fail('You must supply the dataset directory with '
                    '--dataset_dir.')
  if FLAGS.num_classes and FLAGS.dataset_name != 'synthetic':
    slim_flags.fail(f'--num_classes={FLAGS.num_classes} is for '
                    '--dataset_name=synthetic; --dataset_name='
                    f'{FLAGS.dataset_name} knows its classes.')

  # Everything that can be refused is checked before train_dir is touched.
  model_options = slim_flags.model_options(FLAGS)
  randaugment = slim_flags.randaugment(FLAGS)
  split = slim_flags.split_or_fail(
      FLAGS.dataset_name, FLAGS.dataset_split_name, FLAGS.dataset_dir)
  if synthetic.is_synthetic(split) and FLAGS.num_classes:
    split = dataclasses.replace(split, num_classes=FLAGS.num_classes)
  augmentations = [f'--{name}={FLAGS[name].value}'
                   for name in ('mixup_alpha', 'cutmix_alpha', 'randaugment')
                   if FLAGS[name].value]
  if augmentations and synthetic.is_synthetic(split):
    slim_flags.fail(f'{" ".join(augmentations)} augment records; '
                    '--dataset_name=synthetic has none (it measures the '
                    'model alone).')
  if FLAGS.labels_offset >= split.num_classes:
    slim_flags.fail(f'--labels_offset={FLAGS.labels_offset} leaves no class '
                    f'of the {split.num_classes} of {split.dataset_name}.')
  validation_split = None
  unused = [f'--{n}'
            for n in ('validation_split_name', 'validation_max_batches')
            if FLAGS[n].present]
  if unused and not FLAGS.eval_every_n_steps:
    logging.warning('%s set without --eval_every_n_steps: no validation runs.',
                    ' and '.join(unused))
  if FLAGS.eval_every_n_steps:
    if synthetic.is_synthetic(split):
      slim_flags.fail('--eval_every_n_steps evaluates records; '
                      '--dataset_name=synthetic has none.')
    validation_name = (FLAGS.validation_split_name or
                       dataset_factory.default_validation_split(
                           FLAGS.dataset_name, FLAGS.dataset_dir))
    try:
      validation_split = dataset_factory.get_split(
          FLAGS.dataset_name, validation_name, FLAGS.dataset_dir)
      validation_split.files()
    except (FileNotFoundError, ValueError) as e:
      slim_flags.fail(f'--validation_split_name={validation_name}: {e}')
  try:
    deployment = model_deploy.DeploymentConfig(
        num_clones=FLAGS.num_clones, clone_on_cpu=FLAGS.clone_on_cpu,
        replica_id=cluster.worker_index, num_replicas=cluster.num_workers,
        num_ps_tasks=cluster.num_ps, cluster=cluster,
        collective_timeout_secs=FLAGS.collective_timeout_secs or None)
    strategy = model_deploy.make_strategy(deployment)
  except model_deploy.DeploymentError as e:
    slim_flags.fail(str(e))
  # Before any weight or random op exists. A drawn seed goes into flags.txt,
  # so the run can be repeated; workers all take the chief's. A run resumed
  # without --random_seed keeps the seed it was started with (its input
  # stream resumes where it stopped only with that seed).
  random_seed, drawn = FLAGS.random_seed, FLAGS.random_seed is None
  resumed_seed = None
  if drawn and tf.train.latest_checkpoint(FLAGS.train_dir):
    written = slim_flags.read_flagfile_value(
        os.path.join(FLAGS.train_dir, 'flags.txt'), 'random_seed')
    resumed_seed = int(written) if written and written.isdigit() else None
  if drawn:
    random_seed = FLAGS.random_seed = model_deploy.chief_value(
        strategy, seeds.draw_seed() if resumed_seed is None else resumed_seed)
  seeds.seed_everything(random_seed, op_determinism=not FLAGS.xla)
  if FLAGS.xla:
    logging.warning('--xla: TF\'s op determinism has no XLA version of some '
                    'gradients (max pooling), so it is off. The run is seeded '
                    'but not guaranteed to repeat bit for bit.')
  if not drawn:
    how = ''
  elif resumed_seed == random_seed:
    how = ' (the resumed run\'s, from <train_dir>/flags.txt)'
  else:
    how = ' (drawn; repeat the run with --flagfile=<train_dir>/flags.txt)'
  logging.info('Random seed %d%s.', random_seed, how)
  if FLAGS.checkpoint_path and not tf.train.latest_checkpoint(FLAGS.train_dir):
    try:
      checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
    except FileNotFoundError as e:
      slim_flags.fail(f'--checkpoint_path: {e}')
  if FLAGS.sync_replicas and cluster.mode == cluster_lib.LOCAL:
    logging.warning('--sync_replicas has no effect with one worker; the '
                    'clones of a step are always synchronous.')

  entry = nets_factory.get_entry(FLAGS.model_name)
  image_size = FLAGS.train_image_size or entry.default_image_size
  num_classes = split.num_classes - FLAGS.labels_offset
  preprocess = preprocessing_factory.get_preprocessing(
      FLAGS.preprocessing_name or FLAGS.model_name, is_training=True,
      use_grayscale=FLAGS.use_grayscale, randaugment=randaugment)
  if augmentations:
    logging.info('Augmenting beyond the style\'s own: %s.',
                 ' '.join(augmentations))
  epoch = dict(
      num_samples=split.num_samples, batch_size=FLAGS.batch_size,
      num_clones=FLAGS.num_clones,
      # Synchronous workers each read a batch per step, as TF-Slim's
      # --sync_replicas aggregating every worker.
      replicas_to_aggregate=(
          cluster.num_workers if cluster.mode == cluster_lib.MULTI_WORKER else
          FLAGS.replicas_to_aggregate if FLAGS.sync_replicas else None))
  steps = optimization.decay_steps(
      num_epochs_per_decay=FLAGS.num_epochs_per_decay, **epoch)
  warmup_steps = optimization.warmup_steps(
      warmup_epochs=FLAGS.warmup_epochs, **epoch)
  learning_rate = optimization.build_learning_rate(
      FLAGS.learning_rate_decay_type, FLAGS.learning_rate, decay_steps=steps,
      decay_factor=FLAGS.learning_rate_decay_factor,
      end_learning_rate=FLAGS.end_learning_rate,
      total_steps=FLAGS.max_number_of_steps, warmup_steps=warmup_steps)
  if warmup_steps:
    logging.info('Warming the learning rate up over %d steps '
                 '(--warmup_epochs=%g).', warmup_steps, FLAGS.warmup_epochs)
  if FLAGS.opt_epsilon is None:
    # The optimizer's own epsilon, written to flags.txt: a rerun with
    # --flagfile and the study see the value this run used.
    FLAGS.opt_epsilon = optimizer_specs.epsilon(FLAGS.optimizer)
  hparams = slim_flags.optimizer_hparams(FLAGS)
  optimizer_name = FLAGS.optimizer
  for warning in optimization.optimizer_warnings(optimizer_name, hparams):
    logging.warning(warning)

  if model_options:
    logging.info('%s with --model_options=%s (the other options at their '
                 'defaults: print_model.py --model_name=%s lists them).',
                 FLAGS.model_name,
                 nets_factory.format_model_options(model_options),
                 FLAGS.model_name)

  def network_fn():
    # Decoupled-decay optimizers decay the weights themselves: no L2 then.
    return nets_factory.get_network_fn(
        FLAGS.model_name, num_classes=num_classes,
        weight_decay=optimization.net_weight_decay(optimizer_name,
                                                   FLAGS.weight_decay),
        is_training=True, **model_options)

  # Counts the records --skip_corrupt_records drops, for the log.
  skipped = (tf.Variable(0, dtype=tf.int64, trainable=False)
             if FLAGS.skip_corrupt_records else None)
  skip_options = (dict(skip_corrupt=True, skip_counter=skipped)
                  if skipped is not None else {})

  def dataset_fn(input_context, seed=None, records_consumed=0):
    per_replica_batch = input_context.get_per_replica_batch_size(
        FLAGS.batch_size * input_context.num_replicas_in_sync)
    if synthetic.is_synthetic(split):  # Model speed alone: no input work.
      # One fixed batch, a function of the run's seed alone (it has no
      # position to resume at).
      return split.make_dataset(
          batch_size=per_replica_batch, image_size=image_size,
          channels=input_pipeline.output_channels(split, FLAGS.use_grayscale),
          seed=random_seed, input_context=input_context)
    return input_pipeline.make_dataset(
        split, preprocess, **skip_options,
        batch_size=per_replica_batch, is_training=True, image_size=image_size,
        num_readers=FLAGS.num_readers,
        num_preprocessing_threads=FLAGS.num_preprocessing_threads,
        labels_offset=FLAGS.labels_offset, use_grayscale=FLAGS.use_grayscale,
        seed=seed, records_consumed=records_consumed,
        input_context=input_context, mixup_alpha=FLAGS.mixup_alpha,
        cutmix_alpha=FLAGS.cutmix_alpha)

  def validation_dataset_fn():
    return input_pipeline.make_dataset(
        validation_split, preprocessing_factory.get_preprocessing(
            FLAGS.preprocessing_name or FLAGS.model_name, is_training=False,
            use_grayscale=FLAGS.use_grayscale),
        batch_size=FLAGS.batch_size, is_training=False, image_size=image_size,
        num_preprocessing_threads=FLAGS.num_preprocessing_threads,
        labels_offset=FLAGS.labels_offset, use_grayscale=FLAGS.use_grayscale)

  # Before the net exists: the measurement has the cores to itself.
  peak_gflops, peak_source = peak.resolve_peak(
      FLAGS.precision, given=FLAGS.peak_gflops, measure=FLAGS.measure_peak)
  logging.info(peak.describe(peak_gflops, peak_source, FLAGS.precision))
  options = trainer.TrainOptions(
      train_dir=FLAGS.train_dir, batch_size=FLAGS.batch_size,
      max_number_of_steps=FLAGS.max_number_of_steps,
      log_every_n_steps=FLAGS.log_every_n_steps,
      save_summaries_secs=FLAGS.save_summaries_secs,
      save_interval_secs=FLAGS.save_interval_secs,
      label_smoothing=FLAGS.label_smoothing,
      moving_average_decay=FLAGS.moving_average_decay,
      trainable_scopes=slim_flags.split_scopes(FLAGS.trainable_scopes),
      checkpoint_path=FLAGS.checkpoint_path,
      checkpoint_exclude_scopes=slim_flags.split_scopes(
          FLAGS.checkpoint_exclude_scopes),
      ignore_missing_vars=FLAGS.ignore_missing_vars,
      skipped_records=skipped, precision=FLAGS.precision, xla=FLAGS.xla,
      random_seed=random_seed, eval_every_n_steps=FLAGS.eval_every_n_steps,
      validation_max_batches=FLAGS.validation_max_batches,
      quantize_delay=(FLAGS.quantize_delay if FLAGS.quantize_delay >= 0
                      else None),
      steps_per_loop=FLAGS.steps_per_loop,
      peak_gflops=peak_gflops)

  try:  # What the strategy cannot train with (--xla with parameter servers).
    trainer.check_options(strategy, options)
  except ValueError as e:
    slim_flags.fail(str(e))
  if cluster.is_chief:  # The other workers leave train_dir alone.
    try:
      os.makedirs(FLAGS.train_dir, exist_ok=True)
      slim_flags.write_flagfile(os.path.join(FLAGS.train_dir, 'flags.txt'))
    except OSError as e:
      slim_flags.fail(f'--train_dir={FLAGS.train_dir} is not writable: {e}',
                      status=1)
  try:
    result = trainer.train(
        strategy=strategy, network_fn=network_fn, dataset_fn=dataset_fn,
        optimizer_fn=lambda lr: optimization.build_optimizer(
            optimizer_name, lr, hparams),
        learning_rate=learning_rate, options=options,
        validation_dataset_fn=(validation_dataset_fn if validation_split
                               else None))
  except trainer.NonFiniteLossError as e:
    last_good = tf.train.latest_checkpoint(FLAGS.train_dir)
    slim_flags.fail(f'{e} The last good checkpoint is '
                    f'{last_good or "none (no checkpoint was written)"}.',
                    status=1)
  except trainer.CheckpointSaveError as e:
    slim_flags.fail(str(e), status=1)
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
    slim_flags.fail_on_input_error(split, e)
  except (ValueError, FileNotFoundError) as e:
    # Bad --checkpoint_path or --trainable_scopes: named in the message.
    slim_flags.fail(str(e), status=1)
  except tf.errors.OpError as e:
    if cluster.mode == cluster_lib.LOCAL or not cluster_lib.is_peer_error(e):
      raise
    # A lost worker or parameter server: say which, and how to recover.
    slim_flags.fail(cluster_lib.explain_peer_error(
        cluster, e, FLAGS.collective_timeout_secs or None), status=1)
  if result.stopped_by:
    return  # the trainer said where it stopped and how to resume
  logging.info('Finished at global step %d; checkpoint %s. Watch with: '
               'tensorboard --logdir %s', result.global_step,
               result.checkpoint, FLAGS.train_dir)


if __name__ == '__main__':
  app.run(main, flags_parser=slim_flags.parse_flags)
