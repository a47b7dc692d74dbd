"""Training images/s, GFLOP/s and utilisation: ours, Keras fit and timm.

In one run on one machine, each measurement in its own subprocess:

  keras      keras.applications model (MobileNet, ResNet50), model.fit on one
             synthetic batch repeated, momentum SGD, no XLA
  ours       train_image_classifier.py --dataset_name=synthetic, same net
             (mobilenet_v1, resnet_v1_50), size, batch and optimizer
  timm       (when torch and timm are installed; else "not installed") the
             timm model (mobilenetv1_100, resnet50), channels_last, momentum
             SGD, one synthetic batch repeated; bfloat16 by torch.autocast
  ours/real  train_image_classifier.py on ImageNet-style JPEG TFRecords with
             the net's own preprocessing (inception / vgg)
  unseeded   (`--runs=...,unseeded`) the same two runs without what
             `--random_seed` switches on (op determinism, stateless dropout and
             augmentation draws, a fixed tf.data order): what reproducibility
             costs. The script always seeds; this child patches that out.

and, with `--precisions=float32,mixed_bfloat16`, the same under Keras' mixed
bfloat16 policy. Printed: images/s of each run (warm-up steps excluded), the
ratios ours / Keras, ours / timm, real / synthetic and bfloat16 / float32,
peak resident memory and its growth after warm-up; and for every run the
training GFLOP/s (images/s x its own net's forward multiply-adds x 2 x 3:
ours and Keras' counted by `slimkit.flops` on the traced net, timm's by
torch's FlopCounterMode) and the utilisation against
the float32 or bfloat16 matmul peak that a child measures at the start
(`slimkit/training/peak.py`; `--peak_gflops` gives one instead). The
MobileNets are the same net in all three (0.185 G multiply-adds at 128 px);
the ResNet-50s are not: TF-Slim's resnet_v1_50 strides in the last unit of
a block, Keras' ResNet50 in the first unit's 1x1 and timm's resnet50
(v1.5) in its 3x3, so at 112 px Keras' does 10% and timm's 16% more
multiply-adds per image than ours (about 0.93, 1.02, 1.08 G): images/s
compare the nets as users get them, GFLOP/s the work done.

`--repo=/path/to/other/checkout` runs "ours" from that checkout (the rest
from this one): before/after in one sitting. `--variant=NAME:SETTINGS` (may
repeat) adds a run `ours_NAME` of ours with other settings beside the
plain one: SETTINGS is whitespace-separated `KEY=VALUE` environment variables
and `--flag=value` flags of train_image_classifier.py, e.g.
`--variant='interop1:TF_NUM_INTEROP_THREADS=1' --variant='xla:--xla'`.

  python bench/train_throughput.py                    # a few minutes here
  python bench/train_throughput.py --models=mobilenet_v1 --steps=220
  python bench/train_throughput.py --precisions=float32,mixed_bfloat16
  python bench/train_throughput.py --runs=ours,real,unseeded --repeats=3
  python bench/train_throughput.py --runs=keras,ours,timm --no_real
  python bench/train_throughput.py --models=resnet_v1_50 --no_real \
      --variant='callerthread:TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD=1'
"""

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from bench import common

# Our net, the Keras application of the same architecture, default size and
# batch (what this 2-core machine trains in a few minutes).
MODELS = {
    'mobilenet_v1': ('MobileNet', 128, 32),
    'resnet_v1_50': ('ResNet50', 112, 16),
}
TIMM_MODELS = {'mobilenet_v1': 'mobilenetv1_100', 'resnet_v1_50': 'resnet50'}
KINDS = ('keras', 'ours', 'timm')
NUM_CLASSES = 1001
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def keras_child(args):
  """Trains the Keras application with model.fit and logs like our trainer."""
  import keras
  import tensorflow as tf
  if args.precision != 'float32':
    keras.mixed_precision.set_global_policy(args.precision)
  size = args.image_size
  model = getattr(keras.applications, args.keras_model)(
      input_shape=(size, size, 3), weights=None, classes=NUM_CLASSES,
      classifier_activation=None)
  optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
  if args.precision == 'mixed_float16':
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                jit_compile=args.xla)
  images = tf.random.stateless_uniform([args.batch_size, size, size, 3],
                                       seed=[0, 0], minval=-1.0, maxval=1.0)
  labels = tf.random.stateless_uniform([args.batch_size], seed=[0, 1],
                                       maxval=NUM_CLASSES, dtype=tf.int64)
  dataset = tf.data.Dataset.from_tensors((images, labels)).repeat().prefetch(1)

  class Log(keras.callbacks.Callback):
    """Prints `global step N: ... (x sec/step ...)` every `log_every` steps."""

    def __init__(self):
      super().__init__()
      self.last = time.time()

    def on_train_batch_end(self, batch, logs=None):
      step = batch + 1
      if step % args.log_every == 0:
        # Reading the loss waits for the step, as our trainer does when logging.
        loss = float(logs['loss']) if logs and 'loss' in logs else float('nan')
        now = time.time()
        sec = (now - self.last) / args.log_every
        self.last = now
        print(f'global step {step}: loss = {loss:.4f} ({sec:.4f} sec/step, '
              f'{args.batch_size / sec:.1f} images/sec)', file=sys.stderr,
              flush=True)

  from slimkit import flops  # pylint: disable=g-import-not-at-top
  count = flops.multiply_adds(model, (size, size, 3))
  print(f'RESULT flops {flops.training_flops_per_image(count)}', flush=True)
  model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0,
            callbacks=[Log()])


def timm_child(args):
  """Trains the timm model in PyTorch and logs like our trainer."""
  import torch
  import timm
  torch.manual_seed(0)
  size = args.image_size
  model = timm.create_model(args.timm_model, num_classes=NUM_CLASSES)
  model = model.to(memory_format=torch.channels_last).train()
  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE,
                              momentum=MOMENTUM)
  generator = torch.Generator().manual_seed(0)
  images = (torch.rand([args.batch_size, 3, size, size], generator=generator)
            * 2 - 1).contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, NUM_CLASSES, [args.batch_size],
                         generator=generator)
  from torch.utils import flop_counter  # pylint: disable=g-import-not-at-top
  with flop_counter.FlopCounterMode(display=False) as counter, \
      torch.no_grad():
    model.eval()(images[:1])  # eval: batch norm's statistics stay as they are
  model.train()
  # It counts a multiply-add as 2 FLOPs, as slimkit.flops does; x 3 passes.
  print(f'RESULT flops {counter.get_total_flops() * 3}', flush=True)
  autocast = torch.autocast('cpu', dtype=torch.bfloat16,
                            enabled=args.precision == 'mixed_bfloat16')
  last = time.time()
  for step in range(1, args.steps + 1):
    with autocast:
      loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if step % args.log_every == 0:
      value = float(loss)  # waits for the step, as our log line does
      now = time.time()
      sec = (now - last) / args.log_every
      last = now
      print(f'global step {step}: loss = {value:.4f} ({sec:.4f} sec/step, '
            f'{args.batch_size / sec:.1f} images/sec)', file=sys.stderr,
            flush=True)


def timm_installed():
  """Why timm cannot run here, or None when torch and timm import."""
  import importlib.util
  missing = [m for m in ('torch', 'timm') if importlib.util.find_spec(m) is
             None]
  return f'{" and ".join(missing)} not installed' if missing else None


def machine_child(args):
  """Prints the matmul peaks and our nets' training FLOPs per image."""
  from slimkit import flops
  from slimkit.nets import nets_factory
  from slimkit.training import peak
  for precision in args.precisions.split(','):
    dtype = peak.compute_dtype(precision)
    print(f'RESULT peak_{precision} {peak.measure_matmul_gflops(dtype):.1f}')
  for model in args.models.split(','):
    _, size, _ = MODELS[model]
    size = args.image_size or size
    net = nets_factory.get_network_fn(model, NUM_CLASSES, is_training=True)
    count = flops.multiply_adds(net, (size, size, 3))
    print(f'RESULT flops_{model} {flops.training_flops_per_image(count)}')


def unseeded_child(argv):
  """Runs train_image_classifier.py without determinism (see the docstring).

  Seeds only Keras's initialisers (so the net starts as a seeded run does),
  leaves op determinism off and trains with `random_seed=None`: TF's
  stateful dropout and augmentation draws, a tf.data order that follows the
  threads.
  """
  import dataclasses
  import keras
  from absl import app
  sys.path.insert(0, common.ROOT)
  import train_image_classifier as script
  from slimkit import seeds
  from slimkit.training import trainer
  seeds.seed_everything = lambda seed, **_: keras.utils.set_random_seed(seed)
  train = trainer.train
  trainer.train = lambda **kw: train(**dict(kw, options=dataclasses.replace(
      kw['options'], random_seed=None)))
  app.run(script.main, argv=[script.__file__] + argv,
          flags_parser=script.slim_flags.parse_flags)


def _ours_argv(args, model, size, batch, precision, train_dir,
               dataset_flags, seeded=True, repo=None):
  if not seeded:  # the same flags, through unseeded_child
    return [sys.executable, os.path.abspath(__file__),
            '--child=unseeded', '--'] + _ours_argv(
                args, model, size, batch, precision, train_dir,
                dataset_flags)[2:]
  script = os.path.join(repo or args.repo or common.ROOT,
                        'train_image_classifier.py')
  return [sys.executable, script,
          f'--train_dir={train_dir}', f'--model_name={model}',
          f'--train_image_size={size}', f'--batch_size={batch}',
          '--optimizer=momentum', f'--momentum={MOMENTUM}',
          f'--learning_rate={LEARNING_RATE}',
          '--learning_rate_decay_type=fixed',
          # Keras applications carry no weight decay: the same computation.
          '--weight_decay=0', f'--max_number_of_steps={args.steps}',
          f'--log_every_n_steps={args.log_every}',
          '--save_interval_secs=100000', '--save_summaries_secs=100000',
          f'--precision={precision}', f'--xla={args.xla}'] + dataset_flags


def parse_variant(text):
  """`NAME:SETTINGS` -> (name, ours' extra flags, environment, checkout).

  A `--repo=PATH` token runs this variant from another checkout (None: the
  one of `--repo`), for a before/after in one sitting.
  """
  name, sep, settings = text.partition(':')
  if not sep or not name or not name.replace('_', '').isalnum():
    raise ValueError(f'--variant={text!r}: expected NAME:SETTINGS with an '
                     'alphanumeric NAME, e.g. '
                     'interop1:TF_NUM_INTEROP_THREADS=1')
  flags, env, repo = [], {}, None
  for token in settings.split():
    if token.startswith('--repo='):
      repo = token[len('--repo='):]
    elif token.startswith('--'):
      flags.append(token)
    elif '=' in token:
      key, value = token.split('=', 1)
      env[key] = value
    else:
      raise ValueError(f'--variant={text!r}: {token!r} is neither --flag nor '
                       'KEY=VALUE')
  return name, flags, env, repo


def _keras_argv(args, keras_model, size, batch, precision):
  return [sys.executable, os.path.abspath(__file__), '--child=keras',
          f'--keras_model={keras_model}', f'--image_size={size}',
          f'--batch_size={batch}', f'--precision={precision}',
          f'--steps={args.steps}', f'--log_every={args.log_every}'] + (
              ['--xla'] if args.xla else [])


def _timm_argv(args, model, size, batch, precision):
  return [sys.executable, os.path.abspath(__file__), '--child=timm',
          f'--timm_model={TIMM_MODELS[model]}', f'--image_size={size}',
          f'--batch_size={batch}', f'--precision={precision}',
          f'--steps={args.steps}', f'--log_every={args.log_every}']


def write_records(directory, count, split_name='train', num_files=8):
  """ImageNet-style JPEG records (about 500x375, with boxes) for real input.

  The files are `<split_name>-0000N-of-0000M`, the imagenet dataset's
  pattern. Returns the mean size of an image in KB.
  """
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      'bench_input_pipeline',
      os.path.join(common.ROOT, 'bench', 'input_pipeline.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  _, mean_kb = module.write_records(directory, split_name, count, num_files,
                                    375, 500, b'jpeg', with_boxes=True)
  return mean_kb


def run_flops(result, ours_flops):
  """Training FLOPs per image of a run's own net (ours: `ours_flops`)."""
  return result.values.get('flops', ours_flops)


def _table_row(model, size, batch, precision, found, flops_per_image,
               peak_gflops, timm_text):
  """One row of the results table; `found` maps a kind to its RunResult;
  `flops_per_image` is ours (Keras and timm runs report their own)."""
  def rate(r, missing='-'):
    return f'{r.images_per_sec:.1f}' if r else missing

  def ratio(a, b):
    return f'{a.images_per_sec / b.images_per_sec:.2f}' if a and b else '-'

  gflops = {k: found[k].images_per_sec * run_flops(found[k], flops_per_image)
            / 1e9 for k in KINDS if found[k]}
  return (f'| {model} | {size} | {batch} | {precision} | '
          f'{rate(found["keras"])} | {rate(found["ours"])} | '
          f'{rate(found["timm"], timm_text)} | '
          f'{ratio(found["ours"], found["keras"])} | '
          f'{ratio(found["ours"], found["timm"])} | ' +
          ' / '.join(f'{gflops[k]:.0f}' if k in gflops else '-'
                     for k in KINDS) + ' | ' +
          ' / '.join(f'{100 * gflops[k] / peak_gflops:.0f}%' if k in gflops
                     else '-' for k in KINDS) +
          f' | {rate(found["real"])} | {ratio(found["real"], found["ours"])} |')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='mobilenet_v1,resnet_v1_50',
                      help='Comma-separated: ' + ', '.join(MODELS))
  parser.add_argument('--steps', type=int, default=60,
                      help='Steps per run, warm-up included.')
  parser.add_argument('--warmup', type=int, default=20,
                      help='Steps excluded from the rate.')
  parser.add_argument('--log_every', type=int, default=10)
  parser.add_argument('--image_size', type=int, default=None,
                      help='Override every model\'s image size.')
  parser.add_argument('--batch_size', type=int, default=None,
                      help='Override every model\'s batch size.')
  parser.add_argument('--precisions', default='float32',
                      help='Comma-separated: float32, mixed_bfloat16, '
                      'mixed_float16.')
  parser.add_argument('--xla', action='store_true',
                      help='Compile the steps with XLA (ours and Keras).')
  parser.add_argument('--no_real', action='store_true',
                      help='Skip the run on TFRecords.')
  parser.add_argument('--records', type=int, default=1024,
                      help='ImageNet-style records written for the real run.')
  parser.add_argument('--runs', default='keras,ours,timm,real',
                      help='Which runs: keras, ours, timm, real, unseeded '
                      '(ours and real without determinism).')
  parser.add_argument('--repo', default=None,
                      help='Run "ours" from this checkout (default: this '
                      'one), for before/after in one sitting.')
  parser.add_argument('--variant', action='append', default=[],
                      help='NAME:SETTINGS, a run ours_NAME with these '
                      'environment variables (KEY=VALUE) and flags '
                      '(--flag=value), whitespace-separated, and from the '
                      'checkout --repo=PATH if given; may repeat.')
  parser.add_argument('--peak_gflops', default=None,
                      help='Comma-separated peaks, one per --precisions, '
                      'instead of measuring them at the start.')
  parser.add_argument('--repeats', type=int, default=1,
                      help='Rounds of all runs, interleaved; the best rate '
                      'of each is kept (the machine may be shared).')
  # The Keras subprocess.
  parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--keras_model', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--timm_model', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--precision', default='float32',
                      help=argparse.SUPPRESS)
  if argv is None:
    argv = sys.argv[1:]
  if argv[:2] == ['--child=unseeded', '--']:
    unseeded_child(argv[2:])
    return
  args = parser.parse_args(argv)
  if args.child in ('keras', 'timm', 'machine'):
    dict(keras=keras_child, timm=timm_child,
         machine=machine_child)[args.child](args)
    return
  if args.warmup % args.log_every or args.steps <= args.warmup:
    parser.error('--warmup must be a multiple of --log_every and below '
                 '--steps.')

  try:
    variants = [parse_variant(v) for v in args.variant]
  except ValueError as e:
    parser.error(str(e))
  models = [m.strip() for m in args.models.split(',') if m.strip()]
  for model in models:
    if model not in MODELS:
      parser.error(f'unknown model {model!r}; valid: {", ".join(MODELS)}')
  precisions = [p.strip() for p in args.precisions.split(',') if p.strip()]
  runs = set(args.runs.split(','))
  if args.no_real:
    runs.discard('real')

  timm_missing = timm_installed() if 'timm' in runs else None
  if timm_missing:
    runs.discard('timm')
  print(f'machine: {common.machine()}', flush=True)
  print(f'load average before: {common.load_average():.2f}; steps '
        f'{args.steps}, warm-up {args.warmup}, xla {args.xla}; ours from '
        f'{args.repo or common.ROOT}', flush=True)
  measured = common.run('machine', [
      sys.executable, os.path.abspath(__file__), '--child=machine',
      f'--models={",".join(models)}', f'--precisions={",".join(precisions)}']
      + ([f'--image_size={args.image_size}'] if args.image_size else []),
      batch_size=1, warmup=0)
  common.check(measured)
  peaks = {p: measured.values[f'peak_{p}'] for p in precisions}
  if args.peak_gflops:
    peaks = dict(zip(precisions, map(float, args.peak_gflops.split(','))))
  model_flops = {m: measured.values[f'flops_{m}'] for m in models}
  print('peak GFLOP/s (matmul 2048^3, best of 5): ' + ', '.join(
      f'{p} {g:.0f}' for p, g in peaks.items()) + '; training GFLOP per '
      'image: ' + ', '.join(f'{m} {f / 1e9:.2f}' for m, f in
                            model_flops.items()), flush=True)
  scratch = tempfile.mkdtemp(prefix='train_throughput_')
  results = {}
  try:
    records_dir = os.path.join(scratch, 'records')
    if 'real' in runs:
      os.makedirs(records_dir)
      mean_kb = write_records(records_dir, args.records)
      print(f'real input: {args.records} ImageNet-style JPEG records, 500x375,'
            f' {mean_kb:.0f} KB each', flush=True)
    for model in models:
      keras_model, size, batch = MODELS[model]
      size = args.image_size or size
      batch = args.batch_size or batch
      for precision in precisions:
        plan = []  # (kind, argv, extra environment)
        if 'keras' in runs:
          plan.append(('keras', _keras_argv(args, keras_model, size, batch,
                                            precision), None))
        train_dir = os.path.join(scratch, f'{model}_{precision}')
        if 'timm' in runs and precision != 'mixed_float16':
          plan.append(('timm', _timm_argv(args, model, size, batch,
                                          precision), None))
        if 'ours' in runs:
          plan.append(('ours', _ours_argv(
              args, model, size, batch, precision, train_dir + '_synthetic',
              ['--dataset_name=synthetic', f'--num_classes={NUM_CLASSES}']),
                       None))
          for name, flags, env, repo in variants:
            plan.append((f'ours_{name}', _ours_argv(
                args, model, size, batch, precision, train_dir + '_synthetic',
                ['--dataset_name=synthetic', f'--num_classes={NUM_CLASSES}']
                + flags, repo=repo), env))
        if 'real' in runs and precision == precisions[0]:
          plan.append(('real', _ours_argv(
              args, model, size, batch, precision, train_dir + '_real',
              ['--dataset_name=imagenet', f'--dataset_dir={records_dir}']),
                       None))
        if 'unseeded' in runs:
          for kind, flags in (('ours', ['--dataset_name=synthetic',
                                        f'--num_classes={NUM_CLASSES}']),
                              ('real', ['--dataset_name=imagenet',
                                        f'--dataset_dir={records_dir}'])):
            if kind in runs and (kind == 'ours' or
                                 precision == precisions[0]):
              plan.append((f'{kind}_unseeded', _ours_argv(
                  args, model, size, batch, precision,
                  train_dir + ('_synthetic' if kind == 'ours' else '_real'),
                  flags, seeded=False), None))
        # Odd rounds run in reverse order: load that changes during the run
        # then favours neither side.
        rounds = [plan if r % 2 == 0 else plan[::-1]
                  for r in range(args.repeats)]
        for kind, argv, env in itertools.chain.from_iterable(rounds):
          name = f'{model} {precision} {kind}'
          shutil.rmtree(train_dir + '_synthetic', ignore_errors=True)
          shutil.rmtree(train_dir + '_real', ignore_errors=True)
          result = common.run(name, argv, batch_size=batch,
                              warmup=args.warmup, env=env)
          common.check(result)
          best = results.get((model, precision, kind))
          if best is None or result.images_per_sec > best.images_per_sec:
            results[(model, precision, kind)] = result
          gflops = (result.images_per_sec
                    * run_flops(result, model_flops[model]) / 1e9)
          # The fastest logged interval: on a shared machine, the one least
          # disturbed by other work.
          fastest = batch / min(sec for step, sec, _ in result.steps
                                if step > args.warmup)
          print(f'{name:40s} {result.images_per_sec:7.1f} images/s '
                f'{gflops:6.1f} GFLOP/s {100 * gflops / peaks[precision]:3.0f}%'
                f' fastest interval {fastest:5.1f} images/s'
                f'  ({common.describe(result, args.warmup)}; load '
                f'{common.load_average():.2f})', flush=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)

  timm_text = timm_missing or '-'
  print('\n| model | size | batch | precision | Keras fit img/s | ours img/s |'
        ' timm img/s | ours / Keras | ours / timm | GFLOP/s Keras / ours / '
        'timm | utilisation Keras / ours / timm | ours real img/s | '
        'real / synthetic |')
  print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  for model in models:
    _, size, batch = MODELS[model]
    size = args.image_size or size
    batch = args.batch_size or batch
    for precision in precisions:
      found = {kind: results.get((model, precision, kind))
               for kind in KINDS + ('real',)}
      print(_table_row(model, size, batch, precision, found,
                       model_flops[model], peaks[precision], timm_text))
  print('\nGFLOP/s: images/s x training FLOPs per image (each run\'s own '
        'net: forward multiply-adds x 2 x 3); utilisation: over the matmul '
        'peak of the precision above.')
  if variants:
    print('\nVariants of ours (images/s, GFLOP/s, utilisation; ratios to '
          'ours, Keras and timm of the same run):')
    for model in models:
      for precision in precisions:
        found = {kind: results.get((model, precision, kind))
                 for kind in KINDS}
        for name, _, _, _ in variants:
          result = results.get((model, precision, f'ours_{name}'))
          if not result:
            continue
          rate = result.images_per_sec
          gflops = rate * model_flops[model] / 1e9
          print(f'  {model} {precision} ours_{name}: {rate:.1f} img/s, '
                f'{gflops:.0f} GFLOP/s, {100 * gflops / peaks[precision]:.0f}'
                '%; ' + ', '.join(
                    f'/ {kind} {rate / found[kind].images_per_sec:.2f}'
                    for kind in KINDS if found[kind]))
  if len(precisions) > 1:
    print()
    for model in models:
      for kind in KINDS:
        base = results.get((model, precisions[0], kind))
        for precision in precisions[1:]:
          other = results.get((model, precision, kind))
          if base and other:
            print(f'{model} {kind}: {precision} / {precisions[0]} = '
                  f'{other.images_per_sec / base.images_per_sec:.2f}')
  if 'unseeded' in runs:
    print('\nWhat --random_seed costs (best seeded / best unseeded images/s):')
    for model in models:
      for precision in precisions:
        for kind in ('ours', 'real'):
          seeded = results.get((model, precision, kind))
          unseeded = results.get((model, precision, f'{kind}_unseeded'))
          if seeded and unseeded:
            print(f'  {model} {precision} {kind}: '
                  f'{seeded.images_per_sec:.1f} / '
                  f'{unseeded.images_per_sec:.1f} = '
                  f'{seeded.images_per_sec / unseeded.images_per_sec:.3f}')
  print(f'\nload average after: {common.load_average():.2f}')


if __name__ == '__main__':
  main()
