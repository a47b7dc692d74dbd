"""Comparing training methods: a grid of ordinary training runs and a report.

A study trains the same base command (every flag of
`train_image_classifier.py`) once per point of a grid (`--vary`, over
training flags and model options) and per seed, each as an ordinary run in
`study_dir/runs/<name>/`, then reports on them:

  grid.py     the grid: parse and check `--vary`, name the runs
  runner.py   run them as `train_image_classifier.py` processes: skip the
              finished, resume the interrupted, K at a time, progress
  ray_backend.py  or as Ray Tune trials on a cluster (--backend=ray):
              retries, early stopping; ray_workers.py: multi-worker runs
  results.py  read each run's folder (flags.txt, event files, checkpoint)
  stats.py    confidence intervals, paired/Welch/Wilcoxon tests, Holm,
              seeds needed for a given power (scipy)
  ranking.py  configurations over seeds, same-training duplicates, the
              ranking and the tests against the best
  plots.py    learning curves with 95% CI bands, the forest plot
  report.py   results.csv, summary.csv, report.md, TensorBoard HParams

`compare_methods.py` wires them to flags. The runner sits above training:
it starts the training script and reads what the runs write, so a run of a
study can also be resumed, evaluated or inspected on its own, and
`report.results` reads run folders written anywhere (another machine, a
cluster job per run).
"""
