"""Small nets in the study setting: the work around the step, measured.

The studies train small nets on small images (cifarnet on CIFAR-10, lenet on
MNIST), where the loop, the input, summaries and validation weigh as much as
the convolutions. For each net this runs `train_image_classifier.py` as a
study does, each run in its own subprocess:

  real       records written here in TF-Slim's format (MNIST-shaped 28x28x1
             PNG, CIFAR-shaped 32x32x3 PNG), the net's own preprocessing,
             TF-Slim's recipe (lenet: batch 50, SGD 0.01; cifarnet: batch
             128, SGD 0.1, weight decay 0.004), --random_seed, validation on
             the test split every `--eval_every` steps, summaries and
             checkpoints at their defaults;
  synthetic  the same step on one in-memory batch (--dataset_name=synthetic),
             no validation, no summaries after the first step;

and prints, per run: steady-state s/step and images/s (the trainer's log
lines after `--warmup` steps; validation left out, as the trainer leaves it
out), the wall time per step with validation in, GFLOP/s (`slimkit.flops`:
multiply-adds x 2 x 3 per image) and the utilisation against
`--peak_gflops` (blank without it), the seconds from the command to the
training loop and to the first step (the first log line at step L, less
L - 1 steady steps: imports, dataset open, tracing, restore), and the
real / synthetic ratio: the overhead the input, summaries and validation
add to the step.

Several checkouts are measured side by side in one sitting, the runs
alternating (every other round in reverse order), so that a change of load
hits them alike:

  python bench/small_nets.py --variant=before=/work/wt/base --variant=after=.
  python bench/small_nets.py --variant='spl1=. --steps_per_loop=1' \
      --variant='spl10=. --steps_per_loop=10' --models=lenet
  python bench/small_nets.py --profile    # plus the top kernels of a step

A variant is `LABEL=PATH` followed by flags for its runs. `--profile` adds
one run per net and variant with a TensorFlow profiler trace of the steps
between two log lines, and prints the kernels that took the most time per
step.
"""

import argparse
import collections
import datetime
import glob
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from bench import common  # pylint: disable=g-import-not-at-top

# name -> (dataset, image size, channels, batch, recipe flags, steps, warmup)
MODELS = {
    # TF-Slim's scripts/train_lenet_on_mnist.sh.
    'lenet': ('mnist', 28, 1, 50, [
        '--optimizer=sgd', '--learning_rate=0.01',
        '--learning_rate_decay_type=fixed', '--weight_decay=0'], 400, 100),
    # TF-Slim's scripts/train_cifarnet_on_cifar10.sh.
    'cifarnet': ('cifar10', 32, 3, 128, [
        '--optimizer=sgd', '--learning_rate=0.1',
        '--learning_rate_decay_factor=0.1', '--num_epochs_per_decay=200',
        '--weight_decay=0.004'], 160, 40),
}
NUM_CLASSES = 10
# absl's line prefix: I1204 16:56:38.436230 140428339248000 trainer.py:518]
_ABSL_TIME_RE = re.compile(r'^[IWEF]\d{4} (\d\d):(\d\d):(\d\d\.\d+) ')
_LOOP_RE = re.compile(r'Training \S+ from global step')
_VALIDATION_RE = re.compile(r'Validation at global step \d+: .*, ([\d.]+) s\)')


def write_records(data_dir, train_records, test_records):
  """Writes MNIST- and CIFAR-shaped PNG records as the converters name them.

  Reused when `data_dir` holds them already. The images are smooth shapes
  with noise (strokes for MNIST), so PNG compresses and decodes them about
  as it does the real ones.
  """
  import numpy as np
  import tensorflow as tf
  from slimkit.datasets import cifar10
  from slimkit.datasets import dataset_utils
  from slimkit.datasets import mnist
  for module, name, size, channels in ((mnist, 'mnist', 28, 1),
                                       (cifar10, 'cifar10', 32, 3)):
    directory = os.path.join(data_dir, name)
    os.makedirs(directory, exist_ok=True)
    for seed, (split, count) in enumerate((('train', train_records),
                                           ('test', test_records))):
      path = module.output_path(directory, split)
      if os.path.exists(path):
        continue
      rng = np.random.RandomState(seed)
      coarse = rng.uniform(0, 255, (count, size // 4 + 1, size // 4 + 1,
                                    channels)).astype(np.float32)
      images = tf.image.resize(coarse, [size, size], method='bicubic').numpy()
      if channels == 1:  # white strokes on black, as MNIST
        images = np.where(images > 170, 255.0, 0.0)
      images += rng.normal(0, 4, images.shape)
      images = np.clip(images, 0, 255).astype(np.uint8)
      labels = rng.randint(0, NUM_CLASSES, count)
      dataset_utils.write_tfrecord(path, dataset_utils.png_records(
          images, labels, log_every=0))
    dataset_utils.write_label_file(
        {k: f'class_{k}' for k in range(NUM_CLASSES)}, directory)


def training_flops_per_image(model, size, channels):
  """Training FLOPs of one image (`slimkit.flops`), of this checkout's net."""
  from slimkit import flops
  from slimkit.nets import nets_factory
  net = nets_factory.get_network_fn(model, NUM_CLASSES)
  return flops.training_flops_per_image(
      flops.multiply_adds(net, (size, size, channels)))


def _argv(args, model, kind, repo, extra, train_dir):
  dataset, size, channels, batch, recipe, steps, _ = MODELS[model]
  flags = [f'--train_dir={train_dir}', f'--model_name={model}',
           f'--batch_size={batch}', f'--train_image_size={size}',
           f'--max_number_of_steps={args.steps or steps}',
           f'--log_every_n_steps={args.log_every}', '--random_seed=0',
           *recipe]
  if kind == 'real':
    flags += [f'--dataset_name={dataset}',
              f'--dataset_dir={os.path.join(args.data_dir, dataset)}',
              f'--eval_every_n_steps={args.eval_every}']
  else:
    flags += ['--dataset_name=synthetic', f'--num_classes={NUM_CLASSES}',
              '--save_summaries_secs=1000000']
    if channels == 1:
      flags.append('--use_grayscale')  # synthetic batches are RGB otherwise
  return flags + extra


def _seconds_of_day(line):
  match = _ABSL_TIME_RE.match(line)
  if not match:
    return None
  hours, minutes, seconds = match.groups()
  return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def timings(log, start, steps, warmup):
  """What a run's log says beyond its step lines.

  Args:
    log: The run's whole output.
    start: `datetime` of the command's launch.
    steps: The run's `[(step, sec/step, rss)]`.
    warmup: Steps left out of the steady state.

  Returns:
    `{'to_loop': s, 'to_first_step': s, 'wall_per_step': s}` (None where
    the log lacks the lines).
  """
  start_secs = (start.hour * 3600 + start.minute * 60 + start.second +
                start.microsecond / 1e6)
  to_loop = first_line = None
  step_times = {}
  validation = []
  for line in log.splitlines():
    when = _seconds_of_day(line)
    if when is None:
      continue
    if to_loop is None and _LOOP_RE.search(line):
      to_loop = when - start_secs
    match = common.STEP_RE.search(line)
    if match:
      step_times[int(match.group(1))] = when
      if first_line is None:
        first_line = (int(match.group(1)), when - start_secs)
    match = _VALIDATION_RE.search(line)
    if match:
      validation.append(float(match.group(1)))
  steady = [s for step, s, _ in steps if step > warmup]
  result = dict(to_loop=to_loop, to_first_step=None, wall_per_step=None)
  if first_line and steady:
    sec_per_step = sorted(steady)[len(steady) // 2]
    step, seconds = first_line
    result['to_first_step'] = seconds - (step - 1) * sec_per_step
  after = sorted(s for s in step_times if s >= warmup)
  if len(after) >= 2:
    result['wall_per_step'] = ((step_times[after[-1]] - step_times[after[0]])
                               / (after[-1] - after[0]))
  return result


def profile_child(argv):
  """Runs a checkout's train script with a profiler trace between log lines.

  argv: `<trace dir> <first step> <last step> <script> <script flags...>`.
  The trace starts at the first log line at or after the first step and
  stops at the next one at or after the last.
  """
  import logging
  import runpy
  trace_dir, first, last, script = argv[:4]
  first, last = int(first), int(last)
  repo = os.path.dirname(os.path.abspath(script))
  # The checkout's own code, not this bench's.
  sys.path[:] = [repo] + [p for p in sys.path if os.path.abspath(p or '.')
                          != common.ROOT]
  sys.argv = [script] + argv[4:]
  state = {'on': False, 'done': False}

  class Trace(logging.Handler):

    def emit(self, record):
      match = common.STEP_RE.search(record.getMessage())
      if not match or state['done']:
        return
      import tensorflow as tf
      step = int(match.group(1))
      if not state['on'] and step >= first:
        tf.profiler.experimental.start(trace_dir)
        state['on'] = True
        print(f'RESULT profile_first {step}', file=sys.stderr, flush=True)
      elif state['on'] and step >= last:
        tf.profiler.experimental.stop()
        state['done'] = True
        print(f'RESULT profile_last {step}', file=sys.stderr, flush=True)

  logging.getLogger('absl').addHandler(Trace())
  runpy.run_path(script, run_name='__main__')


def top_kernels(trace_dir, num_steps, top):
  """`[(ms per step, thread kind, kernel)]` of a trace, most first.

  The host plane's events named `<node>:<op>` are kernels; those on tf.data's
  threads count as input.
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*',
                                 '*.xplane.pb'))
  space = xplane_pb2.XSpace()
  with open(paths[0], 'rb') as f:
    space.ParseFromString(f.read())
  totals = collections.Counter()
  for plane in space.planes:
    if plane.name != '/host:CPU':
      continue
    for line in plane.lines:
      kind = 'input' if line.name.startswith('tf_data') else 'step'
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ':' in name and '::' not in name and not name.startswith(
            ('EagerLocalExecute', 'Iterator')):
          totals[(kind, name)] += event.duration_ps / 1e9
  by_kind = collections.Counter()
  for (kind, _), ms in totals.items():
    by_kind[kind] += ms
  rows = [(ms / num_steps, kind, name)
          for (kind, name), ms in totals.most_common(top)]
  return rows, {k: v / num_steps for k, v in by_kind.items()}


def _variants(parser, specs):
  variants = []
  for spec in specs or [f'this={common.ROOT}']:
    label, sep, rest = spec.partition('=')
    parts = rest.split()
    if not sep or not label or not parts:
      parser.error(f'--variant={spec!r}: expected LABEL=PATH [FLAGS...]')
    path = os.path.abspath(parts[0])
    if not os.path.exists(os.path.join(path, 'train_image_classifier.py')):
      parser.error(f'--variant={spec!r}: no train_image_classifier.py in '
                   f'{path}')
    variants.append((label, path, parts[1:]))
  return variants


def _fmt(value, spec):
  return '' if value is None else format(value, spec)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='lenet,cifarnet',
                      help='Comma-separated: ' + ', '.join(MODELS))
  parser.add_argument('--variant', action='append',
                      help='LABEL=PATH [FLAGS...]: a checkout and extra '
                      'flags of its runs (repeat it; default: this '
                      'checkout).')
  parser.add_argument('--runs', default='real,synthetic')
  parser.add_argument('--steps', type=int, default=None,
                      help='Steps per run (default: per net).')
  parser.add_argument('--warmup', type=int, default=None,
                      help='Steps left out of the steady state (default: '
                      'per net).')
  parser.add_argument('--log_every', type=int, default=10,
                      help='--log_every_n_steps (the trainer\'s default).')
  parser.add_argument('--eval_every', type=int, default=100,
                      help='Validation of the real runs on the test split '
                      '(--test_records images): a study validates 10000 '
                      'CIFAR images every 1000 steps.')
  parser.add_argument('--train_records', type=int, default=10000)
  parser.add_argument('--test_records', type=int, default=1000)
  parser.add_argument('--data_dir', default=None,
                      help='Where the records are written (kept and reused '
                      'when given; default: a temporary folder).')
  parser.add_argument('--repeats', type=int, default=2,
                      help='Rounds of all runs, alternating; the best '
                      'steady state of each is kept.')
  parser.add_argument('--peak_gflops', type=float, default=None,
                      help='The machine\'s peak, for the utilisation column.')
  parser.add_argument('--profile', action='store_true',
                      help='Also trace the real runs and print the top '
                      'kernels per step.')
  parser.add_argument('--top', type=int, default=12)
  if argv is None:
    argv = sys.argv[1:]
  if argv[:1] == ['--child=profile']:
    profile_child(argv[1:])
    return
  args = parser.parse_args(argv)
  models = [m for m in args.models.split(',') if m]
  for model in models:
    if model not in MODELS:
      parser.error(f'unknown model {model!r}; valid: {", ".join(MODELS)}')
  kinds = [k for k in args.runs.split(',') if k]
  for kind in kinds:
    if kind not in ('real', 'synthetic'):
      parser.error(f'--runs: unknown run {kind!r}; valid: real, synthetic')
  variants = _variants(parser, args.variant)

  scratch = tempfile.mkdtemp(prefix='small_nets_')
  keep_data = args.data_dir is not None
  args.data_dir = args.data_dir or os.path.join(scratch, 'data')
  print(f'machine: {common.machine()}', flush=True)
  write_records(args.data_dir, args.train_records, args.test_records)
  flops = {m: training_flops_per_image(m, MODELS[m][1], MODELS[m][2])
           for m in models}
  print(f'records: {args.train_records} train, {args.test_records} test in '
        f'{args.data_dir}; load average {common.load_average():.2f}',
        flush=True)
  results = {}
  extra = {}
  try:
    for model in models:
      batch, warmup = MODELS[model][3], args.warmup or MODELS[model][6]
      plan = [(label, repo, flags, kind) for label, repo, flags in variants
              for kind in kinds]
      rounds = [plan if r % 2 == 0 else plan[::-1]
                for r in range(args.repeats)]
      for label, repo, flags, kind in [p for r in rounds for p in r]:
        train_dir = os.path.join(scratch, 'train')
        shutil.rmtree(train_dir, ignore_errors=True)
        argv = [sys.executable, os.path.join(repo, 'train_image_classifier.py'),
                *_argv(args, model, kind, repo, flags, train_dir)]
        start = datetime.datetime.now()
        result = common.run(f'{model} {label} {kind}', argv, batch_size=batch,
                            warmup=warmup, env={'PYTHONPATH': repo},
                            keep_log=True)
        common.check(result)
        times = timings(result.log, start, result.steps, warmup)
        key = (model, label, kind)
        best = results.get(key)
        if best is None or result.images_per_sec > best[0].images_per_sec:
          results[key] = (result, times)
        # Start-up: the median is kept over rounds (see below).
        extra.setdefault(key, []).append(times)
        print(f'{result.name:32s} {batch / result.images_per_sec:.4f} s/step '
              f'{result.images_per_sec:7.1f} images/s  to first step '
              f'{_fmt(times["to_first_step"], ".1f")} s  (load '
              f'{common.load_average():.2f})', flush=True)
      if args.profile:
        for label, repo, flags, _ in [p for p in plan if p[3] == 'real']:
          _profile(args, model, label, repo, flags, scratch)
  finally:
    shutil.rmtree(scratch if not keep_data else os.path.join(scratch, 'train'),
                  ignore_errors=True)
    if not keep_data:
      shutil.rmtree(scratch, ignore_errors=True)

  print('\n| net | variant | input | s/step | images/s | wall s/step '
        '(validation in) | GFLOP/s | utilisation | to loop s | to first '
        'step s | real / synthetic |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  for model in models:
    batch = MODELS[model][3]
    for label, _, _ in variants:
      for kind in kinds:
        if (model, label, kind) not in results:
          continue
        result, times = results[(model, label, kind)]
        starts = extra[(model, label, kind)]
        rate = result.images_per_sec
        gflops = flops[model] * rate / 1e9
        utilisation = (gflops / args.peak_gflops if args.peak_gflops
                       else None)
        synthetic = results.get((model, label, 'synthetic'))
        ratio = (rate / synthetic[0].images_per_sec
                 if synthetic and kind == 'real' else None)
        print(f'| {model} | {label} | {kind} | {batch / rate:.4f} | '
              f'{rate:.0f} | {_fmt(times["wall_per_step"], ".4f")} | '
              f'{gflops:.1f} | {_fmt(utilisation, ".0%")} | '
              f'{_fmt(_median(starts, "to_loop"), ".1f")} | '
              f'{_fmt(_median(starts, "to_first_step"), ".1f")} | '
              f'{_fmt(ratio, ".2f")} |')
  if len(variants) > 1:
    base = variants[0][0]
    print(f'\nEach variant against {base} (best images/s; median start-up):')
    for model in models:
      for label, _, _ in variants[1:]:
        for kind in kinds:
          ours, theirs = (results.get((model, label, kind)),
                          results.get((model, base, kind)))
          if not ours or not theirs:
            continue
          speed = ours[0].images_per_sec / theirs[0].images_per_sec
          first = [_median(extra[(model, v, kind)], 'to_first_step')
                   for v in (label, base)]
          cut = (1 - first[0] / first[1]) if None not in first else None
          print(f'  {model} {kind}: {label} / {base} images/s = {speed:.2f}; '
                f'time to first step {_fmt(cut, ".0%")} lower')
  print(f'\nload average after: {common.load_average():.2f}')


def _median(timings_list, name):
  values = sorted(t[name] for t in timings_list if t[name] is not None)
  return values[len(values) // 2] if values else None


def _profile(args, model, label, repo, flags, scratch):
  """One traced real run; prints its top kernels per step."""
  batch, steps, warmup = (MODELS[model][3], args.steps or MODELS[model][5],
                          args.warmup or MODELS[model][6])
  train_dir = os.path.join(scratch, 'train')
  trace_dir = os.path.join(scratch, f'trace_{model}_{label}')
  shutil.rmtree(train_dir, ignore_errors=True)
  # Whole log intervals after warm-up, before the last line.
  first = warmup + args.log_every
  last = max(first + args.log_every,
             min(steps - args.log_every, first + 5 * args.log_every))
  argv = [sys.executable, os.path.abspath(__file__), '--child=profile',
          trace_dir, str(first), str(last),
          os.path.join(repo, 'train_image_classifier.py'),
          *_argv(args, model, 'real', repo, flags, train_dir)]
  result = common.run(f'{model} {label} profile', argv, batch_size=batch,
                      warmup=warmup, env={'PYTHONPATH': repo})
  common.check(result)
  traced = int(result.values['profile_last'] - result.values['profile_first'])
  rows, by_kind = top_kernels(trace_dir, traced, args.top)
  print(f'\n{model} {label}: kernels per step over steps '
        f'{int(result.values["profile_first"])}-'
        f'{int(result.values["profile_last"])} (ms of thread time; step '
        f'{by_kind.get("step", 0):.1f}, input {by_kind.get("input", 0):.1f})')
  for ms, kind, name in rows:
    print(f'  {ms:7.2f} ms  {kind:5s}  {name[:96]}')


if __name__ == '__main__':
  main()
